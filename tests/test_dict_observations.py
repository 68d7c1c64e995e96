"""Dict observations are matched by key, never by position: an env may build its dict in any key order.

Gymnasium sorts a Dict space's keys; ``tests.space_envs:ReversedDict-v0`` returns its dicts in the reverse order,
at every level, with leaves of the same shape (a positional match would swap them silently) or of different
shapes (it would crash). Every path that flattens or stores an observation is checked: the collector's tight loop
(sync copies), its general loop (any other vector env), the final observations, evaluation and the encoders.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Categorical

from pg_lightning.core.errors import EnvError
from pg_lightning.core.tree import StructureError, flatten, leaves_as, map_trees, reorder
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.evaluation import make_eval_env, run_episodes
from pg_lightning.envs.networks import make_policy
from pg_lightning.envs.spaces import make_encoder, obs_spec
from tests.space_envs import LEAF_CODES, reversed_dict_space

ENV = "tests.space_envs:ReversedDict-v0"
CASES = [("same", False), ("different", False), ("same", True), ("different", True)]


class ReverseStepKeys(gym.vector.VectorWrapper):
    """A vector env whose stepped observations come as dicts in the reverse key order of its reset's (at every
    level): a batched env of your own may build its dicts in any order. Under a vector wrapper, the collector
    steps it as a whole (its general loop)."""

    def step(self, actions: Any) -> tuple[Any, ...]:
        obs, *rest = self.env.step(actions)
        return (_reversed(obs), *rest)


def _reversed(tree: Any) -> Any:
    return dict(reversed([(k, _reversed(v)) for k, v in tree.items()])) if isinstance(tree, dict) else tree


def _check_by_key(tree: Any, key: str = "") -> None:
    """Every leaf holds the values of its own key (`LEAF_CODES`): nothing was swapped."""
    if isinstance(tree, dict):
        assert list(tree) == sorted(tree), f"keys {list(tree)} are not in the space's (sorted) order"
        for k, v in tree.items():
            _check_by_key(v, k)
        return
    values = torch.as_tensor(tree)
    assert values.numel() > 0
    low = LEAF_CODES[key]
    assert bool(((values >= low) & (values < low + 100)).all()), f"leaf {key!r} holds {values.flatten()[:6]}"


def _collect(envs: gym.vector.VectorEnv, episodes: int = 9) -> Any:
    torch.manual_seed(0)
    policy = make_policy(envs.single_observation_space, envs.single_action_space, hidden_sizes=[8])
    collector = EpisodeCollector(envs, seed=3)
    try:
        return collector.collect(policy, episodes)
    finally:
        collector.close()


@pytest.mark.parametrize(("shapes", "nested"), CASES)
def test_the_tight_loop_stores_dict_leaves_by_key(shapes, nested):
    envs = make_vector_env(ENV, 3, "sync", {"shapes": shapes, "nested": nested})
    batch = _collect(envs)
    assert batch.num_episodes == 9
    _check_by_key(batch.obs)
    _check_by_key(batch.final_obs)
    assert flatten(batch.obs)[1] == obs_spec(envs.single_observation_space)
    assert flatten(batch.final_obs)[1] == flatten(batch.obs)[1]  # the same structure, the same key order


@pytest.mark.parametrize(("shapes", "nested"), CASES)
def test_the_general_loop_stores_dict_leaves_by_key(shapes, nested):
    envs = ReverseStepKeys(make_vector_env(ENV, 3, "sync", {"shapes": shapes, "nested": nested}))
    batch = _collect(envs)
    assert batch.num_episodes == 9
    _check_by_key(batch.obs)
    _check_by_key(batch.final_obs)
    assert flatten(batch.final_obs)[1] == flatten(batch.obs)[1]


@pytest.mark.parametrize("mode", ["direct", "general"])
@pytest.mark.parametrize(("fault", "key"), [("missing", "b"), ("extra", "z")])
def test_a_missing_or_extra_key_is_an_env_error_naming_it(mode, fault, key):
    envs = make_vector_env(ENV, 2, "sync", {"fault": fault})
    envs = ReverseStepKeys(envs) if mode == "general" else envs
    # the general loop's gymnasium vector env reads the space's keys (a missing one is its KeyError); the final
    # observation (info["final_obs"]) is the env's own dict
    with pytest.raises(EnvError, match=rf"env.id='ReversedDict-v0'.*'{key}'"):
        _collect(envs, episodes=20)


class Recorder(nn.Module):
    """A policy that records the observations it is given (uniform over two actions)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))
        self.seen: list[Any] = []

    def forward(self, obs: Any) -> Categorical:
        self.seen.append(obs)
        return Categorical(logits=self.weight.expand(len(next(iter(obs.values()))), 2))


@pytest.mark.parametrize(("shapes", "nested"), CASES)
def test_evaluation_gives_the_policy_dict_observations_in_the_space_s_key_order(shapes, nested):
    env = make_eval_env(ENV, {"shapes": shapes, "nested": nested})
    policy = Recorder()
    run_episodes(policy, env, episodes=3, greedy=False, seed=1)
    assert policy.seen
    for obs in policy.seen:
        _check_by_key(obs)  # keys in the space's order, as in the collector's batches; every leaf its own values


def test_evaluation_names_a_missing_key():
    env = make_eval_env(ENV, {"fault": "missing"})
    with pytest.raises(EnvError, match=r"env.id='ReversedDict-v0'.*missing key 'b'"):
        run_episodes(Recorder(), env, episodes=20)


@pytest.mark.parametrize(("shapes", "nested"), CASES)
def test_the_encoder_reads_leaves_by_key(shapes, nested):
    space = reversed_dict_space(shapes, nested)
    encoder = make_encoder(space)
    space.seed(0)
    samples = [space.sample() for _ in range(4)]
    batch = map_trees(lambda *xs: torch.as_tensor(np.stack(xs)), *samples)
    assert torch.equal(encoder(batch), encoder(_reversed(batch)))


def test_tree_leaves_as_and_reorder_match_by_key():
    spec = flatten({"a": 1, "c": {"x": 2, "y": 3}, "b": (4, 5)})[1]
    tree = {"b": (4, 5), "c": {"y": 3, "x": 2}, "a": 1}
    assert leaves_as(spec, tree) == [1, 2, 3, 4, 5]
    assert list(reorder(spec, tree)) == ["a", "c", "b"] and list(reorder(spec, tree)["c"]) == ["x", "y"]
    assert leaves_as(None, tree) == [tree]  # one leaf: as it is
    with pytest.raises(StructureError, match=r"missing key 'x' at 'c'"):
        leaves_as(spec, {"a": 1, "b": (4, 5), "c": {"y": 3}})
    with pytest.raises(StructureError, match=r"unexpected key 'z'"):
        leaves_as(spec, {**tree, "z": 0})
    with pytest.raises(StructureError, match=r"expected a tuple of 2 elements at 'b', got 3 elements"):
        leaves_as(spec, {**tree, "b": (4, 5, 6)})
    with pytest.raises(StructureError, match=r"unexpected key 'z'"):
        map_trees(lambda *xs: xs, {"a": 1}, {"a": 2, "z": 3})
