"""One env copy, built the one way and held to the contract: `EnvFactory` and `EnvContract`.

One rule builds every env of a run: each copy of the training vector env (in this process or an
async worker), the probe that reads the spaces, and the evaluation envs (``evaluate.py`` and
``EvalCallback``): `EnvFactory` (the id, imports and kwargs of `pg_lightning.envs.registry`, the time limit, then
``env.wrappers``: ``env -> env`` callables applied in order, each must return a ``gymnasium.Env``).

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

import functools
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

import gymnasium as gym
import numpy as np

from pg_lightning.core.errors import ConfigError, EnvError
from pg_lightning.envs.registry import env_spec, extra_hint, unknown_arguments
from pg_lightning.envs.spaces import DropText, text_paths

__all__ = [
    "STATEFUL_ATTRIBUTES",
    "EnvContract",
    "EnvFactory",
    "env_spaces",
    "find_contract",
    "is_flag",
    "is_reward",
    "seed_spaces",
    "step_fault",
    "vector_spaces",
    "warn_stateful_wrappers",
]

STATEFUL_ATTRIBUTES = ("obs_rms", "return_rms")
"""Attributes of gymnasium wrappers that hold running statistics (NormalizeObservation, NormalizeReward)."""

log = logging.getLogger(__name__)

Wrapper = Callable[[gym.Env], gym.Env]


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
    """The layer `EnvFactory` puts right around ``gym.make``'s env (under
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
                f"{extra_hint(self.env_id, self.imports)}"
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
