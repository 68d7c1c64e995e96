"""On-policy collection of complete episodes from a gymnasium vector environment."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.connection
import signal
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import Tensor, nn
from torch.distributions import Distribution

import pg_lightning.envs.tabular_envs  # noqa: F401  (registers the tabular envs, here and in async workers)
from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.errors import ConfigError, EnvError
from pg_lightning.core.policies import draw
from pg_lightning.core.recurrent import is_recurrent, reset_state
from pg_lightning.core.tree import as_tensors, flatten, leaves, map_tree, map_trees, unflatten
from pg_lightning.envs.env_factory import EPISODE_CAP, episode_limit
from pg_lightning.envs.vector_envs import VECTORIZATION_MODES, autoreset_mode, make_vector_env

__all__ = ["EPISODE_CAP", "VECTORIZATION_MODES", "EpisodeCollector", "episode_limit", "make_vector_env"]

REWARD_LIMIT = float(np.finfo(np.float32).max)  # rewards are stored as float32 (exact for integers up to 2**24)

log = logging.getLogger(__name__)


class _Storage:
    """Preallocated time-major arrays ``(capacity, num_envs, *shape)``, one per field, that double when full.

    The collector writes each vector step straight into row ``t`` (and the next observations into
    row ``t + 1``): no per-step allocation or copy beyond the env's own.
    """

    def __init__(self, num_envs: int, capacity: int = 256) -> None:
        self.num_envs = num_envs
        self.capacity = capacity
        self.data: dict[str, np.ndarray] = {}

    def add(self, name: str, example: np.ndarray, dtype: Any = None) -> np.ndarray:
        """A field shaped as ``example`` ``(num_envs, *shape)``, zero-filled."""
        shape = np.shape(example)[1:]
        self.data[name] = np.zeros((self.capacity, self.num_envs, *shape), dtype=dtype or np.asarray(example).dtype)
        return self.data[name]

    def add_step_fields(self, action: np.ndarray, active: np.ndarray, log_probs: np.ndarray | None) -> None:
        """The fields of a step, shaped at the first step: actions, rewards (float64, as the env gives them: checked
        and cast once, in the batch), the two flags, and the log-probs when they are recorded."""
        self.add("actions", action)
        for name, dtype in (("rewards", np.float64), ("terminated", np.bool_), ("truncated", np.bool_)):
            self.add(name, active, dtype)
        if log_probs is not None:
            self.add("log_probs", log_probs)

    def reserve(self, t: int) -> None:
        """Room for rows ``0 .. t + 1``."""
        if t + 1 >= self.capacity:
            self.capacity *= 2
            self.data = {k: np.concatenate([v, np.zeros_like(v)]) for k, v in self.data.items()}


class EpisodeCollector:
    """Collects complete episodes with the current policy, without bias toward short ones.

    Each call to :meth:`collect` resets the envs and runs them until exactly ``num_episodes``
    episodes have been *started and finished*. An env that finishes an episode starts another
    one while fewer than ``num_episodes`` have been started, and otherwise goes idle (its steps
    are discarded). Every episode that starts is run to its end, and whether one starts never
    depends on how it will go, so the episodes are an i.i.d. sample of the policy's episodes.
    (Stopping at the first ``num_episodes`` *finished* episodes of parallel envs would drop
    the long ones in flight: a bias toward short episodes.)

    How the envs are stepped:

    - the sync vector env of :func:`make_vector_env`: copy by copy, only the active ones (an idle
      copy costs nothing; see :meth:`_collect_direct`);
    - any other vector env (async, a native batched env, ``data.vector_env``, any vector wrapper):
      as a whole, idle copies included. ``SAME_STEP`` autoreset gives each episode's last
      observation in ``info["final_obs"]``; ``NEXT_STEP`` returns it as the observation and spends
      the copy's next step on the reset (no transition; the action is ignored). Observations,
      rewards and flags may be numpy arrays or torch tensors (``NumpyToTorch``); actions are
      then handed over as tensors. The batch's ``stepped`` counts every copy-step the env ran.

    Args:
        envs: a vector env, e.g. from :func:`make_vector_env` (autoreset ``SAME_STEP`` or ``NEXT_STEP``).
        seed: the run's seed.
        rank: global rank of the process (DDP), so ranks get different streams.

    Randomness: collection number ``epoch`` seeds every env and the action sampler from
    ``(seed, rank, epoch)``. A batch is therefore a function of those three numbers and the
    policy's parameters alone, and a run resumed from a checkpoint (which restores ``epoch``
    through :meth:`state_dict`) collects exactly what the uninterrupted run would have.
    """

    def __init__(self, envs: gym.vector.VectorEnv, seed: int = 0, rank: int = 0) -> None:
        self.autoreset = autoreset_mode(envs)
        self.envs = envs
        self.num_envs = envs.num_envs
        self.seed = int(seed)
        self.rank = int(rank)
        self.epoch = 0
        spec = getattr(envs.unwrapped, "spec", None)
        self.env_id = spec.id if spec is not None else type(envs.unwrapped).__name__
        self.generator = torch.Generator()  # actions are drawn on the CPU, whatever the policy's device

    def _reseed(self) -> list[int] | int:
        """Seed the sampler for this epoch; return the envs' seeds (one per copy; one int for a batched env,
        whose ``reset`` takes one seed for all its copies, as gymnasium's ``VectorEnv.reset`` does)."""
        words = np.random.SeedSequence([self.seed, self.rank, self.epoch]).generate_state(self.num_envs + 2)
        self.generator.manual_seed(int(words[-2]) << 32 | int(words[-1]))
        seeds = [int(w) for w in words[: self.num_envs]]
        per_copy = isinstance(self.envs.unwrapped, (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv))
        return seeds if per_copy else seeds[0]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])

    def collect(self, policy: nn.Module, num_episodes: int, record_log_probs: bool = False) -> EpisodeBatch:
        """Run ``policy`` until ``num_episodes`` complete episodes are collected.

        Inference is batched over the envs, without gradient, on the policy's device with its
        current parameters. Returns an :class:`EpisodeBatch` on the CPU.

        A policy with an ``actor(generator)`` method (ours) is sampled through the
        ``obs -> (batch_action, env_action)`` function it returns, built once per collection;
        any other ``obs -> Distribution`` module through :func:`~pg_lightning.core.policies.sample`
        (and ``dist.env_action`` when the distribution has one). A recurrent policy
        (:func:`~pg_lightning.core.recurrent.is_recurrent`) carries one state per env copy, which
        restarts from zero whenever that copy starts an episode: its actor is called as
        ``act(obs, starts)``, or, without an actor, ``policy.step(obs, state)`` is.

        ``record_log_probs``: the batch also keeps ``log_probs``, the log-probability of each
        action under the policy at the moment it was drawn (for checks; it costs a distribution per step).
        """
        if num_episodes < 1:
            raise ConfigError(f"data.episodes_per_epoch must be >= 1, got {num_episodes}")
        device = next(policy.parameters()).device
        recurrent = is_recurrent(policy)
        act = self._actor(policy, recurrent, record_log_probs)
        with self._env_errors():
            obs, _ = self.envs.reset(seed=self._reseed())
        torch_env = any(isinstance(leaf, Tensor) for leaf in leaves(obs))  # NumpyToTorch & co: tensors in and out
        obs = _numpy(obs) if torch_env else obs
        n = self.num_envs
        active = np.arange(n) < num_episodes
        starts = np.ones(n, dtype=np.bool_)  # the copies whose obs is the first of an episode
        resetting = np.zeros(n, dtype=np.bool_)  # NEXT_STEP: the copies whose next step is a reset
        next_step = self.autoreset == AutoresetMode.NEXT_STEP
        to_start = num_episodes - int(active.sum())
        single_envs, clip = self._direct_envs()

        store = _Storage(n)
        obs_spec = flatten(obs)[1]  # None: one array (the common case, kept cheap); else a Dict/Tuple observation
        plain = obs_spec is None
        obs_keys = [f"obs/{i}" for i in range(len(flatten(obs)[0]))]
        for key, leaf in zip(obs_keys, flatten(obs)[0], strict=True):
            store.add(key, leaf)[0] = leaf
        store.add("kept", active)
        final_obs: list[tuple[int, int, Any]] = []  # (env, t, obs) of every finished episode
        final_rows: list[tuple[int, np.ndarray]] = []  # NEXT_STEP: (t, envs) whose last observation is in row t + 1
        stepped = t = 0
        # inference mode for the whole loop: the batch's tensors are made after it, usable by autograd
        with torch.inference_mode():
            if single_envs is not None:  # the sync copies of make_vector_env: a tight loop of their own
                t, stepped = self._collect_direct(store, act, device, single_envs, clip, active, to_start,
                                                  recurrent, record_log_probs, final_obs, obs_spec, obs_keys)  # fmt: skip
            while active.any():  # any other vector env, stepped as a whole
                store.reserve(t)
                data = store.data
                obs = data["obs/0"][t] if plain else unflatten(obs_spec, [data[k][t] for k in obs_keys])
                obs_t = torch.as_tensor(obs, device=device) if plain else as_tensors(obs, device)
                out = act(obs_t, torch.from_numpy(starts)) if recurrent else act(obs_t)
                action = out[0].cpu().numpy()
                env_action = action if out[1] is out[0] else out[1].cpu().numpy()
                if t == 0:
                    store.add_step_fields(action, active, out[2].cpu().numpy() if record_log_probs else None)
                    data = store.data
                data["kept"][t] = active & ~resetting if next_step else active
                data["actions"][t] = action
                if record_log_probs:
                    data["log_probs"][t] = out[2].cpu().numpy()
                reward, terminated, truncated = data["rewards"][t], data["terminated"][t], data["truncated"][t]
                next_rows = [data[k][t + 1] for k in obs_keys]
                try:
                    next_obs, reward[:], terminated[:], truncated[:], info = _numpy_step(
                        self.envs, env_action, torch_env
                    )
                    for row, leaf in zip(next_rows, flatten(next_obs)[0], strict=True):
                        row[:] = leaf
                    stepped += n
                    done = (terminated | truncated) & ~resetting  # NEXT_STEP: a reset step is no transition
                    ends = np.flatnonzero(done & active)
                    if next_step:  # the last observation is the one returned; the copy resets at its next step
                        final_rows.append((t, ends))  # kept in storage row t + 1: gathered at the end
                        starts, resetting = resetting, done
                    else:
                        final_obs.extend(
                            (i, t, _numpy(info["final_obs"][i]) if torch_env else info["final_obs"][i]) for i in ends
                        )
                        starts = done
                except Exception as err:  # the policy's own errors above stay as they are
                    raise self._env_error(err) from err
                if len(ends):
                    # the first `to_start` finished envs (in env order) go on; the rest go idle
                    active[ends[to_start:]] = False
                    to_start = max(0, to_start - len(ends))
                t += 1
        self.epoch += 1
        batch = self._flatten(store, t, final_obs, obs_spec, final_rows)._replace(stepped=torch.tensor(stepped))
        # Observations may be +-inf (the network clamps them to +-1e9: encoders.FlattenFloat); NaN is an
        # env fault. Rewards must be finite (and within float32's range: _check_rewards).
        for name in ("obs", "final_obs"):
            for values in leaves(getattr(batch, name)):
                if values.is_floating_point() and torch.isnan(values).any():
                    raise EnvError(
                        f"env.id={self.env_id!r} returned non-finite {name}: {int(torch.isnan(values).sum())} NaN of "
                        f"{values.numel()} values (+-inf is accepted: the network clamps it to +-1e9; NaN is not)"
                    )
        if not torch.isfinite(batch.rewards).all():
            raise EnvError(
                f"env.id={self.env_id!r} returned non-finite rewards "
                f"({int((~torch.isfinite(batch.rewards)).sum())} of {batch.rewards.numel()} values)"
            )
        self._check_rewards(batch.rewards)
        return batch._replace(rewards=batch.rewards.float())

    def _collect_direct(
        self,
        store: _Storage,
        act: Callable[..., tuple[Tensor, ...]],
        device: torch.device,
        single_envs: list[gym.Env],
        clip: tuple[np.ndarray, np.ndarray] | None,
        active: np.ndarray,
        to_start: int,
        recurrent: bool,
        record_log_probs: bool,
        final_obs: list[tuple[int, int, Any]],
        obs_spec: Any,
        obs_keys: list[str],
    ) -> tuple[int, int]:
        """The collection loop for the sync copies of :func:`make_vector_env`: ``(T, copy-steps)``.

        Why not ``SyncVectorEnv.step`` (an exception to using gymnasium's vector API as is): it steps every copy,
        and at the end of an epoch most copies are idle (their episodes would be discarded). Here an idle copy is
        left where it is, and a copy that ends an episode is reset (exactly as ``SAME_STEP`` autoreset would:
        ``env.reset()`` with no seed) only if it starts another one; the active copies see the same calls as under
        ``SyncVectorEnv``, so the batch is identical (a test compares both paths, another a plain reference loop).

        The same rule and the same calls as the general loop in :meth:`collect` (a test compares it with a
        plain reference loop), written for the per-step cost: the active copies are a Python list, each
        copy's step is stored as it comes (only the non-zero flags), and nothing else runs per copy. Runs
        until ``active`` (updated in place) is all false.
        """
        n = len(single_envs)
        plain = obs_spec is None  # one array per observation (else a Dict/Tuple: one storage field per leaf)
        running = np.flatnonzero(active).tolist()
        starts = torch.ones(n, dtype=torch.bool)
        t = stepped = 0
        while running:
            store.reserve(t)
            data = store.data
            rows = [data[k][t] for k in obs_keys]
            obs_t = torch.as_tensor(rows[0], device=device) if plain else as_tensors(unflatten(obs_spec, rows), device)
            out = act(obs_t, starts) if recurrent else act(obs_t)
            action = out[0].cpu().numpy()
            env_action = action if out[1] is out[0] else out[1].cpu().numpy()
            if clip is not None:
                env_action = np.clip(env_action, *clip)
            if t == 0:
                store.add_step_fields(action, active, out[2].cpu().numpy() if record_log_probs else None)
                data = store.data
            data["kept"][t] = active
            data["actions"][t] = action
            if record_log_probs:
                data["log_probs"][t] = out[2].cpu().numpy()
            reward, terminated, truncated = data["rewards"][t], data["terminated"][t], data["truncated"][t]
            next_rows = [data[k][t + 1] for k in obs_keys]
            for row, now in zip(next_rows, rows, strict=True):
                row[:] = now  # idle copies keep their observation
            next_obs = next_rows[0]
            ended = []
            try:
                for i in running:
                    o, reward[i], te, tr, _ = single_envs[i].step(env_action[i])
                    if te or tr:
                        terminated[i], truncated[i] = te, tr
                        final_obs.append((i, t, o))
                        ended.append(i)
                        if to_start > 0:  # the first `to_start` copies to end (in env order) start another episode
                            to_start -= 1
                            o, _ = single_envs[i].reset()  # as SAME_STEP autoreset would: no seed
                        else:
                            active[i] = False
                    if plain:
                        next_obs[i] = o
                    else:
                        for row, value in zip(next_rows, flatten(o)[0], strict=True):
                            row[i] = value
            except Exception as err:  # the policy's own errors above stay as they are
                raise self._env_error(err) from err
            stepped += len(running)
            if ended:
                running = [i for i in running if active[i]]
            if recurrent:
                starts = torch.zeros(n, dtype=torch.bool)
                starts[ended] = True
            t += 1
        return t, stepped

    def _actor(self, policy: nn.Module, recurrent: bool, with_log_prob: bool) -> Callable[..., tuple[Tensor, ...]]:
        """The function that draws one vector step's actions: the policy's ``actor`` when it has one,
        else one built on ``forward`` (feedforward) or ``step`` (recurrent)."""
        actor = getattr(policy, "actor", None)
        if actor is not None:
            return actor(self.generator, with_log_prob=True) if with_log_prob else actor(self.generator)
        if not recurrent:
            return partial(_act_from_distribution, policy, self.generator, with_log_prob)
        state: list[Any] = []

        def act(obs: Any, starts: Tensor) -> tuple[Tensor, ...]:
            if not state:  # [zero state of the copies, their state], made at the first step
                initial = policy.initial_state(self.num_envs)
                state[:] = [initial, initial]
            elif bool(starts.any()):
                state[1] = reset_state(state[1], state[0], starts)
            dist, state[1] = policy.step(obs, state[1])
            return _drawn(dist, self.generator, with_log_prob)

        return act

    def _check_rewards(self, rewards: Tensor) -> None:
        """``(B,)`` float64 rewards: one beyond float32's range (the batch stores rewards as float32) is named as such."""
        over = rewards.abs() > REWARD_LIMIT
        if over.any():
            raise EnvError(
                f"env.id={self.env_id!r} returned a finite reward of {float(rewards[over][0]):.6g}, beyond float32's "
                f"range (+-{REWARD_LIMIT:.6g}): pg_lightning stores rewards as float32 (integers exactly up to 2**24); "
                "scale the rewards down (e.g. gymnasium.wrappers.TransformReward in env.wrappers)"
            )

    @contextlib.contextmanager
    def _env_errors(self) -> Iterator[None]:
        """Inside: an exception becomes :meth:`_env_error`'s EnvError."""
        try:
            yield
        except Exception as err:
            raise self._env_error(err) from err

    def _env_error(self, err: Exception) -> EnvError:
        """An exception from the envs (or an async worker) as an EnvError naming the env.

        An async worker that died (killed by a signal, e.g. SIGKILL from the OOM killer, or exited)
        shows in the parent as an ``EOFError`` or ``BrokenPipeError`` on its pipe: the error then
        names the worker and how it died, and the other workers are stopped at once (none is left
        behind, and a later ``close`` has nothing to wait for).
        """
        dead = self._dead_workers() if isinstance(err, (EOFError, OSError)) else []
        if dead:
            self._stop_workers()
            return EnvError(
                f"env.id={self.env_id!r}: {'; '.join(dead)} during collection "
                f"({type(err).__name__} on its pipe); the other workers were stopped"
            )
        return EnvError(f"env.id={self.env_id!r} raised {type(err).__name__} during collection: {err}")

    def _async_env(self) -> gym.vector.AsyncVectorEnv | None:
        envs = getattr(self.envs, "unwrapped", self.envs)
        return envs if isinstance(envs, gym.vector.AsyncVectorEnv) else None

    def _dead_workers(self, wait: float = 2.0) -> list[str]:
        """``"async worker i of n (pid p) was killed by SIGKILL"`` for each worker that is gone, if any.

        A worker's pipe closes a moment before the worker can be reaped: wait up to ``wait`` seconds
        for one of the workers to end (its sentinel), then reap those that ended.
        """
        envs = self._async_env()
        if envs is None or envs.closed:
            return []
        processes = list(envs.processes)
        ended = multiprocessing.connection.wait([p.sentinel for p in processes], timeout=wait)
        for p in processes:
            if p.sentinel in ended:
                p.join(timeout=5)  # its files are closed: it is exiting, and waitpid returns at once
        dead = []
        for i, p in enumerate(processes):
            code = p.exitcode
            if code is None or (code == 0 and envs.parent_pipes[i] is None):
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

    def _stop_workers(self) -> None:
        """Terminate every async worker still alive, close the pipes, and mark the vector env closed."""
        envs = self._async_env()
        if envs is None or envs.closed:
            return
        for p in envs.processes:
            if p.is_alive():
                p.terminate()
        for pipe in envs.parent_pipes:
            if pipe is not None:
                pipe.close()
        for p in envs.processes:
            p.join(timeout=10)
            if p.is_alive():  # pragma: no cover  (a worker that ignores SIGTERM)
                p.kill()
                p.join(timeout=10)
        envs.closed = True  # gymnasium's close() would wait on the dead worker's pipe

    def _direct_envs(self) -> tuple[list[gym.Env] | None, tuple[np.ndarray, np.ndarray] | None]:
        """The single envs to step one by one, and the Box bounds to clip to, for a sync vector env.

        Only for the exact env :func:`make_vector_env` builds (a ``SyncVectorEnv``, under
        ``ClipAction`` for Box actions): any other vector wrapper must see every step, so those
        envs (and async ones) are stepped as a whole.
        """
        envs, clip = self.envs, None
        if type(envs) is gym.wrappers.vector.ClipAction:
            space = envs.env.single_action_space
            envs, clip = envs.env, (space.low, space.high)
        if type(envs) is not gym.vector.SyncVectorEnv:
            return None, None
        return list(envs.envs), clip

    @staticmethod
    def _flatten(
        store: _Storage,
        t: int,
        final_obs: list[tuple[int, int, Any]],
        obs_spec: Any,
        final_rows: list[tuple[int, np.ndarray]] = (),
    ) -> EpisodeBatch:
        """Time-major ``(T, N, ...)`` rows ``0 .. t - 1`` to flat ``(B, ...)``, env by env, so episodes are contiguous.

        The final observations are ``final_obs`` (``(env, t, obs)``), or, for ``NEXT_STEP`` envs, those stored in
        the rows after the ``final_rows`` (``(t, envs)``), gathered at once.
        """
        mask = store.data["kept"][:t].T  # (N, T)
        flat = {
            k: torch.from_numpy(np.ascontiguousarray(np.swapaxes(v[:t], 0, 1)[mask]))
            for k, v in store.data.items()
            if k != "kept"
        }
        obs = unflatten(obs_spec, [flat[f"obs/{i}"] for i in range(len(flatten(obs_spec)[0]))])
        if final_rows:
            ts = np.concatenate([np.full(len(envs), step) for step, envs in final_rows])
            envs = np.concatenate([envs for _, envs in final_rows])
            order = np.lexsort((ts, envs))  # by env, then by time
            keys = [f"obs/{i}" for i in range(len(flatten(obs_spec)[0]))]
            final = unflatten(obs_spec, [torch.from_numpy(store.data[k][ts[order] + 1, envs[order]]) for k in keys])
        else:
            order = [o for _, _, o in sorted(final_obs, key=lambda e: (e[0], e[1]))]
            final = map_trees(lambda *xs: torch.from_numpy(np.stack(xs)), *order)
        return EpisodeBatch(
            obs=obs,
            actions=flat["actions"],
            rewards=flat["rewards"],
            terminated=flat["terminated"],
            truncated=flat["truncated"],
            final_obs=final,
            log_probs=flat.get("log_probs"),
        )

    def close(self) -> None:
        if self._dead_workers(wait=0):
            self._stop_workers()
        else:
            self.envs.close()


def _numpy_step(envs: gym.vector.VectorEnv, actions: np.ndarray, torch_env: bool) -> tuple[Any, ...]:
    """``envs.step``, with actions as tensors for a torch vector env and everything it returns as numpy arrays."""
    if not torch_env:
        return envs.step(actions)
    next_obs, reward, terminated, truncated, info = envs.step(torch.from_numpy(actions))
    return (*_numpy((next_obs, reward, terminated, truncated)), info)


def _numpy(tree: Any) -> Any:
    """Tensors (a torch vector env's observations, rewards, flags) as numpy arrays, on the CPU."""
    return map_tree(lambda x: x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x), tree)


def _act_from_distribution(
    policy: nn.Module, generator: torch.Generator, with_log_prob: bool, obs: Any
) -> tuple[Tensor, ...]:
    """The actor of any ``obs -> Distribution`` policy: the sample, and what the env receives."""
    return _drawn(policy(obs), generator, with_log_prob)


def _drawn(dist: Distribution, generator: torch.Generator, with_log_prob: bool) -> tuple[Tensor, ...]:
    sampled, env_action = draw(dist, generator)
    return (sampled, env_action, dist.log_prob(sampled)) if with_log_prob else (sampled, env_action)
