"""Env faults during collection: an exception as an `EnvError` naming the env, and async workers that died.

An async worker that died (killed by a signal, e.g. SIGKILL from the OOM killer, or exited) shows in the parent
as an ``EOFError`` or ``BrokenPipeError`` on its pipe: `env_error` then names the worker and how it died and stops
the other workers at once (`stop_workers`), so none is left behind and a later ``close`` has nothing to wait for.
Layer: envs (gymnasium).
"""

from __future__ import annotations

import multiprocessing.connection
import signal

import gymnasium as gym
from gymnasium.vector.async_vector_env import AsyncState

from pg_lightning.core.errors import EnvError

__all__ = ["dead_workers", "env_error", "stop_busy_workers", "stop_workers"]


def env_error(envs: gym.vector.VectorEnv, env_id: str, err: Exception) -> EnvError:
    """An exception from ``envs`` (or an async worker) as an EnvError naming ``env_id``.

    An ``EOFError`` or ``OSError`` (``BrokenPipeError``) from a dead async worker names the worker and how it
    died (`dead_workers`), and the other workers are stopped (`stop_workers`).
    """
    dead = dead_workers(envs) if isinstance(err, (EOFError, OSError)) else []
    if dead:
        stop_workers(envs)
        return EnvError(
            f"env.id={env_id!r}: {'; '.join(dead)} during collection "
            f"({type(err).__name__} on its pipe); the other workers were stopped"
        )
    return EnvError(f"env.id={env_id!r} raised {type(err).__name__} during collection: {err}")


def _async_env(envs: gym.vector.VectorEnv) -> gym.vector.AsyncVectorEnv | None:
    envs = getattr(envs, "unwrapped", envs)
    return envs if isinstance(envs, gym.vector.AsyncVectorEnv) else None


def dead_workers(envs: gym.vector.VectorEnv, wait: float = 2.0) -> list[str]:
    """``"async worker i of n (pid p) was killed by SIGKILL"`` for each worker of ``envs`` that is gone, if any.

    A worker's pipe closes a moment before the worker can be reaped: wait up to ``wait`` seconds
    for one of the workers to end (its sentinel), then reap those that ended. Empty for any env but
    an open ``AsyncVectorEnv`` (under any wrappers).
    """
    async_envs = _async_env(envs)
    if async_envs is None or async_envs.closed:
        return []
    processes = list(async_envs.processes)
    ended = multiprocessing.connection.wait([p.sentinel for p in processes], timeout=wait)
    for p in processes:
        if p.sentinel in ended:
            p.join(timeout=5)  # its files are closed: it is exiting, and waitpid returns at once
    dead = []
    for i, p in enumerate(processes):
        code = p.exitcode
        if code is None or (code == 0 and async_envs.parent_pipes[i] is None):
            continue  # alive, or ended after reporting its env's exception (gymnasium's own path)
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
            if -code == signal.SIGKILL:
                how += " (as the out-of-memory killer does)"
        else:
            how = f"exited with code {code}"
        dead.append(f"async worker {i} of {len(processes)} (pid {p.pid}) {how}")
    return dead


def stop_workers(envs: gym.vector.VectorEnv) -> None:
    """Terminate every async worker of ``envs`` still alive, close the pipes, and mark the vector env closed."""
    async_envs = _async_env(envs)
    if async_envs is None or async_envs.closed:
        return
    for p in async_envs.processes:
        if p.is_alive():
            p.terminate()
    for pipe in async_envs.parent_pipes:
        if pipe is not None:
            pipe.close()
    for p in async_envs.processes:
        p.join(timeout=10)
        if p.is_alive():  # pragma: no cover  (a worker that ignores SIGTERM)
            p.kill()
            p.join(timeout=10)
    async_envs.closed = True  # gymnasium's close() would wait on the dead worker's pipe


def stop_busy_workers(envs: gym.vector.VectorEnv) -> None:
    """Stop the async workers of ``envs`` if a call to them is still pending (a collection interrupted by SIGTERM
    or by ``data.step_timeout`` while a worker was stuck): nothing could answer the call, and a later ``close``
    would wait for that answer for good. Nothing for any other vector env, or an idle one."""
    async_envs = _async_env(envs)
    if async_envs is not None and not async_envs.closed and async_envs._state != AsyncState.DEFAULT:
        stop_workers(envs)
