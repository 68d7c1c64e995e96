"""Env calls that never return: which env copy the main thread is stuck in, and a stop that names it.

An env's ``step`` (or ``reset``) may block for good: a simulator that deadlocks, a socket that never answers. Nothing
in the collection loop can notice, since the loop itself is what is blocked. So the checks here look at the main
thread from outside, without any per-step cost:

- `env_call_in_progress` reads a stack (the main thread's, from a signal handler or from another thread through
  ``sys._current_frames``) and says which env call of the collector it is in: ``env copy 3 of 8`` of a sync
  vector env, the async workers that have not answered, or the whole batched env;
- `StepWatchdog` (``data.step_timeout``) is a daemon thread that samples that stack: a call that is still the same
  call (the same frame object) after ``timeout`` seconds raises an `EnvError` naming the copy in the main thread
  (through ``SIGALRM``, which also interrupts a blocking system call); where that cannot work (a call blocked in C
  code that retries, a DDP rank whose peers wait in a collective) it stops the process with `hard_stop`;
- `hard_stop` prints one line, stops this process's descendants (async env workers, DDP ranks it launched) and
  exits.

Reading another thread's frames is what debuggers and samplers do; it holds the GIL, so the frames do not change
while they are read. Layer: envs (gymnasium; no Lightning).
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import CodeType, FrameType, TracebackType
from typing import Any, NoReturn

import gymnasium as gym
import torch.distributed as dist

from pg_lightning.core.errors import EnvError

__all__ = ["EnvCall", "StepWatchdog", "env_call_in_progress", "hard_stop", "main_thread_frame", "rank_prefix"]

GRACE = 10.0
"""Seconds a stuck call gets to leave after it was interrupted, before `hard_stop` ends the process."""


@dataclass(frozen=True)
class EnvCall:
    """An env call of the collector in progress on a thread's stack.

    ``frame``: the frame of the call (the collection loop's callee: the same object for as long as this one call
    lasts, so sampling it twice tells a stuck call from a new one). `where` describes it, e.g.
    ``"env copy 3 of 8 of 'Sleepy-v0' (step)"``: read only when it is reported (it reads the stack and polls
    async workers' pipes).
    """

    frame: FrameType
    kind: str
    loop: FrameType
    stack: tuple[FrameType, ...]

    def where(self) -> str:
        """Which env copy the call is in (see the class)."""
        return _describe(self.kind, self.loop, list(self.stack))


def _loop_codes() -> dict[CodeType, str]:
    """The collection loops' code objects: ``collect_direct`` steps single copies, ``EpisodeCollector.collect`` a
    whole vector env (imported here: both modules import this one)."""
    from pg_lightning.envs.collector import EpisodeCollector, collect_direct

    return {collect_direct.__code__: "copies", EpisodeCollector.collect.__code__: "vector"}


def _is_env(value: Any) -> bool:
    return isinstance(value, (gym.Env, gym.vector.VectorEnv))


def _env_of(frame: FrameType) -> Any:
    """The env a frame is a call of (its ``self``, or an ``envs`` argument), or None."""
    local = frame.f_locals
    for name in ("self", "envs"):
        if _is_env(local.get(name)):
            return local[name]
    return None


def env_call_in_progress(frame: FrameType | None) -> EnvCall | None:
    """The collector's env call that the stack ending at ``frame`` is in (its innermost frame), or None.

    None when the stack holds no collection loop, or when the loop is running its own code or the policy's
    rather than an env's. Reading another thread's frames needs the GIL (CPython's default build; a
    free-threaded build is not supported here).
    """
    codes = _loop_codes()
    stack: list[FrameType] = []
    f = frame
    while f is not None:
        kind = codes.get(f.f_code)
        if kind is not None:
            callee = stack[-1] if stack else None
            if callee is None or _env_of(callee) is None:
                return None
            return EnvCall(callee, kind, f, tuple(stack))
        stack.append(f)
        f = f.f_back
    return None


def _collector_of(frame: FrameType | None) -> Any:
    """The ``EpisodeCollector`` whose ``collect`` is on the stack from ``frame`` outwards."""
    while frame is not None:
        owner = frame.f_locals.get("self")
        if owner is not None and hasattr(owner, "env_id") and hasattr(owner, "envs"):
            return owner
        frame = frame.f_back
    return None


def _describe(kind: str, loop: FrameType, stack: list[FrameType]) -> str:
    """Which env copy a call of the loop ``loop`` is in (``stack``: the frames inside it, innermost first)."""
    collector = _collector_of(loop)
    env_id = repr(collector.env_id) if collector is not None else "the env"
    call = stack[-1].f_code.co_name  # step or reset (or a helper around them)
    call = "step" if "step" in call else "reset" if "reset" in call else call
    if kind == "copies":  # collect_direct: copy i of single_envs
        i, copies = loop.f_locals.get("i"), loop.f_locals.get("single_envs")
        if isinstance(i, int) and isinstance(copies, list):
            return f"env copy {i} of {len(copies)} of {env_id} ({call})"
        return f"an env copy of {env_id} ({call})"
    envs = collector.envs if collector is not None else _env_of(stack[-1])
    unwrapped = getattr(envs, "unwrapped", envs)
    if isinstance(unwrapped, gym.vector.AsyncVectorEnv):
        # step_wait reads the workers' answers in order: the copy it waits for, and the later ones without one
        reading = next((f.f_locals.get("env_idx") for f in stack if f.f_locals.get("self") is unwrapped), None)
        pipes = unwrapped.parent_pipes
        if isinstance(reading, int):
            waiting = [reading, *(i for i in range(reading + 1, len(pipes)) if not _ready(pipes[i]))]
        else:
            waiting = [i for i, pipe in enumerate(pipes) if pipe is not None and not _ready(pipe)]
        if waiting:
            which = f"copies {_ints(waiting)}" if len(waiting) > 1 else f"copy {waiting[0]}"
            return f"env {which} of {unwrapped.num_envs} of {env_id} (async {call}: its worker has not answered)"
        return f"the async workers of {env_id} ({call})"
    if isinstance(unwrapped, gym.vector.SyncVectorEnv):  # stepped as a whole: the copy is deeper on the stack
        copies = {id(e.unwrapped): i for i, e in enumerate(unwrapped.envs)}
        for f in stack:
            env = _env_of(f)
            if env is not None and not isinstance(env, gym.vector.VectorEnv) and id(env.unwrapped) in copies:
                return f"env copy {copies[id(env.unwrapped)]} of {unwrapped.num_envs} of {env_id} ({call})"
    return f"the batched env {type(unwrapped).__name__} of {env_id} ({call})"


def _ready(pipe: Any) -> bool:
    try:
        return bool(pipe.poll())
    except (OSError, ValueError):  # closed
        return True


def _ints(values: list[int]) -> str:
    return ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else "")


def main_thread_frame() -> FrameType | None:
    """The main thread's innermost frame now (from any thread)."""
    return sys._current_frames().get(threading.main_thread().ident or -1)


def _descendants() -> list[int]:
    """This process's descendants, children first (Linux's /proc parent links; elsewhere the children that
    multiprocessing started): async env workers, DDP ranks this process launched, and their own children."""
    pids = [p.pid for p in multiprocessing.active_children() if p.pid is not None]
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                parent = int(stat.rsplit(")", 1)[-1].split()[1])  # the field after the state: the parent's pid
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    level = [os.getpid()]
    while level:
        level = [child for pid in level for child in parents.get(pid, []) if child not in found]
        found += level
    return found + [pid for pid in pids if pid not in found]


def hard_stop(message: str, status: int) -> NoReturn:
    """Print ``message`` as one line on stderr, stop this process's descendants, and exit with ``status`` at once.

    For a process that cannot leave by itself (its main thread blocked in a call that nothing interrupts): no
    exception handler, ``atexit`` hook or checkpoint write runs; what is on disk is the last checkpoint written.
    The descendants (async env workers, DDP ranks this process launched, their workers) get SIGTERM, then
    SIGKILL a second later. The line is written straight to file descriptor 2 (no lock that a stuck thread may
    hold), and the exit happens whatever fails on the way.
    """
    try:
        with contextlib.suppress(OSError):
            os.write(2, (" ".join(message.split()) + "\n").encode(errors="replace"))
        descendants = _descendants()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in descendants:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            if descendants and sig == signal.SIGTERM:
                time.sleep(1.0)
    finally:
        os._exit(status)


def rank_prefix() -> str:
    """``"rank 1: "`` under DDP (torch.distributed initialised with several processes), else nothing."""
    return f"rank {dist.get_rank()}: " if _distributed() else ""


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class StepWatchdog:
    """``data.step_timeout``: an env call that lasts longer than ``timeout`` seconds stops the run, naming the copy.

    Used as a context manager around a collection (``EpisodeCollector.collect``). A daemon thread samples the main
    thread's stack every ``min(1, timeout / 4)`` seconds; a call of the collector into an env that is still the same
    call (`env_call_in_progress`: the same frame) after ``timeout`` seconds is stuck:

    - in a single process, the main thread gets ``SIGALRM``, whose handler (installed only inside the ``with``)
      raises the `EnvError`; the signal also interrupts a blocking system call (a ``sleep``, a socket read). If
      the call is still there ``grace`` seconds later (blocked in C code that retries), `hard_stop` (exit 1);
    - under DDP (torch.distributed initialised), `hard_stop` at once: the other ranks wait for this one in a
      collective, and an exception here would meet them in another one (Lightning's checkpoint barrier); they
      fail on the lost peer instead.

    Outside the main thread (no signal handler can be set there) only `hard_stop` applies. A call stuck in C code
    that holds the GIL stops every Python thread, this one too: for that case the thread keeps
    ``faulthandler.dump_traceback_later(timeout + grace + 5, exit=True)`` re-armed while it runs (a C timer that
    needs no GIL: it prints every thread's stack and exits with status 1). That timer is the process's only one:
    an armed ``dump_traceback_later`` of someone else's (pytest's ``faulthandler_timeout``) is replaced.
    """

    def __init__(self, timeout: float, grace: float = GRACE) -> None:
        self.timeout = float(timeout)
        self.grace = float(grace)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: EnvError | None = None
        self._previous: Any = None
        self._handler_set = False

    def __enter__(self) -> None:
        self._stop.clear()
        self._pending = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGALRM)
            signal.signal(signal.SIGALRM, self._on_alarm)
            self._handler_set = True
        self._thread = threading.Thread(target=self._watch, name="pg_lightning-step-watchdog", daemon=True)
        self._thread.start()

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        try:
            if self._thread is not None:
                self._thread.join()  # short: the thread only waits on _stop, or fires (pthread_kill) and returns
        finally:
            faulthandler.cancel_dump_traceback_later()
            if self._handler_set:
                # a SIGALRM sent by _fire was delivered before the join returned, and its handler skips raising
                # once _stop is set: restoring the handler now cannot let that signal kill the process
                signal.signal(signal.SIGALRM, self._previous if self._previous is not None else signal.SIG_DFL)
                self._handler_set = False

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            if not self._stop.is_set():  # the collection already ended: the call did return after all
                raise pending
            return
        if callable(self._previous):  # someone else's alarm
            self._previous(signum, frame)

    def _watch(self) -> None:
        period = min(1.0, self.timeout / 4)
        seen: EnvCall | None = None
        since = time.monotonic()
        while not self._stop.wait(period):
            faulthandler.dump_traceback_later(self.timeout + self.grace + 5, exit=True)
            call = env_call_in_progress(main_thread_frame())
            now = time.monotonic()
            if call is None or seen is None or call.frame is not seen.frame:
                seen, since = call, now
                continue
            if now - since >= self.timeout:
                self._fire(call, now - since)
                return

    def _fire(self, call: EnvCall, seconds: float) -> None:
        message = (
            f"{rank_prefix()}{call.where()} did not return within data.step_timeout={self.timeout:g} s "
            f"(stuck for {seconds:.0f} s); the run stops"
        )
        if not self._handler_set or _distributed():
            hard_stop(f"Env error: {message}; the last checkpoint written is the last good one", 1)
        self._pending = EnvError(message)
        main = threading.main_thread().ident
        if main is not None:
            signal.pthread_kill(main, signal.SIGALRM)
        if self._stop.wait(self.grace):
            return  # the collection ended: the error was raised
        now = env_call_in_progress(main_thread_frame())
        if now is not None and now.frame is call.frame:
            hard_stop(f"Env error: {message}; the call could not be interrupted", 1)
