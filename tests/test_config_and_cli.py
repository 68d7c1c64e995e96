"""Hydra: every config composes and instantiates; run(cfg), the CLI, resume and a sweep work."""

import csv
import functools
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import hydra
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from pg_lightning.cli.build import env_block, env_factory
from pg_lightning.cli.train import ConfigError, make_baseline, run, validate
from pg_lightning.core.baselines import Baseline
from pg_lightning.core.tree import map_tree
from tests.conftest import CONF, ROOT
from tests.helpers import missing_extra

FAST = ["trainer.max_epochs=2", "data.episodes_per_epoch=4", "data.num_envs=2"]


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("env", options("env"))
def test_every_env_config_composes_and_makes_its_env(make_cfg, env):
    cfg = make_cfg(f"env={env}")
    missing = missing_extra(cfg.env)
    if missing:
        pytest.skip(f"{cfg.env.id} needs {missing} (its extra)")
    validate(cfg)
    if env == "lunarlander" and importlib.util.find_spec("Box2D") is None:
        pytest.skip("LunarLander needs the box2d extra")
    if env == "inverted_pendulum" and importlib.util.find_spec("mujoco") is None:
        pytest.skip("InvertedPendulum needs the mujoco extra")
    e = env_factory(cfg.env, None)()  # imports, kwargs, wrappers, text dropped: as training builds it
    policy = hydra.utils.instantiate(cfg.network)(observation_space=e.observation_space, action_space=e.action_space)
    obs = map_tree(lambda x: torch.as_tensor(np.asarray(x))[None], e.reset(seed=0)[0])
    assert isinstance(policy(obs), torch.distributions.Distribution)
    e.close()


@pytest.mark.parametrize("group", ["network", "baseline", "logger", "callbacks"])
def test_every_option_of_each_group_instantiates(make_cfg, group):
    for option in options(group):
        # network=custom is the contract's empty frame: the user names the factory
        extra = (
            ["network._target_=pg_lightning.envs.networks.make_policy"]
            if (group, option) == ("network", "custom")
            else []
        )
        cfg = make_cfg(f"{group}={option}", *extra)
        needs = {"wandb": ["wandb"], "mlflow": ["mlflow", "sqlalchemy"]}.get(option, []) if group == "logger" else []
        if any(importlib.util.find_spec(m) is None for m in needs):
            # an optional extra (pip install -e ".[wandb]" / ".[mlflow]"), not in dev: composed, not built
            assert (
                cfg.logger[option]._target_
                == {
                    "wandb": "pytorch_lightning.loggers.WandbLogger",
                    "mlflow": "pytorch_lightning.loggers.MLFlowLogger",
                }[option]
            )
            continue
        if group == "baseline":
            obj = make_baseline(cfg, gym.spaces.Box(-1, 1, (3,)))
        else:
            obj = hydra.utils.instantiate(cfg[group]) if cfg[group] is not None else None
        if group == "network":
            assert isinstance(obj, functools.partial)
            assert isinstance(
                obj(observation_space=gym.spaces.Discrete(3), action_space=gym.spaces.Discrete(2)), torch.nn.Module
            )
        elif group == "baseline":
            assert isinstance(obj, Baseline)
        elif obj is not None:  # logger / callbacks: a dict of Lightning objects
            kind = pl.loggers.Logger if group == "logger" else pl.Callback
            assert all(v is not None for v in obj.values())
            assert all(isinstance(v, kind) for v in obj.values()), (option, obj)
            assert obj or option == "none", option  # only `none` may be empty


@pytest.mark.parametrize("trainer", options("trainer"))
def test_every_trainer_config_composes(make_cfg, trainer):
    cfg = make_cfg(f"trainer={trainer}")
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    if cfg.trainer.accelerator == "cpu" or torch.cuda.is_available():
        hydra.utils.instantiate(cfg.trainer, logger=False)
    else:
        assert cfg.trainer.accelerator == "gpu"  # needs a GPU to instantiate; composed and checked here


def test_data_and_model_instantiate(make_cfg):
    cfg = make_cfg()
    data = hydra.utils.instantiate(cfg.data, env_block(cfg.env))  # the env positionally: it is no config node
    assert data.env.env_id == "CartPole-v1" and data.episodes_per_epoch == cfg.data.episodes_per_epoch
    assert hydra.utils.instantiate(cfg.data, env="CartPole-v1").env == data.env  # a Python user's plain id
    loss = hydra.utils.instantiate(cfg.model.loss)
    assert loss.gamma == cfg.model.loss.gamma and loss.return_type == "reward_to_go"


def test_run_trains_and_writes_metrics_and_checkpoint(make_cfg, tmp_path):
    metrics = run(make_cfg(*FAST))
    assert metrics["rollout/episodes"] == 8 and metrics["epochs"] == 2
    assert next(iter(metrics)) == "rollout/return_mean_100"  # the optimized metric comes first
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    assert len(rows) == 2 and float(rows[-1]["rollout/episodes"]) == 8
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["hyper_parameters"]["config"]["env"]["id"] == "CartPole-v1"


def epoch_rows(path):
    return {int(r["epoch"]): r for r in csv.DictReader(open(path / "csv" / "metrics.csv"))}


def test_checkpoint_every_epoch_and_exact_resume(make_cfg, tmp_path):
    """A run stopped after 3 epochs and resumed to 5 matches an uninterrupted 5-epoch run exactly."""
    straight = run(make_cfg(*FAST, "trainer.max_epochs=5", output_dir=tmp_path / "straight"))
    run(make_cfg(*FAST, "trainer.max_epochs=3", output_dir=tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 2  # written at the end of epoch index 2
    resumed = run(make_cfg(*FAST, "trainer.max_epochs=5", f"ckpt_path={last}", output_dir=tmp_path / "b"))
    assert resumed["epochs"] == 5
    for key in ("rollout/episodes", "rollout/env_steps", "rollout/return_mean_100", "rollout/return_mean"):
        assert resumed[key] == straight[key], key  # totals, window and data stream all restored
    a, b = epoch_rows(tmp_path / "straight"), epoch_rows(tmp_path / "b")
    assert sorted(b) == [3, 4]
    for epoch in (3, 4):
        for key in ("rollout/return_mean", "rollout/length_mean", "train/loss"):
            assert float(a[epoch][key]) == pytest.approx(float(b[epoch][key]), rel=1e-6), (epoch, key)


def test_checkpoint_written_every_epoch(make_cfg, tmp_path):
    run(make_cfg(*FAST, "trainer.max_epochs=4"))
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 3 and ckpt["RolloutDataModule"] == {"epoch": 4}
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.loss.gamma=1.5", "model.loss.gamma"),
        ("env.id=CartPol-v1", "did you mean CartPole-v1"),
        ("data.num_envs=0", "data.num_envs"),
        ("data.episodes_per_epoch=-3", "data.episodes_per_epoch"),
        ("data.episodes_per_epoch=2.5", "data.episodes_per_epoch must be an integer"),
        ("model.loss.gamma=true", "model.loss.gamma"),
        ("model.optimizer.lr=0", "model.optimizer.lr"),
        ("model.loss.entropy_coef=-1", "model.loss.entropy_coef"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("ckpt_path=/nonexistent.ckpt", "ckpt_path"),
    ],
)
def test_validation_names_the_key(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_cfg(override))


def cli(*args, cwd=ROOT, timeout=240):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_trains_prints_summary_and_writes_outputs(tmp_path):
    proc = cli(*FAST, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "CartPole-v1: 2 epochs" in out and "100-episode mean return" in out and "checkpoints: " in out
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "csv" / "metrics.csv").is_file()
    assert (tmp_path / ".hydra" / "config.yaml").is_file()


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("override", "message"),
    [
        # all three caught by validate(), from the constructors' signatures
        ("model.loss.gamma=1.5", "model.loss.gamma must be a number in [0, 1], got 1.5"),
        (
            "model.loss.return_type=monte_carlo",
            "model.loss.return_type must be reward_to_go | total, got 'monte_carlo'",
        ),
        (
            "data.vectorization_mode=threads",
            "data.vectorization_mode must be sync | async | vector_entry_point, got 'threads'",
        ),
    ],
)
def test_cli_config_error_is_one_message_not_a_traceback(tmp_path, override, message):
    proc = cli(override, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"Config error: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.subprocess
def test_cli_multirun_sweep(tmp_path):
    proc = cli("-m", "seed=0,1", "baseline=none,mean", *FAST[1:], "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    assert all((p / "csv" / "metrics.csv").is_file() for p in jobs)


@pytest.mark.subprocess
def test_cli_multirun_config_error_fails_that_job_only(tmp_path):
    proc = cli("-m", "model.loss.gamma=1.5,0.99", *FAST[1:], "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode != 0  # Hydra reports the failed job at the end of the sweep
    assert "model.loss.gamma must be a number in [0, 1], got 1.5" in proc.stderr
    assert not (tmp_path / "0" / "csv" / "metrics.csv").exists()
    assert (tmp_path / "1" / "csv" / "metrics.csv").is_file()  # the good job still ran


@pytest.mark.parametrize("env", ["pendulum", "mountaincar_continuous", "acrobot"])
def test_run_on_other_envs(make_cfg, env):
    metrics = run(make_cfg(f"env={env}", "trainer.max_epochs=1", "data.episodes_per_epoch=2", "data.num_envs=2"))
    assert metrics["rollout/episodes"] == 2 and math.isfinite(metrics["train/loss"])


def test_exact_return_callback_refuses_a_non_tabular_env():
    from pg_lightning.lightning.callbacks import ExactReturn

    with pytest.raises(ConfigError, match="callbacks.exact_return: 'CartPole-v1' is not a tabular env"):
        ExactReturn("CartPole-v1")


def test_exact_return_callback_logs_the_exact_objective_of_the_trained_policy(make_cfg):
    from pg_lightning.core.tabular import chain, policy_table, solve

    cfg = make_cfg(
        "env=chain", "trainer.max_epochs=2", "data.episodes_per_epoch=4", "callbacks.progress_bar.refresh_rate=0"
    )
    metrics = run(cfg)
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    policy = hydra.utils.instantiate(cfg.network)(
        observation_space=gym.spaces.Discrete(6), action_space=gym.spaces.Discrete(2)
    )
    policy.load_state_dict(
        {k.removeprefix("policy."): v for k, v in ckpt["state_dict"].items() if k.startswith("policy.")}
    )
    J = float(solve(chain(**cfg.env.kwargs), policy_table(policy, chain(**cfg.env.kwargs))).J)
    assert metrics["exact/return"] == pytest.approx(J, rel=1e-5)
