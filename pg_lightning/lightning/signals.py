"""Signal handling that cannot deadlock DDP ranks, interrupt a checkpoint write, or wait forever on a stuck env.

`DeferredSignals` is a Lightning callback: ``pg_lightning.run`` adds it to the Trainer, and a Trainer of your own
takes it as any callback (``Trainer(callbacks=[DeferredSignals()])``). The LightningModule itself installs nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.utilities.exceptions import SIGTERMException

from pg_lightning.envs.watchdog import EnvCall, env_call_in_progress, hard_stop, main_thread_frame, rank_prefix

__all__ = ["NO_PROGRESS_AFTER", "STUCK_AFTER", "DeferredSignals", "StoppedInCollection", "sigterm_received"]

_SIGUSR1 = getattr(signal, "SIGUSR1", None)  # not on Windows

STUCK_AFTER = 10.0
"""Seconds after SIGTERM after which a main thread still in the same env call is stuck: the process stops at once."""

NO_PROGRESS_AFTER = 20.0
"""Seconds after SIGTERM for which a main thread that stays in the same innermost call (a collective waiting for a
stuck peer, a deadlocked C call) is left, before the process stops at once (exit status 143)."""

_received = threading.Event()
_active: DeferredSignals | None = None  # the installed instance of this process (reset in a forked child)


def sigterm_received() -> bool:
    """Whether this process received SIGTERM during a fit (the CLI then exits with status 143 whatever ends it)."""
    return _received.is_set()


class StoppedInCollection(SIGTERMException):
    """SIGTERM arrived while the main thread was in an env call of the collector: the epoch's collection is dropped.

    ``where`` names the call, e.g. ``"env copy 3 of 8 of 'Sleepy-v0' (step)"``.
    """

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where


class DeferredSignals(pl.Callback):
    """SIGTERM and SLURM's SIGUSR1 acted on at safe points, and a stop within seconds when an env is stuck.

    Exceptions to Lightning 2.6's own signal handling, each for a failure seen in the tests:

    - its SIGTERM handler broadcasts from inside the signal handler; when the signal lands while this rank is
      in another collective (the epoch-end metric sync, the gradient all-reduce), the two collectives never
      match and every rank hangs;
    - its loops also read ``received_sigterm`` locally, at the end of each batch and of each epoch: a rank that
      saw the signal stops there alone while the others go on into the next collective;
    - its SLURM requeue handler (SIGUSR1, ``SLURMEnvironment(auto_requeue=True)``) writes ``hpc_ckpt_<n>.ckpt``
      from inside the signal handler; when the signal lands during another checkpoint write, the two nest in
      fsspec's one filesystem transaction and the run crashes;
    - it acts only at the end of a batch: a run whose env blocks for good in ``step`` (a deadlocked simulator,
      a socket that never answers) never gets there, and under DDP the other ranks wait in a collective;
    - its subprocess launcher's child-process observer SIGKILLs the main process within 5 s of a rank exiting
      with an error: a rank stopped for a stuck env would turn the run's exit status 143 into 137.

    So the handlers installed here only record the signal, and `at_epoch_start` (called by every rank at each
    epoch start, the same point on every rank) acts: under DDP it first all-reduces what the ranks recorded;
    SIGUSR1 runs Lightning's own handler there, and SIGTERM sets ``received_sigterm`` on every rank, so
    Lightning's broadcast before the epoch's first batch stops them together (with ``on_exception.ckpt``).

    A stuck env gets a stop of its own:

    - in a single process, SIGTERM that arrives while the main thread is in an env call of the collector raises
      `StoppedInCollection` at once (the epoch's collection is dropped; ``on_exception.ckpt`` holds the last
      update, and a resume collects that epoch again, with the same seeds);
    - a monitor thread learns of SIGTERM through ``signal.set_wakeup_fd`` (so also while the main thread is
      blocked in C code, e.g. a DDP collective, where no Python handler can run). It forwards the signal to the
      ranks this process launched. If the main thread is still in the same env call `STUCK_AFTER` seconds later,
      or in the same innermost call for `NO_PROGRESS_AFTER` seconds, it prints one line naming where (e.g.
      ``rank 1: env copy 3 of 8 ... (step) did not return for 10 s (stuck)``) and exits with status 143
      (`pg_lightning.envs.watchdog.hard_stop`): the last checkpoint on disk is the last completed epoch's.
      A healthy run makes progress, so it is left to stop at its safe point, however long its epoch.

    Installed at ``on_train_start`` (from the main thread; elsewhere nothing is installed), removed at the end of
    ``fit`` and on an exception. A process forked while it is installed starts with the default SIGTERM
    handling and no wakeup fd.

    Args:
        ddp: whether the run has several processes (SIGTERM is deferred to the epoch start only then);
            ``None``: from the Trainer's world size.
    """

    def __init__(self, ddp: bool | None = None) -> None:
        self.ddp = ddp
        self.pending_sigterm = False
        self.pending_sigusr1 = False
        self._sigusr1_handler: Callable[[int, FrameType | None], object] | None = None
        self._trainer: Any = None
        self._lock = threading.Lock()
        self._forwarded = False
        self._armed = threading.Event()  # the monitor acts on a SIGTERM only while installed
        self._monitor: threading.Thread | None = None
        self._pipe: tuple[int, int] | None = None  # (read, write): the write end is the wakeup fd
        self._previous_wakeup_fd = -1

    # ---- Lightning hooks

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Install the handlers and the monitor."""
        if self.ddp is None:
            self.ddp = trainer.world_size > 1
        self.install(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Act on the signals recorded so far (`at_epoch_start`)."""
        self.at_epoch_start(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Remove the monitor (Lightning restores the handlers themselves)."""
        self.uninstall()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Remove the monitor at the end of ``fit`` (Lightning restores the handlers themselves)."""
        self.uninstall()

    # ---- the handlers

    def install(self, trainer: pl.Trainer) -> None:
        """Replace the handlers and start the monitor thread (only possible from the main thread; elsewhere: nothing)."""
        global _active
        if threading.current_thread() is not threading.main_thread():
            return
        self._trainer = trainer
        self.pending_sigterm = self._forwarded = False
        _received.clear()
        previous = signal.getsignal(signal.SIGTERM)
        ddp = bool(self.ddp)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            first = not self.pending_sigterm
            self.pending_sigterm = True
            _received.set()
            if first:
                self._forward(signum)
                if self._monitor is None and self._armed.is_set():  # no wakeup fd: the monitor starts here
                    self._start_monitor(wakeup=False)
            if ddp:
                return  # acted on at the next epoch start, by every rank together
            if callable(previous):
                previous(signum, frame)  # Lightning's: received_sigterm, acted on at the end of the batch
            trainer._signal_connector.received_sigterm = True
            call = env_call_in_progress(frame)
            if call is not None:  # the end of the batch comes after the collection: do not wait for a stuck env
                raise StoppedInCollection(call.where())

        signal.signal(signal.SIGTERM, on_sigterm)
        current = signal.getsignal(_SIGUSR1) if _SIGUSR1 is not None else None
        if _SIGUSR1 is not None and callable(current):  # Lightning's SLURM requeue handler

            def record_sigusr1(signum: int, frame: FrameType | None) -> None:
                self.pending_sigusr1 = True

            self._sigusr1_handler = current
            signal.signal(_SIGUSR1, record_sigusr1)
        self._armed.set()
        _active = self
        self._start_monitor(wakeup=True)

    def uninstall(self) -> None:
        """Disarm and stop the monitor thread, and give the wakeup fd back (Lightning restores the handlers)."""
        global _active
        self._armed.clear()
        if _active is self:
            _active = None
        pipe, self._pipe, self._monitor = self._pipe, None, None
        if pipe is None:
            return
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError):
                replaced = signal.set_wakeup_fd(self._previous_wakeup_fd)
                if replaced != pipe[1]:  # someone set another one meanwhile: keep theirs
                    signal.set_wakeup_fd(replaced)
        with contextlib.suppress(OSError):
            os.write(pipe[1], b"\0")  # wakes the monitor, which closes the read end
        with contextlib.suppress(OSError):
            os.close(pipe[1])

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

    # ---- the monitor

    def _forward(self, signum: int) -> None:
        """SIGTERM to the ranks this process launched (Lightning's launcher), once, from whichever thread is first.

        Also retires Lightning's child-process observer (an exception to using the launcher as is): it SIGKILLs
        this process within 5 s of a rank exiting with an error, and a rank stopped for a stuck env exits 143;
        this process stops by itself (its collective fails on the lost rank, or the monitor stops it).
        """
        with self._lock:
            if self._forwarded:
                return
            self._forwarded = True
        for thread in threading.enumerate():
            if thread.name == "child-process-observer" and hasattr(thread, "_child_processes"):
                thread._child_processes = []  # its next check finds every (no) child done, and it ends
        launcher = getattr(getattr(self._trainer, "strategy", None), "launcher", None)
        if launcher is not None:
            with contextlib.suppress(Exception):
                launcher.kill(signum)

    def _start_monitor(self, wakeup: bool) -> None:
        """The monitor thread: with ``wakeup``, woken by the signal's byte on a wakeup fd; else started on SIGTERM."""
        read_fd = -1
        if wakeup:
            read_fd, write_fd = os.pipe()
            os.set_blocking(write_fd, False)
            try:
                previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
            except ValueError:  # not the main thread
                previous = -2
            if previous != -1:  # someone else's wakeup fd (asyncio's, in a notebook): keep it; start on the handler
                if previous >= 0:
                    signal.set_wakeup_fd(previous)
                os.close(read_fd)
                os.close(write_fd)
                return
            self._previous_wakeup_fd = previous
            self._pipe = (read_fd, write_fd)
        self._monitor = threading.Thread(
            target=self._watch, args=(read_fd,), name="pg_lightning-sigterm-monitor", daemon=True
        )
        self._monitor.start()

    def _watch(self, read_fd: int) -> None:
        try:
            while read_fd >= 0:
                data = os.read(read_fd, 64)
                if not self._armed.is_set() or not data:
                    return
                if signal.SIGTERM in data:
                    break
        finally:
            if read_fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(read_fd)
        self.pending_sigterm = True
        _received.set()
        self._forward(signal.SIGTERM)
        start = time.monotonic()
        call_seen, call_since = _call_on_main(), start
        frame_seen, frame_since = main_thread_frame(), start
        while self._armed.is_set():
            time.sleep(0.5)
            if not self._armed.is_set():
                return
            now = time.monotonic()
            call = _call_on_main()
            if call is None or call_seen is None or call.frame is not call_seen.frame:
                call_seen, call_since = call, now
            elif now - call_since >= STUCK_AFTER:
                where = f"{_prefix()}{_where(call)} did not return for {now - call_since:.0f} s (stuck)"
                hard_stop(f"Stopped by SIGTERM: {where}; the last checkpoint written is the last good one", 143)
            frame = main_thread_frame()
            if frame is not frame_seen:
                frame_seen, frame_since = frame, now
            elif now - frame_since >= NO_PROGRESS_AFTER:
                hard_stop(
                    f"Stopped by SIGTERM: {_prefix()}no progress for {now - frame_since:.0f} s after the signal, "
                    f"{_where_is_main()}; the last checkpoint written is the last good one",
                    143,
                )


def _reset_in_child() -> None:
    """After ``fork``: the child starts with the default SIGTERM handling and no wakeup fd of its parent's."""
    global _active
    if _active is None:
        return
    _active = None
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)


def _call_on_main() -> EnvCall | None:
    """The env call the main thread is in, or None (also when reading its stack fails: the stop goes on)."""
    try:
        return env_call_in_progress(main_thread_frame())
    except Exception:  # noqa: BLE001  (a thread's stack read while it runs; the stop goes on without it)
        return None


def _where(call: EnvCall) -> str:
    try:
        return call.where()
    except Exception:  # noqa: BLE001  (describing it must not keep the process from stopping)
        return "an env call"


def _prefix() -> str:
    try:
        return rank_prefix()
    except Exception:  # noqa: BLE001  (the process group may be half torn down; the stop goes on)
        return ""


def _where_is_main() -> str:
    """Where the main thread is now: an env call of the collector, else its innermost function and line."""
    try:
        frame = main_thread_frame()
        call = env_call_in_progress(frame)
        if call is not None:
            return f"stuck in {call.where()}"
        if frame is None:
            return "its main thread gone"
        name = os.path.basename(frame.f_code.co_filename)
        return f"its main thread in {frame.f_code.co_name} ({name}:{frame.f_lineno})"
    except Exception as err:  # noqa: BLE001  (the stop must happen, whatever describing it costs)
        return f"(its state unknown: {type(err).__name__})"
