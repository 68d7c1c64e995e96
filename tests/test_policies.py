"""Policies from spaces, their distributions, and sampling from a private generator."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent

from pg_lightning.core.distributions import TanhNormal, sample
from pg_lightning.core.errors import ArgumentError
from pg_lightning.core.torso import MLP, snapshot
from pg_lightning.envs.networks import UnsupportedSpaceError, make_policy


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
    box = gym.spaces.Box(-1, 1, (1,))
    with pytest.raises(ArgumentError, match=r"^log_std_init must be a number in \[-5, 2\], got 50\.0$") as err:
        make_policy(box, box, log_std_init=50.0)  # outside the clamp's bounds its gradient is zero
    assert err.value.argument == "log_std_init"
    policy = make_policy(box, box, log_std_init=2.0)
    with torch.no_grad():
        policy.log_std.fill_(50.0)  # trained past the upper bound
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
    with pytest.raises(
        ArgumentError, match=r"^activation must be tanh \| relu \| elu \| gelu \| silu, got 'swish'$"
    ) as err:
        MLP(4, 2, [8], "swish")
    assert err.value.argument == "activation"


@pytest.mark.parametrize(
    ("obs_space", "act_space", "named"),
    [
        (gym.spaces.Graph(gym.spaces.Box(-1, 1, (2,)), None), gym.spaces.Discrete(2), "observation space Graph"),
        (gym.spaces.Sequence(gym.spaces.Discrete(3)), gym.spaces.Discrete(2), "observation space Sequence"),
        (gym.spaces.Dict({"a": gym.spaces.Sequence(gym.spaces.Discrete(3))}), gym.spaces.Discrete(2), "at 'a'"),
        (gym.spaces.Box(-1, 1, (2,)), gym.spaces.Tuple([gym.spaces.Discrete(2)]), "action space Tuple"),
        (gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(0, 5, (2,), np.int64), "action space Box"),
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
    """log_prob(u) is the log-density of a = g(u): log p_u(u) - log |dg/du|, with dg/du by
    central differences in float64; the density of a integrates to 1 over the box."""
    low, high = torch.tensor([-2.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    loc, scale = torch.tensor([[0.4]], dtype=torch.float64), torch.tensor([[0.8]], dtype=torch.float64)
    dist = TanhNormal(loc, scale, low, high)
    u = torch.linspace(-6.0, 6.0, 401, dtype=torch.float64)[:, None]
    h = 1e-6
    dg = (dist.env_action(u + h) - dist.env_action(u - h)) / (2 * h)
    expected = torch.distributions.Normal(loc, scale).log_prob(u) - dg.log()
    torch.testing.assert_close(dist.log_prob(u), expected[:, 0], atol=1e-6, rtol=1e-6)
    a = torch.linspace(-2.0, 3.0, 200_001, dtype=torch.float64)[1:-1, None]
    u_of_a = torch.atanh((a - low) / ((high - low) / 2) - 1)  # float64 inverse, away from the bounds
    assert torch.trapezoid(dist.log_prob(u_of_a).exp(), a[:, 0]).item() == pytest.approx(1.0, abs=1e-3)


def test_squashed_gaussian_env_actions_stay_in_bounds_and_log_probs_stay_finite():
    action_space = gym.spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 5.0], np.float32))
    policy = make_policy(gym.spaces.Box(-1, 1, (1,)), action_space, action_bounds="tanh", log_std_init=2.0)
    with torch.no_grad():
        policy.net[-1].bias.copy_(torch.tensor([60.0, -60.0]))  # means far outside the box
    dist = policy(torch.zeros(5000, 1))
    u = sample(dist, torch.Generator().manual_seed(0))
    actions = dist.env_action(u)
    assert actions.shape == (5000, 2) and not u.requires_grad
    assert (actions >= torch.tensor([-1.0, 0.0])).all() and (actions <= torch.tensor([1.0, 5.0])).all()
    log_prob = dist.log_prob(u)
    log_prob.sum().backward()  # saturated samples (tanh(u) = +-1 in float32) included
    assert torch.isfinite(log_prob).all()
    assert all(torch.isfinite(p.grad).all() for p in policy.parameters())
    assert torch.isfinite(dist.entropy()).all() and dist.mean.shape == (5000, 2)
    with pytest.raises(ArgumentError, match=r"^action_bounds=tanh needs finite bounds") as err:
        make_policy(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Box(-np.inf, np.inf, (1,)), action_bounds="tanh")
    assert err.value.argument == "action_bounds"
    with pytest.raises(ArgumentError, match=r"^action_bounds must be clip \| tanh, got 'squash'$") as err:
        make_policy(gym.spaces.Box(-1, 1, (1,)), action_space, action_bounds="squash")
    assert err.value.argument == "action_bounds"


def test_squashed_gaussian_score_is_unbiased_even_when_saturated():
    """E[grad log p(u)] = 0 (the score has zero mean) at a scale where most samples saturate."""
    loc = torch.zeros(200_000, 1, requires_grad=True)
    log_std = torch.full((200_000, 1), 2.0, requires_grad=True)
    dist = TanhNormal(loc, log_std.exp(), torch.tensor([-1.0]), torch.tensor([1.0]))
    u = sample(dist, torch.Generator().manual_seed(4))
    assert (dist.env_action(u).abs() == 1.0).float().mean() > 0.2  # saturated in float32
    dist.log_prob(u).sum().backward()
    for grad in (loc.grad, log_std.grad):
        assert abs(grad.mean().item()) < 5 * grad.std().item() / 200_000**0.5


def test_squashed_gaussian_entropy_estimate_matches_the_true_entropy():
    """entropy() (one reparameterised sample per row) averages to -int p(a) log p(a) da, by quadrature."""
    dist = TanhNormal(torch.zeros(100_000, 1), torch.full((100_000, 1), 2.0), torch.tensor([-1.0]), torch.tensor([1.0]))
    torch.manual_seed(0)
    estimate = dist.entropy()
    one = TanhNormal(
        torch.zeros(1, 1, dtype=torch.float64),
        torch.full((1, 1), 2.0, dtype=torch.float64),
        torch.tensor([-1.0]),
        torch.tensor([1.0]),
    )
    a = torch.linspace(-1.0, 1.0, 400_001, dtype=torch.float64)[1:-1, None]
    log_p = one.log_prob(torch.atanh(a))
    true_entropy = -torch.trapezoid(log_p.exp() * log_p, a[:, 0]).item()
    # sigma = 2 piles the density of a up at the bounds: far below the Gaussian's own entropy
    assert true_entropy < dist.base.entropy()[0, 0].item() - 1.0
    assert abs(estimate.mean().item() - true_entropy) < 5 * estimate.std().item() / 100_000**0.5


def test_squashed_gaussian_samples_follow_its_density():
    """Mean of the env actions from the generator-driven sampler equals the density's mean (quadrature)."""
    n = 50_000
    dist = TanhNormal(torch.full((n, 1), 0.5), torch.full((n, 1), 0.7), torch.tensor([0.0]), torch.tensor([2.0]))
    x = dist.env_action(sample(dist, torch.Generator().manual_seed(3)))
    a = torch.linspace(0.0, 2.0, 100_001, dtype=torch.float64)[1:-1, None]
    one = TanhNormal(
        torch.tensor([[0.5]], dtype=torch.float64),
        torch.tensor([[0.7]], dtype=torch.float64),
        torch.tensor([0.0]),
        torch.tensor([2.0]),
    )
    density = one.log_prob(torch.atanh(a - 1)).exp()
    mean = torch.trapezoid(density * a[:, 0], a[:, 0]).item()
    assert abs(x.mean().item() - mean) < 5 * x.std().item() / n**0.5


@pytest.mark.parametrize("action_space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))])
def test_output_init_scale_starts_the_same_policy_in_every_state(action_space):
    torch.manual_seed(0)
    policy = make_policy(gym.spaces.Box(-1, 1, (4,)), action_space, hidden_sizes=[16], output_init_scale=0.01)
    dist = policy(torch.randn(50, 4) * 3)
    spread = dist.probs.std(0) if isinstance(dist, Categorical) else dist.mean.std(0)
    assert (spread < 0.01).all() and (policy.net[-1].bias == 0).all()
    default = make_policy(gym.spaces.Box(-1, 1, (4,)), action_space, hidden_sizes=[16])(torch.randn(50, 4) * 3)
    assert ((default.probs.std(0) if isinstance(default, Categorical) else default.mean.std(0)) > 0.02).any()


@pytest.mark.parametrize(
    "action_space, bounds",
    [(gym.spaces.Discrete(3), "clip"), (gym.spaces.Box(-1, 1, (2,)), "clip"), (gym.spaces.Box(-1, 1, (2,)), "tanh")],
)
def test_actor_draws_exactly_what_sampling_the_distribution_draws(action_space, bounds):
    torch.manual_seed(0)
    policy = make_policy(gym.spaces.Box(-1, 1, (4,)), action_space, action_bounds=bounds, log_std_init=0.5)
    obs = torch.randn(500, 4)
    with torch.no_grad():
        sampled, env_action = policy.actor(torch.Generator().manual_seed(3))(obs)
        dist = policy(obs)
    expected = sample(dist, torch.Generator().manual_seed(3))
    assert torch.equal(sampled, expected)
    expected_env = dist.env_action(expected) if bounds == "tanh" else expected
    torch.testing.assert_close(env_action, expected_env)
    if bounds == "tanh":
        assert env_action.abs().max() <= 1 and sampled.abs().max() > 1


def test_exponential_race_draws_follow_softmax_of_unnormalised_logits():
    logits = torch.tensor([[3.0, 2.0, 0.0, -1.0]]).repeat(40_000, 1) + 100.0  # a shift changes nothing
    p = torch.softmax(logits[0], 0)
    a = sample(Categorical(logits=logits), torch.Generator().manual_seed(0))
    freq = torch.bincount(a, minlength=4).double() / len(a)
    z = (freq - p.double()) / (p.double() * (1 - p.double()) / len(a)).sqrt()
    assert z.abs().max() < 4.5, z


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
def test_snapshot_is_the_modules_forward_bit_for_bit_and_keeps_hooks(activation):
    net = MLP(4, 3, [16, 16], activation)
    x = torch.randn(7, 4)
    with torch.no_grad():
        assert torch.equal(snapshot(net)(x), net(x))
        seen = []
        net[2].register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
        assert torch.equal(snapshot(net)(x), net(x)) and seen == [(7, 16), (7, 16)]
        forward = snapshot(net)
        net[0].weight.add_(1.0)  # an in-place update (the optimizer's) shows in the snapshot
        assert torch.equal(forward(x), net(x))
