"""Learning-rate schedules (scheduler=linear|cosine, logged as train/lr) and the debug= config files."""

import csv
import itertools
import logging
import math
from functools import partial
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from pg_lightning.cli import train
from pg_lightning.cli.train import run
from pg_lightning.core.errors import ConfigError, config_error_in
from pg_lightning.envs.networks import make_policy
from pg_lightning.lightning.module import ReinforceModule
from tests.helpers import run_main

FAST = [
    "data.episodes_per_epoch=2",
    "data.num_envs=2",
    "env.return_threshold=null",  # run every epoch asked for
    "callbacks.progress_bar.refresh_rate=0",
]
LR0 = 0.01  # conf/train.yaml's model.optimizer.lr
VARYING = {"time/collect_fps"}  # wall-clock measurements


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def lrs(run_dir: Path, column: str = "train/lr") -> list[float]:
    table = rows(run_dir)
    assert [int(r["epoch"]) for r in table] == list(range(len(table)))  # one row per epoch, every epoch
    return [float(r[column]) for r in table]


def follows_linear(values: list[float], lr0: float, n: int) -> bool:
    """Epoch ``e`` (0-based) of an n-update linear anneal trains with ``lr0 * (1 - e / n)``."""
    return len(values) == n and all(math.isclose(v, lr0 * (1 - e / n), rel_tol=1e-9) for e, v in enumerate(values))


# --- learning-rate schedules ----------------------------------------------------------------------


def test_without_a_scheduler_the_lr_is_constant_and_logged_in_the_epoch_rows(make_cfg, tmp_path):
    run(make_cfg(*FAST, "trainer.max_epochs=3"))
    values = lrs(tmp_path)
    assert values == [LR0] * 3
    assert not follows_linear(values, LR0, 3)  # the check below would catch a schedule that is not applied


def test_linear_schedule_anneals_every_param_group_to_zero_over_max_epochs(make_cfg, tmp_path):
    # baseline=value has a param group of its own, with its own lr: both are annealed by the same factor
    run(make_cfg(*FAST, "scheduler=linear", "trainer.max_epochs=6", "baseline=value", "baseline.lr=0.02"))
    policy, baseline = lrs(tmp_path), lrs(tmp_path, "train/lr_baseline")
    assert follows_linear(policy, LR0, 6), policy
    assert follows_linear(baseline, 0.02, 6), baseline
    assert policy[-1] == pytest.approx(LR0 / 6)  # the last update still learns; the lr is 0 after it
    assert all(a > b for a, b in itertools.pairwise(policy))  # strictly decreasing: not constant
    # the scheduler's state ends at 0 (saved in last.ckpt with the optimizer's)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["lr_schedulers"][0]["last_epoch"] == 6
    assert [g["lr"] for g in saved["optimizer_states"][0]["param_groups"]] == [0.0, 0.0]


def test_cosine_schedule_follows_its_formula(make_cfg, tmp_path):
    run(make_cfg(*FAST, "scheduler=cosine", "trainer.max_epochs=5"))
    expected = [LR0 * (1 + math.cos(math.pi * e / 5)) / 2 for e in range(5)]
    assert lrs(tmp_path) == pytest.approx(expected, rel=1e-9)


@pytest.mark.filterwarnings("ignore:The dirpath has changed from:UserWarning")  # a resume into a new run dir
def test_a_resume_continues_the_schedule_exactly(make_cfg, tmp_path):
    common = [*FAST, "scheduler=linear", "trainer.max_epochs=6", "baseline=value"]
    # a 6-epoch run stopped after 4 updates, as if interrupted: its last.ckpt is after epoch 3
    run(make_cfg(*common, "trainer.max_steps=4", output_dir=tmp_path / "first"))
    run(make_cfg(*common, f"ckpt_path={tmp_path / 'first/checkpoints/last.ckpt'}", output_dir=tmp_path / "resumed"))
    run(make_cfg(*common, output_dir=tmp_path / "straight"))
    first, resumed, straight = (rows(tmp_path / name) for name in ("first", "resumed", "straight"))
    assert [int(r["epoch"]) for r in first] == [0, 1, 2, 3] and [int(r["epoch"]) for r in resumed] == [4, 5]
    lr = [float(r["train/lr"]) for r in first + resumed]
    assert lr == [float(r["train/lr"]) for r in straight]  # bit for bit, not only close
    assert follows_linear(lr, LR0, 6)
    # and everything else logged is that of the run never interrupted (optimizer, baseline, RNG...)
    for x, y in zip(straight, first + resumed, strict=True):
        assert {k: v for k, v in x.items() if k not in VARYING} == {k: v for k, v in y.items() if k not in VARYING}


def test_a_resume_with_another_schedule_is_refused(make_cfg, tmp_path):
    run(make_cfg(*FAST, "scheduler=linear", "trainer.max_epochs=3", output_dir=tmp_path / "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    # a longer run would keep the restored schedule: the lr would stay 0 after epoch 3
    longer = make_cfg(*FAST, "scheduler=linear", "trainer.max_epochs=5", f"ckpt_path={last}", output_dir=tmp_path / "b")
    with pytest.raises(Exception) as err:
        run(longer)
    assert "model.scheduler.total_iters: the checkpoint's schedule spans 3 updates, this config's 5" in str(
        config_error_in(err.value)
    )
    with pytest.raises(Exception) as err:  # no scheduler: the optimizer's restored lr (0) would be kept
        run(make_cfg(*FAST, "trainer.max_epochs=5", f"ckpt_path={last}", output_dir=tmp_path / "c"))
    message = str(config_error_in(err.value))
    assert "model.scheduler: the checkpoint was trained with a learning-rate schedule" in message


@pytest.mark.parametrize("max_epochs", ["-1", "null"])
def test_a_schedule_needs_a_finite_max_epochs(make_cfg, max_epochs):
    with pytest.raises(Exception) as err:
        run(make_cfg(*FAST, "scheduler=linear", f"trainer.max_epochs={max_epochs}"))
    error = config_error_in(err.value)
    assert error is not None and str(error).startswith("model.scheduler.total_iters must be an integer >= 1, got ")
    assert "trainer.max_epochs" in str(error)


def test_a_schedule_without_epoch_limit_is_a_one_line_cli_error(tmp_path, capsys):
    code = run_main(train.main, *FAST, "scheduler=linear", "trainer.max_epochs=-1", f"hydra.run.dir={tmp_path}")
    stderr = capsys.readouterr().err
    assert code == 2, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("Config error: model.scheduler.total_iters must be")
    assert "Traceback" not in stderr


def test_configure_optimizers_steps_the_scheduler_every_update_and_names_a_bad_argument():
    env = gym.make("CartPole-v1")
    policy = make_policy(env.observation_space, env.action_space, hidden_sizes=[8])
    module = ReinforceModule(policy, scheduler=partial(torch.optim.lr_scheduler.LinearLR, total_iters=4))
    config = module.configure_optimizers()
    assert config["lr_scheduler"]["interval"] == "step" and config["lr_scheduler"]["frequency"] == 1
    assert config["lr_scheduler"]["scheduler"].optimizer is config["optimizer"]
    assert isinstance(ReinforceModule(policy).configure_optimizers(), torch.optim.Adam)  # no scheduler: as before
    with pytest.raises(ConfigError, match="model.scheduler: .*bogus"):
        ReinforceModule(policy, scheduler=partial(torch.optim.lr_scheduler.LinearLR, bogus=1)).configure_optimizers()
    with pytest.raises(ConfigError, match="model.scheduler.T_max must be a positive integer"):
        ReinforceModule(policy, scheduler=partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=0))


# --- debug= files ---------------------------------------------------------------------------------


def test_debug_fdr_runs_one_update_and_writes_nothing(make_cfg, tmp_path):
    metrics = run(make_cfg("debug=fdr", "scheduler=linear", "callbacks.progress_bar.refresh_rate=0"))
    assert metrics["epochs"] == 1 and metrics["rollout/episodes"] == 16  # one batch of data.episodes_per_epoch
    assert metrics["train/lr"] == LR0
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.csv"))


def test_debug_fdr_from_the_cli(tmp_path, capsys):
    code = run_main(train.main, "debug=fdr", f"hydra.run.dir={tmp_path}")
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    out = captured.out + captured.err
    assert "fast_dev_run" in out and "CartPole-v1: 1 epochs" in out and "100-episode mean return" in out
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.csv"))


def test_debug_profiler_prints_the_report(make_cfg, tmp_path):
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    profiler_log = logging.getLogger("pytorch_lightning.profilers.profiler")  # Lightning's own, not propagated
    level = profiler_log.level
    profiler_log.addHandler(handler)
    profiler_log.setLevel(logging.INFO)
    try:
        metrics = run(make_cfg("debug=profiler", "data.episodes_per_epoch=4", "data.num_envs=2"))
    finally:
        profiler_log.removeHandler(handler)
        profiler_log.setLevel(level)
    assert metrics["epochs"] == 10 and len(rows(tmp_path)) == 10  # the file's trainer.max_epochs, no early stop
    report = "\n".join(messages)
    assert "FIT Profiler Report" in report and "run_training_batch" in report and "train_dataloader_next" in report


def test_debug_limit_is_a_tiny_complete_run(make_cfg, tmp_path):
    metrics = run(make_cfg("debug=limit", "callbacks.progress_bar.refresh_rate=0"))
    table = rows(tmp_path)
    assert metrics["epochs"] == 3 and [int(r["epoch"]) for r in table] == [0, 1, 2]
    assert [float(r["rollout/episodes"]) for r in table] == [2, 4, 6]  # 2 episodes per epoch
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
