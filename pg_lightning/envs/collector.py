"""On-policy collection of complete episodes from a gymnasium vector environment: `EpisodeCollector`.

The collector runs a policy on the envs until exactly the requested number of episodes have started and finished,
and returns them as one `pg_lightning.core.batch.EpisodeBatch`. Its parts: `pg_lightning.envs.storage` (the step
arrays and their flattening), `pg_lightning.envs.actors` (drawing actions), `pg_lightning.envs.direct_loop` (the
tight loop for the sync copies of `make_vector_env`; any other vector env is stepped as a whole here) and
`pg_lightning.envs.worker_faults` (env errors, dead async workers). Layer: envs (gymnasium and torch; no Lightning).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import Tensor, nn

from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.errors import ConfigError, EnvError
from pg_lightning.core.recurrent import is_recurrent
from pg_lightning.core.tree import StructureError, as_tensors, flatten, leaves, leaves_as, map_tree, unflatten
from pg_lightning.envs.actors import make_actor
from pg_lightning.envs.direct_loop import BadStep, collect_direct, direct_envs
from pg_lightning.envs.env_factory import EPISODE_CAP, episode_limit, seed_spaces, vector_spaces
from pg_lightning.envs.storage import StepStorage
from pg_lightning.envs.vector_envs import VECTORIZATION_MODES, autoreset_mode, make_vector_env
from pg_lightning.envs.worker_faults import dead_workers, env_error, stop_workers

__all__ = ["EPISODE_CAP", "VECTORIZATION_MODES", "EpisodeCollector", "episode_limit", "make_vector_env"]

REWARD_LIMIT = float(np.finfo(np.float32).max)  # rewards are stored as float32 (exact for integers up to 2**24)

log = logging.getLogger(__name__)


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
      copy costs nothing; see `pg_lightning.envs.direct_loop.collect_direct`);
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
        episode_cap: a vector env stepped as a whole whose episode runs past this many steps is an
            `EnvError` (a batched env of one's own that never ends its episodes: one copy of it cannot
            be reset alone, so it cannot be truncated from outside); ``None``: no check. The copies of
            `make_vector_env` carry their own time limit, so the default, :data:`EPISODE_CAP`, never fires for them
            unless their limit is longer.

    Randomness: collection number ``epoch`` seeds every env and the action sampler from
    ``(seed, rank, epoch)``. A batch is therefore a function of those three numbers and the
    policy's parameters alone, and a run resumed from a checkpoint (which restores ``epoch``
    through :meth:`state_dict`) collects exactly what the uninterrupted run would have.
    """

    def __init__(
        self, envs: gym.vector.VectorEnv, seed: int = 0, rank: int = 0, episode_cap: int | None = EPISODE_CAP
    ) -> None:
        self.autoreset = autoreset_mode(envs)
        self.episode_cap = episode_cap
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
        if not per_copy:  # a batched env: its spaces seeded here (each copy of make_vector_env seeds its own)
            seed_spaces(vector_spaces(self.envs), seeds[0])
        return seeds if per_copy else seeds[0]

    def state_dict(self) -> dict[str, int]:
        """The collector's position: the number of the next collection (``epoch``), which seeds it."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the position of `state_dict` (a resumed run collects what the uninterrupted run would have)."""
        self.epoch = int(state["epoch"])

    def collect(self, policy: nn.Module, num_episodes: int, record_log_probs: bool = False) -> EpisodeBatch:
        """Run ``policy`` until ``num_episodes`` complete episodes are collected.

        Inference is batched over the envs, without gradient, on the policy's device with its
        current parameters. Returns an :class:`EpisodeBatch` on the CPU.

        A policy with an ``actor(generator)`` method (ours) is sampled through the
        ``obs -> (batch_action, env_action)`` function it returns, built once per collection;
        any other ``obs -> Distribution`` module through :func:`~pg_lightning.core.distributions.sample`
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
        act = make_actor(policy, self.generator, self.num_envs, recurrent, record_log_probs)
        with self._env_errors():  # gymnasium's stub says seed: int, but Sync/Async envs take one seed per copy
            obs, _ = self.envs.reset(seed=self._reseed())  # type: ignore[arg-type]  # a list: see above
        torch_env = any(isinstance(leaf, Tensor) for leaf in leaves(obs))  # NumpyToTorch & co: tensors in and out
        obs = _numpy(obs) if torch_env else obs
        n = self.num_envs
        active = np.arange(n) < num_episodes
        starts = np.ones(n, dtype=np.bool_)  # the copies whose obs is the first of an episode
        resetting = np.zeros(n, dtype=np.bool_)  # NEXT_STEP: the copies whose next step is a reset
        next_step = self.autoreset == AutoresetMode.NEXT_STEP
        to_start = num_episodes - int(active.sum())
        single_envs, clip = self._direct_envs()

        store = StepStorage(n)
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
                t, stepped = collect_direct(store, act, device, single_envs, clip, active, to_start, recurrent,
                                            record_log_probs, final_obs, obs_spec, obs_keys, self._env_error)  # fmt: skip
            cap = self.episode_cap
            lengths = np.zeros(n, np.int64)  # the steps of each copy's episode in progress (for episode_cap)
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
                    next_obs, r, te, tr, info = _numpy_step(self.envs, env_action, torch_env)
                    _check_arrays(r, te, tr)
                    reward[:], terminated[:], truncated[:] = r, te, tr
                    for row, leaf in zip(next_rows, leaves_as(obs_spec, next_obs), strict=True):  # Dict leaves by key
                        row[:] = leaf
                    stepped += n
                    done = (terminated | truncated) & ~resetting  # NEXT_STEP: a reset step is no transition
                    ends = np.flatnonzero(done & active)
                    if next_step:  # the last observation is the one returned; the copy resets at its next step
                        final_rows.append((t, ends))  # kept in storage row t + 1: gathered at the end
                        starts, resetting = resetting, done
                    else:
                        final_obs.extend(
                            (int(i), t, _numpy(info["final_obs"][i]) if torch_env else info["final_obs"][i])
                            for i in ends
                        )
                        starts = done
                except Exception as err:  # the policy's own errors above stay as they are
                    raise self._env_error(err) from err
                if cap is not None:  # no bookkeeping per step where the envs carry their own time limit
                    lengths += data["kept"][t]
                    lengths[done] = 0
                    if lengths.max() > cap:
                        raise self._endless(int(lengths.argmax()))
                if len(ends):
                    # the first `to_start` finished envs (in env order) go on; the rest go idle
                    active[ends[to_start:]] = False
                    to_start = max(0, to_start - len(ends))
                t += 1
        self.epoch += 1
        try:
            batch = store.batch(t, final_obs, obs_spec, final_rows)._replace(stepped=torch.tensor(stepped))
        except StructureError as err:  # a last observation (info["final_obs"]) whose Dict keys are not the others'
            raise self._env_error(err) from err
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

    def _env_error(self, err: Exception, copy: int | None = None) -> EnvError:
        """An exception from the envs (or an async worker) as an EnvError naming the env (`worker_faults.env_error`).

        A step of the wrong types (`BadStep`) or an observation without the Dict keys of the others
        (``StructureError``) is named as what the env (copy ``copy``, when known) returned; an EnvError
        (an async copy's `pg_lightning.envs.env_factory.EnvContract` check) already names the env.
        """
        if isinstance(err, EnvError):
            return EnvError(str(err))
        where = f"env.id={self.env_id!r}" + (f" (copy {copy} of {self.num_envs})" if copy is not None else "")
        if isinstance(err, BadStep):
            return EnvError(f"{where} {err}")
        if isinstance(err, StructureError):
            return EnvError(f"{where} returned an observation that does not match its observation space: {err}")
        return env_error(self.envs, self.env_id, err)

    def _endless(self, copy: int) -> EnvError:
        return EnvError(
            f"env.id={self.env_id!r} (copy {copy} of {self.num_envs}): an episode ran past {self.episode_cap} steps "
            "without ending; pg_lightning cannot truncate one copy of a batched env (it cannot reset it alone): "
            "give the env a time limit of its own"
        )

    def _direct_envs(self) -> tuple[list[gym.Env] | None, tuple[np.ndarray, np.ndarray] | None]:
        """The single envs to step one by one, and the Box bounds to clip to, for a sync vector env
        (`pg_lightning.envs.direct_loop.direct_envs`)."""
        return direct_envs(self.envs)

    def close(self) -> None:
        """Close the envs (an async env with a dead worker: stop the other workers instead)."""
        if dead_workers(self.envs, wait=0):
            stop_workers(self.envs)
        else:
            self.envs.close()


def _numpy_step(envs: gym.vector.VectorEnv, actions: np.ndarray, torch_env: bool) -> tuple[Any, ...]:
    """``envs.step``, with actions as tensors for a torch vector env and everything it returns as numpy arrays."""
    if not torch_env:
        return envs.step(actions)
    next_obs, reward, terminated, truncated, info = envs.step(torch.from_numpy(actions))
    return (*_numpy((next_obs, reward, terminated, truncated)), info)


def _check_arrays(reward: Any, terminated: Any, truncated: Any) -> None:
    """A vector step's rewards must be numbers and its flags booleans (a `BadStep` naming the field otherwise)."""
    for name, values, kinds in (
        ("terminated", terminated, "b"),
        ("truncated", truncated, "b"),
        ("reward", reward, "biuf"),
    ):
        dtype = np.asarray(values).dtype
        if dtype.kind not in kinds:
            what = "booleans" if kinds == "b" else "real numbers"
            raise BadStep(f"returned {name} of dtype {dtype} ({_preview(values)}): they must be {what}")


def _preview(values: Any) -> str:
    text = " ".join(repr(values).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _numpy(tree: Any) -> Any:
    """Tensors (a torch vector env's observations, rewards, flags) as numpy arrays, on the CPU."""
    return map_tree(lambda x: x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x), tree)
