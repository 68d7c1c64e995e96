"""The loss: its gradient is the estimator, derived here by hand for a tabular softmax policy."""

import pytest
import torch
from torch.testing import assert_close

from pg_lightning import MeanBaseline, NoBaseline, ReinforceLoss
from pg_lightning.core.errors import ArgumentError
from pg_lightning.envs.networks import make_policy
from pg_lightning.lightning.module import ReinforceModule
from tests.helpers import make_batch

N_STATES, N_ACTIONS = 3, 2
# two episodes: lengths 3 and 2 (B = 5 steps, E = 2 episodes)
OBS = [0, 1, 2, 1, 0]
ACTIONS = [1, 0, 1, 1, 0]
REWARDS = [1.0, -2.0, 3.0, 0.5, 4.0]
DONES = [False, False, True, False, True]
STEP = [0, 1, 2, 0, 1]


def tabular_policy():
    import gymnasium as gym

    torch.manual_seed(0)
    policy = make_policy(gym.spaces.Discrete(N_STATES), gym.spaces.Discrete(N_ACTIONS), hidden_sizes=[])
    with torch.no_grad():
        policy.net[0].weight.normal_()
        policy.net[0].bias.normal_()
    return policy


def hand_psi(gamma: float, return_type: str) -> list[float]:
    g = [0.0] * 5
    for t in reversed(range(5)):
        g[t] = REWARDS[t] + (0.0 if DONES[t] else gamma * g[t + 1])
    if return_type == "total":
        starts = [0, 0, 0, 3, 3]
        return [g[s] for s in starts]
    return g


def hand_gradient(policy, psi: list[float], weights: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """-(1/E) sum_t w_t * Psi_t * grad log pi(a_t|s_t), with grad log softmax = e_a - pi(s)."""
    weight, bias = policy.net[0].weight, policy.net[0].bias
    grad_w, grad_b = torch.zeros_like(weight), torch.zeros_like(bias)
    with torch.no_grad():
        for s, a, p, w in zip(OBS, ACTIONS, psi, weights, strict=True):
            pi = torch.softmax(weight[:, s] + bias, 0)
            score = torch.nn.functional.one_hot(torch.tensor(a), N_ACTIONS).float() - pi
            grad_w[:, s] -= w * p * score / 2  # E = 2 episodes
            grad_b -= w * p * score / 2
    return grad_w, grad_b


@pytest.mark.parametrize(
    ("return_type", "discount_weight", "gamma"),
    [("reward_to_go", False, 0.9), ("reward_to_go", True, 0.9), ("total", False, 0.9), ("reward_to_go", False, 1.0)],
)
def test_gradient_equals_hand_derived_estimator(return_type, discount_weight, gamma):
    policy = tabular_policy()
    module = ReinforceModule(
        policy,
        ReinforceLoss(gamma=gamma, return_type=return_type, discount_weight=discount_weight),
        NoBaseline(),
    )
    batch = make_batch(OBS, ACTIONS, REWARDS, DONES)
    module.training_step(batch, 0).backward()  # outside a Trainer
    weights = [gamma**t if discount_weight else 1.0 for t in STEP]
    grad_w, grad_b = hand_gradient(policy, hand_psi(gamma, return_type), weights)
    assert_close(policy.net[0].weight.grad, grad_w)
    assert_close(policy.net[0].bias.grad, grad_b)


def test_loss_averages_over_episodes_not_steps():
    loss_fn = ReinforceLoss(gamma=1.0)
    dones = torch.tensor(DONES)
    psi = loss_fn.returns(torch.tensor(REWARDS), dones)
    log_probs = torch.zeros(5, requires_grad=True)
    loss_fn(log_probs, psi, dones).loss.backward()
    assert_close(log_probs.grad, -psi / 2)  # E = 2 episodes, not B = 5 steps


def test_baseline_is_subtracted_and_normalisation_standardises():
    dones = torch.tensor(DONES)
    psi = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    baseline = torch.tensor([0.5, 0.5, 0.5, 1.0, 1.0])
    log_probs = torch.zeros(5, requires_grad=True)
    terms = ReinforceLoss(gamma=1.0)(log_probs, psi, dones, baseline=baseline)
    assert_close(terms.weights, psi - baseline)
    terms = ReinforceLoss(gamma=1.0, normalize_advantages=True)(log_probs, psi, dones, baseline=baseline)
    assert_close(terms.weights.mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    assert_close(terms.weights.std(), torch.tensor(1.0), atol=1e-5, rtol=0)


def test_entropy_bonus():
    dones = torch.tensor(DONES)
    entropy = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5], requires_grad=True)
    terms = ReinforceLoss(gamma=1.0, entropy_coef=0.5)(torch.zeros(5), torch.ones(5), dones, entropy=entropy)
    # the same per-episode form as the policy term: -c_H * (1/E) * sum over all steps, E = 2
    assert_close(terms.entropy_loss, torch.tensor(-0.5 * 1.5 / 2))
    assert_close(terms.entropy, torch.tensor(0.3))  # logged: the mean per-step entropy
    terms.loss.backward()
    assert_close(entropy.grad, torch.full((5,), -0.5 / 2))
    with pytest.raises(ValueError, match="entropy"):
        ReinforceLoss(entropy_coef=0.1)(torch.zeros(5), torch.ones(5), dones)


def test_mean_and_no_baseline():
    batch = make_batch(OBS, ACTIONS, REWARDS, DONES)
    psi = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert_close(MeanBaseline()(batch, psi), torch.full((5,), 3.0))
    assert_close(NoBaseline()(batch, psi), torch.zeros(5))
    assert MeanBaseline().loss(batch, psi) == {}


def test_incomplete_batch_is_rejected():
    with pytest.raises(ValueError, match="complete episodes"):
        ReinforceLoss()(torch.zeros(3), torch.ones(3), torch.tensor([False, True, False]))


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"gamma": 1.5}, "gamma"),
        ({"return_type": "monte_carlo"}, "return_type"),
        ({"return_type": "total", "discount_weight": True}, "discount_weight"),
        ({"entropy_coef": -0.1}, "entropy_coef"),
    ],
)
def test_bad_options_name_the_argument(kwargs, argument):
    with pytest.raises(ArgumentError, match=rf"^{argument}[ =]") as err:
        ReinforceLoss(**kwargs)
    assert err.value.argument == argument and "\n" not in str(err.value)


def test_advantage_clip_bounds_each_weight_and_none_leaves_them():
    """A_t clipped to [-c, c] after normalisation: the weights of log pi are bounded by c (1 episode, so the
    per-episode mean is the sum); without a clip they are the normalised advantages themselves."""
    psi = torch.tensor([100.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    dones = torch.tensor([False, False, False, False, False, True])
    log_probs = torch.zeros(6, requires_grad=True)
    free = ReinforceLoss(gamma=1.0, normalize_advantages=True)(log_probs, psi, dones).weights
    clipped = ReinforceLoss(gamma=1.0, normalize_advantages=True, advantage_clip=1.0)(log_probs, psi, dones).weights
    assert free.abs().max() > 2  # the outlier's normalised advantage: (100 - 16.7) / 40.8
    torch.testing.assert_close(clipped, free.clamp(-1.0, 1.0))
    with pytest.raises(ArgumentError, match=r"^advantage_clip must be a number > 0 or null, got 0$"):
        ReinforceLoss(advantage_clip=0)
