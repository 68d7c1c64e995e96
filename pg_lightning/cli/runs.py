"""Learning curves as data: runs' ``metrics.csv`` files, grouped by their Hydra overrides, aggregated over seeds.

A path is a run directory (its ``csv/metrics.csv``), a ``metrics.csv`` file, or a directory of
runs such as a Hydra multirun (each subdirectory with a ``csv/metrics.csv``). The runs of a
directory are grouped by their Hydra overrides (``<job>/.hydra/overrides.yaml``) without
``seed``: a group is one setting over several seeds, summed up as a `Curve` (the mean over its
seeds, their std, min and max). Cells left empty in some epochs (a metric measured every n
epochs) are skipped.

`learning_curves` computes the data (plain numpy, tested on its own);
`pg_lightning.cli.plots` draws it (``plot.py`` / ``pg-plot``).

Layer: cli (numpy and yaml, no Hydra, no Lightning).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from pg_lightning.core.errors import ConfigError

__all__ = ["Curve", "aggregate", "find_runs", "learning_curves", "read_metrics", "run_overrides", "y_columns"]

METRICS = Path("csv") / "metrics.csv"
SEED_KEYS = {"seed"}


@dataclass
class Curve:
    """One group's learning curve over its seeds, on the union of their x values.

    ``x`` is sorted; at each x, ``mean``, ``std`` (population), ``min`` and ``max`` are over the
    ``n`` runs whose logged x range covers it (each run's y linearly interpolated between its
    own logged points; never extrapolated past its first or last one), so ``n`` drops where
    a run ended early (e.g. EarlyStopping once solved). ``column`` is the y column it plots and
    ``group`` the label of its group of runs (``label`` is the group's, or with several y columns
    the column's, see :func:`learning_curves`).
    """

    label: str
    runs: list[Path]
    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    n: np.ndarray
    column: str | None = None
    group: str | None = None


def y_columns(y: str | Sequence[str]) -> list[str]:
    """``y`` as a non-empty list of column names (a single name is a list of one; a name given twice counts once).

    A ConfigError naming ``y`` for an empty sequence or a name that is not a non-empty string.
    """
    columns = [y] if isinstance(y, str) else list(y)
    if not columns or not all(isinstance(c, str) and c for c in columns):
        raise ConfigError(f"y: give one or more column names, got {y!r}")
    return list(dict.fromkeys(columns))  # a column named twice is drawn once


def read_metrics(path: str | os.PathLike, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``(x, y)`` rows of a CSVLogger ``metrics.csv`` where both are logged, sorted by x.

    Rows with an empty cell in either column are skipped (a metric logged only in some epochs,
    e.g. ``eval/return_mean`` every n epochs). Errors name the missing column (``x`` or ``y``).
    """
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        for key, column in (("x", x), ("y", y)):
            if column not in columns:
                metrics = ", ".join(c for c in columns if "/" in c) or "none"
                raise ConfigError(f"{key}: no column {column!r} in {path} (logged metrics: {metrics})")
        pairs = [
            (float(row[x]), float(row[y])) for row in reader if row[x] not in ("", None) and row[y] not in ("", None)
        ]
    pairs.sort(key=lambda p: p[0])
    data = np.asarray(pairs, dtype=np.float64).reshape(-1, 2)
    return data[:, 0], data[:, 1]


def run_overrides(run_dir: Path, ignore: Iterable[str] = SEED_KEYS) -> list[str] | None:
    """A run's Hydra overrides (``.hydra/overrides.yaml``) as typed, without the ``ignore`` keys.

    ``None`` when the run has no overrides file (not written by Hydra's CLI).
    """
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        return None
    overrides = yaml.safe_load(overrides_file.read_text()) or []
    ignore = set(ignore)
    return [str(o) for o in overrides if str(o).split("=", 1)[0].lstrip("+~") not in ignore]


def _job_order(path: Path) -> tuple[float, str]:
    return (int(path.name), "") if path.name.isdigit() else (math.inf, path.name)  # 0, 1, 2, ..., 10 (not "10" < "2")


def find_runs(path: str | os.PathLike, ignore: Iterable[str] = SEED_KEYS) -> dict[str, list[Path]]:
    """``{group label: [metrics.csv, ...]}`` for a run directory, a ``metrics.csv``, or a directory of runs.

    A single run (or file) is one group, labelled by its directory. In a directory of runs
    (a multirun: numbered job directories), runs are grouped by their overrides without ``seed``
    (:func:`run_overrides`), labelled by the overrides that differ between groups (those all runs
    share are left out); groups keep the order of their first job. A run without
    ``.hydra/overrides.yaml`` is a group of its own, labelled by its directory's name. Errors name ``path``.
    """
    path = Path(path)
    if path.is_file():
        return {path.parent.parent.name if path.parent.name == "csv" else path.parent.name: [path]}
    if (path / METRICS).is_file():
        return {path.resolve().name: [path / METRICS]}
    if not path.is_dir():
        raise ConfigError(f"path: {str(path)!r} does not exist")
    runs = sorted((p for p in path.iterdir() if (p / METRICS).is_file()), key=_job_order)
    if not runs:
        raise ConfigError(
            f"path: no {METRICS} in {str(path)!r} nor in its subdirectories: give a run directory "
            "(outputs/<date>/<time>), a metrics.csv or a multirun directory (multirun/<date>/<time>)"
        )
    overrides = {run: run_overrides(run, ignore) for run in runs}
    # overrides that every run shares (e.g. trainer.max_epochs=... of the whole sweep) label nothing
    typed = [o for o in overrides.values() if o is not None]
    shared = set.intersection(*(set(o) for o in typed)) if typed else set()
    if len({tuple(o) for o in typed}) < 2:
        shared = set()  # one group: keep its full label
    groups: dict[str, list[Path]] = {}
    for run, kept in overrides.items():
        label = run.name if kept is None else " ".join(o for o in kept if o not in shared) or "defaults"
        groups.setdefault(label, []).append(run / METRICS)
    return groups


def aggregate(
    label: str,
    runs: Sequence[Path],
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
    column: str | None = None,
    group: str | None = None,
) -> Curve:
    """Mean, std, min, max over ``curves`` (``(x, y)`` pairs) at every x any of them logged (see :class:`Curve`).

    ``column``: the y column the curves are of (kept on the :class:`Curve`, named in errors);
    ``group``: the label of the group of runs (default ``label``).
    """
    curves = [(x, y) for x, y in curves if len(x)]
    if not curves:
        what = "nothing logged" if column is None else f"nothing logged in column {column!r} of"
        raise ConfigError(f"y: {what} {', '.join(map(str, runs))}")
    grid = np.unique(np.concatenate([x for x, _ in curves]))
    values = np.full((len(curves), len(grid)), np.nan)
    for i, (x, y) in enumerate(curves):
        inside = (grid >= x[0]) & (grid <= x[-1])
        values[i, inside] = np.interp(grid[inside], x, y)
    n = np.sum(~np.isnan(values), axis=0)
    return Curve(
        label=label,
        runs=list(runs),
        x=grid,
        mean=np.nanmean(values, axis=0),
        std=np.nanstd(values, axis=0),
        min=np.nanmin(values, axis=0),
        max=np.nanmax(values, axis=0),
        n=n,
        column=column,
        group=label if group is None else group,
    )


def learning_curves(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    x: str = "rollout/env_steps",
    y: str | Sequence[str] = "rollout/return_mean_100",
) -> list[Curve]:
    """One :class:`Curve` per group of runs (see :func:`find_runs`) of every path, and per y column.

    With several paths, each label starts with its path's name. ``y`` is a column or a sequence
    of columns: with several, the curves come group by group, column by column in ``y``'s
    order, each labelled by its column (``"<group>: <column>"`` where there are several groups).
    Every column must exist in every run's ``metrics.csv``; rows where it is empty are skipped.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    columns = y_columns(y)
    groups = []
    for path in paths:
        for label, files in find_runs(path).items():
            if len(paths) > 1:
                label = f"{Path(path).name}: {label}" if label != Path(path).resolve().name else label
            groups.append((label, files))
    curves = []
    for label, files in groups:
        for column in columns:
            if len(columns) > 1:
                label_of_column = column if len(groups) == 1 else f"{label}: {column}"
            else:
                label_of_column = label
            curves.append(aggregate(label_of_column, files, [read_metrics(f, x, column) for f in files], column, label))
    return curves
