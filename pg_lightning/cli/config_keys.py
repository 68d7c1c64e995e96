"""`check_keys` (cli layer): every key of the composed config whose valid values are known, checked before
anything is built; each failure is one `ConfigError` naming the key.

The valid values are the tables of `pg_lightning.cli.rules`; here they are applied to the nodes of the
config (by the class each ``_target_`` names), with the checks that need more than a table: the
accelerator on this machine, the optimizer's arguments, and ``data``'s copies of the ``env`` block.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Callable
from typing import Any

import hydra
import torch
from hydra._internal.utils import _locate
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from pg_lightning.cli.rules import ARGUMENT_RULES, TOP_LEVEL_RULES, Rule
from pg_lightning.core.errors import ConfigError
from pg_lightning.envs.from_config import to_plain

__all__ = ["check_finite", "check_key", "check_keys"]

_MISSING = object()


def check_key(cfg: DictConfig, key: str, rule: Rule, required: bool = False) -> None:
    """The value at ``key`` satisfies ``rule``, or a ConfigError naming the key; an absent key passes
    (unless ``required``: then it is checked as null)."""
    value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    if value is _MISSING:
        if not required:
            return
        value = None
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if not rule.ok(value):
        hint = rule.hint(value) if rule.hint is not None else ""
        raise ConfigError(f"{key} must be {rule.text}, got {value!r}{hint}")


def _target_class(node: Any) -> str | None:
    """The dotted path of the class or function a node's ``_target_`` names (as ARGUMENT_RULES keys it), or None."""
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not isinstance(target, str):
        return None
    try:
        obj = _locate(target)  # (hydra.utils.get_object, without its log line on failure)
    except Exception:  # noqa: BLE001  (any failure to find or import the target: instantiate names the key)
        return None
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


def _rules(node: DictConfig) -> dict[str, Rule]:
    """The ARGUMENT_RULES of the node's target, and of the classes it derives from (a subclass, ours such
    as ExceptionCheckpoint or a user's, takes the arguments of its base class)."""
    path = _target_class(node)
    if path is None:
        return {}
    try:
        obj = _locate(node.get("_target_"))
    except Exception:  # noqa: BLE001  (as in _target_class: instantiate reports the target's error)
        return ARGUMENT_RULES.get(path, {})
    rules: dict[str, Rule] = {}
    for klass in reversed(getattr(obj, "__mro__", ())):  # base classes first, the target's own rules win
        rules.update(ARGUMENT_RULES.get(f"{klass.__module__}.{klass.__qualname__}", {}))
    return rules or ARGUMENT_RULES.get(path, {})


def _check_node(cfg: DictConfig, key: str) -> None:
    """The arguments of the node at ``key`` that ARGUMENT_RULES knows for its ``_target_``; interpolated
    values (``${seed}``, ``${env.return_threshold}``) are skipped: the key they come from is checked."""
    node = OmegaConf.select(cfg, key, default=None)
    if not isinstance(node, DictConfig):
        return
    rules = _rules(node)
    for name, rule in rules.items():
        if name in node and not OmegaConf.is_interpolation(node, name):
            check_key(cfg, f"{key}.{name}", rule)
    for child in node:  # nested nodes with a _target_ of their own (trainer.strategy, model.loss, ...)
        if (
            isinstance(child, str)
            and not child.startswith("_")
            and not OmegaConf.is_interpolation(node, child)
            and isinstance(node.get(child), DictConfig)
            and _target_class(node.get(child)) is not None
        ):
            _check_node(cfg, f"{key}.{child}")


def check_keys(cfg: DictConfig) -> None:
    """Every key of the composed ``conf/train.yaml`` whose values are known: one ConfigError naming the key.

    The env block, seed, gamma, lr and the other numbers :func:`~pg_lightning.cli.validation.validate`
    checks itself; here the rest: top-level keys, and the arguments of every node with a ``_target_``
    (trainer and its strategy, network, baseline and its value_net, model and its loss and scheduler,
    data, each logger and callback) that :data:`~pg_lightning.cli.rules.ARGUMENT_RULES` knows for that
    target.
    """
    for key, rule in TOP_LEVEL_RULES.items():
        check_key(cfg, key, rule)
    for key in ("trainer", "network", "baseline", "model", "data"):
        _check_node(cfg, key)
    for group in ("logger", "callbacks"):
        for name in cfg.get(group) or {}:
            _check_node(cfg, f"{group}.{name}")
    check_finite(cfg)
    _check_accelerator(cfg)
    _check_optimizer(cfg)
    _check_follows(cfg)


# where +-inf is refused as well as NaN: pg_lightning's own estimator (loss, optimizer, schedule, baseline), and
# the top-level keys. Elsewhere (env.kwargs, wrappers, a custom network's or callback's arguments) an infinite
# bound may be meant; NaN never is.
_NO_INF = ("model.", "baseline.")


def check_finite(cfg: DictConfig) -> None:
    """No NaN anywhere in the config (``hydra`` aside), and no +-inf in ``model.*``, ``baseline.*`` and the
    top-level keys: one ConfigError naming the key (``model.optimizer.betas[1]``).

    The keys of the rule tables are checked against their rules before this (each number rule refuses
    nan and inf, with the key's valid range); this catches the numbers no rule knows, such as the
    optimizer's own arguments (``+model.optimizer.weight_decay=inf``) or ``env.kwargs``. Interpolated
    values are skipped: the key they come from is checked.
    """

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
                and (math.isnan(value) or "." not in key or key.startswith(_NO_INF))
            ):
                raise ConfigError(f"{key} must be a finite number, got {value!r}")

    walk(cfg, "")


# data's copies of the env block: the probe, the policy and checkpoints read env.*, the datamodule data.*
_FOLLOWS = {
    "data.env_id": "env.id",
    "data.env_kwargs": "env.kwargs",
    "data.env_imports": "env.imports",
    "data.env_wrappers": "env.wrappers",
}


def _check_follows(cfg: DictConfig) -> None:
    for key, source in _FOLLOWS.items():
        value = OmegaConf.select(cfg, key, default=_MISSING)
        if value is _MISSING or OmegaConf.select(cfg, source, default=_MISSING) is _MISSING:
            continue
        if to_plain(value) != to_plain(OmegaConf.select(cfg, source)):
            raise ConfigError(
                f"{key} must be ${{{source}}} (the env the policy is built for), got {to_plain(value)!r}; "
                f"set {source} instead"
            )


# what each accelerator needs on this machine (Lightning's own errors name a package or a class, not the key)
_ACCELERATORS: dict[str, tuple[Callable[[], bool], str]] = {
    "gpu": (lambda: torch.cuda.is_available(), "no CUDA GPU is visible (torch.cuda.is_available() is false)"),
    "cuda": (lambda: torch.cuda.is_available(), "no CUDA GPU is visible (torch.cuda.is_available() is false)"),
    "mps": (lambda: torch.backends.mps.is_available(), "Apple's MPS is not available here"),
    "tpu": (lambda: importlib.util.find_spec("torch_xla") is not None, "TPUs need torch_xla, which is not installed"),
    "hpu": (
        lambda: importlib.util.find_spec("habana_frameworks") is not None,
        "HPUs need habana_frameworks, which is not installed",
    ),
}


def _check_accelerator(cfg: DictConfig) -> None:
    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default=None)
    if isinstance(accelerator, str) and accelerator in _ACCELERATORS:
        available, reason = _ACCELERATORS[accelerator]
        if not available():
            raise ConfigError(
                f"trainer.accelerator={accelerator}: {reason}; use trainer=cpu (or trainer.accelerator=auto)"
            )


def _check_optimizer(cfg: DictConfig) -> None:
    """``model.optimizer``: its partial called on one parameter, as ReinforceModule will call it on all;
    an argument the optimizer refuses (``+model.optimizer.betas=abc``) is named, ``model.optimizer.<arg>``."""
    node = OmegaConf.select(cfg, "model.optimizer", default=None)
    if not isinstance(node, DictConfig) or _target_class(node) is None or not node.get("_partial_", False):
        return  # (a target that cannot be found: instantiate names it)
    try:
        factory = hydra.utils.instantiate(node)
        factory([nn.Parameter(torch.zeros(1))])
    except Exception as err:
        reason = " ".join(str(getattr(err, "__cause__", None) or err).split())
        names = [
            (m.start(), k)
            for k in node
            if isinstance(k, str) and not k.startswith("_")
            for m in [re.search(rf"(?<![\w.]){re.escape(k)}(?!\w)", reason)]
            if m
        ]
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", reason)
        where = (
            f"model.optimizer.{unexpected.group(1)}"
            if unexpected
            else (f"model.optimizer.{min(names)[1]}" if names else "model.optimizer")
        )
        raise ConfigError(
            f"{where}: {node._target_} refuses the model.optimizer arguments: {type(err).__name__}: {reason[:300]}"
        ) from err
