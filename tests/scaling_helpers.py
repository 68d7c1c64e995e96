"""Test-only Lightning callback for tests/test_scaling.py, passed to train.py on the command line:

    +callbacks.rank_dump._target_=tests.scaling_helpers.RankDump

(the subprocess needs the repository root on PYTHONPATH).
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig


class RankDump(pl.Callback):
    """Every rank saves ``<default_root_dir>/ranks/rank<global rank>.pt`` at the end of training.

    Contents: ``world_size``, ``rank``; ``initial`` and ``final`` (the module's state_dict at the
    start and end of training); ``batches`` (the EpisodeBatch of every epoch); ``grads`` (every
    parameter's gradient when the optimizer steps, after DDP's all-reduce); ``metrics`` (this
    rank's ``trainer.callback_metrics`` at the end); ``hydra_mode`` and ``hydra_output_dir``, how
    Hydra ran this process (``RUN``/``MULTIRUN``, its output directory).
    """

    def __init__(self) -> None:
        self.initial: dict[str, torch.Tensor] = {}
        self.batches: list = []
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.initial = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        self.batches.append(batch)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:
        self.grads.append({n: p.grad.detach().clone() for n, p in pl_module.named_parameters() if p.grad is not None})

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        path = Path(trainer.default_root_dir) / "ranks" / f"rank{trainer.global_rank}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "world_size": trainer.world_size,
                "rank": trainer.global_rank,
                "initial": self.initial,
                "final": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
                "batches": self.batches,
                "grads": self.grads,
                "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
                "hydra_mode": HydraConfig.get().mode.name if HydraConfig.initialized() else None,
                "hydra_output_dir": HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None,
            },
            path,
        )
