"""The REINFORCE loss: the policy gradient theorem as a differentiable scalar. Plain torch.

For a batch of ``E`` complete episodes the loss is

    L = -(1/E) * sum_episodes sum_t [ w_t * log pi(a_t|s_t) * A_t  +  c_H * H(pi(.|s_t)) ]

so that ``-grad L`` (without the entropy term) is the estimator of ``grad J`` with

- ``Psi_t = G_t`` (``return_type="reward_to_go"``) or ``R(tau)`` (``return_type="total"``),
- ``A_t = Psi_t - b(s_t)``, optionally normalised to zero mean and unit variance over the batch,
- ``w_t = gamma^t`` when ``discount_weight=True`` (the exact discounted theorem), else 1.

The sum over each episode is divided by the number of episodes, not by the number of steps:
a mean over steps would divide by a random denominator (the batch's total length) and change
the estimator. The entropy bonus has the same per-episode form, so ``c_H`` weighs the entropy
of a whole episode against its return, whatever the episodes' lengths.

Which options are unbiased for ``grad J = grad E[sum_t gamma^t r_t]``:

- ``total`` with any ``gamma``;
- ``reward_to_go`` with ``discount_weight=True`` for any ``gamma``, and with
  ``discount_weight=False`` when ``gamma = 1``;
- ``reward_to_go`` with ``discount_weight=False`` and ``gamma < 1`` is what practical
  algorithms use: it drops ``gamma^t`` and is biased for the discounted objective;
- either with a baseline of the state; advantage normalisation rescales and shifts by batch
  statistics (a convenient but biased choice).
"""

from __future__ import annotations

from typing import Annotated, Literal, NamedTuple, get_args

import torch
from torch import Tensor, nn

from pg_lightning.core.arguments import Interval, check_arguments
from pg_lightning.core.errors import ArgumentError
from pg_lightning.core.returns import discounted_returns, step_in_episode, total_returns

__all__ = ["RETURN_TYPES", "LossTerms", "ReinforceLoss"]

ReturnType = Literal["reward_to_go", "total"]
RETURN_TYPES = get_args(ReturnType)


class LossTerms(NamedTuple):
    """Named terms of :class:`ReinforceLoss`. ``loss`` is what to differentiate."""

    loss: Tensor
    policy_loss: Tensor
    entropy_loss: Tensor
    entropy: Tensor
    """Mean per-step policy entropy (detached), for logging."""
    weights: Tensor
    """``(B,)`` the factor ``w_t * A_t`` multiplying each ``log pi(a_t|s_t)`` (detached)."""


class ReinforceLoss(nn.Module):
    """REINFORCE loss with the options of the policy gradient theorem.

    Args:
        gamma: discount in ``[0, 1]``.
        return_type: ``"reward_to_go"`` (``G_t``, causality) or ``"total"`` (``R(tau)``).
        discount_weight: multiply each term by ``gamma^t`` (``t`` counted from the episode's
            start): the exact form of the discounted theorem. Only for ``reward_to_go``
            (``gamma^t R(tau)`` is not an estimator of anything).
        normalize_advantages: standardise ``A_t = Psi_t - b_t`` over the batch.
        entropy_coef: weight ``c_H >= 0`` of the entropy bonus (0 disables it).
        advantage_clip: clip ``A_t`` (after normalisation) to ``[-c, c]``: bounds the weight of rare extreme
            returns, at the price of a bias; ``None``: no clipping.

    Examples:
        >>> loss_fn = ReinforceLoss(gamma=1.0)
        >>> rewards = torch.tensor([1.0, 1.0, 1.0])
        >>> dones = torch.tensor([False, True, True])
        >>> psi = loss_fn.returns(rewards, dones)
        >>> psi
        tensor([2., 1., 1.])
        >>> log_probs = torch.zeros(3, requires_grad=True)
        >>> loss_fn(log_probs, psi, dones).loss.backward()
        >>> log_probs.grad  # -Psi_t / n_episodes
        tensor([-1.0000, -0.5000, -0.5000])
    """

    def __init__(
        self,
        *,
        gamma: Annotated[float, Interval(ge=0, le=1)] = 0.99,
        return_type: ReturnType = "reward_to_go",
        discount_weight: bool = False,
        normalize_advantages: bool = False,
        entropy_coef: Annotated[float, Interval(ge=0)] = 0.0,
        advantage_clip: Annotated[float, Interval(gt=0)] | None = None,
    ) -> None:
        super().__init__()
        check_arguments(type(self), locals())
        if discount_weight and return_type != "reward_to_go":
            raise ArgumentError(
                "discount_weight",
                "discount_weight=true needs return_type=reward_to_go "
                "(gamma^t multiplies the reward-to-go G_t; R(tau) already starts at t=0)",
            )
        self.gamma = float(gamma)
        self.return_type = return_type
        self.discount_weight = bool(discount_weight)
        self.normalize_advantages = bool(normalize_advantages)
        self.entropy_coef = float(entropy_coef)
        self.advantage_clip = advantage_clip

    def returns(
        self,
        rewards: Tensor,
        dones: Tensor,
        final_values: Tensor | None = None,
        bootstrap: Tensor | None = None,
    ) -> Tensor:
        """``Psi_t`` before any baseline: ``G_t`` or ``R(tau)``, ``(B,)``.

        Args:
            rewards: ``(B,)``, complete episodes one after another.
            dones: ``(B,)`` bool, true at each episode's last step.
            final_values: ``(E,)`` ``V(s_T)`` of each episode's final observation, to bootstrap
                the episodes in ``bootstrap``: their ``Psi_t`` gains ``gamma^(T-t) V(s_T)``
                (``gamma^T V(s_T)`` for the total return), as if ``gamma V(s_T)`` were added to the
                last reward. The values of the other episodes are ignored (even NaN).
            bootstrap: ``(B,)`` bool, the steps that end an episode which is to be bootstrapped:
                truncated and *not* terminated (gymnasium's ``TimeLimit`` sets both when the
                last allowed step reaches a terminal state, whose future is zero).
        """
        if final_values is not None:
            if bootstrap is None:
                raise ValueError("bootstrapping with final_values needs the bootstrap flags")
            ends = torch.nonzero(dones).squeeze(-1)
            tail = torch.zeros_like(rewards)
            tail[ends] = torch.where(bootstrap[ends], final_values.to(rewards.dtype), 0.0)
            rewards = rewards + self.gamma * tail
        if self.return_type == "total":
            return total_returns(rewards, dones, self.gamma)
        return discounted_returns(rewards, dones, self.gamma)

    def forward(
        self,
        log_probs: Tensor,
        psi: Tensor,
        dones: Tensor,
        baseline: Tensor | None = None,
        entropy: Tensor | None = None,
    ) -> LossTerms:
        """Loss terms for one batch of complete episodes.

        Args:
            log_probs: ``(B,)`` ``log pi(a_t|s_t)``, with gradient.
            psi: ``(B,)`` from :meth:`returns`.
            dones: ``(B,)`` bool, last step of each episode; the last entry must be true.
            baseline: ``(B,)`` ``b(s_t)``, or None for no baseline.
            entropy: ``(B,)`` policy entropy at each step, needed when ``entropy_coef > 0``.
        """
        num_episodes = int(dones.sum())
        if num_episodes == 0 or not bool(dones[-1]):
            raise ValueError("a REINFORCE batch must hold complete episodes: dones[-1] must be true")
        advantages = psi if baseline is None else psi - baseline
        if self.normalize_advantages and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        if self.advantage_clip is not None:
            advantages = advantages.clamp(-self.advantage_clip, self.advantage_clip)
        if self.discount_weight:
            advantages = advantages * self.gamma ** step_in_episode(dones).to(advantages.dtype)
        weights = advantages.detach()
        policy_loss = -(log_probs * weights).sum() / num_episodes
        if entropy is None:
            if self.entropy_coef > 0:
                raise ValueError("entropy_coef > 0 needs the per-step entropy")
            mean_entropy = torch.full((), float("nan"))
            entropy_loss = torch.zeros((), device=log_probs.device)
        else:
            mean_entropy = entropy.mean()
            entropy_loss = -self.entropy_coef * entropy.sum() / num_episodes
        return LossTerms(
            loss=policy_loss + entropy_loss,
            policy_loss=policy_loss,
            entropy_loss=entropy_loss,
            entropy=mean_entropy.detach(),
            weights=weights,
        )
