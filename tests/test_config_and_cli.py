"""Hydra: every config composes and instantiates; run(cfg), the CLI, resume and a sweep work."""

import csv
import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import hydra
import pytest
import torch

from pg_lightning.train import ConfigError, run, validate
from tests.conftest import CONF, ROOT

FAST = ["trainer.max_epochs=2", "data.episodes_per_epoch=4", "data.num_envs=2"]


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("env", options("env"))
def test_every_env_config_composes_and_makes_its_env(make_cfg, env):
    cfg = make_cfg(f"env={env}")
    validate(cfg)
    if env == "lunarlander" and importlib.util.find_spec("Box2D") is None:
        pytest.skip("LunarLander needs the box2d extra")
    e = gym.make(cfg.env.id, **cfg.env.kwargs)
    policy = hydra.utils.instantiate(cfg.network)(observation_space=e.observation_space, action_space=e.action_space)
    assert isinstance(policy(torch.as_tensor(e.reset(seed=0)[0][None])), torch.distributions.Distribution)


@pytest.mark.parametrize("group", ["network", "baseline", "logger", "callbacks"])
def test_every_option_of_each_group_instantiates(make_cfg, group):
    for option in options(group):
        cfg = make_cfg(f"{group}={option}")
        obj = hydra.utils.instantiate(cfg[group]) if cfg[group] is not None else None
        if group == "network":
            assert isinstance(obj, functools.partial)
            obj(observation_space=gym.spaces.Discrete(3), action_space=gym.spaces.Discrete(2))
        elif group in ("logger", "callbacks") and obj is not None:
            assert all(v is not None for v in obj.values())


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
    data = hydra.utils.instantiate(cfg.data)
    assert data.env_id == "CartPole-v1" and data.episodes_per_epoch == cfg.data.episodes_per_epoch
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


def test_resume_continues_epochs_and_totals(make_cfg, tmp_path):
    first = run(make_cfg(*FAST, output_dir=tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    resumed = run(make_cfg(*FAST[1:], "trainer.max_epochs=4", f"ckpt_path={last}", output_dir=tmp_path / "b"))
    assert resumed["epochs"] == 4
    assert resumed["rollout/episodes"] == 2 * first["rollout/episodes"]  # totals restored, then grown
    assert resumed["rollout/env_steps"] > first["rollout/env_steps"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.loss.gamma=1.5", "model.loss.gamma"),
        ("env.id=CartPol-v1", "did you mean CartPole-v1"),
        ("data.num_envs=0", "data.num_envs"),
        ("data.episodes_per_epoch=-3", "data.episodes_per_epoch"),
        ("model.optimizer.lr=0", "model.optimizer.lr"),
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
    assert "CartPole-v1: 2 epochs" in out and "100-episode mean return" in out
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "csv" / "metrics.csv").is_file()
    assert (tmp_path / ".hydra" / "config.yaml").is_file()


def test_cli_config_error_is_one_message_not_a_traceback(tmp_path):
    proc = cli("model.loss.gamma=1.5", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert "model.loss.gamma must be in [0, 1]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_multirun_sweep(tmp_path):
    proc = cli("-m", "seed=0,1", "baseline=none,mean", *FAST[1:], "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    assert all((p / "csv" / "metrics.csv").is_file() for p in jobs)
