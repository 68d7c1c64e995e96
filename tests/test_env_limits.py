"""Every env of a run has an episode limit it honours, and the start-up says which: a TimeLimit among
``env.wrappers`` is the one reported; a batched env of one's own (``data.vector_env``) is refused a limit it cannot
apply; an env whose ``close()`` raises while the start-up reads its spaces is named in one line. An env that never
ends is truncated at the configured cap (or pg_lightning's, reported); ``episode_limit`` names the key of its caller
when two limits disagree; no shipped config starts with a false warning about the cap."""

from __future__ import annotations

import importlib.util
import logging
import re

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf

import tests.envs  # noqa: F401  (registers Endless-v0)
from pg_lightning.cli.train import run
from pg_lightning.core.errors import ConfigError, EnvError, config_error_in
from pg_lightning.envs import registry
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.networks import make_policy
from pg_lightning.envs.registry import env_spec, episode_limit
from tests.conftest import CONF
from tests.helpers import missing_extra
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


# --- an env that never ends: the cap ------------------------------------------------------------------------------


def test_an_endless_env_is_truncated_at_the_configured_cap():
    envs = make_vector_env("Endless-v0", 2, max_episode_steps=25)
    policy = make_policy(envs.single_observation_space, envs.single_action_space)
    batch = EpisodeCollector(envs).collect(policy, 3)
    assert batch.episode_lengths().tolist() == [25, 25, 25]
    assert batch.truncated.sum() == 3 and not batch.terminated.any()


def test_an_env_without_time_limit_gets_the_default_cap_and_it_is_reported(monkeypatch, caplog):
    monkeypatch.setattr(registry, "EPISODE_CAP", 30)
    with caplog.at_level(logging.INFO, logger="pg_lightning.envs.vector_envs"):
        envs = make_vector_env("Endless-v0", 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        (
            "Endless-v0: episodes are truncated at 30 steps (the env registers no time limit: pg_lightning's cap; "
            "set data.max_episode_steps)"
        )
    ]
    policy = make_policy(envs.single_observation_space, envs.single_action_space)
    assert EpisodeCollector(envs).collect(policy, 2).episode_lengths().tolist() == [30, 30]
    with caplog.at_level(logging.INFO, logger="pg_lightning.envs.vector_envs"):
        make_vector_env("CartPole-v1", 1)
    assert "CartPole-v1: episodes are truncated at 500 steps (the env's registered time limit)" in caplog.text


# --- episode_limit: two limits that disagree name the caller's key --------------------------------------------


def test_episode_limit_names_the_callers_key():
    with pytest.raises(ConfigError, match=r"^env.kwargs.max_episode_steps=20 and data.max_episode_steps=5 disagree"):
        episode_limit("CartPole-v1", {"max_episode_steps": 20}, 5)  # training's key, by default
    with pytest.raises(ConfigError, match=r"^env.kwargs.max_episode_steps=20 and max_episode_steps=5 disagree"):
        episode_limit("CartPole-v1", {"max_episode_steps": 20}, 5, key="max_episode_steps")
    with pytest.raises(ConfigError, match=r"^max_episode_steps must be a positive integer or null, got 0"):
        episode_limit("CartPole-v1", {}, 0, key="max_episode_steps")
    with pytest.raises(ConfigError, match=r"^env.kwargs.max_episode_steps must be a positive integer or null, got 0"):
        episode_limit("CartPole-v1", {"max_episode_steps": 0}, None)  # the bad value is the kwarg's


# --- no false warning about the episode cap on the shipped configs ------------------------------------------------

SHIPPED = [f"experiment={p.stem}" for p in sorted((CONF / "experiment").glob("*.yaml"))] + [
    f"env={p.stem}" for p in sorted((CONF / "env").glob("*.yaml"))
]
# pg_lightning/Chain-v0 ends only at the goal (a policy that walks away never ends): no limit applies but the cap, and
# the warning says so, truly. The other envs that end their own episodes set that end as their limit.
NO_LIMIT = {"experiment=chain", "env=chain"}


def explicit_limit(cfg) -> int | None:
    """The limit a composed config sets itself: data.max_episode_steps, else env.kwargs.max_episode_steps."""
    if cfg.data.max_episode_steps is not None:
        return cfg.data.max_episode_steps
    return cfg.env.kwargs.get("max_episode_steps")


@pytest.mark.parametrize("override", SHIPPED)
def test_no_shipped_config_starts_with_a_false_episode_cap_warning(make_cfg, override):
    """`experiment=minigrid_empty`, `pong` and the popgym experiments warned "truncated at 100000 steps ... set
    data.max_episode_steps", although those envs end their own episodes: each of their env files now sets the env's
    own end as env.kwargs.max_episode_steps, so the limit in force is that one and the start-up does not warn
    (make_vector_env warns when episode_limit's source is the cap)."""
    cfg = make_cfg(override)
    kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    missing = missing_extra(cfg.env)
    if missing is not None:  # its env cannot be looked up here: the limit must come from the config itself
        assert explicit_limit(cfg) is not None, f"{override} sets no limit, and {cfg.env.id} registers none"
        return
    _, steps, source = episode_limit(cfg.env.id, kwargs, cfg.data.max_episode_steps, list(cfg.env.imports))
    capped = source.startswith("the env registers no time limit")
    assert capped == (override in NO_LIMIT), f"{override}: {steps} ({source})"


@pytest.mark.parametrize("env", ["minigrid_empty", "minigrid_doorkey", "popgym_minesweeper", "popgym_repeat_previous"])
def test_a_shipped_limit_never_cuts_an_episode_the_env_would_end_itself(make_cfg, env):
    """The limit these env files set is the env's own end (MiniGrid's max_steps, popgym's max_episode_length): the
    TimeLimit never fires before the env ends the episode."""
    cfg = make_cfg(f"env={env}")
    if missing_extra(cfg.env) is not None:
        pytest.skip(f"needs {missing_extra(cfg.env)}")
    made = env_spec(cfg.env.id, list(cfg.env.imports)).make()
    own = getattr(made.unwrapped, "max_steps", None) or made.unwrapped.max_episode_length
    made.close()
    assert explicit_limit(cfg) >= own


def test_a_data_limit_beside_the_env_files_own_says_how_to_change_it(make_cfg):
    """env=cue_memory sets env.kwargs.max_episode_steps; data.max_episode_steps=50 beside it names both ways out."""
    cfg = make_cfg("env=cue_memory", "data.max_episode_steps=50")
    kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    with pytest.raises(ConfigError) as raised:
        episode_limit(cfg.env.id, kwargs, cfg.data.max_episode_steps)
    assert str(raised.value) == (
        "env.kwargs.max_episode_steps=1000 and data.max_episode_steps=50 disagree; set one: "
        "env.kwargs.max_episode_steps=50, or ~env.kwargs.max_episode_steps"
    )
    assert episode_limit(cfg.env.id, {**kwargs, "max_episode_steps": 50}, None)[1:] == (
        50,
        "env.kwargs.max_episode_steps",
    )


def test_pong_limit_is_ales_own_end_in_frames(make_cfg):
    """The TimeLimit of env=pong counts raw frames (frameskip=1 inside AtariPreprocessing): ALE's own end."""
    cfg = make_cfg("env=pong")
    assert cfg.env.kwargs.frameskip == 1
    if importlib.util.find_spec("ale_py") is None:
        pytest.skip("needs ale_py")
    spec = env_spec(cfg.env.id, list(cfg.env.imports))
    assert explicit_limit(cfg) >= spec.kwargs["max_num_frames_per_episode"]
