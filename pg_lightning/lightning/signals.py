"""Signal handling under DDP: a SIGTERM handler that cannot deadlock the ranks (Lightning layer)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import pytorch_lightning as pl
import torch
import torch.distributed as dist

__all__ = ["DeferredSigterm"]


class DeferredSigterm:
    """Lightning's SIGTERM handling under DDP, made unable to deadlock the ranks.

    Two exceptions to Lightning 2.6's own handling, each for a hang seen with 2 gloo ranks:

    - its handler broadcasts from inside the signal handler; when the signal lands while this rank is in
      another collective (the epoch-end metric sync, the gradient all-reduce), the two collectives never
      match. `install` replaces it by one that only records the signal (and forwards it to the ranks this
      process launched, as Lightning's does);
    - its loops also read ``received_sigterm`` locally, at the end of each batch and of each epoch: a rank
      that saw the signal stops there alone while the others go on into the next collective. So the handler
      does not set ``received_sigterm``; `agree` (called by every rank at each epoch start, the same point
      on every rank) all-reduces what the ranks have recorded and sets ``received_sigterm`` on all of them,
      and Lightning's broadcast before the epoch's first batch then stops every rank together.

    A signal therefore stops the run at the next epoch start, with ``on_exception.ckpt``.
    """

    def __init__(self) -> None:
        self.pending = False

    def install(self, trainer: pl.Trainer) -> None:
        """Replace Lightning's SIGTERM handler (only possible from the main thread; elsewhere: nothing)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def record(signum: int, frame: FrameType | None) -> None:
            launcher = trainer.strategy.launcher
            if not self.pending and launcher is not None:
                launcher.kill(signum)
            self.pending = True

        signal.signal(signal.SIGTERM, record)

    def agree(self, trainer: pl.Trainer) -> None:
        """Collective: when any rank has recorded a SIGTERM, every rank's ``received_sigterm`` becomes true."""
        flag = torch.tensor([1 if self.pending else 0], device=trainer.strategy.root_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            trainer._signal_connector.received_sigterm = True
