"""Baselines ``b(s_t)`` subtracted from ``Psi_t``. Plain torch.

Baseline invariance: for any ``b`` that does not depend on the action ``a_t`` (nor on anything
that ``a_t`` influences), ``E[grad log pi(a_t|s_t) * b] = 0``, so ``Psi_t - b`` keeps the
estimator unbiased while it can lower its variance.

Every baseline is an ``nn.Module`` with one interface, so the loss never changes when one is
added: ``forward(batch, psi) -> (B,)`` values to subtract (no gradient flows through them into
the policy), and ``loss(batch, psi) -> dict`` of extra terms to minimise for baselines that
learn (empty for the others). State that must survive across epochs goes in buffers, so it is
saved in checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pg_lightning.batch import EpisodeBatch

__all__ = ["Baseline", "ConstantBaseline", "MeanBaseline", "NoBaseline"]


class Baseline(nn.Module):
    """Interface. Subclasses implement :meth:`forward`; learned ones also :meth:`loss`."""

    def forward(self, batch: EpisodeBatch, psi: Tensor) -> Tensor:
        """``(B,)`` baseline value for every step of ``batch``, given ``psi`` ``(B,)``."""
        raise NotImplementedError

    def loss(self, batch: EpisodeBatch, psi: Tensor) -> dict[str, Tensor]:
        """Extra loss terms to minimise (named, each a scalar). None by default."""
        return {}


class NoBaseline(Baseline):
    """``b = 0``: the plain estimator."""

    def forward(self, batch: EpisodeBatch, psi: Tensor) -> Tensor:
        return torch.zeros_like(psi)


class ConstantBaseline(Baseline):
    """``b = value``, a fixed number: exactly unbiased, whatever the value (a teaching case)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = float(value)

    def forward(self, batch: EpisodeBatch, psi: Tensor) -> Tensor:
        return torch.full_like(psi, self.value)


class MeanBaseline(Baseline):
    """``b = mean_t Psi_t`` over all steps of the batch.

    The common practical choice. It uses the batch's own returns, so each episode's return
    is (with weight ``1/B``) inside its own baseline: a bias of order ``1/episodes`` that
    vanishes as the batch grows. A constant baseline or a leave-one-out baseline is exactly
    unbiased.
    """

    def forward(self, batch: EpisodeBatch, psi: Tensor) -> Tensor:
        return psi.mean().expand_as(psi).detach()
