"""What an env must return, and what a wrapper entry must be: one clear error instead of a silent fault or a traceback.

- ``terminated``/``truncated`` must be booleans (Python or numpy) and the reward a real number: ``"no"`` would
  count as true, ``None`` as false, ``"1.0"`` as a number. Anything else is an EnvError naming the field, in the
  collector's tight loop (with the copy), in its general loop, in async workers and in evaluation.
- An ``env.wrappers`` entry that returns no env, or ``TransformObservation`` with ``func: null``, is a ConfigError
  naming ``env.wrappers[i]`` when the env is built, not a traceback at the first step.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch

import tests.fault_envs  # noqa: F401  (registers BadStep-v0)
from pg_lightning.cli.build import env_factory
from pg_lightning.core.errors import ConfigError, EnvError
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.contract import EnvFactory
from pg_lightning.envs.evaluation import run_episodes
from pg_lightning.envs.networks import make_policy

ENV = "tests.fault_envs:BadStep-v0"
BAD = [
    ("terminated", "no", r"terminated='no' \(a str\)"),
    ("terminated", None, r"terminated=None \(a NoneType\)"),
    ("truncated", "no", r"truncated='no' \(a str\)"),
    ("truncated", 1, r"truncated=1 \(a int\)"),
    ("reward", "1.0", r"reward='1.0' \(a str\)"),
    ("reward", None, r"reward=None \(a NoneType\)"),
]


def _collect(envs: gym.vector.VectorEnv, episodes: int = 4) -> int:
    torch.manual_seed(0)
    policy = make_policy(envs.single_observation_space, envs.single_action_space, hidden_sizes=[4])
    collector = EpisodeCollector(envs, seed=0)
    try:
        return collector.collect(policy, episodes).num_episodes
    finally:
        collector.close()


def _envs(mode: str, **kwargs: object) -> gym.vector.VectorEnv:
    envs = make_vector_env(ENV, 2, "async" if mode == "async" else "sync", kwargs)
    # under a vector wrapper, the collector steps the sync env as a whole: its general loop
    return gym.wrappers.vector.RecordEpisodeStatistics(envs) if mode == "general" else envs


@pytest.mark.parametrize(("field", "value", "shown"), BAD)
@pytest.mark.parametrize("mode", ["direct", "general"])
def test_a_step_of_the_wrong_types_is_an_env_error_naming_the_field(mode, field, value, shown):
    copy = r" \(copy 0 of 2\)" if mode == "direct" else ""
    with pytest.raises(EnvError, match=rf"^env.id='BadStep-v0'{copy} returned {shown}: .*must be"):
        _collect(_envs(mode, field=field, value=value))


def test_an_async_worker_s_bad_step_is_an_env_error_naming_the_field():
    with pytest.raises(EnvError, match=r"^env.id='BadStep-v0' returned terminated='no' \(a str\): .*booleans"):
        _collect(_envs("async", field="terminated", value="no"))


@pytest.mark.parametrize("mode", ["direct", "general"])
def test_numpy_flags_and_rewards_are_accepted(mode):
    assert _collect(_envs(mode, field="numpy")) == 4


@pytest.mark.parametrize(("field", "value", "shown"), BAD[::2])
def test_evaluation_names_the_field_too(field, value, shown):
    env = EnvFactory(ENV, {"field": field, "value": value})()
    policy = make_policy(env.observation_space, env.action_space, hidden_sizes=[4])
    with pytest.raises(EnvError, match=rf"^env.id='BadStep-v0' returned {shown}"):
        run_episodes(policy, env, episodes=1)


@pytest.mark.parametrize(
    ("wrapper", "shown"),
    [
        (lambda env: "an env", r"returned str 'an env', not a gymnasium.Env"),
        (lambda env: None, "returned NoneType None"),
    ],
)
def test_a_wrapper_that_returns_no_env_is_named(wrapper, shown):
    with pytest.raises(ConfigError, match=rf"^env.wrappers\[1\]: .* {shown}"):
        EnvFactory("CartPole-v1", wrappers=(gym.wrappers.RecordEpisodeStatistics, wrapper))()


def test_transform_observation_with_func_null_is_named():
    env = {"id": "CartPole-v1", "wrappers": [{"_target_": "gymnasium.wrappers.TransformObservation", "func": None,
                                              "observation_space": None}]}  # fmt: skip
    with pytest.raises(ConfigError, match=r"^env.wrappers\[0\].func: TransformObservation needs a callable, got null$"):
        env_factory(env)()
    # a null where None is allowed (observation_space: keep the env's) is no error
    wrapper = functools.partial(gym.wrappers.TransformObservation, func=np.abs, observation_space=None)
    EnvFactory("CartPole-v1", wrappers=(wrapper,))().close()
