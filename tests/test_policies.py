"""Policies from spaces, their distributions, and sampling from a private generator."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent

from pg_lightning.factory import UnsupportedSpaceError, make_policy
from pg_lightning.policies import MLP, sample


def test_discrete_actions_give_categorical():
    policy = make_policy(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3))
    dist = policy(torch.zeros(5, 4))
    assert isinstance(dist, Categorical) and dist.batch_shape == (5,) and dist.logits.shape == (5, 3)


def test_box_actions_give_diagonal_gaussian():
    policy = make_policy(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (2,)), log_std_init=math.log(0.5))
    dist = policy(torch.zeros(5, 3))
    assert isinstance(dist, Independent) and dist.batch_shape == (5,) and dist.event_shape == (2,)
    torch.testing.assert_close(dist.stddev, torch.full((5, 2), 0.5))
    actions = dist.sample()
    assert dist.log_prob(actions).shape == (5,)  # summed over action dimensions


def test_log_std_is_clamped():
    policy = make_policy(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Box(-1, 1, (1,)), log_std_init=50.0)
    assert torch.isfinite(policy(torch.zeros(2, 1)).log_prob(torch.zeros(2, 1))).all()
    assert policy(torch.zeros(1, 1)).stddev.item() == pytest.approx(math.exp(2.0))


def test_linear_policy_on_discrete_observations_is_tabular_softmax():
    policy = make_policy(gym.spaces.Discrete(5), gym.spaces.Discrete(2), hidden_sizes=[])
    linear = policy.net
    assert len(linear) == 1 and isinstance(linear[0], torch.nn.Linear)
    obs = torch.tensor([0, 3, 4])
    expected = (linear[0].weight[:, obs] + linear[0].bias[:, None]).T
    torch.testing.assert_close(policy(obs).logits, torch.log_softmax(expected, -1))


def test_discrete_observations_with_offset_are_one_hot():
    policy = make_policy(gym.spaces.Discrete(3, start=10), gym.spaces.Discrete(2), hidden_sizes=[])
    torch.testing.assert_close(policy.encoder(torch.tensor([10, 12])), torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))


def test_mlp_shape_and_activation():
    net = MLP(4, 2, [32, 16], "relu")
    assert [m.__class__.__name__ for m in net] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    with pytest.raises(ValueError, match="network.activation"):
        MLP(4, 2, [8], "swish")


@pytest.mark.parametrize(
    ("obs_space", "act_space", "named"),
    [
        (gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), gym.spaces.Discrete(2), "observation space Dict"),
        (gym.spaces.Box(-1, 1, (2,)), gym.spaces.MultiDiscrete([2, 3]), "action space MultiDiscrete"),
        (gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (2, 2)), "action space Box"),
        (gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2, start=1), "action space Discrete"),
    ],
)
def test_unsupported_spaces_are_named(obs_space, act_space, named):
    with pytest.raises(UnsupportedSpaceError, match=named):
        make_policy(obs_space, act_space)


def test_sampling_from_a_generator_is_reproducible_and_correct():
    probs = torch.tensor([[0.2, 0.8], [0.7, 0.3]])
    dist = Categorical(probs=probs.repeat(20_000, 1))
    a = sample(dist, torch.Generator().manual_seed(1))
    b = sample(dist, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (40_000,)
    freq = a.view(20_000, 2).float().mean(0)  # P(action 1) per row type
    torch.testing.assert_close(freq, probs[:, 1], atol=0.015, rtol=0)  # > 5 standard errors
    gaussian = make_policy(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Box(-1, 1, (1,)))(torch.zeros(20_000, 1))
    x = sample(gaussian, torch.Generator().manual_seed(2))
    assert x.shape == (20_000, 1)
    assert abs(x.mean().item() - gaussian.mean.mean().item()) < 0.05
    assert abs(x.std().item() - 1.0) < 0.05


def test_factory_reads_real_env_spaces():
    env = gym.make("FrozenLake-v1")
    policy = make_policy(env.observation_space, env.action_space, hidden_sizes=[])
    obs, _ = env.reset(seed=0)
    assert policy(torch.as_tensor(np.array([obs]))).probs.shape == (1, 4)
