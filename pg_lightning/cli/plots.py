"""Learning curves from the CSV logs of runs and multiruns.

    python plot.py outputs/<date>/<time>                  # one run: <run>/learning_curve.png
    python plot.py multirun/<date>/<time>                 # a sweep: mean and spread over seeds per group
    python plot.py RUN_OR_SWEEP ... --out curves.png --x rollout/env_steps --y rollout/return_mean_100
    python plot.py RUN --y diag/var/total diag/var/reward_to_go diag/var/reward_to_go_baseline --log-y

A path is a run directory (its ``csv/metrics.csv``), a ``metrics.csv`` file, or a directory of
runs such as a Hydra multirun (each subdirectory with a ``csv/metrics.csv``). The runs of a
directory are grouped by their Hydra overrides (``<job>/.hydra/overrides.yaml``) without
``seed``: a group is one setting over several seeds, drawn as the mean over its seeds with their
min-max range (or mean ± std) around it. Several ``--y`` columns draw one curve per column and
group, in one figure, the legend naming the column (e.g. the variance of each estimator logged by
``callbacks=diagnostics``); cells left empty in some epochs (a metric measured every n epochs)
are skipped, each curve joining the epochs where its column was logged.

:func:`learning_curves` computes the data (plain numpy, tested on its own); :func:`plot_runs`
draws it with matplotlib's Agg canvas (no pyplot, no display: safe in scripts and notebooks).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from pg_lightning.core.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "Curve",
    "aggregate",
    "draw_curves",
    "find_runs",
    "learning_curves",
    "main",
    "plot_runs",
    "read_metrics",
    "run_overrides",
]

METRICS = Path("csv") / "metrics.csv"
SPREADS = ("minmax", "std")
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


def _columns(y: str | Sequence[str]) -> list[str]:
    """``y`` as a non-empty list of column names (a single name is a list of one)."""
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


def _job_order(path: Path) -> tuple[int, str]:
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
    columns = _columns(y)
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


def _default_out(paths: Sequence[str | os.PathLike]) -> Path:
    first = Path(paths[0])
    if len(paths) > 1:
        return Path("learning_curve.png")
    return (first.parent if first.is_file() else first) / "learning_curve.png"


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as err:
        raise MissingExtraError(
            f'plots need matplotlib ({err}); install the plots extra: pip install "pg-lightning[plots]"'
        ) from err
    return Figure, FigureCanvasAgg


def _y_label(columns: Sequence[str]) -> str:
    """The y axis' name: the column, or the ``/``-prefix several columns share (``diag/var/*``)."""
    if len(columns) == 1:
        return columns[0]
    prefix = os.path.commonprefix([c.rsplit("/", 1)[0] + "/" if "/" in c else "" for c in columns])
    prefix = prefix[: prefix.rfind("/") + 1]
    return f"{prefix}*" if prefix else ", ".join(columns)


def draw_curves(
    curves: Sequence[Curve],
    x: str = "rollout/env_steps",
    y: str | Sequence[str] = "rollout/return_mean_100",
    spread: str = "minmax",
    title: str | None = None,
    log_y: bool = False,
) -> Figure:
    """A matplotlib ``Figure`` (Agg canvas, no pyplot) of ``curves`` from :func:`learning_curves`.

    Its single axes holds one solid line per curve, labelled (in the legend, where there are
    several curves) by the curve's label, and for seeds that end early a dashed, unlabelled
    continuation; with several y columns a dot marks every logged point. ``x``, ``y`` name the
    axes; ``log_y`` sets a logarithmic y axis. See :func:`plot_runs`.
    """
    figure_class, canvas_class = _matplotlib()
    if spread not in SPREADS:
        raise ConfigError(f"spread must be one of {SPREADS}, got {spread!r}")
    columns = _columns(y)
    fig = figure_class(figsize=(7, 4.2), layout="constrained")
    canvas_class(fig)
    ax = fig.add_subplot()
    # several columns (e.g. diag/var/* measured every n epochs): a dot at every logged x
    points = {"marker": "o", "markersize": 3} if len(columns) > 1 else {}
    for i, curve in enumerate(curves):
        color = f"C{i % 10}"
        seeds = len(curve.runs)
        label = f"{curve.label} ({seeds} seeds)" if seeds > 1 else curve.label
        full = curve.n == seeds
        ax.plot(curve.x, np.where(full, curve.mean, np.nan), color=color, label=label, **points)
        if not full.all():  # where only some seeds reach: dashed (joined to the solid part)
            partial = ~full | np.r_[~full[1:], False] | np.r_[False, ~full[:-1]]
            ax.plot(curve.x, np.where(partial, curve.mean, np.nan), color=color, linestyle="--", **points)
        if seeds > 1:
            low, high = (
                (curve.min, curve.max) if spread == "minmax" else (curve.mean - curve.std, curve.mean + curve.std)
            )
            ax.fill_between(curve.x, low, high, color=color, alpha=0.2, linewidth=0)
    if log_y:
        ax.set_yscale("log")
    y_label = _y_label(columns)
    ax.set_xlabel(x)
    ax.set_ylabel(y_label)
    if title is None:  # one curve: its label in the title instead of a legend
        if len(columns) == 1:
            title = y_label if len(curves) > 1 else f"{y_label} ({curves[0].label})"
        else:  # several columns: the legend names them, the title the group (if only one)
            groups = {curve.group for curve in curves}
            title = f"{y_label} ({curves[0].group})" if len(groups) == 1 else y_label
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if any(len(c.runs) > 1 for c in curves):
        ax.text(
            0.99,
            0.01,
            "band: " + ("min-max over seeds" if spread == "minmax" else "mean ± std over seeds"),
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            alpha=0.7,
        )
    if len(curves) > 1:
        ax.legend(fontsize=8)
    return fig


def plot_runs(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    x: str = "rollout/env_steps",
    y: str | Sequence[str] = "rollout/return_mean_100",
    spread: str = "minmax",
    title: str | None = None,
    log_y: bool = False,
) -> Path:
    """Draw the learning curves of :func:`learning_curves` to a PNG; return its path.

    Args:
        paths: run directories, ``metrics.csv`` files or multirun directories.
        out: the PNG; default ``learning_curve.png`` in the (single) path's directory, else in the cwd.
        x: the x column of ``metrics.csv``.
        y: the y column, or a sequence of columns: one curve per column (and group), all against
            ``x`` in one figure, the legend naming the columns. Empty cells are skipped.
        spread: ``minmax`` (the band between the lowest and highest seed) or ``std`` (mean ± std).
        title: the figure's title (default: the y column, and the label of a single curve).
        log_y: a logarithmic y axis (e.g. variances, which span orders of magnitude).

    A group of several seeds is drawn as its mean with the band; where only some of its seeds
    reach (the others ended earlier), the mean is dashed. With several curves, a legend names
    them (and their seeds).
    """
    _matplotlib()  # the missing extra is named before anything else
    if spread not in SPREADS:
        raise ConfigError(f"spread must be one of {SPREADS}, got {spread!r}")
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    curves = learning_curves(paths, x=x, y=y)
    out = Path(out) if out is not None else _default_out(paths)
    fig = draw_curves(curves, x=x, y=y, spread=spread, title=title, log_y=log_y)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python plot.py PATH [PATH ...] [--out PNG] [--x COL] [--y COL [COL ...]] [--log-y] [--spread S]``."""
    parser = argparse.ArgumentParser(
        prog="plot.py",
        description="Plot learning curves (y against x) from runs' csv/metrics.csv: a run directory, a "
        "metrics.csv, or a multirun directory (mean and spread over seeds per group of overrides).",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="run dir, metrics.csv or multirun dir")
    parser.add_argument("--out", help="the PNG to write (default: learning_curve.png in PATH)")
    parser.add_argument("--x", default="rollout/env_steps", help="x column (default: %(default)s)")
    parser.add_argument(
        "--y",
        nargs="+",
        action="extend",
        metavar="COLUMN",
        help="y column(s): several draw one curve each, e.g. --y diag/var/total diag/var/reward_to_go; "
        "epochs where a column is empty are skipped (default: rollout/return_mean_100). Give PATH first",
    )
    parser.add_argument("--log-y", action="store_true", help="logarithmic y axis (e.g. for variances)")
    parser.add_argument("--spread", default="minmax", choices=SPREADS, help="band over seeds (default: %(default)s)")
    parser.add_argument("--title", help="figure title (default: the y column)")
    args = parser.parse_args(argv)
    y = args.y or ["rollout/return_mean_100"]
    try:
        out = plot_runs(
            args.paths,
            out=args.out,
            x=args.x,
            y=y[0] if len(y) == 1 else y,
            spread=args.spread,
            title=args.title,
            log_y=args.log_y,
        )
    except MissingExtraError as err:
        print(f"Missing extra: {err}", file=sys.stderr)
        sys.exit(2)
    except ConfigError as err:
        message = re.sub(r"^(x|y):", r"--\1:", str(err))  # the CLI's names for the columns
        print(f"Config error: {message}", file=sys.stderr)
        sys.exit(2)
    print(out)


if __name__ == "__main__":  # python -m pg_lightning.cli.plots
    main()
