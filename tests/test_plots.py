"""Learning-curve plots: runs found and grouped over seeds, the numbers, the PNG and the CLI."""

import csv
import runpy
import sys

import numpy as np
import pytest
import yaml

from pg_lightning.cli.plots import draw_curves, plot_runs
from pg_lightning.cli.runs import find_runs, learning_curves
from pg_lightning.cli.train import run
from pg_lightning.core.errors import ConfigError
from tests.conftest import ROOT

X, Y = "rollout/env_steps", "rollout/return_mean_100"
PNG = b"\x89PNG\r\n\x1a\n"


def fake_run(run_dir, overrides, xs, ys):
    """A run directory as train.py writes it: .hydra/overrides.yaml and csv/metrics.csv (one row per epoch)."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (run_dir / "csv").mkdir()
    with open(run_dir / "csv" / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", X, Y, "eval/return_mean", "step"])
        writer.writeheader()
        for epoch, (x, y) in enumerate(zip(xs, ys, strict=True)):
            writer.writerow({"epoch": epoch, X: x, Y: y, "eval/return_mean": y if epoch % 2 else "", "step": epoch})


@pytest.fixture
def fake_multirun(tmp_path):
    """Two groups (baseline=none / mean) of two seeds; seed 1 of `none` logs other x values and ends earlier."""
    sweep = tmp_path / "multirun"
    fake_run(sweep / "0", ["seed=0", "baseline=none", "trainer.max_epochs=3"], [0, 100, 200], [0.0, 10.0, 20.0])
    fake_run(sweep / "1", ["seed=0", "baseline=mean", "trainer.max_epochs=3"], [0, 100, 200], [1.0, 2.0, 3.0])
    fake_run(
        sweep / "2", ["seed=1", "baseline=none", "trainer.max_epochs=3"], [0, 50, 100, 150], [10.0, 20.0, 30.0, 40.0]
    )
    fake_run(sweep / "3", ["seed=1", "baseline=mean", "trainer.max_epochs=3"], [0, 100, 200], [5.0, 8.0, 11.0])
    (sweep / "4").mkdir()  # a failed job: no metrics, skipped
    (sweep / "multirun.yaml").write_text("{}\n")
    return sweep


def test_runs_are_grouped_by_overrides_without_seed(fake_multirun):
    groups = find_runs(fake_multirun)
    assert list(groups) == ["baseline=none", "baseline=mean"]  # shared overrides label nothing
    assert [p.parent.parent.name for p in groups["baseline=none"]] == ["0", "2"]
    assert [p.parent.parent.name for p in groups["baseline=mean"]] == ["1", "3"]


def test_group_mean_and_spread_over_seeds(fake_multirun):
    none, mean = learning_curves(fake_multirun, x=X, y=Y)
    # same x in both seeds: plain mean, std, min, max per x
    assert mean.x.tolist() == [0, 100, 200]
    assert mean.mean.tolist() == [3.0, 5.0, 7.0]
    assert mean.std.tolist() == [2.0, 3.0, 4.0]
    assert mean.min.tolist() == [1.0, 2.0, 3.0] and mean.max.tolist() == [5.0, 8.0, 11.0]
    assert mean.n.tolist() == [2, 2, 2]
    # different x: each seed interpolated at the other's x, never past its own last point
    assert none.x.tolist() == [0, 50, 100, 150, 200]
    assert none.mean.tolist() == [5.0, (5.0 + 20.0) / 2, (10.0 + 30.0) / 2, (15.0 + 40.0) / 2, 20.0]
    assert none.n.tolist() == [2, 2, 2, 2, 1]
    assert none.max.tolist() == [10.0, 20.0, 30.0, 40.0, 20.0]
    # a metric logged in some epochs only: the empty cells are skipped
    none_eval, _ = learning_curves(fake_multirun, x=X, y="eval/return_mean")
    assert none_eval.x.tolist() == [50, 100, 150] and none_eval.mean.tolist() == [20.0, (10.0 + 30.0) / 2, 40.0]


def test_plot_a_multirun_writes_a_png(fake_multirun, tmp_path):
    out = plot_runs(fake_multirun, out=tmp_path / "curves.png", spread="std")
    assert out == tmp_path / "curves.png" and out.read_bytes()[:8] == PNG
    default = plot_runs(fake_multirun)
    assert default == fake_multirun / "learning_curve.png"  # default: in the multirun dir
    assert default.read_bytes()[:8] == PNG
    with pytest.raises(ConfigError, match="y: no column 'rollout/nope'"):
        plot_runs(fake_multirun, y="rollout/nope")
    with pytest.raises(ConfigError, match="spread must be one of"):
        plot_runs(fake_multirun, spread="iqr")
    with pytest.raises(ConfigError, match="path: no csv/metrics.csv"):
        plot_runs(tmp_path / "multirun" / "4")


def test_plot_a_real_run_dir_and_its_metrics_csv(make_cfg, tmp_path):
    run(
        make_cfg(
            "trainer.max_epochs=3",
            "data.episodes_per_epoch=4",
            "data.num_envs=2",
            "callbacks.progress_bar.refresh_rate=0",
        )
    )
    (curve,) = learning_curves(tmp_path)
    with open(tmp_path / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert curve.x.tolist() == [float(r[X]) for r in rows] and curve.mean.tolist() == [float(r[Y]) for r in rows]
    assert np.all(curve.n == 1) and np.all(curve.std == 0)
    assert plot_runs(tmp_path).read_bytes()[:8] == PNG
    (same,) = learning_curves(tmp_path / "csv" / "metrics.csv")
    assert same.mean.tolist() == curve.mean.tolist()


def test_cli_writes_the_png_and_prints_its_path(fake_multirun, tmp_path, monkeypatch, capsys):
    """``python plot.py ...``, run in-process (runpy): the shell and its argument parsing."""
    out = tmp_path / "cli.png"
    monkeypatch.setattr(sys, "argv", ["plot.py", str(fake_multirun), "--out", str(out), "--x", "epoch", "--y", Y])
    runpy.run_path(str(ROOT / "plot.py"), run_name="__main__")
    assert capsys.readouterr().out == f"{out}\n" and out.read_bytes()[:8] == PNG
    monkeypatch.setattr(sys, "argv", ["plot.py", str(fake_multirun), "--y", "rollout/nope"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "plot.py"), run_name="__main__")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("Config error: --y: no column 'rollout/nope' in ")


VARS = ["diag/var/total", "diag/var/reward_to_go", "diag/var/reward_to_go_baseline"]


def fake_diag_run(run_dir, overrides, scale):
    """A run with the diagnostics columns, measured in epochs 1 and 3 only (empty cells elsewhere)."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (run_dir / "csv").mkdir()
    with open(run_dir / "csv" / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", X, Y, *VARS, "diag/never", "step"])
        writer.writeheader()
        for epoch in range(5):
            measured = epoch % 2 == 1
            row = {"epoch": epoch, X: 100 * epoch, Y: float(epoch), "diag/never": "", "step": epoch}
            # the three estimators a decade apart, growing over training
            row |= {v: scale * 10.0 ** (2 - i) * (epoch + 1) if measured else "" for i, v in enumerate(VARS)}
            writer.writerow(row)


@pytest.fixture
def fake_diag_multirun(tmp_path):
    sweep = tmp_path / "diag"
    for job, (seed, baseline, scale) in enumerate([(0, "value", 1.0), (0, "mean", 2.0), (1, "value", 3.0)]):
        fake_diag_run(sweep / str(job), [f"seed={seed}", f"baseline={baseline}"], scale)
    return sweep


def test_several_y_columns_give_one_curve_per_column_and_group_without_empty_cells(fake_diag_multirun):
    curves = learning_curves(fake_diag_multirun, x=X, y=VARS)
    assert [(c.group, c.column) for c in curves] == [(g, v) for g in ("baseline=value", "baseline=mean") for v in VARS]
    assert [c.label for c in curves] == [f"{g}: {v}" for g in ("baseline=value", "baseline=mean") for v in VARS]
    for curve in curves:  # only the measured epochs 1 and 3: the empty cells are skipped, not read as 0 or NaN
        assert curve.x.tolist() == [100.0, 300.0]
    value_total, value_rtg, _, mean_total, _, mean_baseline = curves
    assert value_total.mean.tolist() == [(200.0 + 600.0) / 2, (400.0 + 1200.0) / 2]  # seeds of scales 1 and 3
    assert value_total.n.tolist() == [2, 2] and value_total.min.tolist() == [200.0, 400.0]
    assert value_rtg.mean.tolist() == [40.0, 80.0]
    assert mean_total.mean.tolist() == [400.0, 800.0] and mean_baseline.mean.tolist() == [4.0, 8.0]
    # one group: each curve is labelled by its column alone
    single = learning_curves(fake_diag_multirun / "1", x=X, y=VARS)
    assert [c.label for c in single] == VARS and {c.group for c in single} == {"1"}


def test_one_y_column_as_a_string_or_a_list_of_one_is_todays_curve(fake_diag_multirun):
    (as_str,) = learning_curves(fake_diag_multirun / "1", x=X, y=VARS[0])
    (as_list,) = learning_curves(fake_diag_multirun / "1", x=X, y=VARS[:1])
    assert as_str.label == as_list.label == "1"  # the group's label, as with one --y before
    assert as_str.x.tolist() == as_list.x.tolist() == [100.0, 300.0]
    assert as_str.mean.tolist() == as_list.mean.tolist() == [400.0, 800.0]


def test_the_figure_has_a_curve_per_column_named_in_the_legend_and_a_log_y_axis(fake_diag_multirun):
    curves = learning_curves(fake_diag_multirun / "1", x=X, y=VARS)
    fig = draw_curves(curves, x=X, y=VARS, log_y=True)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.get_lines()] == VARS
    assert [t.get_text() for t in ax.get_legend().get_texts()] == VARS
    assert [line.get_ydata().tolist() for line in ax.get_lines()] == [c.mean.tolist() for c in curves]
    assert ax.get_ylabel() == "diag/var/*" and ax.get_title() == "diag/var/* (1)"
    (linear,) = draw_curves(curves, x=X, y=VARS).axes
    assert linear.get_yscale() == "linear"
    # two groups of three columns: six curves, each named by its group and column
    both = draw_curves(learning_curves(fake_diag_multirun, x=X, y=VARS), x=X, y=VARS).axes[0]
    labels = [line.get_label() for line in both.get_lines()]
    assert len(labels) == 6 and labels[0] == "baseline=value: diag/var/total (2 seeds)"
    assert labels[-1] == "baseline=mean: diag/var/reward_to_go_baseline"


def test_several_y_columns_to_a_png_and_from_the_cli(fake_diag_multirun, tmp_path, monkeypatch, capsys):
    out = plot_runs(fake_diag_multirun, out=tmp_path / "vars.png", x=X, y=VARS, log_y=True)
    assert out.read_bytes()[:8] == PNG
    drawn = []

    def spy(curves, **kwargs):  # what the CLI asks to draw
        drawn.append((curves, kwargs))
        return draw_curves(curves, **kwargs)

    monkeypatch.setattr("pg_lightning.cli.plots.draw_curves", spy)
    # --y with several columns (and repeated), --log-y
    out = tmp_path / "cli.png"
    argv = ["plot.py", str(fake_diag_multirun / "0"), "--out", str(out), "--y", *VARS[:2], "--y", VARS[2], "--log-y"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "plot.py"), run_name="__main__")
    assert capsys.readouterr().out == f"{out}\n" and out.read_bytes()[:8] == PNG
    ((curves, kw),) = drawn
    assert [c.column for c in curves] == VARS and kw["log_y"] is True and list(kw["y"]) == VARS


def test_unknown_or_never_logged_y_column_is_an_error_naming_y(fake_diag_multirun, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="^y: no column 'diag/nope' in "):
        plot_runs(fake_diag_multirun, x=X, y=[VARS[0], "diag/nope"])
    with pytest.raises(ConfigError, match="^y: nothing logged in column 'diag/never' of "):
        learning_curves(fake_diag_multirun, x=X, y=[VARS[0], "diag/never"])
    with pytest.raises(ConfigError, match="^y: give one or more column names"):
        learning_curves(fake_diag_multirun, x=X, y=[])
    monkeypatch.setattr(sys, "argv", ["plot.py", str(fake_diag_multirun), "--y", VARS[0], "diag/nope", "--log-y"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "plot.py"), run_name="__main__")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("Config error: --y: no column 'diag/nope' in ")


def test_plot_the_variances_a_real_diagnostics_run_logs(make_cfg, tmp_path):
    run(
        make_cfg(
            "trainer.max_epochs=4",
            "data.episodes_per_epoch=4",
            "data.num_envs=2",
            "callbacks=diagnostics",
            "callbacks.diagnostics.every_n_epochs=2",
            "callbacks.progress_bar.refresh_rate=0",
        )
    )
    with open(tmp_path / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    measured = [float(r[X]) for r in rows if r[VARS[0]]]
    assert len(rows) == 4 and len(measured) == 2  # epochs 1 and 3; the other cells are empty
    curves = learning_curves(tmp_path, y=VARS)
    assert [c.x.tolist() for c in curves] == [measured] * 3
    assert all(np.all(c.mean > 0) for c in curves)
    fig = draw_curves(curves, y=VARS, log_y=True)
    assert len(fig.axes[0].get_lines()) == 3
    assert plot_runs(tmp_path, y=VARS, log_y=True).read_bytes()[:8] == PNG
