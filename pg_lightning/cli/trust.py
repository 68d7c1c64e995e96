"""What a checkpoint's saved config may make pg_lightning call: an allowlist of objects, checked before any call.

A checkpoint carries its run's config (``hyper_parameters.config``), and ``evaluate.py`` rebuilds the
network and the env wrappers from it with Hydra, which calls every ``_target_`` it meets, at any depth
(nested ``_target_`` entries, ``_args_``, keyword arguments, wrapper entries). A *name* proves nothing:
Hydra looks a name up through module attributes, so ``gymnasium.os.makedirs`` is :func:`os.makedirs`
and ``pg_lightning.cli.evaluation.Path.write_text`` is :meth:`pathlib.Path.write_text`. So each
target is resolved here, importing nothing outside the packages of :data:`TRUSTED_PACKAGES`, and the
**object** it resolves to must be one of:

- the project's own factories and wrappers that configs name (:data:`PROJECT_TARGETS`, by identity,
  under whatever path reaches them);
- a gymnasium wrapper class (a subclass of :class:`gymnasium.Wrapper` defined under
  ``gymnasium.wrappers``), except those that write files (:data:`FILE_WRITING_WRAPPERS`);
- a ``torch.optim`` optimizer or a ``torch.optim.lr_scheduler`` scheduler class.

Anything else (a function or method reached through a module attribute, a class of any other
package, a name that cannot be found, a non-string ``_target_``) is refused before anything is
called, in one line naming the config path (``network.hidden_sizes._target_``,
``env.wrappers[0].func._target_``) and the object; so are OmegaConf interpolations (``${...}``),
which Hydra would resolve (``oc.decode`` can make new ``_target_`` entries) and which a checkpoint
that ``train.py`` wrote never holds (its config is saved resolved).

- :func:`check_checkpoint_code` (``evaluate.py`` without ``trust_checkpoint_code=true``): the
  message says how to trust the checkpoint.
- :func:`check_resume_code` (``train.py ckpt_path=...``): a resume builds everything from the
  run's own config and calls nothing of the checkpoint's; a target the checkpoint names is
  accepted where the run's own config names the same one at the same path, so a checkpoint that
  names other code is refused as not one of this run's.

Not covered: ``env.imports`` and the module of a ``module:EnvId`` id are imported, as gymnasium
does for any such id (an installed module, by its name). The checkpoint file itself is read with
``torch.load(weights_only=True)`` (`pg_lightning.cli.checkpoints.load_checkpoint`).
Layer: cli (may import every layer).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import gymnasium as gym
import torch

from pg_lightning.core import baselines
from pg_lightning.core.errors import ConfigError

__all__ = [
    "FILE_WRITING_WRAPPERS",
    "PROJECT_TARGETS",
    "TRUSTED_PACKAGES",
    "check_checkpoint_code",
    "check_resume_code",
    "checkpoint_code",
    "is_allowed",
    "refusals",
    "resolve_target",
]

TRUSTED_PACKAGES = ("pg_lightning", "gymnasium", "torch.optim")
"""The packages whose modules resolving a checkpoint's target may import (``torch`` itself is already imported)."""

PROJECT_TARGETS = (
    "pg_lightning.envs.networks.make_policy",  # conf/network/*.yaml
    "pg_lightning.envs.networks.make_value_network",  # conf/baseline/value.yaml's value_net
    "pg_lightning.envs.spaces.DropText",  # the project's own wrapper (text observations)
    "pg_lightning.lightning.module.ReinforceModule",  # model (ReinforceModule.load_from_checkpoint)
    "pg_lightning.core.loss.ReinforceLoss",  # model.loss
    *(f"pg_lightning.core.baselines.{name}" for name in baselines.__all__),  # conf/baseline/*.yaml
)
"""The project's own callables that a checkpoint's config may name: in ``network`` and ``env.wrappers``
(evaluation), and in ``model`` and ``baseline`` (`pg_lightning.cli.checkpoints.load_module`)."""

FILE_WRITING_WRAPPERS = ("gymnasium.wrappers.RecordVideo",)
"""gymnasium wrappers that write files (to a folder their arguments name): not called from a checkpoint
without trust (``evaluate.py video=true`` records videos itself)."""

_ALLOWED = (
    "pg_lightning's module, loss, baselines, network factories and wrappers, gymnasium's wrappers, torch.optim's "
    "optimizers and lr schedulers"
)


def _importable(name: str) -> bool:
    return name == "torch" or any(name == p or name.startswith(p + ".") for p in TRUSTED_PACKAGES)


def resolve_target(target: str) -> Any:
    """The object a ``_target_`` string names, looked up as Hydra looks it up, importing only trusted modules.

    Hydra imports the first part, then walks attributes, importing ``a.b.c`` where ``c`` is no
    attribute of the module ``a.b``: the same walk here, but any module to import must be in
    :data:`TRUSTED_PACKAGES` (``ValueError`` otherwise, naming why; ``LookupError`` for a name that
    is not there). Whatever it returns, Hydra's lookup of the same string returns too.
    """
    parts = target.split(".")
    if not all(part.isidentifier() for part in parts):
        raise LookupError("not a dotted path of names")
    if not _importable(parts[0]):
        raise ValueError(f"is outside {', '.join(TRUSTED_PACKAGES)}")
    try:
        obj: Any = importlib.import_module(parts[0])
    except Exception as err:
        raise LookupError(_one_line(err)) from err
    for i, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
            continue
        except AttributeError:
            pass
        except Exception as err:  # e.g. a lazy module attribute whose dependency is missing
            raise LookupError(_one_line(err)) from err
        name = ".".join(parts[: i + 1])
        if isinstance(obj, ModuleType):  # Hydra imports the submodule
            if not _importable(name):
                raise ValueError(f"would import {name}, outside {', '.join(TRUSTED_PACKAGES)}")
            try:
                obj = importlib.import_module(name)
            except Exception as err:
                raise LookupError(_one_line(err)) from err
            continue
        raise LookupError(f"{'.'.join(parts[:i])} has no attribute {part}")
    return obj


@functools.lru_cache(maxsize=1)
def _project_objects() -> tuple[Any, ...]:
    objects = []
    for path in PROJECT_TARGETS:
        module, _, name = path.rpartition(".")
        objects.append(getattr(importlib.import_module(module), name))
    return tuple(objects)


@functools.lru_cache(maxsize=1)
def _file_writing_wrappers() -> tuple[Any, ...]:
    found = []
    for path in FILE_WRITING_WRAPPERS:
        with contextlib.suppress(LookupError, ValueError):  # not in this gymnasium: nothing to exclude
            found.append(resolve_target(path))
    return tuple(found)


def is_allowed(obj: Any) -> bool:
    """Whether a checkpoint's config may call ``obj`` without trust (see the module's docstring)."""
    if any(obj is allowed for allowed in _project_objects()):
        return True
    if not isinstance(obj, type) or any(obj is unsafe for unsafe in _file_writing_wrappers()):
        return False
    module = str(getattr(obj, "__module__", "") or "")
    if issubclass(obj, gym.Wrapper):
        return module == "gymnasium.wrappers" or module.startswith("gymnasium.wrappers.")
    if issubclass(obj, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)):
        return module == "torch.optim" or module.startswith("torch.optim.")
    return False


def _describe(obj: Any) -> str:
    if isinstance(obj, ModuleType):
        return f"the module {obj.__name__}"
    qualname = getattr(obj, "__qualname__", None)
    module = getattr(obj, "__module__", None)
    if isinstance(qualname, str) and isinstance(module, str):
        return f"{module}.{qualname}"
    return f"a {type(obj).__name__} value"


def checkpoint_code(config: Mapping[Any, Any], module: bool = False) -> dict[str, Any]:
    """The parts of a saved config that evaluation instantiates, by key: ``network`` and ``env.wrappers``;
    with ``module``, also ``model`` and ``baseline``, which rebuilding the `ReinforceModule` instantiates.

    A wrapper given as a bare class path is the entry ``{_target_: path}``, as ``wrapper_specs`` reads it.
    """
    env = config.get("env")
    wrappers = env.get("wrappers") if isinstance(env, Mapping) else None
    if isinstance(wrappers, list):
        wrappers = [{"_target_": w} if isinstance(w, str) else w for w in wrappers]
    parts = {"network": config.get("network"), "env.wrappers": wrappers}
    return parts | ({"model": config.get("model"), "baseline": config.get("baseline")} if module else {})


def _code_leaves(tree: Any, where: str) -> Iterator[tuple[str, Any]]:
    """``(path, value)`` of every ``_target_`` and every interpolation string in ``tree``, depth first."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            path = f"{where}.{key}"
            if key == "_target_":
                yield path, value
            else:
                yield from _code_leaves(value, path)
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _code_leaves(value, f"{where}[{i}]")
    elif isinstance(tree, str) and "${" in tree:
        yield where, tree


def refusals(tree: Any, where: str, own: Mapping[str, Any] | None = None) -> Iterator[str]:
    """``"<path>=<value> <why>"`` for each target (or interpolation) of ``tree`` that may not be called.

    ``where``: the config key of ``tree`` (``network``); ``own``: values accepted at a path
    whatever they are, because the run's own config holds them there (see :func:`check_resume_code`).
    """
    for path, value in _code_leaves(tree, where):
        if own is not None and path in own and own[path] == value:
            continue
        shown = value if isinstance(value, str) else repr(value)
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        if not path.endswith("._target_"):
            yield f"{path}={shown} is an interpolation (train.py saves configs resolved)"
            continue
        if not isinstance(value, str):
            yield f"{path}={shown} is not the path of a class or function"
            continue
        try:
            obj = resolve_target(value)
        except ValueError as err:
            yield f"{path}={shown} {err}"
            continue
        except LookupError as err:
            yield f"{path}={shown} cannot be found ({err})"
            continue
        if not is_allowed(obj):
            yield f"{path}={shown} resolves to {_describe(obj)}"


def _first(config: Mapping[str, Any], own: Mapping[str, Any] | None = None, module: bool = False) -> str | None:
    for key, tree in checkpoint_code(config, module).items():
        for refusal in refusals(tree, key, own):
            return refusal
    return None


def check_checkpoint_code(config: Mapping[str, Any], ckpt: str, module: bool = False) -> None:
    """Refuse (ConfigError, one line) a saved config whose ``network`` or ``env.wrappers`` (with ``module``, also
    ``model`` or ``baseline``) names code outside the allowlist; nothing is called or imported (beyond
    :data:`TRUSTED_PACKAGES`) on the way.

    ``evaluate.py`` and ``ReinforceModule.load_from_checkpoint`` call it unless ``trust_checkpoint_code=true``;
    ``ckpt`` names the file in the message.
    """
    refusal = _first(config, module=module)
    if refusal is not None:
        raise ConfigError(
            f"trust_checkpoint_code: {ckpt!r}: {refusal}, which pg_lightning does not run from a checkpoint without "
            f"trust (it calls {_ALLOWED}); pass trust_checkpoint_code=true if you trust this checkpoint"
        )


def check_resume_code(config: Mapping[str, Any], ours: Mapping[Any, Any], ckpt: str) -> None:
    """Refuse (ConfigError naming ``ckpt_path``) to resume from a checkpoint whose saved config names
    code that is neither on the allowlist nor in this run's own config at the same path.

    A resume calls nothing of the checkpoint's config (the run's own config builds everything), so
    this only tells a crafted or foreign checkpoint apart; ``ours``: the run's resolved config.
    """
    own = {path: value for key, tree in checkpoint_code(ours).items() for path, value in _code_leaves(tree, key)}
    refusal = _first(config, own)
    if refusal is not None:
        raise ConfigError(
            f"ckpt_path: {ckpt!r}: {refusal}, which pg_lightning does not run from a checkpoint (it calls {_ALLOWED}), "
            "and this run's config does not name it there: resume with the settings of the checkpoint's own run"
        )


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
