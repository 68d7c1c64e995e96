"""The vector envs the collector steps: gymnasium's sync and async vectorisation, native batched envs, your own.

- ``data.vectorization_mode=sync|async``: ``num_envs`` copies of one :class:`~pg_lightning.envs.contract.EnvFactory`
  in gymnasium's ``SyncVectorEnv`` / ``AsyncVectorEnv`` (``SAME_STEP`` autoreset);
- ``data.vectorization_mode=vector_entry_point``: the env's own batched implementation, registered by its
  ``vector_entry_point`` (CartPole-v1's numpy ``CartPoleVectorEnv`` steps millions of env steps per second);
- ``data.vector_env``: any ``gymnasium.vector.VectorEnv`` from a Hydra ``_target_`` (a batched env of your own,
  a GPU simulator's wrapper), checked against ``env.id``'s single spaces.

Gymnasium only; no Lightning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from pg_lightning.core.errors import ConfigError
from pg_lightning.envs.contract import EnvFactory
from pg_lightning.envs.registry import env_spec, episode_limit, unknown_arguments

__all__ = [
    "AUTORESET_MODES",
    "VECTORIZATION_MODES",
    "autoreset_mode",
    "check_vector_env",
    "close_probe",
    "make_vector_env",
    "wrapped_time_limit",
]

VECTORIZATION_MODES = ("sync", "async", "vector_entry_point")
AUTORESET_MODES = (AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP)
"""The autoreset modes the collector handles (``DISABLED`` would need a reset of its own per episode)."""

log = logging.getLogger(__name__)


def make_vector_env(
    env_id: str,
    num_envs: int = 8,
    vectorization_mode: str = "sync",
    env_kwargs: dict[str, Any] | None = None,
    max_episode_steps: int | None = None,
    imports: Sequence[str] = (),
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies of ``env_id``, as the collector needs it.

    ``sync`` / ``async``: copies of :class:`EnvFactory` with ``SAME_STEP`` autoreset (when an
    episode ends, ``step`` returns the first observation of the next episode and reports the real
    last one as ``info["final_obs"]``). ``vector_entry_point``: the env's native batched
    implementation (``gym.make_vec``), with its own autoreset mode (CartPole's is ``NEXT_STEP``);
    single-env ``wrappers`` cannot wrap it. Box actions are clipped to their bounds on the way
    into the env (gymnasium's ``ClipAction``); the policy's unclipped sample is what the batch keeps.

    Args:
        env_id: a registered gymnasium id, e.g. ``"CartPole-v1"``, or ``"module:EnvId"``.
        num_envs: number of parallel copies.
        vectorization_mode: ``"sync"`` (one process), ``"async"`` (one subprocess per copy) or
            ``"vector_entry_point"`` (the env's own batched implementation).
        env_kwargs: keyword arguments for the env's constructor.
        max_episode_steps: truncate episodes after this many steps (gymnasium's ``TimeLimit``, or the
            batched env's ``max_episode_steps``); ``None`` keeps the env's registered limit, or, for an
            env registered without one, caps episodes at :data:`~pg_lightning.envs.registry.EPISODE_CAP`
            steps (with a warning), so that no epoch can run forever. The limit in force is logged.
        imports: modules imported before any env is built, here and in every async worker.
        wrappers: ``env -> env`` callables applied in order to every copy (picklable for async).
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ConfigError(f"data.num_envs must be an integer >= 1, got {num_envs!r}")
    if vectorization_mode not in VECTORIZATION_MODES:
        raise ConfigError(
            f"data.vectorization_mode must be one of {', '.join(VECTORIZATION_MODES)}, got {vectorization_mode!r}"
        )
    env_kwargs, steps, source = episode_limit(env_id, env_kwargs, max_episode_steps, imports)
    if wrappers and vectorization_mode != "vector_entry_point":  # a TimeLimit among them may end episodes sooner
        probe = EnvFactory(env_id, env_kwargs, tuple(imports), tuple(wrappers), steps)()
        try:
            shorter = wrapped_time_limit(probe)
        finally:
            close_probe(probe, env_id)
        if shorter is not None and shorter[0] < steps:
            steps_in_force, source = shorter[0], f"a TimeLimit in env.wrappers ({shorter[1]})"
        else:
            steps_in_force = steps
    else:
        steps_in_force = steps
    unit = "step" if steps_in_force == 1 else "steps"
    if source.startswith("the env registers no time limit"):
        log.warning("%s: episodes are truncated at %d %s (%s)", env_id, steps_in_force, unit, source)
    else:
        log.info("%s: episodes are truncated at %d %s (%s)", env_id, steps_in_force, unit, source)
    spec = env_spec(env_id, imports)
    if vectorization_mode == "vector_entry_point":
        envs = _batched(env_id, spec, num_envs, env_kwargs, steps, wrappers)
    else:
        factory = EnvFactory(env_id, env_kwargs, tuple(imports), tuple(wrappers), steps)
        vector_env = gym.vector.SyncVectorEnv if vectorization_mode == "sync" else gym.vector.AsyncVectorEnv
        envs = vector_env([factory] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
        envs.spec = spec  # as gym.make_vec sets it: the collector names the env by it
    if isinstance(envs.single_action_space, gym.spaces.Box):
        envs = gym.wrappers.vector.ClipAction(envs)
    return envs


def wrapped_time_limit(env: gym.Env) -> tuple[int, str] | None:
    """The shortest limit of the ``TimeLimit`` wrappers around ``env`` other than the innermost one (which
    `EnvFactory`'s ``gym.make(..., max_episode_steps=...)`` adds), with its name, e.g.
    ``(7, "TimeLimit(max_episode_steps=7)")``: a TimeLimit in ``env.wrappers``; else None."""
    limits = []
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            limits.append(int(env._max_episode_steps))
        env = env.env
    if len(limits) < 2:
        return None
    shortest = min(limits[:-1])
    return shortest, f"TimeLimit(max_episode_steps={shortest})"


def close_probe(env: gym.Env, env_id: str) -> None:
    """Close an env built to read something off it (its spaces, its limits); an exception is a ConfigError naming
    ``env.id`` (instead of a traceback from a ``finally`` block)."""
    try:
        env.close()
    except Exception as err:
        raise ConfigError(
            f"env.id: {env_id}'s close() raised {type(err).__name__}: {' '.join(str(err).split())} "
            "(pg_lightning builds and closes one env before training, to read its spaces)"
        ) from err


def _batched(
    env_id: str, spec: Any, num_envs: int, env_kwargs: dict[str, Any], steps: int, wrappers: Sequence[Any]
) -> gym.vector.VectorEnv:
    if spec.vector_entry_point is None:
        raise ConfigError(
            f"data.vectorization_mode=vector_entry_point: {env_id} registers no vector entry point (a native "
            "batched implementation); use data.vectorization_mode=sync or async, or your own batched env in data.vector_env"
        )
    if wrappers:
        raise ConfigError(
            f"env.wrappers: single-env wrappers cannot wrap {env_id}'s batched implementation "
            "(data.vectorization_mode=vector_entry_point); use data.vectorization_mode=sync or async"
        )
    limit = {} if steps is None else {"max_episode_steps": steps}
    unknown = unknown_arguments(spec.vector_entry_point, {**limit, **env_kwargs})
    if "max_episode_steps" in unknown:
        raise ConfigError(
            f"data.vectorization_mode=vector_entry_point: {env_id}'s vector entry point takes no max_episode_steps, "
            "so its episodes could not be capped; use data.vectorization_mode=sync or async"
        )
    for name in unknown:
        raise ConfigError(f"env.kwargs.{name}: {env_id}'s vector entry point takes no such argument")
    try:
        return gym.make_vec(
            spec, num_envs, vectorization_mode="vector_entry_point", max_episode_steps=steps, **env_kwargs
        )
    except TypeError as err:
        raise ConfigError(f"env.kwargs: {env_id}'s vector entry point raised TypeError: {err}") from err


def autoreset_mode(envs: gym.vector.VectorEnv, key: str = "data.vector_env") -> AutoresetMode:
    """The vector env's autoreset mode (gymnasium's default, ``NEXT_STEP``, when its metadata names none);
    a mode the collector cannot handle is a ConfigError naming ``key``."""
    mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if isinstance(mode, str):
        mode = next((m for m in AutoresetMode if mode in (m.value, m.name)), mode)
    if mode not in AUTORESET_MODES:
        raise ConfigError(
            f"{key}: autoreset mode {mode!r} is not supported; the collector handles "
            f"{', '.join(m.name for m in AUTORESET_MODES)} (gymnasium's metadata['autoreset_mode'])"
        )
    return mode


def check_vector_env(
    envs: Any,
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    imports: Sequence[str] = (),
    key: str = "data.vector_env",
) -> None:
    """``data.vector_env`` must be a ``gymnasium.vector.VectorEnv`` whose single spaces are ``env_id``'s,
    with an autoreset mode the collector handles; else a one-line ConfigError naming ``key``."""
    if not isinstance(envs, gym.vector.VectorEnv):
        raise ConfigError(f"{key}: instantiating it gave a {type(envs).__name__}, not a gymnasium.vector.VectorEnv")
    probe = EnvFactory(env_id, dict(env_kwargs or {}), tuple(imports))()
    try:
        for name in ("observation", "action"):
            ours, theirs = getattr(probe, f"{name}_space"), getattr(envs, f"single_{name}_space")
            if ours != theirs:
                raise ConfigError(
                    f"{key}: its single_{name}_space {theirs} is not env.id={env_id}'s {name} space {ours} "
                    "(the policy, evaluation and checkpoints are built from env.id)"
                )
    finally:
        close_probe(probe, env_id)
    autoreset_mode(envs, key)
