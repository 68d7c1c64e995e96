"""The config checked against the constructors it configures (cli layer): the signatures are the schema.

Every node with a ``_target_`` is checked against that target's signature before anything is built: a key
that is not one of its arguments (with a did-you-mean), and a value outside the argument's annotation
(``Annotated[float, Interval(ge=0, le=1)]``, ``Literal[...]``, ``bool``, ...), each one `ConfigError` line that
names the full key: ``model.loss.gamma must be a number in [0, 1], got 1.5``. The annotations are the
constructors' own (`pg_lightning.core.arguments`); Lightning's and torch's are theirs, and their values are
judged by building their objects once (`dry_build`): an argument a constructor refuses is found by building it
again without each argument the config set, not by reading the message. The top-level keys that no constructor
takes are annotated on `RunSettings` and `EnvSettings`.

`EXTRA_BOUNDS` holds the few bounds of other libraries' arguments that their constructors accept but a run
cannot use; ``docs/config_keys.md`` is generated from all of this (``python -m pg_lightning.cli.schema``).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import logging
import math
import os
import pkgutil
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, ListConfig, OmegaConf

from pg_lightning.core.arguments import Interval, argument_hints, conforms, describe
from pg_lightning.core.errors import ArgumentError, ConfigError, config_error_in
from pg_lightning.envs.networks import make_policy, make_value_network

__all__ = [
    "EXTRA_BOUNDS",
    "EnvSettings",
    "RunSettings",
    "Threads",
    "check_config",
    "check_finite",
    "check_settings",
    "close_paths",
    "dry_build",
    "instantiate",
    "quiet",
    "signature_of",
]


@dataclass(frozen=True)
class Threads:
    """``torch_num_threads``: 1 to 4 x this machine's CPUs. More threads than CPUs only slow a run down, and
    ``torch.set_num_threads(100000)`` crashes the process (libgomp: out of memory, or a segfault)."""

    def ok(self, v: Any) -> bool:
        """Whether ``v`` threads can run here."""
        return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4 * (os.cpu_count() or 1)

    @property
    def text(self) -> str:
        """The bound, with this machine's count."""
        return f"from 1 to 4 x os.cpu_count() (at most {4 * (os.cpu_count() or 1)} here)"


@dataclass(frozen=True)
class NonEmpty:
    """A non-empty string."""

    text = "that is not empty"

    def ok(self, v: Any) -> bool:
        """Whether ``v`` is not empty."""
        return v != ""


SEED = Annotated[int, Interval(ge=0, le=2**32 - 1)]
"""numpy's seeds (the envs') are unsigned 32-bit words."""


@dataclass
class RunSettings:
    """The top-level keys of ``conf/train.yaml`` (``pg_lightning.run`` reads them; no constructor takes them)."""

    seed: SEED = 0
    ckpt_path: str | None = None
    optimized_metric: Annotated[str, NonEmpty()] = "rollout/return_mean_100"
    torch_num_threads: Annotated[int, Threads()] | None = 1


@dataclass
class EnvSettings:
    """The ``env`` block: what every env copy is built from (its id and imports are checked against the world)."""

    id: str
    kwargs: dict[str, Any]
    imports: list[str]
    wrappers: list[Any]
    return_threshold: float | Literal["spec"] | None = "spec"


LR = Annotated[float, Interval(gt=0, le=1e3)]
"""Adam moves every weight by about ``lr`` per update whatever the gradient's scale: beyond 1e3 an update only
overflows the weights (``lr=1e308`` makes them inf at the first step)."""

# Bounds of other libraries' arguments that their constructors accept and a run cannot use (each fails later,
# mid-run, or makes the run do nothing). Keyed by class (subclasses included); these add to the signature's own
# annotation. Their value sets (accelerators, precisions, strategies, profilers) are never restated: the
# constructors judge them (`dry_build`).
EXTRA_BOUNDS: dict[str, dict[str, Any]] = {
    "pytorch_lightning.trainer.trainer.Trainer": {
        "max_epochs": Literal[-1] | Annotated[int, Interval(ge=1)] | None,
        "log_every_n_steps": Annotated[int, Interval(ge=1)] | None,
        "num_sanity_val_steps": Annotated[int, Interval(ge=-1)] | None,
        "num_nodes": Annotated[int, Interval(ge=1)],
        "fast_dev_run": bool | Annotated[int, Interval(ge=0)],
        "gradient_clip_val": Annotated[float, Interval(ge=0)] | None,
    },
    "pytorch_lightning.strategies.ddp.DDPStrategy": {  # torch.distributed's backends; refused only at setup
        "process_group_backend": Literal["gloo", "nccl", "mpi", "ucc"] | None,
    },
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint": {
        "save_top_k": Annotated[int, Interval(ge=-1)],
        "every_n_epochs": Annotated[int, Interval(ge=0)] | None,
    },
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping": {"patience": Annotated[int, Interval(ge=0)]},
    # (every progress bar: tqdm's, rich's, pg_lightning's)
    "pytorch_lightning.callbacks.progress.progress_bar.ProgressBar": {"refresh_rate": Annotated[int, Interval(ge=0)]},
    "pytorch_lightning.loggers.csv_logs.CSVLogger": {"flush_logs_every_n_steps": Annotated[int, Interval(ge=1)]},
    "torch.optim.optimizer.Optimizer": {"lr": LR},
    "torch.optim.lr_scheduler.LinearLR": {
        "start_factor": Annotated[float, Interval(gt=0, le=1)],
        "end_factor": Annotated[float, Interval(ge=0, le=1)],
        "total_iters": Annotated[int, Interval(ge=1)],
    },
    "torch.optim.lr_scheduler.CosineAnnealingLR": {
        "T_max": Annotated[int, Interval(ge=1)],
        "eta_min": Annotated[float, Interval(ge=0, le=1e3)],
    },
}


# --------------------------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Signature:
    """What a target takes: its arguments' annotations (with `EXTRA_BOUNDS`), defaults, and whether any other
    keyword goes through (``**kwargs`` all the way up)."""

    name: str
    hints: dict[str, Any]
    defaults: dict[str, Any]
    open: bool


@contextlib.contextmanager
def quiet(*names: str) -> Iterator[None]:
    """The loggers ``names`` silenced for the block (Hydra's lookup error, Lightning's info lines of a dry build)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def locate(path: Any) -> Any:
    """The object a ``_target_`` names, or None (instantiate names a target it cannot find)."""
    if not isinstance(path, str):
        return None
    with quiet("hydra.utils"):
        try:
            return hydra.utils.get_object(path)
        except Exception:  # noqa: BLE001  (any failure to find or import it: instantiate reports it, naming the key)
            return None


def close_paths(path: str, n: int = 3) -> list[str]:
    """Close matches of a dotted path that does not resolve (a ``_target_`` with a typo): the names beside the part
    that fails, e.g. ``gymnasium.wrappers.FlattenObservation`` for ``gymnasium.wrappers.FlattenObservaton``, or
    ``gymnasium.wrappers.TimeLimit`` for ``gymnasium.wraper.TimeLimit``.

    Imports only what the path itself names (its longest importable prefix, as Hydra's lookup did); the candidates
    are the public attributes of the last object that resolves, and the submodules a package lists without
    importing them (top-level modules, when not even the first name imports). A path of one name that
    ``gymnasium.wrappers`` holds suggests its full path. Empty when nothing is close.
    """
    parts = path.split(".")
    if not all(parts):
        return []
    if len(parts) == 1:  # a bare class name: the full path, when gymnasium.wrappers (imported with gymnasium) has it
        wrappers = sys.modules.get("gymnasium.wrappers")
        return [f"gymnasium.wrappers.{path}"] if wrappers is not None and hasattr(wrappers, path) else []
    obj: Any = None
    depth = 0  # parts[:depth] resolve to obj
    for k in range(len(parts), 0, -1):  # the longest prefix that imports as a module
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except Exception:  # noqa: BLE001, S112  (not a module, or one that fails: Hydra's lookup said why)
            continue
        depth = k
        break
    while depth < len(parts) and hasattr(obj, parts[depth]):  # then attributes, as far as they go
        obj = getattr(obj, parts[depth])
        depth += 1
    if depth == len(parts):  # it resolves after all (Hydra failed for another reason): nothing to suggest
        return []
    wrong = parts[depth]
    if depth == 0:
        names = {m.name for m in pkgutil.iter_modules()}
    else:
        names = {name for name in dir(obj) if not name.startswith("_")}
        if inspect.ismodule(obj) and hasattr(obj, "__path__"):  # a package: its submodules, listed, not imported
            names |= {m.name for m in pkgutil.iter_modules(obj.__path__)}
    same_but_case = sorted(name for name in names if name.lower() == wrong.lower())
    close = same_but_case + [c for c in difflib.get_close_matches(wrong, sorted(names), n=n) if c not in same_but_case]
    prefix, rest = parts[:depth], parts[depth + 1 :]
    known = {c: _resolves(obj, c, rest) for c in close}  # drop those whose remaining parts are known not to resolve
    ranked = [c for c in close if known[c]] + [c for c in close if known[c] is None]
    return [".".join([*prefix, c, *rest]) for c in ranked[:n]]


def _resolves(obj: Any, name: str, rest: list[str]) -> bool | None:
    """Whether ``obj.name.<rest>`` resolves, by attributes of what is loaded already; None when that would take an
    import (a submodule or top-level module not imported yet)."""
    if obj is None or not hasattr(obj, name):
        loaded = sys.modules.get(name if obj is None else f"{obj.__name__}.{name}")
        if loaded is None:
            return None
        target: Any = loaded
    else:
        target = getattr(obj, name)
    for part in rest:
        if not hasattr(target, part):
            return None if inspect.ismodule(target) and hasattr(target, "__path__") else False
        target = getattr(target, part)
    return True


def _path(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


def signature_of(target: Any) -> Signature | None:
    """The `Signature` of a class or function; a class's ``__init__`` and, while it passes ``**kwargs`` on,
    its bases'; None for what has no readable signature."""
    chain = [k for k in getattr(target, "__mro__", (target,)) if k is not object]
    hints: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    open_ = False
    for klass in chain:
        func = vars(klass).get("__init__") if isinstance(klass, type) else klass
        if func is None:
            continue
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            return None
        own = argument_hints(func)
        for name, p in params.items():
            if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            hints.setdefault(name, own.get(name, Any))
            if p.default is not p.empty:
                defaults.setdefault(name, p.default)
        open_ = any(p.kind == p.VAR_KEYWORD for p in params.values())
        if not open_:
            break
    for klass in reversed(chain):  # base classes first: a subclass's bound wins
        for name, bound in EXTRA_BOUNDS.get(_path(klass), {}).items():
            if name in hints:
                hints[name] = bound
    return Signature(getattr(target, "__qualname__", str(target)), hints, defaults, open_)


# --------------------------------------------------------------------------------------------- checks


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def _is_node(value: Any) -> bool:
    return isinstance(value, DictConfig) and "_target_" in value


def _refuse(key: str, annotation: Any, value: Any) -> ConfigError:
    return ConfigError(f"{key} must be {describe(annotation)}, got {value!r}")


def check_settings(node: Any, settings: Callable[..., Any], prefix: str = "") -> None:
    """The keys of ``node`` that ``settings`` (a dataclass) annotates: one ConfigError naming the first bad one."""
    if not isinstance(node, DictConfig):
        return
    hints = argument_hints(settings)
    for name, annotation in hints.items():
        if name == "return" or name not in node or OmegaConf.is_interpolation(node, name):
            continue
        if OmegaConf.is_missing(node, name):
            raise ConfigError(f"{prefix}{name}: missing (???): set it, e.g. {prefix}{name}=...")
        value = _plain(node[name])
        if not conforms(value, annotation):
            raise _refuse(f"{prefix}{name}", annotation, value)


def _bounded(annotation: Any) -> bool:
    """Whether ``annotation`` (or a member of its union) carries a constraint (``Annotated[int, Interval(ge=1)]``)."""
    if get_origin(annotation) is Annotated:
        return True
    return any(_bounded(a) for a in get_args(annotation)) if get_origin(annotation) in (Union, UnionType) else False


def check_node(node: DictConfig, key: str) -> None:
    """The arguments of the node at ``key`` against its target's signature, then its nested nodes'."""
    path = None if OmegaConf.is_missing(node, "_target_") else node.get("_target_")
    target = locate(path)
    if target is None and isinstance(path, str):
        close = close_paths(path)
        hint = f"did you mean {', '.join(close)}?" if close else "a typo, or a module that is not installed?"
        raise ConfigError(f"{key}._target_: cannot import {path!r} ({hint})")
    sig = signature_of(target) if target is not None else None
    if sig is not None and not sig.open:
        _refuse_unknown(node, key, path, sig)
    for name in node:
        if not isinstance(name, str) or name.startswith("_"):
            continue
        full = f"{key}.{name}"
        if OmegaConf.is_missing(node, name):
            continue
        if OmegaConf.is_interpolation(node, name):
            # the key it comes from is checked against its own schema; only the bounds of where it lands are
            # checked here: trainer.max_epochs=-1 (no limit) is no length for a schedule (total_iters)
            if sig is not None and _bounded(sig.hints.get(name)):
                plain = _plain(node[name])
                if not conforms(plain, sig.hints[name]):
                    source = _source(node, name)
                    also = f" (it is ${{{source}}}: set {source}, or {full} itself)" if source else ""
                    raise ConfigError(f"{full} must be {describe(sig.hints[name])}, got {plain!r}{also}")
            continue
        value = node[name]
        if _is_node(value):
            check_node(value, full)
            continue
        if isinstance(value, ListConfig) and any(_is_node(v) for v in value):  # a list of objects (trainer.plugins)
            for i, item in enumerate(value):
                if _is_node(item):
                    check_node(item, f"{full}[{i}]")
            continue
        if sig is None or name not in sig.hints:
            continue
        plain = _plain(value)
        if not conforms(plain, sig.hints[name]):
            raise _refuse(full, sig.hints[name], plain)


# Nodes whose group option declares the arguments of pg_lightning's own factory: a ``_target_`` override keeps those
# keys, which the user's factory does not take. The fix is named with them.
INHERITED: dict[str, tuple[frozenset[str], str]] = {
    "network": (
        frozenset(inspect.signature(make_policy).parameters) - {"observation_space", "action_space"},
        "replace the whole group with network=custom network._target_={target} (its own arguments: +network.<name>=...)",
    ),
    "baseline.value_net": (
        frozenset(inspect.signature(make_value_network).parameters) - {"observation_space"},
        "drop them with {drop} (your factory's own arguments: +baseline.value_net.<name>=...)",
    ),
}


def _refuse_unknown(node: DictConfig, key: str, path: Any, sig: Signature) -> None:
    """A key of ``node`` that is not an argument of its target: one line, with a did-you-mean, or (for the keys an
    option of pg_lightning declares, kept by a ``_target_`` override) the fix."""
    unknown = [k for k in node if isinstance(k, str) and not k.startswith("_") and k not in sig.hints]
    if not unknown:
        return
    inherited, fix = INHERITED.get(key, (frozenset(), ""))
    if set(unknown) & inherited:
        drop = " ".join(f"~{key}.{k}" for k in unknown if k in inherited)
        raise ConfigError(
            f"{key}: {path} does not take {', '.join(unknown)} (keys of pg_lightning's own {key} config, which a "
            f"{key}._target_ override keeps): {fix.format(target=path, drop=drop)}"
        )
    close = difflib.get_close_matches(unknown[0], list(sig.hints), n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ConfigError(f"{key}.{unknown[0]}: not an argument of {sig.name}{hint}; its arguments: {', '.join(sig.hints)}")


def check_finite(cfg: DictConfig) -> None:
    """No NaN anywhere in the config (``hydra`` aside), and no +-inf in ``model.*``, ``baseline.*`` and the top-level
    keys; elsewhere (``env.kwargs``, a custom network's arguments) an infinite bound may be meant. The annotated
    arguments refuse both already; this catches the numbers that no annotation states."""

    def walk(node: DictConfig | ListConfig, prefix: str) -> None:
        listed = isinstance(node, ListConfig)
        keys: list[Any] = list(range(len(node))) if listed else [k for k in node if prefix or k != "hydra"]
        for k in keys:
            key = f"{prefix}[{k}]" if listed else f"{prefix}{'.' if prefix else ''}{k}"
            if OmegaConf.is_interpolation(node, k) or OmegaConf.is_missing(node, k):
                continue
            value = node[k]
            if isinstance(value, (DictConfig, ListConfig)):
                walk(value, key)
            elif (
                isinstance(value, float)
                and not math.isfinite(value)
                and (math.isnan(value) or "." not in key or key.startswith(("model.", "baseline.")))
            ):
                raise ConfigError(f"{key} must be a finite number, got {value!r}")

    walk(cfg, "")


def check_config(cfg: DictConfig, nodes: tuple[str, ...] = ("trainer", "network", "baseline", "model", "data")) -> None:
    """Every key of a composed ``conf/train.yaml`` against the signatures: one ConfigError naming the first bad key."""
    check_settings(cfg, RunSettings)
    check_settings(cfg.get("env"), EnvSettings, "env.")
    for key in nodes:
        node = cfg.get(key)
        if _is_node(node):
            check_node(node, key)
    for group in ("logger", "callbacks"):
        for name, node in (cfg.get(group) or {}).items():
            if _is_node(node):
                check_node(node, f"{group}.{name}")
    check_finite(cfg)


# --------------------------------------------------------------------------------------------- building


_LIGHTNING_LOGS = ("pytorch_lightning", "lightning", "lightning_fabric", "lightning.pytorch")


def _cheap(target: Any) -> bool:
    """Lightning's, torch.optim's and pg_lightning's classes build nothing heavy in their constructors (a user's
    might: those are left to the run)."""
    return isinstance(target, type) and _path(target).startswith(
        ("pytorch_lightning.", "pg_lightning.", "torch.optim.")
    )


def dry_build(node: DictConfig, key: str, call: Callable[[Any], Any] | None = None, **kwargs: Any) -> Any:
    """Build the node once and drop it, so that its constructor judges its values before the run starts; a
    refusal is one ConfigError naming the argument (see `instantiate`). Only Lightning's, torch.optim's and
    pg_lightning's classes, with every required argument in the config or ``kwargs``; a partial (the
    optimizer) is built by ``call(partial)``. Returns what was built, or None where nothing was."""
    target = locate(None if OmegaConf.is_missing(node, "_target_") else node.get("_target_"))
    if target is None or not _cheap(target) or (node.get("_partial_", False) and call is None):
        return None
    required = [
        p.name
        for p in inspect.signature(target).parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if call is None and any(name not in node and name not in kwargs for name in required):
        return None
    if any(_is_node(node._get_node(k)) and node[k].get("_partial_", False) for k in node if isinstance(k, str)):
        return None  # an argument built at run time from the env (a value net): the run builds it
    with quiet(*_LIGHTNING_LOGS):
        built = instantiate(node, key, **kwargs)
        if call is None:
            return built
        try:
            return call(built)
        except Exception as err:
            culprit = _culprit(node, err, call)
            name = str(node._target_).rsplit(".", 1)[-1]
            if culprit is None:
                raise ConfigError(f"{key}: {name} raised {_reason(err)}") from err
            shown = _plain(node[culprit])
            where = _source(node, culprit) or f"{key}.{culprit}"
            raise ConfigError(f"{where}: {name} refuses {culprit}={shown!r}: {_reason(err)}") from err


def instantiate(node: DictConfig, key: str | None = None, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``; any error becomes one ConfigError line naming the key.

    The key is the node's (``key``, or the ``full_key`` Hydra gives the nested node that failed); an
    `ArgumentError` adds its argument (``model.loss.gamma must be ...``), and for another error the argument is
    the one without which the constructor succeeds (:func:`_culprit`). A ConfigError stays as it is.
    """
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as err:
        if not isinstance(err.__cause__, ArgumentError) and config_error_in(err) is not None:
            raise
        raise ConfigError(_message(node, key, err)) from err
    except ArgumentError as err:
        raise ConfigError(f"{key}.{err}" if key else str(err)) from err


def _full_key(err: InstantiationException) -> str | None:
    for line in str(err).splitlines():
        if line.startswith("full_key: "):
            return line.removeprefix("full_key: ").strip()
    return None


def _message(root: DictConfig, key: str | None, err: InstantiationException) -> str:
    sub = _full_key(err)  # from the config's root when the node has one, else relative to ``root``
    where = sub or key or "config"
    node: Any = root
    if sub and key and sub.startswith(f"{key}."):
        node = OmegaConf.select(root, sub.removeprefix(f"{key}."))
    elif sub and sub != key:
        node = OmegaConf.select(root, sub) if OmegaConf.select(root, sub) is not None else root
        where = f"{key}.{sub}" if key and not sub.startswith(key) else sub
    cause = err.__cause__
    if cause is None:  # Hydra's own: a target it cannot find or call
        first = str(err).splitlines()[0].split(", set env var HYDRA_FULL_ERROR=1")[0].strip()
        return f"{where}: {first}"
    if isinstance(cause, ArgumentError):
        return f"{where}.{cause}"
    name = str(node.get("_target_", "the target")).rsplit(".", 1)[-1] if isinstance(node, DictConfig) else "it"
    culprit = _culprit(node, cause) if isinstance(node, DictConfig) else None
    if culprit is not None:
        where = _source(node, culprit) or f"{where}.{culprit}"
        return f"{where}: {name} refuses {culprit}={_plain(node[culprit])!r}: {_reason(cause)}"
    return f"{where}: {name} raised {_reason(cause)}"


def _reason(err: BaseException) -> str:
    """``Type: message`` on one line, at most 300 characters."""
    text = " ".join(str(err).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _source(node: DictConfig, name: str) -> str | None:
    """The key that ``node[name]`` interpolates as a whole (``${env.kwargs}``: ``env.kwargs``), or None: a value
    that comes from another key is named by that key, where the user sets it."""
    if not OmegaConf.is_interpolation(node, name):
        return None
    match = re.fullmatch(r"\$\{([\w.]+)\}", str(_interpolation(node, name)))
    return match.group(1) if match else None


def _culprit(node: DictConfig, error: BaseException, call: Callable[[Any], Any] | None = None) -> str | None:
    """The argument of ``node`` that ``error`` is about: each one the config sets away from its default is put back
    to the default in turn, and the first without which the (cheap) constructor succeeds is it; else the first
    without which it fails otherwise (``trainer=multi_gpu`` on a CPU: without ``accelerator=gpu``, ``devices=-1``
    fails in its turn), when every argument set could be put back (a required one cannot: it may be the one). None
    when the error stays whatever is put back."""
    target = locate(node.get("_target_"))
    sig = signature_of(target) if target is not None else None
    if sig is None or not _cheap(target):
        return None
    plain = {k: v for k, v in _plain(node).items() if not k.startswith("_")}
    changed: str | None = None
    for name, value in plain.items():
        if name not in sig.defaults or value == sig.defaults[name]:
            continue
        trial = {k: v for k, v in plain.items() if k != name}
        try:
            with quiet(*_LIGHTNING_LOGS):
                partial = node.get("_partial_", False)
                built = hydra.utils.instantiate({"_target_": node._target_, "_partial_": partial, **trial})
                if call is not None:
                    call(built)
        except Exception as other:  # noqa: BLE001  (still refused without it: the same error, or another one)
            if changed is None and (type(other), str(other)) != (type(error), str(error)):
                changed = name
            continue
        return name
    return changed if all(name in sig.defaults for name in plain) else None


# --------------------------------------------------------------------------------------------- the key table

_GROUPS = ("network", "baseline", "scheduler", "trainer", "logger", "callbacks", "progress_bar")
"""The config groups whose options declare keys (``env`` options set values of ``env.kwargs`` only)."""


def _rows(cfg: DictConfig) -> Iterator[tuple[str, str, Any]]:
    """``(key, valid values, value)`` for every key of a composed ``train.yaml`` that a user may set."""

    def settings(node: Any, owner: type, prefix: str) -> Iterator[tuple[str, str, Any]]:
        for name, annotation in argument_hints(owner).items():
            if name != "return" and isinstance(node, DictConfig) and name in node:
                yield f"{prefix}{name}", describe(annotation), _shown(node, name)

    def arguments(node: DictConfig, key: str) -> Iterator[tuple[str, str, Any]]:
        target = locate(node.get("_target_"))
        sig = signature_of(target) if target is not None else None
        owner = f"{getattr(target, '__qualname__', node.get('_target_'))}"
        for name in node:
            if not isinstance(name, str) or name.startswith("_"):
                continue
            value = node._get_node(name)
            if isinstance(value, DictConfig) and _is_node(value):
                yield f"{key}.{name}", f"a `_target_` node ({value.get('_target_')})", "..."
                yield from arguments(value, f"{key}.{name}")
            elif sig is not None and name in sig.hints:
                yield f"{key}.{name}", describe(sig.hints[name]), _shown(node, name)
            else:
                yield f"{key}.{name}", f"passed to {owner} as is", _shown(node, name)

    yield from settings(cfg, RunSettings, "")
    yield from settings(cfg.get("env"), EnvSettings, "env.")
    for key in ("data", "model", "network", "baseline", "trainer"):
        if _is_node(cfg.get(key)):
            yield from arguments(cfg[key], key)
    for group in ("logger", "callbacks"):
        for name, node in (cfg.get(group) or {}).items():
            if _is_node(node):
                yield from arguments(node, f"{group}.{name}")


def _interpolation(node: DictConfig, name: str) -> str:
    """``node[name]`` as written (``${env.kwargs}``), not resolved."""
    child = node._get_node(name)
    return str(child._value()) if child is not None else ""


def _shown(node: DictConfig, name: str) -> Any:
    """A key's value as the YAML states it (an interpolation as written)."""
    if OmegaConf.is_missing(node, name):
        return "???"
    if OmegaConf.is_interpolation(node, name):
        return _interpolation(node, name)
    return _plain(node[name])


def markdown() -> str:
    """``docs/config_keys.md``: every key of the shipped configs, from the signatures (``python -m
    pg_lightning.cli.schema`` rewrites it; a test checks it is current)."""
    from hydra import compose, initialize_config_module

    from pg_lightning.cli.evaluation import evaluate

    found: dict[str, tuple[str, str, Any]] = {}  # key -> (option that declares it, valid, default)
    with initialize_config_module("pg_lightning.conf", version_base="1.3"):
        from hydra.core.global_hydra import GlobalHydra

        loader = GlobalHydra.instance().config_loader()
        choices: list[tuple[str, list[str]]] = [("", [])] + [
            (f"{group}={option}", [f"{group}={option}"])
            for group in _GROUPS
            for option in sorted(loader.get_group_options(group))
            if not option.startswith("_")
        ]
        for label, overrides in choices:
            cfg = compose("train", overrides=["paths.output_dir=RUN_DIR", *overrides])
            for key, valid, value in _rows(cfg):
                found.setdefault(key, (label, valid, value))
        evaluate_cfg = compose("evaluate", overrides=["output_dir=DIR"])
    lines = [
        "# Config keys",
        "",
        "Every key of the shipped configs, with what it accepts and its default. The valid values are read from",
        "the signatures the keys configure (the constructors' own annotations: `Annotated[float, Interval(ge=0,",
        "le=1)]` for `model.loss.gamma`), and from `RunSettings` and `EnvSettings` in `pg_lightning/cli/schema.py`",
        "for the keys no constructor takes. A key that an option declares is marked with that option. Any other",
        "argument of a `_target_` can be set too (`+callbacks.early_stopping.verbose=true`); every `Trainer`",
        "argument is in the config already (`trainer.precision=bf16-mixed`).",
        "",
        "An invalid value gives one line naming the key, `Config error: model.loss.gamma must be a number in",
        "[0, 1], got 1.5`, and exit status 2, before a run directory is made. Values that only Lightning or torch",
        "can judge (accelerators, devices, strategies, precisions, profilers) are judged by building their objects",
        "once before the run: `Config error: trainer.devices: Trainer refuses devices=0: ...`.",
        "",
        "Generated by `python -m pg_lightning.cli.schema > docs/config_keys.md`.",
        "",
        "| key | valid values | default |",
        "|---|---|---|",
    ]

    def cell(text: Any) -> str:
        if text == "":
            return '""'
        shown = "null" if text is None else ("true" if text is True else "false" if text is False else str(text))
        return shown.replace("|", "\\|")

    for key, (label, valid, value) in found.items():
        option = f"{label}: " if label else ""
        lines.append(f"| `{key}` | {cell(option + valid)} | `{cell(value)}` |")
    lines += ["", "## evaluate.py (`conf/evaluate.yaml`)", "", "| key | valid values | default |", "|---|---|---|"]
    own = list(_settings_rows(evaluate_cfg, evaluate))
    for key, valid, value in [*own, *_settings_rows(evaluate_cfg, RunSettings, {k for k, _, _ in own})]:
        lines.append(f"| `{key}` | {cell(valid)} | `{cell(value)}` |")
    return "\n".join(lines) + "\n"


def _settings_rows(node: DictConfig, owner: Any, seen: set[str] | None = None) -> Iterator[tuple[str, str, Any]]:
    for name, annotation in argument_hints(owner).items():
        if name != "return" and name in node and name not in (seen if seen is not None else set()):
            yield name, describe(annotation), _shown(node, name)


if __name__ == "__main__":
    print(markdown(), end="")
