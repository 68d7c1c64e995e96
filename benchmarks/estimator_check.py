"""Every REINFORCE option against the exact policy gradient on small MDPs: z-scores and variances.

    python benchmarks/estimator_check.py                  # 2000 batches x 10 episodes per option
    python benchmarks/estimator_check.py --seeds 0 1 2 3  # repeat, to see how max |z| is spread
    python benchmarks/estimator_check.py --only RLOO      # the options whose name contains RLOO

For each option, ``num_batches`` independent batches of fresh episodes give as many estimates of
``grad J`` (the very ``ReinforceLoss`` and baselines of training, see
``pg_lightning.core.monte_carlo.gradient_estimates``). The table shows, per option:

- ``max|z| vs grad J``: the largest ``|mean - grad J| / standard error`` over the parameters, with
  ``grad J`` by autograd through the exact Bellman solve. Unbiased options stay below ~4.5;
- ``max|z| vs its expectation``: the same against the closed-form expectation of that estimator
  (``expected_estimator``), which is ``grad J`` except where ``gamma^t`` is dropped at ``gamma < 1``;
- ``variance``: trace of the covariance of one batch's estimate.

``tests/test_theorem.py`` asserts on these same cases. Not a test itself: it prints numbers.
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import torch

from pg_lightning.core.baselines import Baseline, ConstantBaseline, EMABaseline, LeaveOneOutBaseline
from pg_lightning.core.encoders import OneHot
from pg_lightning.core.loss import ReinforceLoss
from pg_lightning.core.monte_carlo import StateValueBaseline, gradient_estimates, gradient_variance, z_scores
from pg_lightning.core.policies import CategoricalPolicy
from pg_lightning.core.tabular import (
    TabularMDP,
    chain,
    exact_gradient,
    expected_estimator,
    policy_table,
    solve,
    two_armed_bandit,
)
from pg_lightning.core.torso import MLP

MDPS = {
    "chain g=0.9": lambda: chain(gamma=0.9),
    "chain g=1": lambda: chain(gamma=1.0),
    "bandit": lambda: two_armed_bandit(gamma=0.9),
}


class Case(NamedTuple):
    name: str
    mdp: str
    return_type: str = "reward_to_go"
    discount_weight: bool = False
    baseline: str = (
        "none"  # none | constant | value (exact V^pi) | state (random table) | ema | rloo_step | rloo_episode
    )
    hidden_sizes: tuple[int, ...] = ()
    unbiased: bool = True


CASES = [
    Case("total R(tau)", "chain g=0.9", "total"),
    Case("reward-to-go x gamma^t", "chain g=0.9", discount_weight=True),
    Case("reward-to-go, gamma=1", "chain g=1"),
    Case("reward-to-go, gamma^t dropped", "chain g=0.9", unbiased=False),
    Case("total + constant b", "chain g=0.9", "total", baseline="constant"),
    Case("reward-to-go x gamma^t + constant b", "chain g=0.9", discount_weight=True, baseline="constant"),
    Case("reward-to-go x gamma^t + b(s) = V(s)", "chain g=0.9", discount_weight=True, baseline="value"),
    Case("reward-to-go x gamma^t + random b(s)", "chain g=0.9", discount_weight=True, baseline="state"),
    Case("reward-to-go, gamma=1 + b(s) = V(s)", "chain g=1", baseline="value"),
    Case("reward-to-go x gamma^t + EMA b", "chain g=0.9", discount_weight=True, baseline="ema"),
    Case("reward-to-go x gamma^t + RLOO b (per step)", "chain g=0.9", discount_weight=True, baseline="rloo_step"),
    Case("total + RLOO b (per episode)", "chain g=0.9", "total", baseline="rloo_episode"),
    Case("reward-to-go x gamma^t, MLP policy", "chain g=0.9", discount_weight=True, hidden_sizes=(8,)),
    Case("total R(tau)", "bandit", "total"),
    Case("reward-to-go x gamma^t", "bandit", discount_weight=True),
    Case("total + constant b", "bandit", "total", baseline="constant"),
    Case("reward-to-go + random b(s)", "bandit", baseline="state"),
]


def random_softmax_policy(
    num_states: int, num_actions: int, hidden_sizes=(), seed: int = 0, scale: float = 0.7
) -> torch.nn.Module:
    """A softmax policy on one-hot states (``hidden_sizes=()``: tabular) with random, non-uniform
    parameters, so that every gradient component is exercised (the tests use it too)."""
    torch.manual_seed(seed)
    policy = CategoricalPolicy(OneHot(num_states), MLP(num_states, num_actions, hidden_sizes, "tanh"))
    with torch.no_grad():
        for p in policy.parameters():
            p.normal_(0.0, scale)
    return policy


def build(case: Case, seed: int = 0) -> tuple[TabularMDP, torch.nn.Module, ReinforceLoss, Baseline | None]:
    mdp = MDPS[case.mdp]()
    policy = random_softmax_policy(mdp.num_states, mdp.num_actions, case.hidden_sizes, seed)
    loss = ReinforceLoss(gamma=mdp.gamma, return_type=case.return_type, discount_weight=case.discount_weight)
    if case.baseline == "none":
        baseline = None
    elif case.baseline == "constant":
        baseline = ConstantBaseline(-5.0)
    elif case.baseline == "ema":
        baseline = EMABaseline(decay=0.9)
    elif case.baseline.startswith("rloo_"):
        baseline = LeaveOneOutBaseline(mode=case.baseline.removeprefix("rloo_"))
    elif case.baseline == "value":
        baseline = StateValueBaseline(solve(mdp, policy_table(policy, mdp)).V.detach())
    else:
        baseline = StateValueBaseline(torch.randn(mdp.num_states, generator=torch.Generator().manual_seed(seed)) * 5)
    return mdp, policy, loss, baseline


class Row(NamedTuple):
    z_exact: float
    z_expected: float
    variance: float


def evaluate(case: Case, num_batches: int = 2000, episodes_per_batch: int = 10, seed: int = 0) -> Row:
    mdp, policy, loss, baseline = build(case, seed)
    generator = torch.Generator().manual_seed(seed)
    estimates = gradient_estimates(mdp, policy, loss, num_batches, episodes_per_batch, baseline, generator)
    _, grad = exact_gradient(mdp, policy)
    expected = expected_estimator(mdp, policy, discount_weight=case.discount_weight or case.return_type == "total")
    return Row(
        z_exact=float(z_scores(estimates, grad).abs().max()),
        z_expected=float(z_scores(estimates, expected).abs().max()),
        variance=float(gradient_variance(estimates)),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--episodes", type=int, default=10, help="episodes per batch")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", default="", help="run only the options whose name contains this text")
    args = parser.parse_args(argv)
    print(f"{args.batches} batches x {args.episodes} episodes per option; seeds {args.seeds}")
    print("| MDP | option | unbiased | max abs z vs grad J | max abs z vs its expectation | variance (trace) |")
    print("|---|---|:-:|--:|--:|--:|")
    for case in (c for c in CASES if args.only in c.name):
        rows = [evaluate(case, args.batches, args.episodes, seed) for seed in args.seeds]
        worst = max(rows, key=lambda r: r.z_expected)
        variance = sum(r.variance for r in rows) / len(rows)
        z_exact = max(r.z_exact for r in rows)
        print(
            f"| {case.mdp} | {case.name} | {'yes' if case.unbiased else 'no'} | {z_exact:.2f} | "
            f"{worst.z_expected:.2f} | {variance:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
