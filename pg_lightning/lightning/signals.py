"""Signal handling under DDP: a SIGTERM handler that cannot deadlock the ranks (Lightning layer)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import pytorch_lightning as pl

__all__ = ["sigterm_without_collective"]


def sigterm_without_collective(trainer: pl.Trainer) -> None:
    """Replace Lightning's SIGTERM handler, under DDP, by one that only records the signal.

    Lightning 2.6's handler broadcasts from inside the signal handler; when the signal lands while
    this rank is in another collective (the epoch-end metric sync, the gradient all-reduce), the two
    collectives never match and every rank hangs. The loop itself already broadcasts rank 0's
    ``received_sigterm`` before each batch and stops every rank at the same point, so recording
    the signal (and forwarding it to the ranks this process launched, as Lightning does) is enough.
    An exception to Lightning's own signal handling, for that deadlock. Does nothing outside the
    main thread, where no signal handler can be set.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    connector = trainer._signal_connector

    def record(signum: int, frame: FrameType | None) -> None:
        launcher = trainer.strategy.launcher
        if not connector.received_sigterm and launcher is not None:
            launcher.kill(signum)
        connector.received_sigterm = True

    signal.signal(signal.SIGTERM, record)
