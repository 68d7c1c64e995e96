"""A network factory from its Hydra config (a ``_target_`` with ``_partial_: true``), with one-line errors.

``instantiate_network`` is the shared half of ``pg_lightning.envs.networks.build_policy`` and ``build_value_network``:
it resolves the config's target, checks the arguments against the factory's signature, and calls it with the env's
spaces; every failure is one `ConfigError` line naming the config key. Layer: envs (gymnasium, Hydra; no Lightning).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from pg_lightning.core.errors import ConfigError
from pg_lightning.envs.checks import _HINT_TRACEBACK, _name, _one_line

__all__ = ["instantiate_network"]


def instantiate_network(key: str, node: Any, spaces: dict[str, gym.Space], inherited: frozenset[str], fix: str) -> Any:
    """Instantiate the partial ``node`` (a ``_target_``/``_partial_`` config) and call it with ``spaces``.

    Every failure is one :class:`ConfigError` line naming ``key``: a missing or unimportable
    ``_target_``, arguments the target does not take (``inherited``: keys of pg_lightning's own
    config for ``key``; ``fix``: the override that replaces them) or lacks, and any exception of
    the constructor.
    """
    import hydra
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig) and OmegaConf.is_missing(node, "_target_"):
        example = (
            "network=custom network._target_=mypkg.nets.make_policy"
            if key == "network"
            else (f"{key}._target_=mypkg.nets.make_value")
        )
        raise ConfigError(f"{key}._target_: missing; name your network's factory, e.g. {example}")
    target = node.get("_target_") if isinstance(node, (Mapping, DictConfig)) else None
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
            takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
            unexpected = [] if takes_any else [k for k in given if k not in params]
            if unexpected:
                from_ours = [k for k in unexpected if k in inherited]
                hint = (
                    f" (keys of pg_lightning's own {key} config, which a {key}._target_ override keeps): "
                    f"{fix.format(target=target, drop=' '.join(f'~{key}.{k}' for k in from_ours))}"
                    if from_ours
                    else f": remove {' '.join(f'~{key}.{k}' for k in unexpected)}"
                )
                raise ConfigError(f"{key}: {target} does not take {', '.join(unexpected)}{hint}") from err
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
    except Exception as err:
        raise ConfigError(
            f"{key}: {target}({', '.join(f'{k}=...' for k in spaces)}"
            f"{''.join(f', {k}={v!r}' for k, v in given.items())}) raised {type(err).__name__}: "
            f"{_one_line(err)} {_HINT_TRACEBACK}"
        ) from err
