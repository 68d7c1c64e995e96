"""The policy gradient theorem for factored (MultiDiscrete) actions, against the exact gradient.

A ``MultiDiscrete([2, 3])`` action is a pair ``(a1, a2)`` drawn from independent heads,
``pi(a1, a2 | s) = pi1(a1|s) pi2(a2|s)``, with ``log pi = log pi1 + log pi2``. The finite MDP
below is a :class:`~pg_lightning.core.tabular.TabularMDP` over the 6 joint actions ``a = a1 * 3 + a2``
(C order, how ``MultiCategoricalPolicy`` flattens ``nvec``), whose rewards and termination
probabilities depend on both components non-additively. :class:`JointView` shows the factored
policy to the tabular machinery as a policy over joint actions: its ``probs`` are the product
``pi1 pi2`` of the heads' probabilities (so ``exact_gradient`` is autograd of the exact ``J``
through the Bellman solve and the product), and its ``log_prob(a)`` is the factored
distribution's own ``log_prob`` of the component actions ``(B, 2)`` of ``a``, the one training
differentiates (so ``gradient_estimates`` is the REINFORCE estimate of the real loss; a test checks
it against autograd through ``ReinforceModule.training_step`` on ``(B, 2)`` actions).

Thresholds as in ``tests/test_theorem.py``: every unbiased option's mean within ``Z_MAX = 4.5``
standard errors of ``grad J`` in every component (25 here: a chance failure below ``2e-4`` per
test), a broken log-probability beyond ``2 * Z_MAX``. Seeds are fixed: deterministic.
"""

import gymnasium as gym
import pytest
import torch
from torch import nn

from pg_lightning.core.baselines import ConstantBaseline
from pg_lightning.core.distributions import MultiCategorical
from pg_lightning.core.loss import ReinforceLoss
from pg_lightning.core.monte_carlo import StateValueBaseline, gradient_estimates, sample_episodes, z_scores
from pg_lightning.core.policies import MultiCategoricalPolicy
from pg_lightning.core.tabular import TabularMDP, exact_gradient, expected_estimator, policy_table, solve
from pg_lightning.envs.networks import make_policy
from pg_lightning.lightning.module import ReinforceModule

D = torch.float64
NVEC = (2, 3)
A = NVEC[0] * NVEC[1]
JOINT = torch.tensor([[a // NVEC[1], a % NVEC[1]] for a in range(A)])  # (6, 2): joint index -> (a1, a2), C order
BATCHES, EPISODES = 500, 20  # 10,000 episodes per option
Z_MAX = 4.5


def factored_mdp(gamma: float = 0.9, seed: int = 0) -> TabularMDP:
    """Decision states 0, 1, 2 and the terminal state 3; actions are the 6 joint actions.

    ``stop[a1, a2]`` (the probability of entering the terminal state) is neither a sum nor a
    product over the components, so episodes have random lengths (about 3 steps on average)
    that depend on the pair; the rest of the mass goes to a random decision state. The reward
    ``R[s, a, s']`` is a random table with an interaction between ``a1`` and ``a2``, plus a bonus
    for ``(1, 2)`` when that step ends the episode.
    """
    g = torch.Generator().manual_seed(seed)
    S = 4
    stop = torch.tensor([[0.15, 0.5, 0.3], [0.4, 0.1, 0.6]], dtype=D).reshape(A)
    P = torch.zeros(S, A, S, dtype=D)
    moves = torch.rand(S - 1, A, S - 1, generator=g, dtype=D) + 0.1
    P[: S - 1, :, : S - 1] = moves / moves.sum(-1, keepdim=True) * (1 - stop)[None, :, None]
    P[: S - 1, :, S - 1] = stop
    P[S - 1, :, S - 1] = 1.0  # absorbing
    R = (torch.randn(S, A, 1, generator=g, dtype=D) * 2).expand(S, A, S).clone()
    R[:, A - 1, S - 1] += 3.0  # (a1, a2) = (1, 2) pays more when it ends the episode
    return TabularMDP.create(P, R, [0.5, 0.3, 0.2, 0.0], [False, False, False, True], gamma)


def factored_policy(num_states: int, seed: int = 0, scale: float = 0.7) -> MultiCategoricalPolicy:
    """``make_policy(Discrete(S), MultiDiscrete([2, 3]), hidden_sizes=[])``: a linear (tabular) factored
    softmax, with random non-uniform parameters so that every gradient component is exercised."""
    torch.manual_seed(seed)
    policy = make_policy(gym.spaces.Discrete(num_states), gym.spaces.MultiDiscrete(list(NVEC)), hidden_sizes=[])
    assert isinstance(policy, MultiCategoricalPolicy)
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0.0, scale)
    return policy


def head_product(dist: MultiCategorical) -> torch.Tensor:
    """``(B, 6)`` ``pi1(a1|s) pi2(a2|s)`` from the heads' own probabilities (C order), differentiable."""
    probs = dist.base_dist.probs  # (B, 2, 3), head 1's third slot is padding (probability 0)
    return (probs[:, 0, : NVEC[0], None] * probs[:, 1, None, : NVEC[1]]).reshape(-1, A)


def summed(dist: MultiCategorical, actions: torch.Tensor) -> torch.Tensor:
    return dist.log_prob(actions)  # the distribution's own log-probability: log pi1 + log pi2


def first_head_only(dist: MultiCategorical, actions: torch.Tensor) -> torch.Tensor:
    """Broken: drops the second component's log-probability."""
    return dist.base_dist.log_prob(actions)[..., 0]


def mean_over_heads(dist: MultiCategorical, actions: torch.Tensor) -> torch.Tensor:
    """Broken: the mean over the components instead of their sum (a ``.mean(-1)`` slip)."""
    return dist.base_dist.log_prob(actions).mean(-1)


class JointDistribution:
    def __init__(self, dist: MultiCategorical, log_prob) -> None:
        self.dist, self._log_prob = dist, log_prob
        self.probs = head_product(dist)

    def log_prob(self, joint_actions: torch.Tensor) -> torch.Tensor:
        return self._log_prob(self.dist, JOINT.to(joint_actions.device)[joint_actions])


class JointView(nn.Module):
    """The factored policy as a policy over joint actions, for :mod:`pg_lightning.core.tabular`: same
    parameters, ``probs`` the product of the heads, ``log_prob`` of joint ``a`` = ``log_prob`` of ``(a1, a2)``."""

    def __init__(self, policy: MultiCategoricalPolicy, log_prob=summed) -> None:
        super().__init__()
        self.policy, self.log_prob = policy, log_prob

    def forward(self, obs: torch.Tensor) -> JointDistribution:
        return JointDistribution(self.policy(obs), self.log_prob)


@pytest.fixture(scope="module")
def setup():
    mdp = factored_mdp()
    view = JointView(factored_policy(mdp.num_states))
    _, grad = exact_gradient(mdp, view)
    return mdp, view, grad


def test_the_mdp_is_non_additive_and_the_joint_table_is_the_product_of_the_heads(setup):
    mdp, view, grad = setup
    # Non-additive: r(s, a1, a2) and the termination probability are not u(a1) + v(a2) at any state.
    for table in (mdp.expected_rewards()[:3], mdp.transitions[:3, :, 3]):
        t = table.view(3, *NVEC)
        interaction = t - t.mean(1, keepdim=True) - t.mean(2, keepdim=True) + t.mean((1, 2), keepdim=True)
        assert (interaction.abs().amax((1, 2)) > 0.05).all()
    # The joint table: rows sum to 1 and equal exp of the factored distribution's log_prob at (a1, a2).
    probs = policy_table(view, mdp)
    torch.testing.assert_close(probs.sum(-1), torch.ones(mdp.num_states, dtype=D))
    states = torch.arange(mdp.num_states).repeat_interleave(A)
    log_probs = view.policy(states).log_prob(JOINT.repeat(mdp.num_states, 1)).view(mdp.num_states, A)
    torch.testing.assert_close(log_probs.exp().double(), probs)
    assert grad.abs().max() > 1e-2 and grad.numel() == 5 * mdp.num_states + 5


def test_per_component_samples_follow_the_joint_table(setup):
    """The collector's per-head draws (``policy.actor``) have the joint law ``pi1 pi2`` that
    ``sample_episodes`` samples joint actions from: z-scores of the 6 joint frequencies per state."""
    mdp, view, _ = setup
    n = 20_000
    act = view.policy.actor(torch.Generator().manual_seed(0))
    probs = policy_table(view, mdp).detach()
    for s in range(3):
        sampled, env_action = act(torch.full((n,), s))
        assert sampled.shape == (n, 2) and sampled.dtype == torch.long and torch.equal(sampled, env_action)
        hits = nn.functional.one_hot(sampled[:, 0] * NVEC[1] + sampled[:, 1], A).double()
        z = z_scores(hits, probs[s])
        assert z.abs().max() < Z_MAX, (s, z)


def test_bandit_gradient_by_hand():
    """One decision with MultiDiscrete([2, 3]) actions: ``grad E[r] = sum_a r(a) grad pi(a)``, in closed
    form for the factored softmax, ``dJ/dl1_i = pi1_i (E[r | a1 = i] - J)`` and
    ``dJ/dl2_j = pi2_j (E[r | a2 = j] - J)``, equals autograd of the exact ``J`` through the solve."""
    r = torch.tensor([[1.0, -2.0, 4.0], [3.0, 0.5, -1.0]], dtype=D)  # r(a1, a2): not u(a1) + v(a2)
    P = torch.zeros(2, A, 2, dtype=D)
    P[:, :, 1] = 1.0
    R = torch.zeros(2, A, dtype=D)
    R[0] = r.reshape(A)
    mdp = TabularMDP.create(P, R, [1.0, 0.0], [False, True], gamma=0.9)
    view = JointView(factored_policy(2, seed=3))
    J, grad = exact_gradient(mdp, view)
    with torch.no_grad():
        logits = view.policy.net(nn.functional.one_hot(torch.tensor(0), 2).float()).double()  # (5,): head 1 then head 2
    p1, p2 = logits[:2].softmax(0), logits[2:].softmax(0)
    J_hand = p1 @ r @ p2
    dlogits = torch.cat([p1 * (r @ p2 - J_hand), p2 * (p1 @ r - J_hand)])
    torch.testing.assert_close(J, J_hand)
    weight, bias = grad[:10].view(5, 2), grad[10:]
    torch.testing.assert_close(weight[:, 0], dlogits)
    torch.testing.assert_close(weight[:, 1], torch.zeros(5, dtype=D))  # the terminal state: no gradient
    torch.testing.assert_close(bias, dlogits)
    # The same as sum_a r(a) grad pi(a), with grad pi(a) by autograd through the product of the heads.
    probs = policy_table(view, mdp)[0]
    by_sum = torch.autograd.grad((probs * r.reshape(A)).sum(), list(view.parameters()))
    torch.testing.assert_close(torch.cat([g.reshape(-1) for g in by_sum]).double(), grad)


def test_policy_gradient_theorem_holds_exactly_for_factored_actions(setup):
    """``sum_s d_gamma(s) sum_a grad pi(a|s) Q(s, a)`` = autograd of ``J``; and a finite-difference check of ``J``."""
    mdp, view, grad = setup
    torch.testing.assert_close(expected_estimator(mdp, view, discount_weight=True), grad)
    params = list(view.parameters())
    flat = torch.nn.utils.parameters_to_vector(params).detach()
    eps = 1e-3  # float32 parameters: central differences, error O(eps^2) + rounding
    for i in range(0, flat.numel(), 4):
        shifted = []
        for sign in (1, -1):
            p = flat.clone()
            p[i] += sign * eps
            torch.nn.utils.vector_to_parameters(p, params)
            with torch.no_grad():
                shifted.append(float(solve(mdp, policy_table(view, mdp)).J))
        torch.nn.utils.vector_to_parameters(flat, params)
        assert grad[i].item() == pytest.approx((shifted[0] - shifted[1]) / (2 * eps), abs=2e-4)


@pytest.mark.parametrize(
    "loss, baseline",
    [
        (ReinforceLoss(gamma=0.9, discount_weight=True), None),
        (ReinforceLoss(gamma=0.9, return_type="total"), ConstantBaseline(-3.0)),
    ],
    ids=["reward_to_go_gamma_t", "total_constant_b"],
)
def test_vectorised_estimates_equal_autograd_through_the_module_on_component_actions(setup, loss, baseline):
    """``gradient_estimates`` is minus the gradient of ``ReinforceModule.training_step`` on the same
    episodes with the actions as ``(B, 2)`` components: the statistical tests below test training's loss."""
    mdp, view, _ = setup
    module = ReinforceModule(view.policy, loss=loss, baseline=baseline)
    for seed in range(3):
        batch = sample_episodes(mdp, view, 6, torch.Generator().manual_seed(seed))
        batch = batch._replace(actions=JOINT[batch.actions])
        assert batch.actions.shape == (batch.num_steps, 2)
        module.zero_grad()
        module.training_step(batch, 0).backward()
        autograd = -torch.cat([p.grad.reshape(-1) for p in view.policy.parameters()]).double()
        vectorised = gradient_estimates(mdp, view, loss, 1, 6, baseline, torch.Generator().manual_seed(seed))[0]
        torch.testing.assert_close(vectorised, autograd, rtol=1e-4, atol=1e-5)  # float32 autograd


OPTIONS = {
    "total R(tau)": ({"return_type": "total"}, None),
    "reward-to-go x gamma^t": ({"discount_weight": True}, None),
    "total + constant b": ({"return_type": "total"}, "constant"),
    "reward-to-go x gamma^t + b(s) = V(s)": ({"discount_weight": True}, "value"),
}


def estimates_for(mdp, view, option: str, log_prob=summed, seed: int = 0) -> torch.Tensor:
    kwargs, which = OPTIONS[option]
    loss = ReinforceLoss(gamma=mdp.gamma, **kwargs)
    if which == "constant":
        baseline = ConstantBaseline(-3.0)
    elif which == "value":
        baseline = StateValueBaseline(solve(mdp, policy_table(view, mdp)).V.detach())
    else:
        baseline = None
    scored = JointView(view.policy, log_prob)  # same parameters, same sampled episodes for a seed
    return gradient_estimates(mdp, scored, loss, BATCHES, EPISODES, baseline, torch.Generator().manual_seed(seed))


@pytest.mark.statistical
@pytest.mark.parametrize("option", list(OPTIONS))
def test_unbiased_option_matches_the_exact_gradient(setup, option):
    mdp, view, grad = setup
    z = z_scores(estimates_for(mdp, view, option), grad)
    assert z.abs().max() < Z_MAX, (option, z)


@pytest.mark.parametrize("log_prob", [first_head_only, mean_over_heads], ids=lambda f: f.__name__)
def test_a_broken_factored_log_prob_is_caught(setup, log_prob):
    """The check has power: the same episodes scored with a wrong log-probability are rejected."""
    mdp, view, grad = setup
    head2 = torch.zeros(5, mdp.num_states + 1, dtype=torch.bool)  # rows of net.0.weight | bias
    head2[2:] = True
    head2 = torch.cat([head2[:, :-1].reshape(-1), head2[:, -1]])
    assert grad[head2].abs().max() > 1e-2  # the second head's exact gradient is not zero
    z = z_scores(estimates_for(mdp, view, "reward-to-go x gamma^t", log_prob), grad)
    assert z.abs().max() > 2 * Z_MAX, z
    if log_prob is first_head_only:  # the second head gets no gradient at all; the first head's is right
        assert torch.isinf(z[head2]).any() and z[~head2].abs().max() < Z_MAX


@pytest.mark.statistical
def test_dropping_gamma_t_is_biased_by_exactly_the_predicted_amount(setup):
    """Reward-to-go without ``gamma^t`` at ``gamma < 1`` estimates ``sum_s (undiscounted visits) sum_a
    grad pi Q`` (``expected_estimator(discount_weight=False)``), not ``grad J``: the statistical check
    tells the two apart for factored actions too. Episodes are short here (2.4 steps on average),
    so the bias is small (0.14 at most): 40,000 episodes (max|z| vs grad J 11.1-15.2 over seeds 0-19)."""
    mdp, view, grad = setup
    loss = ReinforceLoss(gamma=mdp.gamma)
    estimates = gradient_estimates(mdp, view, loss, 4 * BATCHES, EPISODES, None, torch.Generator().manual_seed(0))
    assert z_scores(estimates, grad).abs().max() > 2 * Z_MAX
    assert z_scores(estimates, expected_estimator(mdp, view, discount_weight=False)).abs().max() < Z_MAX
