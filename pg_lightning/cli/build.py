"""Config nodes to objects (cli layer): the env block to an `EnvFactory` and its wrappers, network nodes to networks,
the baseline node to a baseline.

What Hydra and OmegaConf are needed for, in one place: ``env.wrappers`` entries checked and built (``_target_``
with ``_partial_``), the ``env`` block (or a checkpoint's copy of it) as an
:class:`~pg_lightning.envs.contract.EnvFactory`, and the ``network`` and ``baseline.value_net`` partials called
with the env's spaces and checked. Each failure is a :class:`~pg_lightning.core.errors.ConfigError` naming the key.
The layers below (``pg_lightning.envs``, ``pg_lightning.lightning``) take the objects built here and import neither
Hydra nor OmegaConf.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from pg_lightning.cli.schema import check_node, close_paths, instantiate, quiet
from pg_lightning.core.baselines import Baseline
from pg_lightning.core.errors import ArgumentError, ConfigError
from pg_lightning.envs.checks import _HINT_TRACEBACK, _name, _one_line, check_policy, check_value_network
from pg_lightning.envs.contract import EnvFactory, warn_stateful_wrappers
from pg_lightning.envs.registry import episode_limit
from pg_lightning.envs.vector_envs import close_probe

__all__ = [
    "as_wrappers",
    "build_policy",
    "build_value_network",
    "env_block",
    "env_factory",
    "instantiate_network",
    "instantiate_wrappers",
    "probe_env",
    "to_plain",
    "wrapper_specs",
]

log = logging.getLogger(__name__)


def wrapper_specs(wrappers: Any, key: str = "env.wrappers") -> list[dict[str, Any]]:
    """``env.wrappers`` checked: a list of ``{_target_: wrapper, **args}`` whose targets exist.

    Returns plain dicts with ``_partial_: true``: :func:`instantiate_wrappers` makes each an
    ``env -> env`` callable (what :class:`~pg_lightning.envs.contract.EnvFactory` applies), whether
    or not the user wrote ``_partial_``. A bare class path is the entry ``{_target_: path}``. A ``_target_`` that
    does not resolve is a ConfigError naming ``env.wrappers[i]._target_``, with the close paths (`close_paths`) when
    there are any: ``did you mean gymnasium.wrappers.FlattenObservation?``.
    """
    if wrappers is None:
        return []
    if isinstance(wrappers, (DictConfig, ListConfig)):
        wrappers = OmegaConf.to_container(wrappers, resolve=True)
    if not isinstance(wrappers, list):
        raise ConfigError(f"{key} must be a list of wrappers ({{_target_: ..., args}}), got {wrappers!r}")
    specs = []
    for i, spec in enumerate(wrappers):
        if isinstance(spec, str):
            spec = {"_target_": spec}  # a bare class path, e.g. gymnasium.wrappers.FlattenObservation
        if not isinstance(spec, dict) or not isinstance(spec.get("_target_"), str):
            raise ConfigError(
                f"{key}[{i}] must be a mapping with a _target_ (a wrapper class or function), got {spec!r}"
            )
        try:
            with quiet("hydra.utils"):  # Hydra logs its own multi-line error first: the ConfigError says it all
                hydra.utils.get_object(spec["_target_"])  # what instantiate will look up: fail before building
        except Exception as err:
            close = close_paths(spec["_target_"])
            if close:
                raise ConfigError(
                    f"{key}[{i}]._target_: cannot find {spec['_target_']!r}; did you mean {', '.join(close)}?"
                ) from err
            reason = " ".join(str(err).split())  # one line
            raise ConfigError(f"{key}[{i}]._target_: cannot find {spec['_target_']!r} ({reason})") from err
        specs.append({**spec, "_partial_": True})
    return specs


def instantiate_wrappers(specs: list[dict[str, Any]], key: str = "env.wrappers") -> tuple[Callable, ...]:
    """Hydra-instantiate checked :func:`wrapper_specs` to ``env -> env`` partials; errors name ``env.wrappers[i]``."""
    built = []
    for i, spec in enumerate(specs):
        try:
            built.append(hydra.utils.instantiate(spec))
        except Exception as err:
            raise ConfigError(f"{key}[{i}]: cannot build {spec['_target_']!r}: {err}") from err
    return tuple(built)


def env_block(env: Any) -> EnvFactory:
    """The env block (``cfg.env``, or the plain dict a checkpoint saved) as an :class:`EnvFactory`, as it is given:
    ``env.kwargs.max_episode_steps`` stays in its kwargs and no time limit is set, for the one who builds the envs
    to apply its own (`pg_lightning.lightning.data.RolloutDataModule`'s ``max_episode_steps``).
    Its wrappers are built (:func:`as_wrappers`)."""
    env = to_plain(env)
    return EnvFactory(
        env["id"], dict(env.get("kwargs") or {}), tuple(env.get("imports") or ()), as_wrappers(env.get("wrappers"))
    )


def env_factory(env: Any, max_episode_steps: int | None = None, render_mode: str | None = None) -> EnvFactory:
    """The :class:`EnvFactory` of a run's ``env`` block and its ``data.max_episode_steps``: one env of the run.

    ``env`` is the composed ``cfg.env`` or the plain dict a checkpoint saved
    (``hyper_parameters.config["env"]``): the one recipe for training's probe, ``load_policy`` and
    ``evaluate`` (the vector env applies the same :func:`episode_limit` rule to each copy).
    """
    given = env_block(env)
    kwargs, steps, _ = episode_limit(given.env_id, given.kwargs, max_episode_steps, given.imports)
    return EnvFactory(given.env_id, kwargs, given.imports, given.wrappers, steps, render_mode)


def as_wrappers(wrappers: Any, key: str = "env.wrappers") -> tuple[Callable, ...]:
    """``env.wrappers`` as ``env -> env`` callables: callables (built by Hydra, or given in Python) as
    they are; config entries (``{_target_: ..., args}`` or a class path) checked and built."""
    items = list(to_plain(wrappers) or [])
    if all(callable(w) for w in items):
        return tuple(items)
    return instantiate_wrappers(wrapper_specs(items, key), key)


def probe_env(
    env: Any, max_episode_steps: int | None = None, warn_stateful: bool = True
) -> tuple[gym.Space, gym.Space]:
    """Build one env exactly as training will (imports, id, kwargs, time limit, wrappers); return its spaces.

    ``env``: a run's ``env`` block (``cfg.env``) or the plain dict a checkpoint saved, with its
    ``data.max_episode_steps``. Every failure is a ConfigError naming ``env.imports[i]``, ``env.id``,
    ``env.kwargs[.<key>]`` or ``env.wrappers[i]``. With ``warn_stateful``, wrappers that keep running statistics
    are named in a warning: their state lives in each env copy and is not saved in checkpoints.
    """
    factory = env_factory(env, max_episode_steps)
    built = factory()
    try:
        if warn_stateful:
            warn_stateful_wrappers(built, factory.env_id)
        return built.observation_space, built.action_space
    finally:
        close_probe(built, factory.env_id)


def to_plain(node: Any) -> Any:
    """An OmegaConf node as plain Python containers (resolved); anything else as it is."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


# --- networks: a ``_target_`` with ``_partial_: true``, called with the env's spaces and checked


def instantiate_network(key: str, node: Any, spaces: dict[str, gym.Space]) -> Any:
    """Instantiate the partial ``node`` (a ``_target_``/``_partial_`` config) and call it with ``spaces``.

    Every failure is one :class:`ConfigError` line naming ``key``: a missing or unimportable ``_target_``, its keys
    against the target's signature (`pg_lightning.cli.schema.check_node`: arguments it does not take, values outside
    their annotations), arguments it lacks, and any exception of the constructor.
    """
    if isinstance(node, DictConfig) and OmegaConf.is_missing(node, "_target_"):
        example = (
            "network=custom network._target_=mypkg.nets.make_policy"
            if key == "network"
            else (f"{key}._target_=mypkg.nets.make_value")
        )
        raise ConfigError(f"{key}._target_: missing; name your network's factory, e.g. {example}")
    target = node.get("_target_") if isinstance(node, (Mapping, DictConfig)) else None
    if isinstance(node, DictConfig):
        check_node(node, key)
    try:
        factory = hydra.utils.instantiate(node)
    except Exception as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{key}._target_={target}: {_one_line(err)}") from err
    if not callable(factory):
        raise ConfigError(f"{key}: instantiating it gave a {_name(factory)}, expected a partial ({key}._partial_=true)")
    func = getattr(factory, "func", factory)
    given = dict(getattr(factory, "keywords", None) or {})
    target = target or _name(func)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(*getattr(factory, "args", ()), **given, **spaces)
        except TypeError as err:
            params = signature.parameters
            missing = [
                p.name
                for p in params.values()
                if p.default is p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in given
                and p.name not in spaces
            ]
            if missing:
                raise ConfigError(
                    f"{key}: {target} needs {', '.join(missing)}: add {' '.join(f'+{key}.{k}=...' for k in missing)}"
                ) from err
            raise ConfigError(
                f"{key}: {target} cannot be called with {', '.join([*spaces, *given])}: {_one_line(err)}; "
                f"it is called as {target}({', '.join(f'{k}=...' for k in spaces)}, **{key})"
            ) from err
    try:
        return factory(**spaces)
    except ConfigError:
        raise
    except ArgumentError as err:  # the factory's own argument, or one a module it builds names (action_bounds)
        raise ConfigError(f"{key}.{err}") from err
    except Exception as err:
        raise ConfigError(
            f"{key}: {target}({', '.join(f'{k}=...' for k in spaces)}"
            f"{''.join(f', {k}={v!r}' for k, v in given.items())}) raised {type(err).__name__}: "
            f"{_one_line(err)} {_HINT_TRACEBACK}"
        ) from err


def build_policy(network: Any, observation_space: gym.Space, action_space: gym.Space) -> nn.Module:
    """The policy of a ``network`` config (``cfg.network``: a ``_target_`` with ``_partial_: true``),
    called with the env's spaces and checked by `pg_lightning.envs.checks.check_policy`.

    Every failure is one :class:`ConfigError` line naming ``network``; in particular a
    ``network._target_=...`` override on top of the default ``network=mlp`` (whose
    ``hidden_sizes``, ``activation``, ... the new target does not take) points to
    ``network=custom network._target_=...``, which replaces the whole group.
    """
    policy = instantiate_network(
        "network", network, {"observation_space": observation_space, "action_space": action_space}
    )
    check_policy(policy, observation_space, action_space)
    return policy


def build_value_network(value_net: Any, observation_space: gym.Space) -> nn.Module:
    """The value network of a ``baseline.value_net`` config (a partial), called with the observation space
    and checked by `pg_lightning.envs.checks.check_value_network`; every failure is one :class:`ConfigError` line naming
    ``baseline.value_net``."""
    value_net = instantiate_network("baseline.value_net", value_net, {"observation_space": observation_space})
    check_value_network(value_net, observation_space)
    return value_net


def make_baseline(cfg: DictConfig, observation_space: gym.Space) -> Baseline:
    """Instantiate ``cfg.baseline``; a learned one's ``value_net`` (a partial) gets the space."""
    value_net = OmegaConf.select(cfg, "baseline.value_net")
    built: dict[str, nn.Module] = {}
    if value_net is not None:
        built["value_net"] = build_value_network(value_net, observation_space)
    return instantiate(cfg.baseline, "baseline", **built)
