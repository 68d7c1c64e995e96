"""Every env of a run has an episode limit it honours, and the start-up says which: a TimeLimit among
``env.wrappers`` is the one reported; a batched env of one's own (``data.vector_env``) is refused a limit it cannot
apply; an env whose ``close()`` raises while the start-up reads its spaces is named in one line."""

from __future__ import annotations

import logging
import re

import gymnasium as gym
import numpy as np
import pytest

from pg_lightning.cli.train import run
from pg_lightning.core.errors import ConfigError, EnvError, config_error_in
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.networks import make_policy
from tests.vector_envs import RandomLengthVectorEnv

QUIET = ["callbacks.progress_bar.refresh_rate=0", "data.episodes_per_epoch=4", "data.num_envs=2"]
TIME_LIMIT_7 = "env.wrappers=[{_target_: gymnasium.wrappers.TimeLimit, max_episode_steps: 7}]"


class CloseRaises(gym.Env):
    """A well-behaved env but for its ``close()``."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 1.0, True, False, {}

    def close(self):
        raise RuntimeError("the simulator's socket is already gone")


gym.register("CloseRaises-v0", entry_point=CloseRaises, max_episode_steps=10)


def test_a_time_limit_in_env_wrappers_is_the_limit_reported(caplog):
    """CartPole's registered limit is 500, but a TimeLimit(7) among the wrappers ends every episode at 7: the
    start-up line says 7 and where it comes from, and the episodes last 7."""
    with caplog.at_level(logging.INFO, logger="pg_lightning.envs.vector_envs"):
        envs = make_vector_env(
            "CartPole-v1", 2, wrappers=[lambda env: gym.wrappers.TimeLimit(env, max_episode_steps=7)]
        )
    line = next(r.getMessage() for r in caplog.records if "episodes are truncated" in r.getMessage())
    assert "truncated at 7 steps (a TimeLimit in env.wrappers (TimeLimit(max_episode_steps=7)))" in line, line
    policy = make_policy(envs.single_observation_space, envs.single_action_space, hidden_sizes=[4])
    lengths = EpisodeCollector(envs, seed=0).collect(policy, 6).episode_lengths()
    assert lengths.max().item() <= 7
    envs.close()


def test_a_time_limit_in_env_wrappers_is_reported_by_a_run(make_cfg, caplog):
    with caplog.at_level(logging.INFO, logger="pg_lightning.envs.vector_envs"):
        run(make_cfg(*QUIET, TIME_LIMIT_7, "trainer.max_epochs=1", "env.return_threshold=null"))
    assert any("truncated at 7 steps (a TimeLimit in env.wrappers" in r.getMessage() for r in caplog.records)
    assert not any("truncated at 500 steps" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.max_episode_steps=5", "data.max_episode_steps"),
        ("+env.kwargs.max_episode_steps=5", "env.kwargs.max_episode_steps"),
    ],
)
def test_a_batched_env_of_ones_own_is_refused_a_limit_it_cannot_apply(make_cfg, override, key):
    """One copy of a batched env cannot be reset alone, so no limit can truncate its episodes from outside: the
    combination is refused before anything is built (it was ignored: episodes of 200 steps with a limit of 5)."""
    cfg = make_cfg(
        *QUIET, "env.id=tests.vector_envs:RandomLengthBatched-v0", "env.return_threshold=null", override,
        "+data.vector_env={_target_: tests.vector_envs.RandomLengthVectorEnv, num_envs: 4}",
    )  # fmt: skip
    with pytest.raises(Exception) as raised:  # Hydra wraps it; the CLI unwraps it the same way
        run(cfg)
    assert re.match(rf"{key}: cannot truncate the episodes of data.vector_env", str(config_error_in(raised.value)))


def test_an_env_whose_close_raises_during_the_start_up_probe_is_named(make_cfg):
    with pytest.raises(ConfigError, match=r"^env.id: tests.test_env_limits:CloseRaises-v0's close\(\) raised "
                       r"RuntimeError: the simulator's socket is already gone"):  # fmt: skip
        run(make_cfg(*QUIET, "env.id=tests.test_env_limits:CloseRaises-v0", "env.return_threshold=null"))


class Endless(RandomLengthVectorEnv):
    """A batched env whose episodes never end (RandomLength's spaces)."""

    def _draw(self, n: int) -> np.ndarray:
        return np.full(n, 10**12)


def test_a_batched_env_whose_episodes_never_end_stops_at_the_cap(make_cfg, monkeypatch):
    """One copy of a batched env cannot be reset alone, so its episodes cannot be truncated from outside: one that
    runs past the cap (100,000 steps; 50 here) stops the run with an error naming the copy, instead of collecting
    epoch 0 forever while memory grows."""
    monkeypatch.setattr("pg_lightning.lightning.data.EPISODE_CAP", 50)
    cfg = make_cfg(
        *QUIET, "env.id=tests.vector_envs:RandomLengthBatched-v0", "env.return_threshold=null",
        "+data.vector_env={_target_: tests.test_env_limits.Endless, num_envs: 2, autoreset_mode: SameStep}",
    )  # fmt: skip
    with pytest.raises(EnvError, match=r"\(copy 0 of 2\): an episode ran past 50 steps without ending"):
        run(cfg)
    envs = Endless(3)
    policy = make_policy(envs.single_observation_space, envs.single_action_space, hidden_sizes=[4])
    with pytest.raises(EnvError, match=r"ran past 20 steps"):
        EpisodeCollector(envs, episode_cap=20).collect(policy, 3)
    lengths = EpisodeCollector(RandomLengthVectorEnv(3), episode_cap=40).collect(policy, 6).episode_lengths()
    assert lengths.max() <= 40  # episodes within the cap are collected as before
