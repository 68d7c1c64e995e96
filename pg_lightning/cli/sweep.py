"""Hydra callback: the multirun's table, one row per job (its overrides, its returned metric).

Configured in ``conf/train.yaml`` under ``hydra.callbacks``. Every job of a multirun writes what
it returned (``JobReturn.return_value``: ``main`` returns ``cfg.optimized_metric``), or its
error, to ``<job dir>/.hydra/job_return.json``, in the process that ran it (with the joblib or
submitit launchers not the sweep's process), and rewrites ``<sweep dir>/summary.csv`` from all
the records so far. At the end of the multirun the sweep's process writes it once more and
prints the table (a sweep with a failed job raises before that end: the CSV is there anyway).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

__all__ = ["SweepSummary", "read_job_returns"]

JOB_RETURN = "job_return.json"


class SweepSummary(Callback):
    """Prints a multirun's jobs and writes them as CSV: ``job``, one column per override, the metric.

    Args:
        metric: name of the value each job returns (the column's header), e.g. ``${optimized_metric}``.
        filename: the CSV, written in ``hydra.sweep.dir``.
    """

    def __init__(self, metric: str = "return_value", filename: str = "summary.csv") -> None:
        self.metric = metric
        self.filename = filename

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Write the job's record (``job_return.json``) and rewrite the sweep's CSV; multiruns only, rank 0."""
        if config.hydra.mode != RunMode.MULTIRUN or _rank() != 0:  # DDP: the job's rank 0 reports
            return
        failed = job_return.status != JobStatus.COMPLETED
        record = {
            "job": int(config.hydra.job.num),
            "overrides": list(job_return.overrides or []),
            "status": job_return.status.name.lower(),
            "value": None if failed else _number(job_return._return_value),
            "error": _error(job_return._return_value) if failed else "",
            "dir": str(config.hydra.runtime.output_dir),
        }
        path = Path(config.hydra.runtime.output_dir) / (config.hydra.output_subdir or "") / JOB_RETURN
        _write_atomically(path, json.dumps(record, indent=1))
        # Also after every job: a sweep with a failed job raises before on_multirun_end.
        self.write(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write the CSV once more and print the table: its columns that differ between jobs."""
        table = self.write(config.hydra.sweep.dir, printed=True)
        if table:
            header, rows = table[0], table[1:]
            # printed: the columns that differ between jobs (the CSV has them all)
            shown = [
                i for i, h in enumerate(header) if h in ("job", self.metric, "status") or len({r[i] for r in rows}) > 1
            ]
            path = Path(config.hydra.sweep.dir) / self.filename
            print(
                f"\nSweep summary ({len(rows)} jobs; {path}):\n{_format([[r[i] for i in shown] for r in table])}",
                flush=True,
            )

    def write(self, sweep_dir: str | Path, printed: bool = False) -> list[list[str]]:
        """Write ``<sweep_dir>/<filename>`` from the jobs' records; return its rows (header first).

        The CSV holds each value as the job returned it (``repr``: it reads back as that very float) and
        each override as given; the rows returned with ``printed=True`` hold floats to 6 significant
        digits (the values, and overrides such as a sweeper's ``lr=0.0032958204917485``), as printed.
        """
        records = read_job_returns(sweep_dir)
        if not records:
            return []
        keys: list[str] = []  # override keys, in the order they first appear
        overrides = [_split(r["overrides"]) for r in records]
        for o in overrides:
            keys += [k for k in o if k not in keys]

        def table(value: Callable[[Any], str], text: Callable[[str], str]) -> list[list[str]]:
            return [["job", *keys, self.metric, "status", "error"]] + [
                [str(r["job"]), *(text(o.get(k, "")) for k in keys), value(r["value"]), r["status"], r["error"]]
                for r, o in zip(records, overrides, strict=True)
            ]

        buffer = io.StringIO()
        csv.writer(buffer).writerows(table(_exact, str))
        _write_atomically(Path(sweep_dir) / self.filename, buffer.getvalue())
        return table(_rounded, _rounded_text) if printed else table(_exact, str)


def read_job_returns(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The ``job_return.json`` records under ``sweep_dir``, by job number."""
    records = [json.loads(p.read_text()) for p in Path(sweep_dir).rglob(JOB_RETURN)]
    return sorted(records, key=lambda r: r["job"])


def _write_atomically(path: Path, text: str) -> None:
    """Parallel jobs (joblib, SLURM) may write the same file: each write replaces it whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _split(overrides: list[str]) -> dict[str, str]:
    """``["a.b=1", "+c=x"]`` -> ``{"a.b": "1", "+c": "x"}`` (Hydra's own override parser)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return {o.get_key_element(): o.get_value_element_as_str() for o in parsed}


def _error(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _number(value: Any) -> float | str | None:
    """A float where the value is one (NaN included), else its text."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _exact(value: Any) -> str:
    """A job's value in the CSV: empty for none, else its text (a float's ``repr`` reads back as that float)."""
    return "" if value is None else str(value)


def _rounded(value: Any) -> str:
    """A job's value in the printed table: floats to 6 significant digits (``51.474998474121094`` -> ``51.475``)."""
    return f"{value:.6g}" if isinstance(value, float) else _exact(value)


def _rounded_text(text: str) -> str:
    """An override's value in the printed table: a float with more than 6 significant digits rounded, else as given
    (integers, such as seeds, included)."""
    try:
        int(text)
        return text
    except ValueError:
        pass
    try:
        short = f"{float(text):.6g}"
    except ValueError:
        return text
    return short if len(short) < len(text) else text


def _rank() -> int:
    from pytorch_lightning.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def _format(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
