"""The collector against a plain reference loop: the same batches, bit for bit, for the same seed.

The reference is the collection rule written as simply as possible: gymnasium's ``SyncVectorEnv.step``
on every copy, one Python list of transitions per episode, no buffers, no active-copy stepping, no
fast paths. Any optimisation of the collector must keep its batches identical to these (the random
stream is the same: envs seeded from ``(seed, rank, epoch)``, actions drawn from the actor's generator).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tests.envs  # noqa: F401  (registers RandomLength-v0, ClipEcho-v0)
from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.networks import make_policy
from tests.helpers import same_batch


def reference_collect(
    envs, policy, num_episodes: int, seed: int, rank: int, epoch: int, reverse: bool = False
) -> EpisodeBatch:
    n = envs.num_envs
    words = np.random.SeedSequence([seed, rank, epoch]).generate_state(n + 2)
    generator = torch.Generator().manual_seed(int(words[-2]) << 32 | int(words[-1]))
    act = policy.actor(generator)
    obs, _ = envs.reset(seed=[int(w) for w in words[:n]])
    episodes: list[list[list]] = [[] for _ in range(n)]  # per copy: its episodes, each a list of transitions
    finals: list[list] = [[] for _ in range(n)]
    collecting = [i < num_episodes for i in range(n)]
    for i in range(n):
        if collecting[i]:
            episodes[i].append([])
    started = sum(collecting)
    while any(collecting):
        with torch.inference_mode():
            sampled, env_action = act(torch.as_tensor(obs))
        next_obs, reward, terminated, truncated, info = envs.step(env_action.numpy())
        for i in reversed(range(n)) if reverse else range(n):  # env order decides who starts the next episode
            if not collecting[i]:
                continue
            episodes[i][-1].append((obs[i], sampled[i], reward[i], terminated[i], truncated[i]))
            if terminated[i] or truncated[i]:
                finals[i].append(info["final_obs"][i])
                if started < num_episodes:
                    episodes[i].append([])
                    started += 1
                else:
                    collecting[i] = False
        obs = next_obs
    steps = [step for copy in episodes for episode in copy for step in episode]
    return EpisodeBatch(
        obs=torch.as_tensor(np.stack([s[0] for s in steps])),
        actions=torch.stack([s[1] for s in steps]),
        rewards=torch.tensor([float(s[2]) for s in steps], dtype=torch.float64).float(),
        terminated=torch.tensor([bool(s[3]) for s in steps]),
        truncated=torch.tensor([bool(s[4]) for s in steps]),
        final_obs=torch.as_tensor(np.stack([o for copy in finals for o in copy])),
    )


@pytest.mark.parametrize(("env_id", "num_envs", "episodes"), [("CartPole-v1", 8, 16), ("RandomLength-v0", 5, 13),
                                                               ("ClipEcho-v0", 3, 7), ("CartPole-v1", 16, 3)])  # fmt: skip
def test_the_collector_gives_the_reference_loop_s_batches(env_id, num_envs, episodes):
    envs = make_vector_env(env_id, num_envs)
    torch.manual_seed(0)
    policy = make_policy(envs.single_observation_space, envs.single_action_space, hidden_sizes=[16])
    collector = EpisodeCollector(envs, seed=7, rank=1)
    reference_envs = make_vector_env(env_id, num_envs)
    for epoch in range(3):
        batch = collector.collect(policy, episodes)
        expected = reference_collect(reference_envs, policy, episodes, seed=7, rank=1, epoch=epoch)
        assert batch.num_episodes == episodes
        assert same_batch(batch, expected), f"epoch {epoch}"


def test_the_reference_comparison_catches_a_changed_rule():
    """The rule with copies deciding in reverse env order (who starts the next episode when several end
    at once) gives other batches: the comparison sees a change of rule, not only of data."""
    envs = make_vector_env("RandomLength-v0", 5, env_kwargs={"max_len": 3})  # many simultaneous ends
    torch.manual_seed(0)
    policy = make_policy(envs.single_observation_space, envs.single_action_space, hidden_sizes=[16])
    batch = EpisodeCollector(envs, seed=7, rank=1).collect(policy, 13)
    same_rule = reference_collect(make_vector_env("RandomLength-v0", 5, env_kwargs={"max_len": 3}), policy, 13, 7, 1, 0)
    reversed_rule = reference_collect(make_vector_env("RandomLength-v0", 5, env_kwargs={"max_len": 3}), policy, 13, 7, 1, 0,
                                      reverse=True)  # fmt: skip
    assert same_batch(batch, same_rule) and not same_batch(batch, reversed_rule)
