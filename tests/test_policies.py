"""Policies from spaces, their distributions, and sampling from a private generator."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent

from pg_lightning.errors import ConfigError
from pg_lightning.factory import UnsupportedSpaceError, make_policy
from pg_lightning.policies import MLP, TanhNormal, sample


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


def test_state_dependent_log_std_varies_with_the_state_and_is_clamped():
    policy = make_policy(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (3,)), state_dependent_std=True)
    assert policy.log_std is None and policy.net[-1].out_features == 6
    obs = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    std = policy(obs).stddev
    assert std.shape == (2, 3) and not torch.allclose(std[0], std[1])
    with torch.no_grad():
        policy.net[-1].bias[3:] = 100.0  # log-std head far beyond the bound
    assert torch.allclose(policy(obs).stddev, torch.tensor(math.exp(2.0)))
    loss = -policy(obs).log_prob(torch.zeros(2, 3)).sum()
    loss.backward()
    assert torch.isfinite(policy.net[-1].weight.grad).all()


def test_squashed_gaussian_log_prob_is_the_change_of_variables():
    """Against the density of a = g(u) computed numerically: p_u(g^-1(a)) |d g^-1 / da| by
    central differences in float64, and the density integrates to 1 over the box."""
    low, high = torch.tensor([-2.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    loc, scale = torch.tensor([[0.4]], dtype=torch.float64), torch.tensor([[0.8]], dtype=torch.float64)
    dist = TanhNormal(loc, scale, low, high)
    a = torch.linspace(-1.99, 2.99, 401, dtype=torch.float64)[:, None]

    def inverse(x):
        return torch.atanh((x - low) / ((high - low) / 2) - 1)

    h = 1e-6
    jac = (inverse(a + h) - inverse(a - h)) / (2 * h)
    expected = torch.distributions.Normal(loc, scale).log_prob(inverse(a)) + jac.abs().log()
    torch.testing.assert_close(dist.log_prob(a), expected[:, 0], atol=1e-5, rtol=1e-6)
    grid = torch.linspace(-2.0, 3.0, 200_001, dtype=torch.float64)[1:-1, None]
    assert torch.trapezoid(dist.log_prob(grid).exp(), grid[:, 0]).item() == pytest.approx(1.0, abs=1e-3)


def test_squashed_gaussian_stays_in_bounds_and_finite_at_the_edges():
    action_space = gym.spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 5.0], np.float32))
    policy = make_policy(gym.spaces.Box(-1, 1, (1,)), action_space, action_bounds="tanh", log_std_init=2.0)
    with torch.no_grad():
        policy.net[-1].bias.copy_(torch.tensor([60.0, -60.0]))  # means far outside the box
    dist = policy(torch.zeros(5000, 1))
    for actions in (dist.rsample(), sample(dist, torch.Generator().manual_seed(0))):
        assert actions.shape == (5000, 2)
        assert (actions >= torch.tensor([-1.0, 0.0])).all() and (actions <= torch.tensor([1.0, 5.0])).all()
        log_prob = dist.log_prob(actions.detach())
        assert torch.isfinite(log_prob).all()
    edges = torch.tensor([[-1.0, 0.0], [1.0, 5.0]])
    log_prob = policy(torch.zeros(2, 1)).log_prob(edges)
    log_prob.sum().backward()
    assert torch.isfinite(log_prob).all()
    assert all(torch.isfinite(p.grad).all() for p in policy.parameters())
    assert torch.isfinite(dist.entropy()).all() and dist.mean.shape == (5000, 2)
    with pytest.raises(ConfigError, match="network.action_bounds=tanh needs finite bounds"):
        make_policy(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Box(-np.inf, np.inf, (1,)), action_bounds="tanh")
    with pytest.raises(ConfigError, match="network.action_bounds must be one of"):
        make_policy(gym.spaces.Box(-1, 1, (1,)), action_space, action_bounds="squash")


def test_squashed_gaussian_samples_follow_its_density():
    """Sample mean of a under the generator-driven sampler equals the density's mean (quadrature)."""
    dist = TanhNormal(torch.tensor([[0.5]]), torch.tensor([[0.7]]), torch.tensor([0.0]), torch.tensor([2.0]))
    x = sample(TanhNormal(dist.base.loc.expand(50_000, 1), dist.base.scale.expand(50_000, 1), dist.low[0], dist.low[0] + 2 * dist.half_range[0]), torch.Generator().manual_seed(3))
    grid = torch.linspace(0.0, 2.0, 100_001, dtype=torch.float64)[1:-1, None]
    density = dist.log_prob(grid.float()).double().exp()
    mean = torch.trapezoid(density * grid[:, 0], grid[:, 0]).item()
    assert abs(x.mean().item() - mean) < 5 * x.std().item() / 50_000**0.5


@pytest.mark.parametrize("action_space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))])
def test_output_init_scale_starts_the_same_policy_in_every_state(action_space):
    torch.manual_seed(0)
    policy = make_policy(gym.spaces.Box(-1, 1, (4,)), action_space, hidden_sizes=[16], output_init_scale=0.01)
    dist = policy(torch.randn(50, 4) * 3)
    spread = dist.probs.std(0) if isinstance(dist, Categorical) else dist.mean.std(0)
    assert (spread < 0.01).all() and (policy.net[-1].bias == 0).all()
    default = make_policy(gym.spaces.Box(-1, 1, (4,)), action_space, hidden_sizes=[16])(torch.randn(50, 4) * 3)
    assert ((default.probs.std(0) if isinstance(default, Categorical) else default.mean.std(0)) > 0.02).any()
