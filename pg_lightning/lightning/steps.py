"""What one `ReinforceModule` training step leaves behind (Lightning layer).

`StepRecord`: what the step estimated the gradient from, for callbacks that look at it before the
optimizer step (`GradientDiagnostics`). `snapshot_state`: the baseline's state before the step, put
back when the step fails. `describe_non_finite`: the message of a step that failed on a non-finite loss.
`all_finite` and `non_finite_parameters`: the check of the parameters after each optimizer step (and
before the first), and `saved_checkpoints`: the files that hold the last finite parameters, for the
messages of a failing step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.loss import LossTerms
from pg_lightning.core.tree import leaves

__all__ = [
    "StepRecord",
    "all_finite",
    "describe_non_finite",
    "describe_non_finite_update",
    "non_finite_parameters",
    "non_finite_state",
    "saved_checkpoints",
    "snapshot_state",
]


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


def all_finite(tensors: Iterable[Tensor]) -> bool:
    """Whether every entry of ``tensors`` is finite: one fused max-abs per tensor (``torch._foreach_norm``, which
    keeps NaN and cannot overflow as a 2-norm would) and one host sync; about 50 us for the default MLP on a CPU."""
    tensors = [t for t in tensors if t.numel() and (t.is_floating_point() or t.is_complex())]
    if not tensors:
        return True
    with torch.no_grad():
        norms = list(torch._foreach_norm(tensors, math.inf))
        if len({n.dtype for n in norms}) > 1:  # (torch.stack takes one dtype)
            norms = [n.double() for n in norms]
        return bool(torch.stack(norms).max().isfinite())


def non_finite_parameters(module: nn.Module) -> list[str]:
    """The names of ``module``'s parameters that hold a NaN or an infinity."""
    return [n for n, p in module.named_parameters() if not torch.isfinite(p.detach()).all()]


def non_finite_state(module: nn.Module, optimizers: Iterable[torch.optim.Optimizer] = ()) -> list[str]:
    """`non_finite_parameters`, and ``optimizer state`` when some floating tensor of the optimizers'
    state (Adam's moments, ...) is not finite: what must not go into a checkpoint."""
    bad = non_finite_parameters(module)
    states = [v for opt in optimizers for state in opt.state.values() for v in state.values() if isinstance(v, Tensor)]
    if not all_finite(states):
        bad.append("optimizer state")
    return bad


def saved_checkpoints(trainer: Any) -> list[str]:
    """The checkpoint files the trainer's checkpoint callbacks have written so far (``last.ckpt``,
    ``best.ckpt``, ...) and that exist: each was written at the end of an epoch whose update passed
    the finiteness checks. ``[]`` without a trainer or checkpoint callbacks."""
    paths: list[str] = []
    for callback in getattr(trainer, "checkpoint_callbacks", None) or []:
        for attr in ("last_model_path", "best_model_path"):
            path = getattr(callback, attr, None)
            if isinstance(path, str) and path and path not in paths and os.path.isfile(path):
                paths.append(path)
    return paths


def _kept(saved: list[str] | None) -> str:
    """Where the last finite parameters are, for a message: the checkpoint files, or that there is none."""
    if saved is None:  # outside a Trainer
        return ""
    if not saved:
        return "; no checkpoint was written before it"
    return f"; the checkpoints written before it hold finite parameters: {', '.join(saved)}"


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
    saved: list[str] | None = None,
) -> str:
    """Which term of the loss is not finite, and the batch statistics that explain it.

    Args:
        module: the module whose parameters are checked (named in the message when not finite).
        epoch: the failing epoch.
        batch: the step's batch.
        psi: the step's returns ``Psi_t``.
        terms: the loss's terms, or None when the returns failed before the loss was built.
        baseline_terms: the baseline's own loss terms.
        saved: the checkpoint files written so far (`saved_checkpoints`), None outside a Trainer.
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
    bad_params = non_finite_parameters(module)
    if bad_params:  # (ReinforceModule checks them before the first update and after each: not in a Trainer's run)
        lines.append(
            f"  non-finite parameters: {', '.join(bad_params)}: they were not finite when this step began "
            "(nothing was updated by it); no checkpoint of them is good"
        )
    else:
        lines.append(f"  nothing was updated: the parameters are still finite{_kept(saved)}")
    return "\n".join(lines)


def describe_non_finite_update(epoch: int, bad: list[str], lrs: list[float], saved: list[str] | None) -> str:
    """One line: the optimizer step of ``epoch`` made the parameters ``bad`` non-finite, from a finite
    loss and gradient; ``lrs``: the learning rates of its param groups; ``saved``: `saved_checkpoints`."""
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    lr = ", ".join(f"{x:g}" for x in lrs)
    return (
        f"non-finite parameters after the optimizer step of epoch {epoch}: {shown} (the loss and the gradient "
        f"were finite: the update itself overflowed, at lr {lr}); lower model.optimizer.lr. They are not "
        f"saved (the run stops before the epoch's checkpoints){_kept(saved)}"
    )
