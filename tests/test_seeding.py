"""Reproducible from the seed, also for an env that draws from its own spaces.

Gymnasium's ``reset(seed=...)`` seeds the env's ``np_random`` but not its ``action_space`` or
``observation_space``; ``tests.space_envs:SpaceSampler-v0`` draws its observations and rewards from them (as
many toy envs do). Every env copy pg_lightning builds seeds its spaces at each seeded reset (from that reset's
seed: the run's seed, the rank, the epoch and the copy), and the collector seeds a batched env's spaces: the
same seed gives the same batches, evaluations and metrics.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from torch import nn
from torch.distributions import Categorical

import tests.space_envs  # noqa: F401  (registers SpaceSampler-v0)
from pg_lightning.cli.train import run
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.evaluation import make_eval_env, run_episodes
from pg_lightning.envs.networks import make_policy
from tests.helpers import same_batch

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
