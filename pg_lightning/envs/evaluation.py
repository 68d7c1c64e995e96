"""Evaluation episodes on a gymnasium env: greedy or sampled actions, the eval env, returns and lengths.

The env side of evaluation, shared by ``evaluate.py`` (`pg_lightning.cli.evaluation`) and the
training callback (`pg_lightning.lightning.evaluation`): `make_eval_env` builds one env as
training builds each copy, `run_episodes` plays complete episodes of a policy on it, `episode_stats`
sums them up. Episode ``i`` starts from ``env.reset(seed=seed + i)`` (which seeds the env's spaces too, for an
env built by `make_eval_env`: `pg_lightning.envs.contract.EnvContract`); sampled actions come from a
``torch.Generator`` of their own, so the same numbers in give the same episodes out.

Layer: envs (gymnasium and torch, never Lightning).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from pg_lightning.core import distributions
from pg_lightning.core.distributions import draw
from pg_lightning.core.errors import ConfigError, EnvError
from pg_lightning.core.recurrent import RecurrentPolicy, State, is_recurrent
from pg_lightning.core.tree import StructureError, map_tree, reorder
from pg_lightning.envs.contract import EnvFactory, step_fault
from pg_lightning.envs.registry import episode_limit
from pg_lightning.envs.spaces import obs_spec

__all__ = ["episode_stats", "greedy_action", "make_eval_env", "make_video_env", "run_episodes"]


def greedy_action(dist: Distribution) -> Tensor:
    """The action the env receives from a deterministic policy: :func:`pg_lightning.core.distributions.greedy_action`
    (argmax, per-component argmax, ``p > 0.5``, the mean or the squashed mean), or a ConfigError naming ``greedy``."""
    try:
        return distributions.greedy_action(dist)
    except TypeError:
        raise ConfigError(f"greedy: no greedy action for a {type(dist).__name__} policy; use greedy=false") from None


def _env_action(dist: Distribution, greedy: bool, generator: torch.Generator) -> Tensor:
    return greedy_action(dist) if greedy else draw(dist, generator)[1]  # as the collector draws


def make_eval_env(
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    render_mode: str | None = None,
    max_episode_steps: int | None = None,
    imports: Sequence[str] = (),
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
) -> gym.Env:
    """One env as training builds each copy (:class:`~pg_lightning.envs.contract.EnvFactory`), Box actions clipped.

    ``imports`` and ``wrappers`` are the run's ``env.imports`` and (built) ``env.wrappers``.
    ``max_episode_steps`` adds (or replaces) the time limit, an ``env_kwargs["max_episode_steps"]``
    included (it is dropped); ``None`` keeps that kwarg's limit, else the env's registered one,
    or, for an env registered without one, caps episodes at
    :data:`pg_lightning.envs.registry.EPISODE_CAP` steps, as training does: no episode runs forever.
    """
    env_kwargs = dict(env_kwargs or {})
    if max_episode_steps is not None:  # the evaluation's own limit wins over the training env's kwarg
        env_kwargs.pop("max_episode_steps", None)
    # the rule training uses
    kwargs, steps, _ = episode_limit(env_id, env_kwargs, max_episode_steps, imports, key="max_episode_steps")
    env = EnvFactory(env_id, kwargs, tuple(imports), tuple(wrappers), steps, render_mode)()
    if isinstance(env.action_space, gym.spaces.Box):
        env = gym.wrappers.ClipAction(env)  # as make_vector_env: the env gets actions inside the bounds
    return env


def make_video_env(
    env_id: str,
    env_kwargs: dict[str, Any],
    max_episode_steps: int | None,
    video_dir: Path,
    seed: int,
    imports: Sequence[str] = (),
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
) -> gym.Env:
    """`make_eval_env` rendering ``rgb_array`` frames, under gymnasium's ``RecordVideo`` (every episode).

    The files go to ``video_dir`` as ``eval-episode-<i>.mp4``. A first frame is rendered at once
    (after ``reset(seed=seed)``), so that an env without ``rgb_array`` frames or a missing renderer
    (``moviepy``, ``pygame``) is a ConfigError naming ``video`` before any episode runs.
    """
    from gymnasium.error import DependencyNotInstalled

    hint = 'install the video extra: pip install -e ".[video]" (moviepy, pygame-ce)'
    try:
        env = make_eval_env(
            env_id,
            env_kwargs,
            render_mode="rgb_array",
            max_episode_steps=max_episode_steps,
            imports=imports,
            wrappers=wrappers,
        )
    except (ValueError, gym.error.Error) as err:
        raise ConfigError(f"video: {env_id} cannot render rgb_array frames ({err})") from err
    try:
        env.reset(seed=seed)  # a first frame now, so that a missing renderer fails before any episode
        if not isinstance(env.render(), np.ndarray):
            raise ConfigError(f"video: {env_id} renders no rgb_array frames")
        return gym.wrappers.RecordVideo(env, str(video_dir), episode_trigger=lambda _: True, name_prefix="eval")
    except DependencyNotInstalled as err:
        env.close()
        raise ConfigError(f"video: {err}; {hint}") from err
    except BaseException:
        env.close()
        raise


def run_episodes(
    policy: nn.Module,
    env: gym.Env,
    episodes: int,
    greedy: bool = True,
    seed: int = 0,
    frames: list[np.ndarray] | None = None,
) -> tuple[list[float], list[int]]:
    """Run ``episodes`` complete episodes of ``policy`` on ``env``; return their returns and lengths.

    Episode ``i`` starts from ``env.reset(seed=seed + i)``. Greedy actions: :func:`greedy_action`;
    otherwise sampled as in training, from a private ``torch.Generator`` seeded with ``seed``
    (the global RNG is not touched, so evaluating during training changes nothing else).
    A recurrent policy acts through ``step``, its state restarting from zero with each episode.
    A Dict observation reaches the policy with its keys in the observation space's order, as in the
    collector's batches, whatever order the env built its dict in (a missing or extra key is an EnvError).
    The policy runs in eval mode, without gradient, on its own device, and is put back as it was.
    ``frames``: if a list, ``env.render()`` of the first episode (every step) is appended to it.
    """
    generator = torch.Generator().manual_seed(int(seed))
    device = next(policy.parameters()).device
    recurrent = cast(RecurrentPolicy, policy) if is_recurrent(policy) else None
    was_training = policy.training
    policy.eval()
    returns: list[float] = []
    lengths: list[int] = []
    spec = obs_spec(env.observation_space)  # None: one array (no reordering)

    env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__

    def ordered(obs: Any) -> Any:
        if spec is None:
            return obs
        try:
            return reorder(spec, obs)
        except StructureError as err:
            raise EnvError(f"env.id={env_id!r} returned an observation that does not fit its space: {err}") from err

    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=int(seed) + i)
            obs = ordered(obs)
            record = frames if i == 0 else None
            if record is not None:
                record.append(cast(np.ndarray, env.render()))  # an rgb_array env's frame
            total, length, done = 0.0, 0, False
            # a recurrent policy starts each episode at zero
            state: State | None = recurrent.initial_state(1) if recurrent is not None else None
            while not done:
                with torch.inference_mode():
                    batch = map_tree(lambda x: torch.as_tensor(x, device=device).unsqueeze(0), obs)
                    if recurrent is not None:
                        dist, state = recurrent.step(batch, cast(State, state))  # set by initial_state
                    else:
                        dist = policy(batch)
                    action = _env_action(dist, greedy, generator)[0].cpu().numpy()
                obs, reward, terminated, truncated, _ = env.step(action)
                obs = ordered(obs)
                fault = step_fault(reward, terminated, truncated)  # "1.0" is no reward, "no" no flag
                if fault is not None:
                    raise EnvError(f"env.id={env_id!r} {fault}")
                total += float(reward)
                length += 1
                done = bool(terminated or truncated)
                if record is not None:
                    record.append(cast(np.ndarray, env.render()))
            returns.append(total)
            lengths.append(length)
    finally:
        policy.train(was_training)
    return returns, lengths


def episode_stats(returns: Sequence[float], lengths: Sequence[int]) -> dict[str, float]:
    """Mean, population std (ddof=0), min and max of the returns; mean and std of the lengths.

    Keys: ``return_mean``, ``return_std``, ``return_min``, ``return_max``, ``length_mean``, ``length_std``.
    """
    r, n = np.asarray(returns, dtype=np.float64), np.asarray(lengths, dtype=np.float64)
    return {
        "return_mean": float(r.mean()),
        "return_std": float(r.std()),
        "return_min": float(r.min()),
        "return_max": float(r.max()),
        "length_mean": float(n.mean()),
        "length_std": float(n.std()),
    }
