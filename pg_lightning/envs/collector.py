"""On-policy collection of complete episodes from a gymnasium vector environment: `EpisodeCollector`.

The collector runs a policy on the envs until exactly the requested number of episodes have started and finished,
and returns them as one `pg_lightning.core.batch.EpisodeBatch`. This module holds its two collection loops:
`collect_direct`, the tight loop over the single copies of `make_vector_env`'s sync vector env (`direct_envs`),
and the loop of `EpisodeCollector.collect` for any other vector env, stepped as a whole. Both draw and store each
step through one `pg_lightning.envs.storage.Rollout` (the step arrays and the state of every copy); the actions
come from `pg_lightning.envs.actors.make_actor`, and env errors and dead async workers are named by
`pg_lightning.envs.worker_faults`. Layer: envs (gymnasium and torch; no Lightning).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import Tensor, nn

from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.errors import ConfigError, EnvError
from pg_lightning.core.recurrent import is_recurrent
from pg_lightning.core.tree import StructureError, leaves, map_tree
from pg_lightning.envs.actors import Actor, make_actor
from pg_lightning.envs.contract import find_contract, seed_spaces, step_fault, vector_spaces
from pg_lightning.envs.registry import EPISODE_CAP, episode_limit
from pg_lightning.envs.storage import Rollout
from pg_lightning.envs.vector_envs import VECTORIZATION_MODES, autoreset_mode, make_vector_env
from pg_lightning.envs.worker_faults import dead_workers, env_error, stop_workers

__all__ = [
    "EPISODE_CAP",
    "VECTORIZATION_MODES",
    "BadStep",
    "EpisodeCollector",
    "collect_direct",
    "direct_envs",
    "episode_limit",
    "make_vector_env",
]

REWARD_LIMIT = float(np.finfo(np.float32).max)  # rewards are stored as float32 (exact for integers up to 2**24)


class BadStep(TypeError):
    """A step whose reward or flags are not what an env must return (`pg_lightning.envs.contract.step_fault`):
    raised by the loops, named as an EnvError (with the env, and the copy when known) by the collector."""


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
      copy costs nothing; see `collect_direct`);
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
        device, recurrent = next(policy.parameters()).device, is_recurrent(policy)
        act = make_actor(policy, self.generator, recurrent, record_log_probs)
        with self._env_errors():  # gymnasium's stub says seed: int, but Sync/Async envs take one seed per copy
            obs, _ = self.envs.reset(seed=self._reseed())  # type: ignore[arg-type]  # a list: see above
        torch_env = any(isinstance(leaf, Tensor) for leaf in leaves(obs))  # NumpyToTorch & co: tensors in and out
        next_step = self.autoreset == AutoresetMode.NEXT_STEP
        single_envs, clip = direct_envs(self.envs)
        cap = self.episode_cap if single_envs is None else None  # the copies of make_vector_env have a time limit
        obs = _numpy(obs) if torch_env else obs
        rollout = Rollout(obs, num_episodes, device, recurrent, record_log_probs, next_step, cap is not None)
        # inference mode for the whole loop: the batch's tensors are made after it, usable by autograd
        with torch.inference_mode():
            if single_envs is not None:  # the sync copies of make_vector_env: a tight loop of their own
                collect_direct(single_envs, clip, rollout, act, self._env_error)
            while rollout.active.any():  # any other vector env, stepped as a whole
                env_action = rollout.draw(act)
                try:
                    next_obs, reward, terminated, truncated, info = _numpy_step(self.envs, env_action, torch_env)
                    _check_arrays(reward, terminated, truncated)
                    rollout.store(slice(None), next_obs, reward, terminated, truncated)
                    rollout.end_step(self.num_envs, None if next_step else partial(_final_obs, info, torch_env))
                except Exception as err:  # the policy's own errors (in draw) stay as they are
                    raise self._env_error(err) from err
                lengths = rollout.lengths  # tracked only where there is a cap
                if cap is not None and lengths is not None and lengths.max() > cap:
                    raise self._endless(int(lengths.argmax()))
        self.epoch += 1
        try:
            batch = rollout.batch()
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
        (an async copy's `pg_lightning.envs.contract.EnvContract` check) already names the env.
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

    def close(self) -> None:
        """Close the envs (an async env with a dead worker: stop the other workers instead)."""
        if dead_workers(self.envs, wait=0):
            stop_workers(self.envs)
        else:
            self.envs.close()


def direct_envs(envs: gym.vector.VectorEnv) -> tuple[list[gym.Env] | None, tuple[np.ndarray, np.ndarray] | None]:
    """The single envs to step one by one, and the Box bounds to clip to, for a sync vector env; else ``None, None``.

    Only for the exact env `make_vector_env` builds (a ``SyncVectorEnv``, under ``ClipAction`` for Box actions): any
    other vector wrapper must see every step, so those envs (and async ones) are stepped as a whole. The copies'
    own step checks (`pg_lightning.envs.contract.EnvContract`) are switched off: `collect_direct` checks every
    step itself, for less.
    """
    clip = None
    if type(envs) is gym.wrappers.vector.ClipAction:
        space = envs.env.single_action_space
        assert isinstance(space, gym.spaces.Box)  # ClipAction takes Box action spaces only
        envs, clip = envs.env, (space.low, space.high)
    if type(envs) is not gym.vector.SyncVectorEnv:
        return None, None
    for env in envs.envs:
        contract = find_contract(env)
        if contract is not None:
            contract.unchecked()
    return list(envs.envs), clip


def collect_direct(
    single_envs: list[gym.Env],
    clip: tuple[np.ndarray, np.ndarray] | None,
    rollout: Rollout,
    act: Actor,
    env_error: Callable[[Exception, int | None], EnvError],
) -> None:
    """The collection loop over the single copies of `make_vector_env` (`direct_envs`), until every copy is idle.

    Why not ``SyncVectorEnv.step`` (an exception to using gymnasium's vector API as is): it steps every copy,
    and at the end of an epoch most copies are idle (their episodes would be discarded). Here only the active
    copies are stepped (a Python list), and a copy that ends an episode is reset (as ``SAME_STEP`` autoreset
    would: ``env.reset()`` with no seed) only if it starts another one, so each active copy sees the calls it
    would see under ``SyncVectorEnv`` and the batch is the same (a test compares both paths, another a plain
    reference loop). Box actions are clipped to ``clip`` (what ``ClipAction`` would do).

    An env's exception is raised as ``env_error(err, copy)``, and so is a step whose reward or flags have the
    wrong type (`BadStep`) or whose Dict observation lacks a key of the first one or has another
    (``pg_lightning.core.tree.StructureError``). Per step and copy, the check costs two identity tests and a type
    test in the common case (a Python ``float`` reward, both flags Python ``False``); anything else is checked in
    full. (`pg_lightning.envs.watchdog` reads this loop's ``single_envs`` and ``i`` to name a copy that hangs.)
    """
    running = rollout.active.nonzero()[0].tolist()
    store = rollout.store  # bound once: it runs for every copy-step
    while running:
        env_action = rollout.draw(act)
        if clip is not None:
            env_action = np.clip(env_action, *clip)
        finals = {}
        i = running[0]
        try:
            for i in running:
                o, r, te, tr, _ = single_envs[i].step(env_action[i])
                # a float reward and both flags False (the common case) end nothing; anything else is checked in full
                if (type(r) is not float or te is not False or tr is not False) and _ends(r, te, tr):
                    finals[i] = o
                store(i, o, r, te, tr)
            for i in rollout.end_step(len(running), finals.__getitem__):
                o, _ = single_envs[i].reset()  # as SAME_STEP autoreset would: no seed
                rollout.store_obs(i, o)
        except Exception as err:  # the policy's own errors (in draw) stay as they are
            raise env_error(err, i) from err
        if finals:  # the copies that went idle leave the loop
            running = rollout.active.nonzero()[0].tolist()


def _ends(reward: Any, terminated: Any, truncated: Any) -> bool:
    """Whether a copy's step ends its episode; a step whose reward or flags have the wrong type is a `BadStep`."""
    fault = step_fault(reward, terminated, truncated)
    if fault is not None:
        raise BadStep(fault)
    return bool(terminated or truncated)


def _final_obs(info: dict[str, Any], torch_env: bool, copy: int) -> Any:
    """The last observation of ``copy``'s episode from a ``SAME_STEP`` vector step's ``info``, as numpy arrays."""
    obs = info["final_obs"][copy]
    return _numpy(obs) if torch_env else obs


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
