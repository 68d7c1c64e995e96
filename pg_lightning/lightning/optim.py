"""The optimizer and learning-rate schedule of `ReinforceModule` (Lightning layer).

Holds the factory types of ``model.optimizer`` and ``model.scheduler`` (Hydra ``_partial_`` entries),
the default optimizer, the optimizer's param groups (a baseline with its own ``lr`` gets a group of
its own), and the checks of a schedule's length: when the module is built, and when a checkpoint is
resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.optim.optimizer import ParamsT

from pg_lightning.core.errors import ConfigError

__all__ = [
    "DEFAULT_OPTIMIZER",
    "OptimizerFactory",
    "SchedulerFactory",
    "check_resumable_schedule",
    "make_optimizer",
    "make_scheduler",
    "scheduler_horizon",
]

OptimizerFactory = Callable[[ParamsT], torch.optim.Optimizer]
"""``params -> Optimizer``, e.g. a Hydra ``_partial_`` of ``torch.optim.Adam``."""

SchedulerFactory = Callable[[torch.optim.Optimizer], LRScheduler]
"""``optimizer -> LRScheduler``, e.g. a Hydra ``_partial_`` of a ``torch.optim.lr_scheduler`` class."""

DEFAULT_OPTIMIZER: OptimizerFactory = partial(torch.optim.Adam, lr=1e-2)
"""`ReinforceModule`'s optimizer when none is given: Adam at ``lr=1e-2`` (as ``conf/train.yaml``)."""

# The arguments of torch.optim.lr_scheduler classes that give the schedule's length in steps
# (LinearLR, ConstantLR, PolynomialLR: total_iters; CosineAnnealingLR: T_max; OneCycleLR:
# total_steps). Here a step is an update, i.e. an epoch: conf/scheduler sets them to trainer.max_epochs.
_HORIZON_KEYS = ("total_iters", "T_max", "total_steps")


def make_optimizer(
    factory: OptimizerFactory, params: Iterable[nn.Parameter], baseline: nn.Module
) -> torch.optim.Optimizer:
    """``factory`` over ``params`` (all the module's parameters, the baseline's included).

    A baseline with parameters and its own ``lr`` attribute gets a param group of its own, at that
    ``lr``, after the group of the other parameters.
    """
    baseline_params = list(baseline.parameters())
    baseline_lr = getattr(baseline, "lr", None)
    if not baseline_params or baseline_lr is None:
        return factory(params)
    own = {id(p) for p in baseline_params}
    rest = [p for p in params if id(p) not in own]
    return factory([{"params": rest}, {"params": baseline_params, "lr": baseline_lr}])


def make_scheduler(factory: SchedulerFactory, optimizer: torch.optim.Optimizer) -> LRScheduler:
    """``factory(optimizer)``; a wrong or missing argument of the scheduler class is a ConfigError."""
    try:
        return factory(optimizer)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.scheduler: {err}") from err


def scheduler_horizon(scheduler: SchedulerFactory | None) -> dict[str, int]:
    """The length arguments that a scheduler partial sets (``total_iters``, ``T_max``, ``total_steps``), checked.

    With ``scheduler=linear`` ``total_iters`` is ``${trainer.max_epochs}``, so a run without an
    epoch limit (``-1`` or null) fails here, when the module is built (before training), naming the key.

    Raises:
        ConfigError: a length argument is not a positive integer.
    """
    keywords = getattr(scheduler, "keywords", None) or {}
    horizon = {k: keywords[k] for k in _HORIZON_KEYS if k in keywords}
    if horizon.get("total_steps", 0) is None:  # OneCycleLR: epochs * steps_per_epoch instead
        del horizon["total_steps"]
    for key, value in horizon.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"model.scheduler.{key} must be a positive integer (the updates the schedule spans), got {value!r}; "
                "scheduler=linear|cosine set it to trainer.max_epochs: give trainer.max_epochs a positive value, "
                f"or set model.scheduler.{key}"
            )
    return horizon


def check_resumable_schedule(checkpoint: Mapping[str, Any], has_scheduler: bool, horizon: Mapping[str, int]) -> None:
    """Refuse (ConfigError) to resume ``checkpoint`` with another schedule than its run's.

    Args:
        checkpoint: a Lightning checkpoint (its ``lr_schedulers`` states).
        has_scheduler: whether this run configures a ``model.scheduler``.
        horizon: this run's schedule length arguments (`scheduler_horizon`).
    """
    saved = checkpoint.get("lr_schedulers") or []
    if bool(saved) != has_scheduler:
        had = "with a learning-rate schedule" if saved else "without a learning-rate schedule"
        raise ConfigError(
            f"model.scheduler: the checkpoint was trained {had}; resume with the model.scheduler "
            "(and trainer.max_epochs) of that run, or start a fresh run"
        )
    for key, value in horizon.items():
        if saved and key in saved[0] and saved[0][key] != value:
            raise ConfigError(
                f"model.scheduler.{key}: the checkpoint's schedule spans {saved[0][key]} updates, this config's "
                f"{value}; a resume continues the checkpoint's schedule, so resume with trainer.max_epochs="
                f"{saved[0][key]} (scheduler=linear|cosine use it), or start a fresh run"
            )
