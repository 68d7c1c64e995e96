"""A torchmetrics metric for "mean over the last N episodes"."""

from __future__ import annotations

from typing import Annotated, Any

import torch
from torch import Tensor
from torchmetrics import Metric

from pg_lightning.core.arguments import Interval, check_arguments

__all__ = ["WindowMean"]


class WindowMean(Metric):
    """Mean of the last ``window`` values seen (e.g. returns of the last 100 finished episodes).

    Why not ``torchmetrics.wrappers.Running(MeanMetric(), window)``: its window counts
    ``update`` calls, not values, it keeps ``2 * window`` states that DDP syncs one by one,
    and its position in the window is a plain attribute that checkpoints do not save. This
    metric keeps one ring buffer and a count, both saved in checkpoints (persistent states).

    Under DDP, ``ReinforceModule`` feeds every rank all ranks' values (all-gathered) and turns
    the sync off (``sync_on_compute=False``), so the window is the last ``window`` values over all
    ranks, identical on every rank. With the sync on, ``compute`` would be the mean over every
    rank's own window (``window`` values per rank).

    Args:
        window: number of most recent values to average.

    Examples:
        >>> m = WindowMean(window=3)
        >>> m.update(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        >>> m.compute()
        tensor(3.)
    """

    full_state_update = False
    values: Tensor  # state (window,): the ring buffer of the last values
    filled: Tensor  # state (window,) bool: the slots of values that hold one
    count: Tensor  # state (): the number of values seen

    def __init__(self, window: Annotated[int, Interval(ge=1)] = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_arguments(type(self), {"window": window})
        self.window = window
        self.add_state("values", default=torch.zeros(window), dist_reduce_fx="cat", persistent=True)
        self.add_state("filled", default=torch.zeros(window, dtype=torch.bool), dist_reduce_fx="cat", persistent=True)
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum", persistent=True)

    def update(self, values: Tensor) -> None:
        values = values.detach().flatten().to(self.values.dtype)[-self.window :]
        positions = (self.count + torch.arange(len(values), device=self.values.device)) % self.window
        self.values[positions] = values
        self.filled[positions] = True
        self.count += len(values)

    def compute(self) -> Tensor:
        values, filled = self.values.flatten(), self.filled.flatten()
        return values[filled].mean() if filled.any() else torch.tensor(float("nan"))
