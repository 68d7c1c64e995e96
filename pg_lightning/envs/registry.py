"""An env id and what gymnasium's registry says of it: its package, its imports, its spec, its time limit.

Every env of a run is made from a config's ``env`` block (`pg_lightning.envs.contract.EnvFactory` builds each copy);
here, what the block's id and imports mean, each failure a :class:`~pg_lightning.core.errors.ConfigError` naming the
key to fix:

- ``env.imports``: modules imported before any env is built, in every process (packages such as
  ``minigrid`` or ``ale_py`` register their envs on import);
- ``env.id``: a registered id, or ``module:EnvId`` (gymnasium imports ``module``, then looks up ``EnvId``); an
  unknown id gets the close registered ids, and one of the form an env package registers (`ENV_PACKAGES`:
  ``ALE/...``, ``MiniGrid-...``) names that package when it was not imported: how to install it, how to load it;
- ``env.kwargs``: keyword arguments of the env's constructor (`unknown_arguments`);
- the time limit in force (`episode_limit`) and the return threshold (`reward_threshold`).

Gymnasium only; no Lightning.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec, load_env_creator

from pg_lightning.core.errors import ConfigError

__all__ = [
    "ENV_PACKAGES",
    "EPISODE_CAP",
    "env_package",
    "env_spec",
    "episode_limit",
    "extra_hint",
    "import_modules",
    "reward_threshold",
    "unknown_arguments",
]

EPISODE_CAP = 100_000
"""Steps after which episodes of an env registered without a time limit are truncated."""

# Optional extras for the envs that gymnasium ships behind one: the first match in the entry point.
_EXTRAS = {"box2d": "box2d", "mujoco": "mujoco"}
# Packages that register envs on import (env.imports), and the pg-lightning extra that installs each.
_PACKAGE_EXTRAS = {"minigrid": "minigrid", "popgym": "popgym", "ale_py": "atari"}
# Packages with no extra of ours: the pip name, where it is not the module's.
_PIP_NAMES = {"highway_env": "highway-env", "metaworld": "metaworld"}
# The ids that env packages people use register on import, by how they start (matched case-insensitively from the
# start of the id), and the module that registers them: an unknown id of this form names the package (`env_spec`).
# Keep it small: tests/test_plugin_envs.py checks each row.
ENV_PACKAGES: tuple[tuple[str, str], ...] = (
    (r"ALE/|\w+NoFrameskip-v\d+$", "ale_py"),  # ALE/Pong-v5; the legacy PongNoFrameskip-v4
    (r"(MiniGrid|BabyAI)-", "minigrid"),
    (r"popgym-", "popgym"),
    (r"(highway|merge|roundabout|parking|intersection|racetrack)-", "highway_env"),
    (r"Meta-World/", "metaworld"),
)

log = logging.getLogger(__name__)


def _install(module: str) -> str | None:
    """How to install a known env package (``pip install "pg-lightning[atari]"``), or None for another module."""
    extra = _PACKAGE_EXTRAS.get(module)
    if extra is not None:
        return f'pip install "pg-lightning[{extra}]"'
    pip_name = _PIP_NAMES.get(module)
    return None if pip_name is None else f"pip install {pip_name}"


def env_package(env_id: str) -> str | None:
    """The module of the env package that registers ids of this form (`ENV_PACKAGES`): ``"ale_py"`` for
    ``ALE/Pong-v5``, ``"minigrid"`` for ``MiniGrid-Empty-5x5-v0``; None for any other id."""
    return next((module for pattern, module in ENV_PACKAGES if re.match(pattern, env_id, re.IGNORECASE)), None)


def _package_hint(env_id: str) -> str:
    """What to do about an unknown id that an env package registers on import, when that package was not imported:
    install it (when it is not) and load it, ``env.imports=[ale_py]`` or ``env.id=ale_py:ALE/Pong-v5``; else ""."""
    module = env_package(env_id)
    if module is None or module in sys.modules:  # imported, and still unknown: a wrong id (did-you-mean)
        return ""
    load = f"env.imports=[{module}] or env.id={module}:{env_id}"
    if importlib.util.find_spec(module) is None:
        how = _install(module) or "install it"
        return f"; the package {module} registers it and is not installed: {how}, then load it with {load}"
    return f"; the package {module} registers it (installed, not imported): load it with {load}"


def _import(name: str) -> None:
    """``importlib.import_module``, with a hint when the module itself is not found."""
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name.split(".")[0] or err.name == name:
            how = _install(name.split(".")[0]) or "install it"
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


def unknown_arguments(entry_point: Any, kwargs: Mapping[str, Any]) -> list[str]:
    """The keys of ``kwargs`` that the env constructor ``entry_point`` (a callable or gymnasium's ``module:Class``
    string) does not take, read from its signature; none when it takes ``**kwargs`` or has no readable signature."""
    try:
        creator = entry_point if callable(entry_point) else load_env_creator(entry_point)
        params = inspect.signature(creator).parameters
    except Exception:  # noqa: BLE001  (no readable signature: the constructor itself judges its arguments)
        return []
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return []
    return [name for name in kwargs if name not in params]


def env_spec(
    env_id: str, imports: Sequence[str] | None = (), keys: tuple[str, str] = ("env.id", "env.imports")
) -> EnvSpec:
    """The registered :class:`EnvSpec` of ``env_id``, after importing ``imports`` (and ``module`` of ``module:EnvId``).

    Raises:
        ConfigError: naming ``env.imports[i]`` or ``env.id`` (``keys``: the names of the two for the caller), with
            close matches of an unknown id, and, for an id of an env package that was not imported, the package, how
            to install it and how to load it.
    """
    id_key, imports_key = keys
    import_modules(imports, imports_key)
    if not isinstance(env_id, str) or not env_id:
        raise ConfigError(f"{id_key} must be a gymnasium id such as CartPole-v1 or module:EnvId, got {env_id!r}")
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            _import(module)
        except Exception as err:
            raise ConfigError(
                f"{id_key}: cannot import the module {module!r} of {env_id!r}: {type(err).__name__}: {err}"
            ) from err
    spec = gym.registry.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join((module + ':' if module else '') + c for c in close)}?" if close else ""
        where = f" (importing {module!r} registered no such id)" if module else ""
        raise ConfigError(f"{id_key}: unknown gymnasium environment {env_id!r}{where}{_package_hint(name)}{hint}")
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
            how = ""
            if key == "data.max_episode_steps":  # e.g. env=minigrid_empty sets the env's own end in env.kwargs
                how = f": env.kwargs.max_episode_steps={max_episode_steps}, or ~env.kwargs.max_episode_steps"
            raise ConfigError(
                f"env.kwargs.max_episode_steps={given} and {key}={max_episode_steps} disagree; set one{how}"
            )
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


def extra_hint(env_id: str, imports: Sequence[str] | None) -> str:
    """``; install the box2d extra: pip install ...`` for an env whose entry point needs an extra of ours, else ``""``."""
    entry_point = str(env_spec(env_id, imports).entry_point)
    for needle, extra in _EXTRAS.items():
        if needle in entry_point:
            return f'; install the {extra} extra: pip install "pg-lightning[{extra}]"'
    return ""
