"""The variance of the REINFORCE estimator, measured on one batch of complete episodes. Plain torch.

A batch holds ``E`` independent complete episodes, and the estimator is the mean of one term per
episode::

    g_hat = (1/E) sum_e g_e,        g_e = sum_{t in e} w_t grad log pi(a_t | s_t)

with per-step weights ``w_t`` (``Psi_t``, minus a baseline, times ``gamma^t``, ... as configured).
When the ``g_e`` are i.i.d., their sample covariance ``S`` (divided by ``E - 1``) is an unbiased
estimate of ``Cov(g_e)``, and ``trace(S) / E`` is an unbiased estimate of ``trace(Cov(g_hat))``,
the estimator's variance: no second batch, no known dynamics. (Weights that use the whole batch,
``baseline=mean`` or ``rloo`` or normalised advantages, couple the episodes: then the figure is
the per-episode spread of the terms actually summed, an approximation of order ``1/E``.)

The same per-episode gradients give, on the same batch, the variance of each estimator the
policy gradient theorem allows (:func:`estimator_weights`): the total return, the reward-to-go,
either minus the configured baseline, with and without ``gamma^t``.

Shapes: ``B`` steps, ``E`` episodes, ``K`` estimators, ``P`` policy parameters (flat).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from pg_lightning.core.policies import distribution
from pg_lightning.core.returns import discounted_returns, step_in_episode, total_returns
from pg_lightning.core.tree import Obs, index

__all__ = [
    "ESTIMATORS",
    "GradientStats",
    "estimator_weights",
    "gradient_stats",
    "per_episode_gradients",
]

ESTIMATORS = (
    "total",
    "reward_to_go",
    "reward_to_go_baseline",
    "reward_to_go_gamma_t",
    "reward_to_go_baseline_gamma_t",
)
"""The stable names of :func:`estimator_weights` (logged as ``diag/var/<name>``)."""


class GradientStats(NamedTuple):
    """Statistics of one estimator on one batch; each a scalar tensor (float64).

    - ``var``: ``trace(S) / E``, the estimator's variance (``S``: sample covariance of the ``g_e``);
    - ``mean_norm``: ``||g_hat||``, the norm of the estimate;
    - ``snr``: ``||g_hat||^2 / var``, signal to noise (above 1: the estimate's direction is
      mostly signal; note ``E ||g_hat||^2 = ||grad J||^2 + var``).
    """

    var: Tensor
    mean_norm: Tensor
    snr: Tensor


def per_episode_gradients(
    policy: nn.Module,
    obs: Obs,
    actions: Tensor,
    dones: Tensor,
    weights: Tensor,
    parameters: Sequence[nn.Parameter] | None = None,
) -> Tensor:
    """``(K, E, P)``: ``g_e^k = sum_{t in e} weights[k, t] grad log pi(a_t | s_t)`` for every estimator and episode.

    One forward and one backward of ``policy`` per episode, the backward batched over the ``K``
    weight rows (``torch.autograd.grad(..., is_grads_batched=True)``, which vmaps the backward; a
    plain loop over ``K`` where an op has no batching rule): ``O(B)`` work in all. (One forward of
    the whole batch would make each episode's backward walk all ``B`` steps: ``O(E B)``.) Works for any policy
    whose ``forward(obs)`` is a ``Distribution`` with batch shape ``(B,)``; nothing is written
    to ``.grad`` and the graph is dropped afterwards.

    Args:
        policy: ``obs (B, ...) -> Distribution`` (a recurrent one: ``(obs, dones) -> Distribution``).
        obs: ``(B, ...)`` observations (a dict / tuple of them for Dict / Tuple spaces), complete episodes one
            after another.
        actions: ``(B, ...)`` the actions taken.
        dones: ``(B,)`` bool, true at each episode's last step (``dones[-1]`` true).
        weights: ``(K, B)`` per-step weights (no gradient flows through them).
        parameters: the parameters to differentiate (default: every one that requires grad).

    Examples:
        >>> class Softmax(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Linear(1, 2)
        ...     def forward(self, obs):
        ...         return torch.distributions.Categorical(logits=self.net(obs))
        >>> g = per_episode_gradients(Softmax(), torch.ones(3, 1), torch.tensor([0, 1, 1]),
        ...                           torch.tensor([False, True, True]), torch.ones(2, 3))
        >>> tuple(g.shape)  # 2 estimators, 2 episodes, 2 * 1 + 2 parameters
        (2, 2, 4)
    """
    params = [p for p in (policy.parameters() if parameters is None else parameters) if p.requires_grad]
    if weights.dim() != 2 or weights.shape[1] != dones.shape[0]:
        raise ValueError(f"weights must be (K, B) with B = {dones.shape[0]} steps, got {tuple(weights.shape)}")
    if not bool(dones[-1]):
        raise ValueError("per-episode gradients need complete episodes: dones[-1] must be true")
    ends = torch.nonzero(dones).squeeze(-1).tolist()
    weights = weights.detach()
    rows = []
    start = 0
    with torch.enable_grad():
        for end in ends:  # a graph per episode: each backward walks only that episode's steps
            steps = slice(start, end + 1)
            log_probs = distribution(policy, index(obs, steps), dones[steps]).log_prob(actions[steps])
            rows.append(_batched_grad(log_probs, params, weights[:, start : end + 1].to(log_probs.dtype)))
            start = end + 1
    return torch.stack(rows, dim=1)  # (K, E, P)


def _batched_grad(outputs: Tensor, params: list[nn.Parameter], grad_outputs: Tensor) -> Tensor:
    """``(K, P)``: the gradient of ``sum_t grad_outputs[k, t] * outputs[t]`` for each ``k``."""

    def flat(grads: Sequence[Tensor | None], batch_shape: tuple[int, ...]) -> Tensor:
        return torch.cat(
            [
                (torch.zeros(*batch_shape, *p.shape, device=p.device) if g is None else g).reshape(*batch_shape, -1)
                for g, p in zip(grads, params, strict=True)
            ],
            dim=-1,
        )

    try:
        grads = torch.autograd.grad(
            outputs, params, grad_outputs=grad_outputs, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
        result = flat(grads, (grad_outputs.shape[0],))
    except RuntimeError:  # an op without a vmap rule in its backward: one backward per row
        result = torch.stack(
            [
                flat(torch.autograd.grad(outputs, params, grad_outputs=row, retain_graph=True, allow_unused=True), ())
                for row in grad_outputs
            ]
        )
    return result.to(torch.float64)


def gradient_stats(per_episode: Tensor) -> GradientStats:
    """:class:`GradientStats` of ``(..., E, P)`` per-episode gradients (over the episode dim), float64.

    ``var = trace(S) / E`` with ``S`` the sample covariance (``E - 1`` in the denominator): unbiased
    for ``trace(Cov(g_hat))`` when the episodes are i.i.d. Needs ``E >= 2``.

    Examples:
        >>> g = torch.tensor([[1.0, 0.0], [3.0, 0.0]], dtype=torch.float64)  # E = 2 episodes, P = 2
        >>> s = gradient_stats(g)
        >>> float(s.var), float(s.mean_norm), float(s.snr)  # S = [[2, 0], [0, 0]]: var = 2 / 2
        (1.0, 2.0, 4.0)
    """
    per_episode = per_episode.to(torch.float64)
    episodes = per_episode.shape[-2]
    if episodes < 2:
        raise ValueError(f"the estimator's variance needs at least 2 episodes in the batch, got {episodes}")
    mean = per_episode.mean(-2)
    var = per_episode.var(-2, correction=1).sum(-1) / episodes
    mean_sq = mean.pow(2).sum(-1)
    return GradientStats(var=var, mean_norm=mean_sq.sqrt(), snr=mean_sq / var)


def estimator_weights(
    rewards: Tensor,
    dones: Tensor,
    gamma: float,
    psi: Tensor | None = None,
    baseline: Tensor | None = None,
) -> dict[str, Tensor]:
    """``(B,)`` per-step weights of each estimator of :data:`ESTIMATORS`, raw (not normalised).

    - ``total``: ``R(tau)``, the episode's discounted return, at every step;
    - ``reward_to_go``: ``G_t``;
    - ``reward_to_go_baseline``: ``Psi_t - b(s_t)``, with the run's ``Psi_t`` (``G_t``, bootstrapped
      where the run bootstraps truncated episodes) and its baseline ``b``;
    - ``..._gamma_t``: the same times ``gamma^t`` (``t`` from the episode's start), the exact
      discounted theorem. ``gamma^t`` shrinks the weights of late steps, so its raw variance is
      smaller, and so is the gradient it estimates: compare the two by their signal-to-noise
      ratio, not their raw variance. Without it (the usual practice) the estimator is biased for
      ``gamma < 1``: it estimates a larger vector, with less noise relative to its size.

    Args:
        rewards: ``(B,)``, complete episodes one after another.
        dones: ``(B,)`` bool, true at each episode's last step.
        gamma: the discount.
        psi: ``(B,)`` the run's ``Psi_t`` before the baseline (default ``G_t``).
        baseline: ``(B,)`` ``b(s_t)`` (default 0: the ``_baseline`` rows equal the plain ones).

    Examples:
        >>> w = estimator_weights(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([False, True, True]), gamma=0.5)
        >>> [w[k].tolist() for k in ("total", "reward_to_go", "reward_to_go_gamma_t")]
        [[1.5, 1.5, 1.0], [1.5, 1.0, 1.0], [1.5, 0.5, 1.0]]
    """
    rewards = rewards.to(torch.float64)
    rtg = discounted_returns(rewards, dones, gamma)
    psi = rtg if psi is None else psi.to(torch.float64)
    advantage = psi if baseline is None else psi - baseline.to(torch.float64)
    discount = torch.as_tensor(gamma, dtype=torch.float64) ** step_in_episode(dones).to(torch.float64)
    return {
        "total": total_returns(rewards, dones, gamma),
        "reward_to_go": rtg,
        "reward_to_go_baseline": advantage,
        "reward_to_go_gamma_t": rtg * discount,
        "reward_to_go_baseline_gamma_t": advantage * discount,
    }
