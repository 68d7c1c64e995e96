"""The policy gradient theorem, verified statistically: each option's mean against the exact gradient.

Every unbiased option must have all components of its mean within 4.5 standard errors of the
exact ``grad J`` (computed by autograd through the Bellman solve). Under the normal approximation a
component exceeds 4.5 SE with probability 6.8e-6, so one of these tests (at most 74 components,
most have 4-14) fails by chance with probability below 5e-4 for a random seed; the seeds here are
fixed, so the suite is deterministic. ``python benchmarks/estimator_check.py --seeds 0 ... 19``
shows how the largest |z| spreads over seeds.
"""

import pytest
import torch

from benchmarks.estimator_check import CASES, build, evaluate, random_softmax_policy
from pg_lightning.core.baselines import MeanBaseline
from pg_lightning.core.loss import ReinforceLoss
from pg_lightning.core.monte_carlo import gradient_estimates, sample_episodes, score_jacobian, z_scores
from pg_lightning.core.tabular import chain, exact_gradient, policy_table
from pg_lightning.lightning.module import ReinforceModule

BATCHES, EPISODES = 500, 20  # 10,000 episodes per option: ~1 s each
Z_MAX = 4.5


@pytest.mark.statistical
@pytest.mark.parametrize("case", [c for c in CASES if c.unbiased], ids=lambda c: f"{c.mdp}: {c.name}")
def test_unbiased_option_matches_the_exact_gradient(case):
    row = evaluate(case, BATCHES, EPISODES, seed=0)
    assert row.z_exact < Z_MAX, row


@pytest.mark.statistical
def test_dropping_gamma_t_is_measurably_biased_and_its_bias_is_exactly_the_predicted_one():
    """Reward-to-go without gamma^t at gamma < 1 (what practical algorithms do) does not estimate
    grad J; it estimates sum_s (undiscounted visits) sum_a grad pi Q, which we compute exactly."""
    (case,) = [c for c in CASES if not c.unbiased]
    row = evaluate(case, BATCHES, EPISODES, seed=0)
    assert row.z_exact > 3 * Z_MAX, row  # measured 17-67 over seeds 0-19
    assert row.z_expected < Z_MAX, row


@pytest.mark.statistical
def test_the_same_option_at_gamma_one_is_unbiased():
    case = next(c for c in CASES if c.name == "reward-to-go, gamma=1")
    assert not case.discount_weight and evaluate(case, BATCHES, EPISODES, seed=1).z_exact < Z_MAX


@pytest.mark.statistical
def test_variance_total_return_above_reward_to_go_above_reward_to_go_with_value_baseline():
    def variance(name):
        case = next(c for c in CASES if c.mdp == "chain g=0.9" and c.name == name)
        return evaluate(case, BATCHES, EPISODES, seed=0).variance

    total = variance("total R(tau)")
    reward_to_go = variance("reward-to-go x gamma^t")
    with_value = variance("reward-to-go x gamma^t + b(s) = V(s)")
    # measured over 20 seeds (2000 x 10 episodes): about 520 > 25 > 1.2; the margins leave room for noise
    assert total > 3 * reward_to_go > 3 * 3 * with_value, (total, reward_to_go, with_value)


@pytest.mark.statistical
def test_score_function_has_zero_mean_by_sampling():
    """E_{a ~ pi(.|s)}[grad log pi(a|s)] = 0 at every state (exactly: see test_tabular)."""
    mdp = chain()
    policy = random_softmax_policy(mdp.num_states, 2, (8,), seed=4)
    jac = score_jacobian(mdp, policy).view(mdp.num_states, 2, -1)
    probs = policy_table(policy, mdp).detach()
    gen = torch.Generator().manual_seed(0)
    for s in range(mdp.num_states - 1):  # non-terminal states
        actions = torch.multinomial(probs[s], 20_000, replacement=True, generator=gen)
        z = z_scores(jac[s, actions], torch.zeros(jac.shape[-1], dtype=jac.dtype))
        assert z.abs().max() < Z_MAX, (s, z.abs().max())


@pytest.mark.parametrize(
    "loss, baseline",
    [
        (ReinforceLoss(gamma=0.9, discount_weight=True), None),
        (ReinforceLoss(gamma=0.9, return_type="total"), None),
        (ReinforceLoss(gamma=0.9, normalize_advantages=True), MeanBaseline()),
    ],
    ids=["reward_to_go_gamma_t", "total", "normalized_mean_baseline"],
)
def test_vectorised_estimates_equal_autograd_through_the_module(loss, baseline):
    """gradient_estimates (score Jacobian x per-step weights) is exactly minus the gradient of
    ReinforceModule.training_step on the same episodes: the tests above test the training code."""
    mdp = chain(gamma=0.9)
    policy = random_softmax_policy(mdp.num_states, 2, (8,), seed=2)
    module = ReinforceModule(policy, loss=loss, baseline=baseline)
    for seed in range(3):
        batch = sample_episodes(mdp, policy, 6, torch.Generator().manual_seed(seed))
        module.zero_grad()
        module.training_step(batch, 0).backward()
        autograd = -torch.cat([p.grad.reshape(-1) for p in policy.parameters()]).double()
        vectorised = gradient_estimates(mdp, policy, loss, 1, 6, baseline, torch.Generator().manual_seed(seed))[0]
        torch.testing.assert_close(vectorised, autograd, rtol=1e-4, atol=1e-5)  # float32 autograd


class StepMeanLoss(ReinforceLoss):
    """A common slip: the mean over steps instead of the sum per episode averaged over episodes,
    i.e. the right loss times ``E / B`` with ``B`` the batch's (random) number of steps."""

    def forward(self, log_probs, psi, dones, baseline=None, entropy=None):
        terms = super().forward(log_probs, psi, dones, baseline, entropy)
        return terms._replace(weights=terms.weights * dones.sum() / dones.numel())


def test_a_broken_estimator_is_caught():
    """The check has power: the step-mean loss is rejected by the test the real loss passes."""
    mdp, policy, _, _ = build(CASES[1])
    broken = StepMeanLoss(gamma=mdp.gamma, discount_weight=True)
    estimates = gradient_estimates(mdp, policy, broken, BATCHES, EPISODES, None, torch.Generator().manual_seed(0))
    _, grad = exact_gradient(mdp, policy)
    assert z_scores(estimates, grad).abs().max() > 2 * Z_MAX
