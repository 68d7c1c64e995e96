"""Learning-curve plots: runs found and grouped over seeds, the numbers, the PNG and the CLI."""

import csv
import runpy
import sys

import numpy as np
import pytest
import yaml

from pg_lightning.errors import ConfigError
from pg_lightning.plots import find_runs, learning_curves, plot_runs
from pg_lightning.train import run
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
