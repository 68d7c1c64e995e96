"""What one `ReinforceModule` training step leaves behind (Lightning layer).

`StepRecord`: what the step estimated the gradient from, for callbacks that look at it before the
optimizer step (`GradientDiagnostics`). `snapshot_state`: the baseline's state before the step, put
back when the step fails. `describe_non_finite`: the message of a step that failed on a non-finite loss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.loss import LossTerms
from pg_lightning.core.tree import leaves

__all__ = ["StepRecord", "describe_non_finite", "snapshot_state"]


class StepRecord(NamedTuple):
    """What the last ``training_step`` estimated the gradient from (all ``(B,)`` but the batch, no gradient).

    - ``batch``: the `EpisodeBatch`;
    - ``psi``: ``Psi_t`` before the baseline (bootstrapped where the baseline bootstraps);
    - ``baseline``: ``b(s_t)``;
    - ``weights``: the loss's per-step weights (after normalisation and ``gamma^t``): the
      estimate is ``(1/E) sum_t weights_t grad log pi(a_t|s_t)``;
    - ``final_values``: ``(E,)`` ``V(s_T)`` that bootstrapped truncated episodes, or None.
    """

    batch: EpisodeBatch
    psi: Tensor
    baseline: Tensor
    weights: Tensor
    final_values: Tensor | None = None


def snapshot_state(module: nn.Module) -> dict[str, Tensor] | None:
    """A copy of ``module``'s parameters and buffers (None when it has none)."""
    state = module.state_dict()
    return {k: v.detach().clone() for k, v in state.items()} if state else None


def _stats(x: Tensor) -> str:
    """How many entries of ``x`` are not finite, and the range of the others."""
    x = x.detach().double()
    finite = x[torch.isfinite(x)]
    rng = f"[{finite.min().item():.4g}, {finite.max().item():.4g}]" if finite.numel() else "[]"
    return f"{int((~torch.isfinite(x)).sum())} non-finite of {x.numel()}, finite range {rng}"


def describe_non_finite(
    module: nn.Module,
    epoch: int,
    batch: EpisodeBatch,
    psi: Tensor,
    terms: LossTerms | None = None,
    baseline_terms: dict[str, Tensor] | None = None,
) -> str:
    """Which term of the loss is not finite, and the batch statistics that explain it.

    Args:
        module: the module whose parameters are checked (named in the message when not finite).
        epoch: the failing epoch.
        batch: the step's batch.
        psi: the step's returns ``Psi_t``.
        terms: the loss's terms, or None when the returns failed before the loss was built.
        baseline_terms: the baseline's own loss terms.
    """
    if terms is None:
        bad = ["the returns Psi"]
    else:
        named = {"policy_loss": terms.policy_loss, "entropy_loss": terms.entropy_loss, **(baseline_terms or {})}
        bad = [k for k, v in named.items() if not torch.isfinite(v).all()] or ["loss"]
    lines = [
        f"non-finite loss at epoch {epoch}: {', '.join(bad)} is not finite",
        f"  observations: {_stats(torch.cat([leaf.float().flatten() for leaf in leaves(batch.obs)]))}",
        f"  rewards: {_stats(batch.rewards)}",
        f"  returns Psi: {_stats(psi)}",
    ]
    if terms is not None:
        lines.append(f"  log-prob weights: {_stats(terms.weights)}")
    bad_params = [n for n, p in module.named_parameters() if not torch.isfinite(p).all()]
    if bad_params:
        lines.append(f"  non-finite parameters: {', '.join(bad_params)}")
    lines.append("  nothing was updated; the last checkpoint holds the last good parameters")
    return "\n".join(lines)
