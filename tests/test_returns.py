"""Returns: hand-computed cases, and the vectorised scan against a plain loop."""

import itertools

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from pg_lightning.core.returns import (
    discounted_returns,
    episode_index,
    episode_returns,
    step_in_episode,
    total_returns,
)


def loop_returns(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> np.ndarray:
    """Reference: the textbook backward loop, one column at a time, in float64."""
    out = np.zeros(rewards.shape, dtype=np.float64)
    for col in np.ndindex(rewards.shape[1:]):
        future = 0.0
        for t in reversed(range(rewards.shape[0])):
            idx = (t, *col)
            future = rewards[idx] + (0.0 if dones[idx] else gamma * future)
            out[idx] = future
    return out


def loop_steps(dones: np.ndarray) -> np.ndarray:
    out = np.zeros(dones.shape, dtype=np.int64)
    for col in np.ndindex(dones.shape[1:]):
        t_in = 0
        for t in range(dones.shape[0]):
            out[(t, *col)] = t_in
            t_in = 0 if dones[(t, *col)] else t_in + 1
    return out


def test_reward_only_at_last_step_gives_gamma_power():
    gamma, length = 0.9, 7
    rewards = torch.zeros(length)
    rewards[-1] = 1.0
    dones = torch.zeros(length, dtype=torch.bool)
    dones[-1] = True
    expected = torch.tensor([gamma ** (length - 1 - t) for t in range(length)])
    assert_close(discounted_returns(rewards, dones, gamma), expected)
    assert_close(total_returns(rewards, dones, gamma), torch.full((length,), gamma ** (length - 1)))


def test_two_episodes_in_one_batch_do_not_leak():
    # episode A: rewards 1, 2 (ends); episode B: reward 10 (ends)
    rewards = torch.tensor([1.0, 2.0, 10.0])
    dones = torch.tensor([False, True, True])
    g = discounted_returns(rewards, dones, gamma=0.5)
    assert_close(g, torch.tensor([1.0 + 0.5 * 2.0, 2.0, 10.0]))
    assert_close(total_returns(rewards, dones, gamma=0.5), torch.tensor([2.0, 2.0, 10.0]))
    assert episode_index(dones).tolist() == [0, 0, 1]
    assert step_in_episode(dones).tolist() == [0, 1, 0]
    assert_close(episode_returns(rewards, dones), torch.tensor([3.0, 10.0]))


def test_gamma_zero_and_one():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0])
    dones = torch.tensor([False, False, True, True])
    assert_close(discounted_returns(rewards, dones, 0.0), rewards)
    assert_close(discounted_returns(rewards, dones, 1.0), torch.tensor([6.0, 5.0, 3.0, 4.0]))


@pytest.mark.parametrize(
    ("gamma", "length", "num_envs", "p_done"),
    list(itertools.product([0.0, 0.5, 0.9, 0.99, 1.0], [1, 2, 5, 33, 200], [None, 1, 4], [0.05, 0.3])),
)
def test_vectorised_matches_loop(gamma, length, num_envs, p_done):
    rng = np.random.default_rng(hash((gamma, length, num_envs, p_done)) % 2**32)
    shape = (length,) if num_envs is None else (length, num_envs)
    rewards = rng.normal(size=shape)
    dones = rng.random(shape) < p_done
    got = discounted_returns(torch.from_numpy(rewards), torch.from_numpy(dones), gamma)
    assert_close(got, torch.from_numpy(loop_returns(rewards, dones, gamma)))
    steps = step_in_episode(torch.from_numpy(dones))
    assert steps.tolist() == loop_steps(dones).tolist()
    # total return = reward-to-go of the episode's first step, on every step of the episode
    total = total_returns(torch.from_numpy(rewards), torch.from_numpy(dones), gamma).numpy()
    ref = loop_returns(rewards, dones, gamma)
    starts = np.arange(length).reshape(-1, *([1] * (len(shape) - 1))) - loop_steps(dones)
    np.testing.assert_allclose(total, np.take_along_axis(ref, starts, 0), rtol=1e-6, atol=1e-6)


def test_long_batch_is_stable_in_float32():
    rng = np.random.default_rng(0)
    rewards = rng.random(50_000).astype(np.float32)
    dones = rng.random(50_000) < 0.001
    got = discounted_returns(torch.from_numpy(rewards), torch.from_numpy(dones), 0.999)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), loop_returns(rewards, dones, 0.999), rtol=1e-4)


def test_integer_rewards_and_input_untouched():
    rewards = torch.tensor([1, 1, 1])
    dones = torch.tensor([False, False, True])
    g = discounted_returns(rewards, dones, 1.0)
    assert g.is_floating_point() and g.tolist() == [3.0, 2.0, 1.0]
    assert rewards.tolist() == [1, 1, 1]


@pytest.mark.parametrize("gamma", [-0.1, 1.01])
def test_gamma_outside_unit_interval_is_rejected(gamma):
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(torch.zeros(3), torch.zeros(3, dtype=torch.bool), gamma)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="same shape"):
        discounted_returns(torch.zeros(3), torch.zeros(4, dtype=torch.bool), 0.9)
