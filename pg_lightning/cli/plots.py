"""Learning curves from the CSV logs of runs and multiruns.

    python plot.py outputs/<date>/<time>                  # one run: <run>/learning_curve.png
    python plot.py multirun/<date>/<time>                 # a sweep: mean and spread over seeds per group
    python plot.py RUN_OR_SWEEP ... --out curves.png --x rollout/env_steps --y rollout/return_mean_100
    python plot.py RUN --y diag/var/total diag/var/reward_to_go diag/var/reward_to_go_baseline --log-y

A path is a run directory (its ``csv/metrics.csv``), a ``metrics.csv`` file, or a directory of
runs such as a Hydra multirun (each subdirectory with a ``csv/metrics.csv``). The runs of a
directory are grouped by their Hydra overrides (``<job>/.hydra/overrides.yaml``) without
``seed`` (see `pg_lightning.cli.runs`): a group is one setting over several seeds, drawn as
the mean over its seeds with their min-max range (or mean ± std) around it. Several ``--y``
columns draw one curve per column and group, in one figure, the legend naming the column (e.g.
the variance of each estimator logged by ``callbacks=diagnostics``); cells left empty in some
epochs (a metric measured every n epochs) are skipped, each curve joining the epochs where its
column was logged.

:func:`pg_lightning.cli.runs.learning_curves` computes the data (plain numpy, tested on its own);
:func:`plot_runs` draws it with matplotlib's Agg canvas (no pyplot, no display: safe in scripts and
notebooks).

Layer: cli (matplotlib, an optional extra, imported when a figure is drawn).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from pg_lightning.cli.runs import Curve, learning_curves, y_columns
from pg_lightning.core.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

__all__ = ["draw_curves", "main", "plot_runs"]

SPREADS = ("minmax", "std")


class _Markers(TypedDict, total=False):
    """The marker properties of a curve's lines (``Axes.plot`` keyword arguments)."""

    marker: str
    markersize: float


def _default_out(paths: Sequence[str | os.PathLike]) -> Path:
    first = Path(paths[0])
    if len(paths) > 1:
        return Path("learning_curve.png")
    return (first.parent if first.is_file() else first) / "learning_curve.png"


def _matplotlib() -> tuple[type[Figure], type[FigureCanvasAgg]]:
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
    """A matplotlib ``Figure`` (Agg canvas, no pyplot) of ``curves`` from :func:`pg_lightning.cli.runs.learning_curves`.

    Its single axes holds one solid line per curve, labelled (in the legend, where there are
    several curves) by the curve's label, and for seeds that end early a dashed, unlabelled
    continuation; with several y columns a dot marks every logged point. ``x``, ``y`` name the
    axes; ``log_y`` sets a logarithmic y axis. See :func:`plot_runs`.
    """
    figure_class, canvas_class = _matplotlib()
    if spread not in SPREADS:
        raise ConfigError(f"spread must be one of {SPREADS}, got {spread!r}")
    columns = y_columns(y)
    fig = figure_class(figsize=(7, 4.2), layout="constrained")
    canvas_class(fig)
    ax = fig.add_subplot()
    # several columns (e.g. diag/var/* measured every n epochs): a dot at every logged x
    points: _Markers = {"marker": "o", "markersize": 3} if len(columns) > 1 else {}
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
    """Draw the learning curves of :func:`pg_lightning.cli.runs.learning_curves` to a PNG; return its path.

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
