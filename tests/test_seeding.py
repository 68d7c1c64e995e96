"""Reproducible from the seed, also for an env that draws from its own spaces.

Gymnasium's ``reset(seed=...)`` seeds the env's ``np_random`` but not its ``action_space`` or
``observation_space``; ``tests.space_envs:SpaceSampler-v0`` draws its observations and rewards from them (as
many toy envs do). Every env copy pg_lightning builds seeds its spaces at each seeded reset (from that reset's
seed: the run's seed, the rank, the epoch and the copy), and the collector seeds a batched env's spaces: the
same seed gives the same batches, evaluations and metrics.

The data stream goes on where it was: a second ``fit()`` with the same ``RolloutDataModule`` continues it (it used
to restart at epoch 0), and a checkpoint still sets its position. A tanh policy's entropy sample is drawn from a
stream of (seed, rank, epoch), so a DDP resume of it is exact.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from gymnasium.vector import AutoresetMode
from torch import nn
from torch.distributions import Categorical

import tests.space_envs  # noqa: F401  (registers SpaceSampler-v0)
from pg_lightning.cli.train import run
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.evaluation import make_eval_env, run_episodes
from pg_lightning.envs.networks import make_policy
from pg_lightning.lightning.data import RolloutDataModule
from pg_lightning.lightning.module import ReinforceModule
from tests.conftest import ROOT
from tests.helpers import quiet_trainer, same_batch

ENV = "tests.space_envs:SpaceSampler-v0"
FAST = ["data.episodes_per_epoch=4", "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0"]
VARYING = {"time/collect_fps"}  # wall-clock measurements


def _batches(envs: gym.vector.VectorEnv, seed: int = 5, epochs: int = 2) -> list[Any]:
    torch.manual_seed(0)
    policy = make_policy(envs.single_observation_space, envs.single_action_space, hidden_sizes=[8])
    collector = EpisodeCollector(envs, seed=seed)
    try:
        return [collector.collect(policy, 6) for _ in range(epochs)]
    finally:
        collector.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_two_collections_with_one_seed_are_identical(mode):
    a, b = (_batches(make_vector_env(ENV, 3, mode)) for _ in range(2))
    assert all(same_batch(x, y) for x, y in zip(a, b, strict=True))
    c = _batches(make_vector_env(ENV, 3, mode), seed=6)
    assert not same_batch(a[0], c[0])  # another seed, other samples


class SamplingVectorEnv(gym.vector.VectorEnv):
    """A batched env of your own (``data.vector_env``) that draws from its spaces: observations from
    ``observation_space``, rewards from ``single_action_space``; episodes end with probability 1/3 (``np_random``)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 3) -> None:
        self.num_envs = num_envs
        self.single_observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)

    def reset(self, *, seed: Any = None, options: Any = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, actions: Any) -> tuple[Any, ...]:
        rewards = np.array([float(self.single_action_space.sample()) for _ in range(self.num_envs)])
        done = self.np_random.random(self.num_envs) < 1 / 3
        final = np.empty(self.num_envs, dtype=object)
        final[:] = list(self.observation_space.sample())
        obs = self.observation_space.sample()
        info = {"final_obs": final, "_final_obs": done}
        return obs, rewards, done, np.zeros(self.num_envs, bool), info


def test_a_batched_env_s_spaces_are_seeded_by_the_collector():
    a, b = (_batches(SamplingVectorEnv()) for _ in range(2))
    assert all(same_batch(x, y) for x, y in zip(a, b, strict=True))


class Recorder(nn.Module):
    """A uniform policy over the env's actions that records the observations it is given."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n))
        self.seen: list[torch.Tensor] = []

    def forward(self, obs: torch.Tensor) -> Categorical:
        self.seen.append(obs.clone())
        return Categorical(logits=self.logits.expand(obs.shape[0], -1))


def test_two_evaluations_with_one_seed_are_identical():
    runs = []
    for _ in range(2):
        policy = Recorder(3)
        returns, lengths = run_episodes(policy, make_eval_env(ENV), episodes=5, greedy=False, seed=7)
        runs.append((returns, lengths, torch.cat(policy.seen)))
    (r1, l1, o1), (r2, l2, o2) = runs
    assert r1 == r2 and l1 == l2 and torch.equal(o1, o2)


def test_two_runs_with_one_seed_give_identical_metrics_rows_eval_callback_included(make_cfg, tmp_path):
    overrides = [*FAST, f"env.id={ENV}", "trainer.max_epochs=2", "callbacks=eval"]
    overrides += ["callbacks.evaluation.every_n_epochs=1", "callbacks.evaluation.episodes=3"]
    overrides += ["callbacks.evaluation.greedy=false"]
    for name in "ab":
        run(make_cfg(*overrides, output_dir=tmp_path / name))
    a, b = (_rows(tmp_path / name / "csv" / "metrics.csv") for name in "ab")
    assert len(a) == 2 and any("eval/return_mean" in row and row["eval/return_mean"] for row in a)
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k not in VARYING} == {k: v for k, v in y.items() if k not in VARYING}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_same_config_and_seed_give_identical_metrics(make_cfg, tmp_path):
    for name in "ab":
        run(make_cfg(*FAST, "trainer.max_epochs=3", "baseline=value", output_dir=tmp_path / name))
    a, b = (_rows(tmp_path / name / "csv" / "metrics.csv") for name in "ab")
    assert len(a) == 3
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k not in VARYING} == {k: v for k, v in y.items() if k not in VARYING}
    c = run(make_cfg(*FAST, "trainer.max_epochs=3", "baseline=value", "seed=1", output_dir=tmp_path / "c"))
    assert c["rollout/env_steps"] != float(a[-1]["rollout/env_steps"])  # another seed, other episodes
    first_c = _rows(tmp_path / "c" / "csv" / "metrics.csv")[0]
    assert first_c["rollout/return_mean"] != a[0]["rollout/return_mean"] or first_c["train/loss"] != a[0]["train/loss"]


# --- the data stream of a reused datamodule ----------------------------------------------------------------------


class FirstBatches(pl.Callback):
    """Every training batch's observations and actions, as the module receives them."""

    def __init__(self) -> None:
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append((batch.obs.clone(), batch.actions.clone()))


def cartpole_model(seed: int = 0) -> ReinforceModule:
    env = gym.make("CartPole-v1")
    torch.manual_seed(seed)
    return ReinforceModule(make_policy(env.observation_space, env.action_space))


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_second_fit_with_the_same_datamodule_continues_its_data_stream():
    # the uninterrupted run: 3 epochs
    whole = FirstBatches()
    quiet_trainer(3, [whole]).fit(cartpole_model(), datamodule=RolloutDataModule("CartPole-v1", 2, num_envs=2))
    # the same, as 2 epochs then a second fit() of 1 epoch with the same model and datamodule
    model, dm = cartpole_model(), RolloutDataModule("CartPole-v1", 2, num_envs=2)
    first, second = FirstBatches(), FirstBatches()
    quiet_trainer(2, [first]).fit(model, datamodule=dm)
    assert dm.state_dict() == {"epoch": 2}  # kept after teardown (was {})
    quiet_trainer(1, [second]).fit(model, datamodule=dm)
    assert same(first.batches[0], whole.batches[0]) and same(first.batches[1], whole.batches[1])
    assert not torch.equal(second.batches[0][0][0], first.batches[0][0][0])  # not epoch 0's env seeds again
    # epoch 2 of the uninterrupted run: the same seeds and the same parameters (the optimizer is new,
    # but the batch is collected before the second fit's first update)
    assert same(second.batches[0], whole.batches[2])
    assert dm.state_dict() == {"epoch": 3}


def test_a_checkpoint_still_sets_a_reused_datamodules_position(tmp_path):
    model, dm = cartpole_model(), RolloutDataModule("CartPole-v1", 2, num_envs=2)
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "one.ckpt")  # epoch 1 of the stream
    quiet_trainer(3).fit(model, datamodule=dm)  # 3 more epochs: the stream moves on to epoch 4
    assert dm.state_dict() == {"epoch": 4}
    resumed = FirstBatches()
    quiet_trainer(2, [resumed]).fit(model, datamodule=dm, ckpt_path=tmp_path / "one.ckpt")
    assert len(resumed.batches) == 1 and dm.state_dict() == {"epoch": 2}  # the checkpoint's position won


# --- a tanh policy's entropy sample, and its DDP resume --------------------------------------------------------


def test_the_tanh_entropy_sample_is_a_function_of_seed_rank_and_epoch(monkeypatch):
    """tanh policies under DDP: each rank draws its entropy sample from a stream seeded by (seed, rank, epoch),
    not from the global RNG (a checkpoint saves one rank's), so a resume replays every rank's draws."""
    torch.manual_seed(0)
    module = ReinforceModule(
        make_policy(gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Box(-2.0, 2.0, (1,)), action_bounds="tanh")
    )
    module._stream_seed = 7  # what on_fit_start records: the run's seed
    dist = module.policy(torch.zeros(4, 3))
    where = {"rank": 0, "epoch": 0}
    monkeypatch.setattr(ReinforceModule, "global_rank", property(lambda self: where["rank"]))
    monkeypatch.setattr(ReinforceModule, "current_epoch", property(lambda self: where["epoch"]))

    def entropy(rank: int, epoch: int, global_seed: int) -> torch.Tensor:
        where.update(rank=rank, epoch=epoch)
        torch.manual_seed(global_seed)  # whatever the global RNG holds
        before = torch.get_rng_state()
        value = module._entropy(dist)
        assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left alone
        return value

    assert torch.equal(entropy(0, 3, global_seed=1), entropy(0, 3, global_seed=2))
    assert not torch.equal(entropy(0, 3, 1), entropy(1, 3, 1))  # another rank, another stream
    assert not torch.equal(entropy(0, 3, 1), entropy(0, 4, 1))  # another epoch, another draw


@pytest.mark.ddp
def test_a_ddp_resume_of_a_tanh_policy_with_an_entropy_bonus_is_exact(tmp_path):
    """2 gloo ranks, a squashed Gaussian with an entropy bonus (its gradient uses the entropy sample) on an env
    whose episodes have random lengths (so the ranks draw different numbers of samples): 2 epochs, then a
    resume to 3, end with the parameters of 3 straight epochs."""
    import os
    import subprocess
    import sys

    common = [
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "env.id=tests.user_envs:BoxRandomLength-v0",
        "network.action_bounds=tanh",
        "model.loss.entropy_coef=0.01",
        "data.episodes_per_epoch=2",
        "data.num_envs=1",
        "callbacks.progress_bar.refresh_rate=0",
        "env.return_threshold=null",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)

    def train(*args):
        proc = subprocess.run(
            [sys.executable, "train.py", *common, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

    train("trainer.max_epochs=3", f"hydra.run.dir={tmp_path / 'straight'}")
    train("trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'first'}")
    train(
        "trainer.max_epochs=3",
        f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
    )
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
