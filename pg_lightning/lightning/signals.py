"""Signal handling that cannot deadlock DDP ranks or interrupt a checkpoint write (Lightning layer)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

import pytorch_lightning as pl
import torch
import torch.distributed as dist

__all__ = ["DeferredSignals"]

_SIGUSR1 = getattr(signal, "SIGUSR1", None)  # not on Windows


class DeferredSignals:
    """Lightning's SIGTERM (under DDP) and SLURM SIGUSR1 handling, acted on at the next epoch start.

    Exceptions to Lightning 2.6's own signal handling, each for a failure seen in the tests:

    - its SIGTERM handler broadcasts from inside the signal handler; when the signal lands while this rank is
      in another collective (the epoch-end metric sync, the gradient all-reduce), the two collectives never
      match and every rank hangs;
    - its loops also read ``received_sigterm`` locally, at the end of each batch and of each epoch: a rank that
      saw the signal stops there alone while the others go on into the next collective;
    - its SLURM requeue handler (SIGUSR1, ``SLURMEnvironment(auto_requeue=True)``) writes ``hpc_ckpt_<n>.ckpt``
      from inside the signal handler; when the signal lands during another checkpoint write, the two nest in
      fsspec's one filesystem transaction and the run crashes.

    So the handlers installed here only record the signal, and `at_epoch_start` (called by every rank at each
    epoch start, the same point on every rank) acts: under DDP it first all-reduces what the ranks recorded;
    SIGUSR1 runs Lightning's own handler there, and SIGTERM sets ``received_sigterm`` on every rank, so
    Lightning's broadcast before the epoch's first batch stops them together (with ``on_exception.ckpt``).

    Args:
        ddp: whether the run has several processes (SIGTERM is deferred only then; a single process keeps
            Lightning's handler, which is safe there).
    """

    def __init__(self, ddp: bool) -> None:
        self.ddp = ddp
        self.pending_sigterm = False
        self.pending_sigusr1 = False
        self._sigusr1_handler: Callable[[int, FrameType | None], object] | None = None

    def install(self, trainer: pl.Trainer) -> None:
        """Replace the handlers (only possible from the main thread; elsewhere: nothing)."""
        if threading.current_thread() is not threading.main_thread():
            return
        if self.ddp:

            def record_sigterm(signum: int, frame: FrameType | None) -> None:
                launcher = trainer.strategy.launcher
                if not self.pending_sigterm and launcher is not None:
                    launcher.kill(signum)  # the ranks this process launched, as Lightning's handler does
                self.pending_sigterm = True

            signal.signal(signal.SIGTERM, record_sigterm)
        current = signal.getsignal(_SIGUSR1) if _SIGUSR1 is not None else None
        if _SIGUSR1 is not None and callable(current):  # Lightning's SLURM requeue handler

            def record_sigusr1(signum: int, frame: FrameType | None) -> None:
                self.pending_sigusr1 = True

            self._sigusr1_handler = current
            signal.signal(_SIGUSR1, record_sigusr1)

    def at_epoch_start(self, trainer: pl.Trainer) -> None:
        """Act on the signals recorded so far (a collective under DDP: every rank calls it at each epoch start)."""
        sigterm, sigusr1 = self.pending_sigterm, self.pending_sigusr1
        if self.ddp:
            flags = torch.tensor([int(sigterm), int(sigusr1)], device=trainer.strategy.root_device)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            sigterm, sigusr1 = bool(flags[0]), bool(flags[1])
        if sigusr1 and self._sigusr1_handler is not None and _SIGUSR1 is not None:
            self.pending_sigusr1 = False
            self._sigusr1_handler(_SIGUSR1, None)  # Lightning's: hpc_ckpt_<n>.ckpt, then scontrol requeue
        if sigterm:
            trainer._signal_connector.received_sigterm = True
