"""Environments from config: ids (gymnasium's ``module:EnvId`` form too), imports, wrappers, time limits.

One rule builds every env of a run: each copy of the training vector env (in this process or an
async worker), the probe that reads the spaces, and the evaluation envs (``evaluate.py`` and
``EvalCallback``). Each failure is a :class:`~pg_lightning.core.errors.ConfigError` naming the key to fix:

- ``env.imports``: modules imported before any env is built, in every process (packages such as
  ``minigrid`` or ``ale_py`` register their envs on import);
- ``env.id``: a registered id, or ``module:EnvId`` (gymnasium imports ``module``, then looks up ``EnvId``); an
  unknown id gets the close registered ids, and one of the form an env package registers (`ENV_PACKAGES`:
  ``ALE/...``, ``MiniGrid-...``) names that package when it was not imported: how to install it, how to load it;
- ``env.kwargs``: keyword arguments of the env's constructor;
- ``env.wrappers``: ``env -> env`` callables applied in order to every single env (from config:
  Hydra ``_target_`` entries instantiated as partials); each must return a ``gymnasium.Env``.

What every env must do, and the seeding of its spaces (`EnvContract`, around every env built here):

- a step's ``terminated`` and ``truncated`` are booleans (``bool`` or ``numpy.bool_``) and its ``reward`` a real
  number (``int``, ``float`` or a numpy number): `step_fault` names the field otherwise (``"no"`` would count as
  true, ``None`` as false, ``"1.0"`` as a number if nobody checked);
- gymnasium's ``reset(seed=...)`` seeds the env's ``np_random`` but not its spaces, so an env that draws from
  its own ``action_space`` or ``observation_space`` would give another run for the same seed: `EnvContract`
  seeds them from each seeded reset's seed (the collector seeds a batched env's spaces: `vector_spaces`).

Gymnasium only; no Lightning.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import inspect
import logging
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec, load_env_creator

from pg_lightning.core.errors import ConfigError, EnvError
from pg_lightning.envs.spaces import DropText, text_paths

__all__ = [
    "ENV_PACKAGES",
    "EPISODE_CAP",
    "STATEFUL_ATTRIBUTES",
    "EnvContract",
    "EnvFactory",
    "env_package",
    "env_spaces",
    "env_spec",
    "episode_limit",
    "find_contract",
    "import_modules",
    "reward_threshold",
    "seed_spaces",
    "step_fault",
    "vector_spaces",
    "warn_stateful_wrappers",
]

EPISODE_CAP = 100_000
"""Steps after which episodes of an env registered without a time limit are truncated."""

STATEFUL_ATTRIBUTES = ("obs_rms", "return_rms")
"""Attributes of gymnasium wrappers that hold running statistics (NormalizeObservation, NormalizeReward)."""

# Optional extras for the envs that gymnasium ships behind one: the first match in the entry point.
_EXTRAS = {"box2d": "box2d", "mujoco": "mujoco"}
# Packages that register envs on import (env.imports), and the pg-lightning extra that installs each.
_PACKAGE_EXTRAS = {"minigrid": "minigrid", "popgym": "popgym", "ale_py": "atari"}
# Packages with no extra of ours: the pip name, where it is not the module's.
_PIP_NAMES = {"highway_env": "highway-env", "metaworld": "metaworld"}
# The ids that env packages people use register on import, by how they start (matched case-insensitively from the
# start of the id), and the module that registers them: an unknown id of this form names the package (`env_spec`).
# Keep it small: tests/test_new_user_envs.py checks each row.
ENV_PACKAGES: tuple[tuple[str, str], ...] = (
    (r"ALE/|\w+NoFrameskip-v\d+$", "ale_py"),  # ALE/Pong-v5; the legacy PongNoFrameskip-v4
    (r"(MiniGrid|BabyAI)-", "minigrid"),
    (r"popgym-", "popgym"),
    (r"(highway|merge|roundabout|parking|intersection|racetrack)-", "highway_env"),
    (r"Meta-World/", "metaworld"),
)

log = logging.getLogger(__name__)

Wrapper = Callable[[gym.Env], gym.Env]


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


def _extra_hint(env_id: str, imports: Sequence[str] | None) -> str:
    entry_point = str(env_spec(env_id, imports).entry_point)
    for needle, extra in _EXTRAS.items():
        if needle in entry_point:
            return f'; install the {extra} extra: pip install "pg-lightning[{extra}]"'
    return ""


def _wrapper_name(wrapper: Wrapper) -> str:
    func = getattr(wrapper, "func", wrapper)  # a functools.partial from config
    return getattr(func, "__qualname__", type(func).__name__)


_SPACES_TAG = 0x5EED5  # mixed into the reset seed: the spaces' streams differ from the env's own np_random
_SPACE_NAMES = ("action_space", "observation_space")
_REAL = (int, float, np.integer, np.floating)  # bool is an int: a True reward is 1


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_flag(value: Any) -> bool:
    """A ``bool``, a ``numpy.bool_`` or a 0-d numpy array of dtype bool."""
    kind = type(value)
    return kind is bool or kind is np.bool_ or (kind is np.ndarray and value.shape == () and value.dtype == np.bool_)


def is_reward(value: Any) -> bool:
    """A real number: an ``int`` (``bool`` included), a ``float``, a numpy integer or float, or a 0-d array of those."""
    if isinstance(value, _REAL):
        return True
    return isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "biuf"


def step_fault(reward: Any, terminated: Any, truncated: Any) -> str | None:
    """What is wrong with a step's reward and flags (``"returned terminated='no' (a str): ..."``), or None."""
    for name, value in (("terminated", terminated), ("truncated", truncated)):
        if not is_flag(value):
            return (
                f"returned {name}={_shown(value)} (a {type(value).__name__}): terminated and truncated must be "
                "booleans (bool or numpy.bool_)"
            )
    if not is_reward(reward):
        return (
            f"returned reward={_shown(reward)} (a {type(reward).__name__}): the reward must be a real number "
            "(int, float or a numpy number)"
        )
    return None


def _distinct(holders: Sequence[Any], names: Sequence[str]) -> list[gym.Space]:
    spaces: list[gym.Space] = []
    seen: set[int] = set()
    for holder in holders:
        for name in names:
            space = getattr(holder, name, None)
            if isinstance(space, gym.spaces.Space) and id(space) not in seen:
                seen.add(id(space))
                spaces.append(space)
    return spaces


def env_spaces(env: gym.Env, *outer: gym.Env | None) -> list[gym.Space]:
    """The distinct action and observation spaces of ``env.unwrapped``, ``env`` and ``outer`` (wrappers around it
    that may have spaces of their own), in that order."""
    return _distinct([env.unwrapped, env, *(o for o in outer if o is not None)], _SPACE_NAMES)


def vector_spaces(envs: gym.vector.VectorEnv) -> list[gym.Space]:
    """The distinct single and batched action and observation spaces of a vector env and its vector wrappers."""
    names = ("single_action_space", "single_observation_space", *_SPACE_NAMES)
    chain: list[Any] = [envs.unwrapped]
    env: Any = envs
    while env is not chain[0]:
        chain.append(env)
        env = getattr(env, "env", chain[0])
    return _distinct(chain, names)


def seed_spaces(spaces: Sequence[gym.Space], seed: int) -> None:
    """Seed each space from ``seed`` and its position (distinct streams, none equal to the env's ``np_random``)."""
    words = np.random.SeedSequence([int(seed), _SPACES_TAG]).generate_state(len(spaces))
    for space, word in zip(spaces, words, strict=True):
        space.seed(int(word))


def _seedable(seed: Any) -> TypeGuard[int]:
    return isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and bool(seed >= 0)


class EnvContract(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The layer `pg_lightning.envs.env_factory.EnvFactory` puts right around ``gym.make``'s env (under
    ``env.wrappers``, so the env it returns is still the last of those): seeds the spaces, checks the steps.

    - ``reset(seed=s)`` first seeds the action and observation spaces of the env (``env.unwrapped``'s, and those
      of the env ``EnvFactory`` returns, ``outer``, where its wrappers made others) from ``s`` (`seed_spaces`):
      every copy of a run, reset with its own seed, draws the same samples from its spaces in every run with
      that seed. A reset without a seed (an autoreset) leaves them as they are.
    - ``step`` checks the reward and flags (`step_fault`) and raises an EnvError naming the field.
      `unchecked` makes ``step`` the inner env's own (no Python call of this layer per step), for
      the collector's tight loop, which checks what each copy returns itself.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        spec = env.spec
        self.env_id = spec.id if spec is not None else type(env.unwrapped).__name__
        self.outer: gym.Env | None = None  # the env EnvFactory returns (set once its wrappers are applied)
        self.checked = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Seed the spaces from ``seed`` (when it is one), then reset the env."""
        if _seedable(seed):
            seed_spaces(env_spaces(self.env, self, self.outer), seed)
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """The env's step, its reward and flags checked (an EnvError naming the field)."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if type(reward) is not float or terminated is not False or truncated is not False:  # not the common case
            fault = step_fault(reward, terminated, truncated)
            if fault is not None:
                raise EnvError(f"env.id={self.env_id!r} {fault}")
        return obs, reward, terminated, truncated, info

    def unchecked(self) -> None:
        """Step straight into the inner env from now on: for a loop that checks every step itself."""
        if self.checked:
            self.step = self.env.step  # type: ignore[method-assign]  # an instance attribute: no call of this layer
            self.checked = False


def find_contract(env: gym.Env) -> EnvContract | None:
    """The `EnvContract` layer of ``env``, or None (an env that `EnvFactory` did not build)."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, EnvContract):
            return env
        env = env.env
    return None


def _null_callable(wrap: Wrapper) -> str | None:
    """The argument of a wrapper entry (a ``functools.partial`` from config) given as null where its constructor
    wants a callable (annotated ``Callable``, not optional): gymnasium's ``TransformObservation(func=None)`` is
    built without complaint and fails at the first observation, far from its config key."""
    if not isinstance(wrap, functools.partial):
        return None
    nulls = [name for name, value in wrap.keywords.items() if value is None]
    if not nulls:
        return None
    try:
        parameters = inspect.signature(wrap.func).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin)
        return None
    for name in nulls:
        annotation = parameters[name].annotation if name in parameters else inspect.Parameter.empty
        text = annotation if isinstance(annotation, str) else repr(annotation)
        if "Callable" in text and "None" not in text and "Optional" not in text:
            return name
    return None


class EnvFactory:
    """A picklable ``() -> gym.Env``: one env of the run, as training and evaluation both see it.

    ``__call__`` imports ``imports``, then ``gym.make(env_id, max_episode_steps=..., **kwargs)``
    (plus ``render_mode``), puts `EnvContract` around it (a seeded reset seeds the
    env's action and observation spaces too, so an env that samples them repeats itself for a seed; steps
    whose flags are not booleans or whose reward is not a number are an EnvError), then applies ``wrappers``
    in order (each must return a ``gymnasium.Env``). Async vector-env workers call it
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

    (A plain class, not a dataclass: Hydra reads a dataclass passed to ``instantiate`` as a config, and the
    datamodule is built as ``instantiate(cfg.data, env=factory)``.)
    """

    def __init__(
        self,
        env_id: str,
        kwargs: Mapping[str, Any] | None = None,
        imports: Sequence[str] = (),
        wrappers: Sequence[Wrapper] = (),
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.env_id = env_id
        self.kwargs = dict(kwargs or {})
        self.imports = tuple(imports)
        self.wrappers = tuple(wrappers)
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode

    def __repr__(self) -> str:
        return f"EnvFactory({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnvFactory) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # (kwargs is mutable: no hash)

    def __call__(self) -> gym.Env:
        kwargs = dict(self.kwargs)
        if self.render_mode is not None:
            kwargs["render_mode"] = self.render_mode
        spec = env_spec(self.env_id, self.imports)  # ConfigErrors for env.imports and env.id
        for name in unknown_arguments(spec.entry_point, self.kwargs):
            raise ConfigError(f"env.kwargs.{name}: {self.env_id}'s constructor takes no argument {name!r}")
        try:
            env = gym.make(self.env_id, max_episode_steps=self.max_episode_steps, **kwargs)
        except gym.error.DependencyNotInstalled as err:
            raise ConfigError(
                f"env.id: {self.env_id} needs a package that is not installed ({err})"
                f"{_extra_hint(self.env_id, self.imports)}"
            ) from err
        except Exception as err:
            raise ConfigError(f"env.kwargs: {self.env_id}'s constructor raised {type(err).__name__}: {err}") from err
        env = contract = EnvContract(env)  # seeds the spaces at each seeded reset; checks the steps
        for i, wrap in enumerate(self.wrappers):
            null = _null_callable(wrap)
            if null is not None:
                env.close()
                raise ConfigError(f"env.wrappers[{i}].{null}: {_wrapper_name(wrap)} needs a callable, got null")
            try:
                wrapped = wrap(env)
            except Exception as err:
                env.close()
                raise ConfigError(
                    f"env.wrappers[{i}]: {_wrapper_name(wrap)} could not wrap {self.env_id}: {type(err).__name__}: {err}"
                ) from err
            if not isinstance(wrapped, gym.Env):
                env.close()
                got = " ".join(f"{type(wrapped).__name__} {wrapped!r}".split())  # one line
                raise ConfigError(
                    f"env.wrappers[{i}]: {_wrapper_name(wrap)} returned {got[:80]}, not a gymnasium.Env "
                    "(a wrapper entry is an env -> env callable)"
                )
            env = wrapped
        if text_paths(env.observation_space):  # e.g. MiniGrid's mission: no network reads text (logged once)
            env = DropText(env)
        contract.outer = env
        return env


def warn_stateful_wrappers(env: gym.Env, env_id: str) -> None:
    """Log a warning for each wrapper of ``env`` that keeps running statistics (gymnasium's Normalize*)."""
    while isinstance(env, gym.Wrapper):
        stats = [name for name in STATEFUL_ATTRIBUTES if name in vars(env)]
        if stats:
            log.warning(
                "%s: the wrapper %s keeps running statistics (%s) in each env copy; they are not saved in "
                "checkpoints: a resumed run, evaluate.py and EvalCallback start them afresh",
                env_id,
                type(env).__name__,
                ", ".join(stats),
            )
        env = env.env
