"""What one ``self.log`` key costs per epoch in Lightning: an empty LightningModule logging N keys.

    python benchmarks/log_cost.py            # 0 and 16 keys, tensor values, 200 one-batch epochs each

Prints ms per epoch for each key count (no logger, no checkpoints, no progress bar: only Lightning's
result collection), so ``(ms(16) - ms(0)) / 16`` is the per-key cost. Not a test: timings vary run to run.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root
from benchmarks.common import machine


class Logs(pl.LightningModule):
    def __init__(self, keys: int) -> None:
        super().__init__()
        self.keys = keys
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        value = torch.tensor(1.0)
        for k in range(self.keys):
            self.log(f"m{k}", value, on_step=False, on_epoch=True, batch_size=1)
        return (self.w**2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return [torch.zeros(1)]


def ms_per_epoch(keys: int, epochs: int = 200) -> float:
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    start = time.perf_counter()
    trainer.fit(Logs(keys))
    return (time.perf_counter() - start) / epochs * 1e3


def main() -> None:
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(1)
    print(machine())
    ms_per_epoch(1, 20)  # warm-up
    rows = {keys: ms_per_epoch(keys) for keys in (0, 16)}
    for keys, ms in rows.items():
        print(f"{keys} keys: {ms:.3f} ms per epoch")
    print(f"per key: {(rows[16] - rows[0]) / 16:.3f} ms per epoch")


if __name__ == "__main__":
    main()
