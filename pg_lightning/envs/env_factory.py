"""Environments from config: ids (gymnasium's ``module:EnvId`` form too), imports, wrappers, time limits.

One rule builds every env of a run: each copy of the training vector env (in this process or an
async worker), the probe that reads the spaces, and the evaluation envs (``evaluate.py`` and
``EvalCallback``). Each failure is a :class:`~pg_lightning.core.errors.ConfigError` naming the key to fix:

- ``env.imports``: modules imported before any env is built, in every process (packages such as
  ``minigrid`` or ``ale_py`` register their envs on import);
- ``env.id``: a registered id, or ``module:EnvId`` (gymnasium imports ``module``, then looks up ``EnvId``);
- ``env.kwargs``: keyword arguments of the env's constructor;
- ``env.wrappers``: ``env -> env`` callables applied in order to every single env (from config:
  Hydra ``_target_`` entries instantiated as partials).

Gymnasium only; no Lightning.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from pg_lightning.core.errors import ConfigError
from pg_lightning.envs.spaces import DropText, text_paths

__all__ = ["EPISODE_CAP", "EnvFactory", "env_spec", "episode_limit", "import_modules", "reward_threshold"]

EPISODE_CAP = 100_000
"""Steps after which episodes of an env registered without a time limit are truncated."""

# Optional extras for the envs that gymnasium ships behind one: the first match in the entry point.
_EXTRAS = {"box2d": "box2d", "mujoco": "mujoco"}
# Packages that register envs on import (env.imports), and the pg-lightning extra that installs each.
_PACKAGE_EXTRAS = {"minigrid": "minigrid", "popgym": "popgym", "ale_py": "atari"}

log = logging.getLogger(__name__)

Wrapper = Callable[[gym.Env], gym.Env]


def _import(name: str) -> None:
    """``importlib.import_module``, with a hint when the module itself is not found."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name.split(".")[0] or err.name == name:
            extra = _PACKAGE_EXTRAS.get(name.split(".")[0])
            how = f'pip install "pg-lightning[{extra}]"' if extra else "install it"
            raise ModuleNotFoundError(
                f"{err}; {how}, or put its directory on PYTHONPATH (e.g. PYTHONPATH=. for the current one)",
                name=err.name,
            ) from err
        raise


def import_modules(modules: Sequence[str] | None, key: str = "env.imports") -> None:
    """Import each module (``env.imports``); a failure names ``env.imports[i]`` and the module."""
    if isinstance(modules, str):
        raise ConfigError(f"{key} must be a list of module names, got the string {modules!r}: write [{modules}]")
    for i, name in enumerate(modules or ()):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key}[{i}] must be a module name, got {name!r}")
        try:
            _import(name)
        except Exception as err:
            raise ConfigError(f"{key}[{i}]: cannot import {name!r}: {type(err).__name__}: {err}") from err


def env_spec(env_id: str, imports: Sequence[str] | None = ()) -> EnvSpec:
    """The registered :class:`EnvSpec` of ``env_id``, after importing ``imports`` (and ``module`` of ``module:EnvId``).

    Raises:
        ConfigError: naming ``env.imports[i]`` or ``env.id`` (with close matches of an unknown id).
    """
    import_modules(imports)
    if not isinstance(env_id, str) or not env_id:
        raise ConfigError(f"env.id must be a gymnasium id such as CartPole-v1 or module:EnvId, got {env_id!r}")
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            _import(module)
        except Exception as err:
            raise ConfigError(
                f"env.id: cannot import the module {module!r} of {env_id!r}: {type(err).__name__}: {err}"
            ) from err
    spec = gym.registry.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join((module + ':' if module else '') + c for c in close)}?" if close else ""
        where = f" (importing {module!r} registered no such id)" if module else ""
        raise ConfigError(f"env.id: unknown gymnasium environment {env_id!r}{where}{hint}")
    return spec


def reward_threshold(env_id: str, imports: Sequence[str] | None = ()) -> float | None:
    """The env's registered ``reward_threshold`` (``env.return_threshold: spec``), or None."""
    threshold = env_spec(env_id, imports).reward_threshold
    return None if threshold is None else float(threshold)


def episode_limit(
    env_id: str,
    env_kwargs: dict[str, Any] | None,
    max_episode_steps: int | None,
    imports: Sequence[str] | None = (),
    key: str = "data.max_episode_steps",
) -> tuple[dict[str, Any], int, str]:
    """The time limit in force: ``(env_kwargs without max_episode_steps, steps, where it comes from)``.

    ``max_episode_steps`` (``data.max_episode_steps``), or ``env.kwargs.max_episode_steps`` (the
    two must agree when both are set), else the env's registered limit, else :data:`EPISODE_CAP`.
    Training and evaluation use this one rule. ``key``: the caller's name for
    ``max_episode_steps``, used in the errors (``evaluate`` passes ``max_episode_steps``).
    """
    env_kwargs = dict(env_kwargs or {})
    source = key
    if "max_episode_steps" in env_kwargs:  # gymnasium's own make() argument, given with the env's
        given = env_kwargs.pop("max_episode_steps")
        if max_episode_steps is not None and given != max_episode_steps:
            raise ConfigError(f"env.kwargs.max_episode_steps={given} and {key}={max_episode_steps} disagree; set one")
        if max_episode_steps is None:
            source = "env.kwargs.max_episode_steps"
        max_episode_steps = given
    if max_episode_steps is not None and (
        isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, int) or max_episode_steps < 1
    ):
        raise ConfigError(f"{source} must be a positive integer or null, got {max_episode_steps!r}")
    registered = env_spec(env_id, imports).max_episode_steps
    if max_episode_steps is not None:
        return env_kwargs, int(max_episode_steps), source
    if registered is not None:
        return env_kwargs, int(registered), "the env's registered time limit"
    return env_kwargs, EPISODE_CAP, f"the env registers no time limit: pg_lightning's cap; set {key}"


def _extra_hint(env_id: str, imports: Sequence[str] | None) -> str:
    entry_point = str(env_spec(env_id, imports).entry_point)
    for needle, extra in _EXTRAS.items():
        if needle in entry_point:
            return f'; install the {extra} extra: pip install "pg-lightning[{extra}]"'
    return ""


def _wrapper_name(wrapper: Wrapper) -> str:
    func = getattr(wrapper, "func", wrapper)  # a functools.partial from config
    return getattr(func, "__qualname__", type(func).__name__)


@dataclass(frozen=True)
class EnvFactory:
    """A picklable ``() -> gym.Env``: one env of the run, as training and evaluation both see it.

    ``__call__`` imports ``imports``, then ``gym.make(env_id, max_episode_steps=..., **kwargs)``
    (plus ``render_mode``), then applies ``wrappers`` in order. Async vector-env workers call it
    in their own process, so an env registered by an import is known there too, whatever the
    start method.

    Every failure is a ConfigError naming its key: ``env.imports[i]``, ``env.id`` (a missing
    optional dependency names the extra to install), ``env.kwargs.<key>`` (an argument the
    constructor does not take), ``env.kwargs`` (any other constructor error) or
    ``env.wrappers[i]``.

    Args:
        env_id: a registered id or ``module:EnvId``.
        kwargs: keyword arguments of the env's constructor.
        imports: modules to import first.
        wrappers: ``env -> env`` callables, applied in order (``env.wrappers[0]`` innermost).
        max_episode_steps: the time limit (gymnasium's ``TimeLimit``); None keeps the registered one.
        render_mode: passed to the constructor when set (``rgb_array`` for videos).
    """

    env_id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    imports: tuple[str, ...] = ()
    wrappers: tuple[Wrapper, ...] = ()
    max_episode_steps: int | None = None
    render_mode: str | None = None

    def __call__(self) -> gym.Env:
        kwargs = dict(self.kwargs)
        if self.render_mode is not None:
            kwargs["render_mode"] = self.render_mode
        env_spec(self.env_id, self.imports)  # ConfigErrors for env.imports and env.id
        try:
            env = gym.make(self.env_id, max_episode_steps=self.max_episode_steps, **kwargs)
        except gym.error.DependencyNotInstalled as err:
            raise ConfigError(
                f"env.id: {self.env_id} needs a package that is not installed ({err})"
                f"{_extra_hint(self.env_id, self.imports)}"
            ) from err
        except TypeError as err:
            unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(err))
            if unexpected and unexpected.group(1) in kwargs:
                key = unexpected.group(1)
                raise ConfigError(f"env.kwargs.{key}: {self.env_id}'s constructor takes no argument {key!r}") from err
            raise ConfigError(f"env.kwargs: {self.env_id}'s constructor raised TypeError: {err}") from err
        except Exception as err:
            raise ConfigError(f"env.kwargs: {self.env_id}'s constructor raised {type(err).__name__}: {err}") from err
        for i, wrap in enumerate(self.wrappers):
            try:
                env = wrap(env)
            except Exception as err:
                env.close()
                raise ConfigError(
                    f"env.wrappers[{i}]: {_wrapper_name(wrap)} could not wrap {self.env_id}: {type(err).__name__}: {err}"
                ) from err
        if text_paths(env.observation_space):  # e.g. MiniGrid's mission: no network reads text (logged once)
            env = DropText(env)
        return env
