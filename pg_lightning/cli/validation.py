"""Checks of a composed config before anything is built: each failure names the key to fix."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import hydra
import torch
from hydra._internal.utils import _locate
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

import pg_lightning.envs.tabular_envs  # noqa: F401  (registers the tabular envs: env=chain, env=bandit)
from pg_lightning.core.errors import ConfigError
from pg_lightning.envs.env_factory import env_spec
from pg_lightning.envs.from_config import (
    as_wrappers,
    env_factory,
    instantiate_wrappers,
    probe_env,
    to_plain,
    wrapper_specs,
)

__all__ = [
    "LAST_CHECKPOINTS",
    "as_wrappers",
    "check_checkpoint",
    "check_env_config",
    "check_evaluate_config",
    "check_fits",
    "check_keys",
    "env_factory",
    "instantiate_wrappers",
    "load_checkpoint",
    "probe_env",
    "resolve_ckpt_path",
    "to_plain",
    "validate",
    "wrapper_specs",
]


log = logging.getLogger(__name__)


def _number(cfg: DictConfig, key: str, kind: type, minimum: float | None = None, allow: tuple = ()) -> None:
    value = OmegaConf.select(cfg, key)
    if value in allow and not isinstance(value, bool):
        return
    ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    if not ok or (minimum is not None and not value >= minimum) or (minimum is None and not value > 0):
        what = "an integer" if kind is int else "a number"
        bound = f">= {minimum}" if minimum is not None else "> 0"
        extra = f" (or {', '.join('null' if a is None else str(a) for a in allow)})" if allow else ""
        raise ConfigError(f"{key} must be {what} {bound}{extra}, got {value!r}")


def validate(cfg: DictConfig) -> None:
    """Fail before training, with a message naming the config key, for values that cannot work.

    Imports ``env.imports`` (and the module of a ``module:EnvId`` id) on the way; builds nothing.
    """
    check_env_config(cfg)
    gamma = OmegaConf.select(cfg, "model.loss.gamma")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"model.loss.gamma must be in [0, 1], got {gamma!r}")
    _number(cfg, "data.episodes_per_epoch", int, minimum=1)
    _number(cfg, "data.num_envs", int, minimum=1)
    _number(cfg, "model.optimizer.lr", float)
    _number(cfg, "model.loss.entropy_coef", float, minimum=0.0)
    _number(cfg, "trainer.max_epochs", int, minimum=1, allow=(None, -1))
    seed = OmegaConf.select(cfg, "seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        # numpy's seeds (the envs') are unsigned 32-bit words; a negative one failed only at the first reset
        raise ConfigError(f"seed must be an integer in [0, 2**32 - 1], got {seed!r}")
    optional = {"baseline.loss_coef": (float, 0.0), "baseline.lr": (float, None), "data.max_episode_steps": (int, 1)}
    for key, (kind, minimum) in optional.items():  # keys that only some configs have
        if OmegaConf.select(cfg, key) is not None:
            _number(cfg, key, kind, minimum=minimum)
    check_keys(cfg)
    ckpt = resolve_ckpt_path(cfg)
    if ckpt is not None:
        check_checkpoint(cfg, ckpt)
    else:  # on every rank: no checkpoint can exist before all ranks joined, and each fails alike
        _refuse_a_used_run_dir(cfg)


def check_env_config(cfg: DictConfig) -> None:
    """The ``env`` block: imports importable, the id registered, kwargs a mapping, wrappers ``_target_`` entries."""
    env_spec(OmegaConf.select(cfg, "env.id"), to_plain(OmegaConf.select(cfg, "env.imports")))
    kwargs = OmegaConf.select(cfg, "env.kwargs")
    if kwargs is not None and not isinstance(kwargs, DictConfig):
        raise ConfigError(f"env.kwargs must be a mapping of constructor arguments, got {kwargs!r}")
    threshold = OmegaConf.select(cfg, "env.return_threshold")
    if (
        threshold != "spec"
        and threshold is not None
        and (isinstance(threshold, bool) or not isinstance(threshold, (int, float)))
    ):
        raise ConfigError(f"env.return_threshold must be a number, null or spec, got {threshold!r}")
    wrapper_specs(OmegaConf.select(cfg, "env.wrappers"))


def _refuse_a_used_run_dir(cfg: DictConfig) -> None:
    """A fresh run must not start where checkpoints already are.

    With ``OnExceptionCheckpoint`` among the callbacks, Lightning's ``fit(ckpt_path=None)``
    means ``"last"``: it would silently resume from them, while the CSV logger starts its
    ``metrics.csv`` afresh. Resuming is explicit here (``ckpt_path``).
    """
    for name, callback in (cfg.get("callbacks") or {}).items():
        dirpath = callback.get("dirpath") if callback is not None else None
        if dirpath and any(Path(dirpath).glob("*.ckpt")):
            raise ConfigError(
                f"callbacks.{name}.dirpath: {dirpath} already holds checkpoints of another run; resume it with "
                "ckpt_path=... (its run directory stays as it is), or start this run in a new hydra.run.dir"
            )


# What ckpt_path=last looks for in earlier runs: every epoch's last.ckpt, the checkpoint an exception
# or SIGTERM wrote (OnExceptionCheckpoint), and Lightning's SLURM requeue checkpoints (SIGUSR1).
LAST_CHECKPOINTS = ("*/*/checkpoints/last.ckpt", "*/*/checkpoints/on_exception.ckpt", "*/*/hpc_ckpt_*.ckpt")


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``cfg.ckpt_path``, with ``last`` resolved to the newest checkpoint of earlier runs.

    "Earlier runs" are the run directories beside this one's grandparent: with the default
    ``hydra.run.dir=outputs/<date>/<time>``, every ``outputs/*/*``; their checkpoints are those of
    :data:`LAST_CHECKPOINTS` (``last.ckpt``, ``on_exception.ckpt``, ``hpc_ckpt_<n>.ckpt``), and the
    newest by modification time wins: after a crash or a preemption, the one written last.
    """
    ckpt = cfg.get("ckpt_path")
    if ckpt != "last":
        return ckpt
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        # the jobs of one sweep sit side by side: "the newest" could be another job of this sweep
        raise ConfigError("ckpt_path=last is ambiguous in a multirun; give each job its checkpoint's path")
    here = Path(cfg.paths.output_dir).resolve()
    root = here.parent.parent
    found = [p for pattern in LAST_CHECKPOINTS for p in root.glob(pattern) if here not in p.resolve().parents]
    if not found:
        raise ConfigError(
            f"ckpt_path=last: no checkpoint ({', '.join(LAST_CHECKPOINTS)}) under {root}; give the checkpoint's path"
        )
    return str(max(found, key=lambda p: p.stat().st_mtime))


def load_checkpoint(ckpt_path: str | os.PathLike | None) -> dict[str, Any]:
    """Load a checkpoint written by ``train.py`` safely, on the CPU; every error names ``ckpt_path``.

    ``torch.load(weights_only=True)``: the unpickler accepts tensors and plain containers only, so
    a checkpoint file cannot run code. Ours load that way (the config in it is plain data:
    ``hyper_parameters.config`` is ``OmegaConf.to_container(cfg, resolve=True)``; Lightning's own
    entries are tensors, numbers and strings), so there is no fallback to the unsafe unpickler.
    """
    if ckpt_path is None or str(ckpt_path).strip() == "":
        raise ConfigError(
            "ckpt_path: missing; pass the checkpoint to evaluate, e.g. ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt"
        )
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path: no checkpoint file at {str(ckpt_path)!r}")
    if not zipfile.is_zipfile(path):  # torch.save (and so Lightning) writes zip archives
        raise ConfigError(
            f"ckpt_path: {str(path)!r} is not a readable checkpoint (not a PyTorch checkpoint file), "
            "so not a pg_lightning checkpoint"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # e.g. objects that only the unsafe unpickler would load
        reason = re.search(r"WeightsUnpickler error: *(.*?)(?: Please use|$)", str(err), re.DOTALL)
        reason = " ".join((reason.group(1) if reason else str(err)).split())[:300] or type(err).__name__
        raise ConfigError(
            f"ckpt_path: {str(path)!r} is not a pg_lightning checkpoint: torch.load(weights_only=True) refuses it "
            f"({reason}); train.py's checkpoints hold tensors and plain data only"
        ) from err
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    config = hparams.get("config") if isinstance(hparams, dict) else None
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("env"), dict)
        or not isinstance(config.get("network"), dict)
    ):
        raise ConfigError(
            f"ckpt_path: {str(path)!r} is not a pg_lightning checkpoint: it has no training config "
            "(hyper_parameters.config with env and network), as train.py writes"
        )
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict) or not any(k.startswith("policy.") for k in state):
        raise ConfigError(
            f"ckpt_path: {str(path)!r} is not a pg_lightning checkpoint: no policy.* weights in its state_dict"
        )
    return checkpoint


def check_checkpoint(cfg: DictConfig, ckpt: str) -> None:
    """The checkpoint is one of ours (:func:`load_checkpoint`) and was trained on this env.

    Whether its weights fit this run's network and baseline is :func:`check_fits`, once the
    model is built.
    """
    config = load_checkpoint(ckpt)["hyper_parameters"]["config"]
    ours = OmegaConf.to_container(cfg, resolve=True)
    for key in ("env.id", "env.kwargs", "env.wrappers"):
        theirs_value, ours_value = _get(config, key), _get(ours, key)
        if key == "env.wrappers":  # as run() normalises them (checkpoints from before env.wrappers: none)
            theirs_value, ours_value = wrapper_specs(theirs_value or []), wrapper_specs(ours_value or [])
        if theirs_value != ours_value:
            raise ConfigError(
                f"ckpt_path: {ckpt!r} was trained with {key}={theirs_value!r}, this run has {key}={ours_value!r}; "
                "resume with the same settings (e.g. the run's .hydra/overrides.yaml) or drop ckpt_path"
            )


def check_fits(model: nn.Module, ckpt: str) -> None:
    """The checkpoint's weights fit ``model``: the same keys and shapes, or a ConfigError naming them.

    (Instead of Lightning's strict-load ``RuntimeError``.) Compares what the state dicts hold,
    so any option that changes the model (network widths, ``network.action_bounds``, the
    baseline) is covered, and options that do not (e.g. ``log_std_init``) may change on resume.
    """
    checkpoint = load_checkpoint(ckpt)
    theirs, ours = checkpoint["state_dict"], model.state_dict()
    missing, unexpected = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
    reshaped = sorted(k for k in ours.keys() & theirs.keys() if ours[k].shape != theirs[k].shape)
    if missing or unexpected or reshaped:
        config = checkpoint["hyper_parameters"]["config"]
        problems = [
            f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", reshaped))
            if keys
        ]
        raise ConfigError(
            f"ckpt_path: {ckpt!r} does not fit this run's model ({'; '.join(problems)}); it was trained with "
            f"network={config.get('network')!r}, baseline={config.get('baseline')!r}: resume with the same settings"
        )


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


# ---------------------------------------------------------------------------------------------
# every other key: its type and range, checked on the composed config before anything is built
# (the table of keys, valid values and the errors they give: docs/config_keys.md)


class Rule(NamedTuple):
    """A valid value: ``ok(value)`` says whether ``value`` is one; ``text`` says what is (``"an integer >= 1"``)."""

    ok: Callable[[Any], bool]
    text: str


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def INT(minimum: int, *also: Any) -> Rule:
    """The rule: an integer >= ``minimum`` (or one of ``also``)."""
    extra = "".join(f" or {'null' if a is None else a}" for a in also)
    return Rule(
        lambda v: (_is_int(v) and v >= minimum) or (v in also and not isinstance(v, bool)),
        f"an integer >= {minimum}{extra}",
    )


def NUMBER(nullable: bool = False) -> Rule:
    """The rule: any int or float (or null)."""
    return Rule(lambda v: _is_number(v) or (nullable and v is None), "a number" + (" or null" if nullable else ""))


def FRACTION(upper_open: bool = True) -> Rule:
    """The rule: a number in ``[0, 1)``."""
    return Rule(lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")


def ONE_OF(*choices: Any) -> Rule:
    """The rule: one of ``choices``."""
    return Rule(lambda v: not isinstance(v, bool) and v in choices, "one of " + " | ".join(map(str, choices)))


def STR(nullable: bool = True) -> Rule:
    """The rule: a string (or null)."""
    return Rule(lambda v: isinstance(v, str) or (nullable and v is None), "a string" + (" or null" if nullable else ""))


BOOL = Rule(lambda v: isinstance(v, bool), "true or false")
SEED = Rule(lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32 - 1]")
WIDTHS = Rule(
    lambda v: isinstance(v, list) and all(_is_int(n) and n >= 1 for n in v),
    "a list of positive integers (layer widths; [] for none)",
)
ACTIVATION = ONE_OF("tanh", "relu", "elu", "gelu", "silu")
DEVICES = Rule(
    lambda v: (
        (_is_int(v) and (v >= 1 or v == -1))
        or v == "auto"
        or (
            isinstance(v, str)
            and re.fullmatch(r"-1|\d+(,\s*\d+)*,?", v.strip()) is not None
            and v.strip() not in ("0", "0,")
        )
        or (isinstance(v, list) and v != [] and all(_is_int(n) and n >= 0 for n in v))
    ),
    "a count >= 1, -1 (all), auto, or a list of device indices",
)
VERSION = Rule(lambda v: v is None or isinstance(v, str) or _is_int(v), "a string, an integer or null")

_CHECKPOINT = {
    "dirpath": STR(),
    "filename": STR(),
    "monitor": STR(),
    "mode": ONE_OF("min", "max"),
    "save_top_k": INT(-1),
    "every_n_epochs": Rule(lambda v: v is None or (_is_int(v) and v >= 0), "an integer >= 0 or null"),
    "save_last": Rule(lambda v: v in (True, False, None, "link"), "true, false, link or null"),
    "enable_version_counter": BOOL,
    "save_weights_only": BOOL,
    "verbose": BOOL,
    "save_on_train_epoch_end": Rule(lambda v: v is None or isinstance(v, bool), "true, false or null"),
}
_LOGGER = {"save_dir": STR(nullable=False), "name": STR(), "version": VERSION}

# The arguments checked, by the class a node's _target_ names; the key is "<node>.<argument>".
ARGUMENT_RULES: dict[str, dict[str, Rule]] = {
    "pytorch_lightning.trainer.trainer.Trainer": {
        "accelerator": Rule(
            lambda v: isinstance(v, str) and v in ("cpu", "gpu", "cuda", "mps", "tpu", "hpu", "auto"),
            "cpu | gpu | cuda | mps | tpu | hpu | auto",
        ),
        "devices": DEVICES,
        "num_nodes": INT(1),
        "max_epochs": INT(1, -1, None),
        "max_steps": INT(1, -1),
        "log_every_n_steps": INT(1),
        "enable_model_summary": BOOL,
        "enable_checkpointing": BOOL,
        "enable_progress_bar": BOOL,
        "num_sanity_val_steps": INT(-1),
        "default_root_dir": STR(),
        "fast_dev_run": Rule(
            lambda v: isinstance(v, bool) or (_is_int(v) and v >= 0), "true, false or an integer >= 0"
        ),
        "profiler": Rule(
            lambda v: (
                v is None or isinstance(v, DictConfig) or v in ("simple", "advanced", "pytorch", "xla", "passthrough")
            ),
            "null | simple | advanced | pytorch | xla | passthrough (or a profiler's _target_ node)",
        ),
        "strategy": Rule(
            lambda v: isinstance(v, (str, DictConfig)), "a strategy name (auto, ddp, ddp_spawn, ...) or a _target_ node"
        ),
        # the collector feeds the policy float32 observations: a network cast to another dtype ("64",
        # "16-true", ...) fails at the first collection; mixed precision keeps float32 weights
        "precision": Rule(
            lambda v: v is None or str(v) in ("32", "32-true", "16", "16-mixed", "bf16", "bf16-mixed"),
            "32 | 32-true | 16-mixed | bf16-mixed (float32 weights: the collector feeds float32 observations)",
        ),
        "gradient_clip_val": NUMBER(nullable=True),
        "deterministic": Rule(lambda v: v in (True, False, None, "warn"), "true, false, warn or null"),
    },
    "pytorch_lightning.strategies.ddp.DDPStrategy": {
        "process_group_backend": Rule(
            lambda v: v is None or v in ("gloo", "nccl", "mpi", "ucc"), "gloo | nccl | mpi | ucc | null"
        ),
    },
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint": _CHECKPOINT,
    "pytorch_lightning.callbacks.on_exception_checkpoint.OnExceptionCheckpoint": {
        "dirpath": STR(nullable=False),
        "filename": STR(nullable=False),
    },
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping": {
        "monitor": STR(nullable=False),
        "mode": ONE_OF("min", "max"),
        "patience": INT(0),
        "min_delta": NUMBER(),
        "stopping_threshold": NUMBER(nullable=True),
        "divergence_threshold": NUMBER(nullable=True),
        "check_finite": BOOL,
        "strict": BOOL,
        "verbose": BOOL,
        "check_on_train_epoch_end": Rule(lambda v: v is None or isinstance(v, bool), "true, false or null"),
    },
    "pytorch_lightning.callbacks.progress.tqdm_progress.TQDMProgressBar": {"refresh_rate": INT(0), "leave": BOOL},
    "pytorch_lightning.loggers.csv_logs.CSVLogger": {
        **_LOGGER,
        "flush_logs_every_n_steps": INT(1),
        "prefix": STR(False),
    },
    "pytorch_lightning.loggers.tensorboard.TensorBoardLogger": {
        **_LOGGER,
        "log_graph": BOOL,
        "default_hp_metric": BOOL,
        "prefix": STR(False),
    },
    "pg_lightning.lightning.callbacks.GradientDiagnostics": {"every_n_epochs": INT(1)},
    "pg_lightning.cli.evaluation.EvalCallback": {
        "episodes": INT(1),
        "every_n_epochs": INT(1),
        "greedy": BOOL,
        "seed": SEED,
        "max_episode_steps": INT(1, None),
        "tensorboard_video": BOOL,
    },
    "pg_lightning.envs.networks.make_policy": {
        "hidden_sizes": WIDTHS,
        "activation": ACTIVATION,
        "log_std_init": NUMBER(),
        "state_dependent_std": BOOL,
        "action_bounds": ONE_OF("clip", "tanh"),
        "output_init_scale": NUMBER(nullable=True),
    },
    "pg_lightning.envs.networks.make_value_network": {"hidden_sizes": WIDTHS, "activation": ACTIVATION},
    "pg_lightning.core.baselines.ConstantBaseline": {"value": NUMBER()},
    "pg_lightning.core.baselines.EMABaseline": {"decay": FRACTION()},
    "pg_lightning.core.baselines.LeaveOneOutBaseline": {"mode": ONE_OF("step", "episode")},
    "pg_lightning.core.baselines.ValueBaseline": {
        "loss_coef": Rule(lambda v: _is_number(v) and v >= 0, "a number >= 0"),
        "lr": Rule(lambda v: v is None or (_is_number(v) and v > 0), "a number > 0 or null (model.optimizer's lr)"),
        "bootstrap_truncated": BOOL,
        "normalize_targets": BOOL,
        "stats_decay": FRACTION(),
    },
    "pg_lightning.core.loss.ReinforceLoss": {
        "return_type": ONE_OF("reward_to_go", "total"),
        "discount_weight": BOOL,
        "normalize_advantages": BOOL,
    },
    "pg_lightning.lightning.module.ReinforceModule": {"return_window": INT(1)},
    "pg_lightning.lightning.data.RolloutDataModule": {
        "vectorization_mode": ONE_OF("sync", "async", "vector_entry_point"),
        "seed": SEED,
    },
    "torch.optim.lr_scheduler.LinearLR": {
        "start_factor": Rule(lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
        "end_factor": Rule(lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    },
    "torch.optim.lr_scheduler.CosineAnnealingLR": {
        "eta_min": Rule(lambda v: _is_number(v) and v >= 0, "a number >= 0")
    },
}

# Top-level keys of conf/train.yaml (the others are nodes with a _target_, checked by ARGUMENT_RULES).
TOP_LEVEL_RULES: dict[str, Rule] = {
    "torch_num_threads": INT(1, None),
    "optimized_metric": Rule(lambda v: isinstance(v, str) and v != "", "a metric name (a non-empty string)"),
}

# conf/evaluate.yaml (what pg_lightning.cli.evaluation.evaluate checks again, and torch_num_threads and video).
EVALUATE_RULES: dict[str, Rule] = {
    "episodes": INT(1),
    "greedy": BOOL,
    "seed": SEED,
    "video": BOOL,
    "max_episode_steps": INT(1, None),
    "trust_checkpoint_code": BOOL,
    "output_dir": STR(),
    "torch_num_threads": INT(1, None),
}

_MISSING = object()


def _check(cfg: DictConfig, key: str, rule: Rule) -> None:
    value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
    if value is _MISSING:
        return
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if not rule.ok(value):
        raise ConfigError(f"{key} must be {rule.text}, got {value!r}")


def _target_class(node: Any) -> str | None:
    """The dotted path of the class or function a node's ``_target_`` names (as ARGUMENT_RULES keys it), or None."""
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    if not isinstance(target, str):
        return None
    try:
        obj = _locate(target)  # (hydra.utils.get_object, without its log line on failure)
    except Exception:  # a target that cannot be found: instantiate names the key
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
    except Exception:
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
            _check(cfg, f"{key}.{name}", rule)
    for name in node:  # nested nodes with a _target_ of their own (trainer.strategy, model.loss, ...)
        if isinstance(name, str) and not name.startswith("_") and not OmegaConf.is_interpolation(node, name):
            if isinstance(node.get(name), DictConfig) and _target_class(node.get(name)) is not None:
                _check_node(cfg, f"{key}.{name}")


def check_keys(cfg: DictConfig) -> None:
    """Every key of the composed ``conf/train.yaml`` whose values are known: one ConfigError naming the key.

    The env block, seed, gamma, lr and the other numbers :func:`validate` checks itself; here the
    rest: top-level keys, and the arguments of every node with a ``_target_`` (trainer and its
    strategy, network, baseline and its value_net, model and its loss and scheduler, data, each
    logger and callback) that :data:`ARGUMENT_RULES` knows for that target.
    """
    for key, rule in TOP_LEVEL_RULES.items():
        _check(cfg, key, rule)
    for key in ("trainer", "network", "baseline", "model", "data"):
        _check_node(cfg, key)
    for group in ("logger", "callbacks"):
        for name in cfg.get(group) or {}:
            _check_node(cfg, f"{group}.{name}")
    _check_accelerator(cfg)
    _check_optimizer(cfg)
    _check_follows(cfg)


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


def check_evaluate_config(cfg: DictConfig) -> None:
    """The keys of ``conf/evaluate.yaml`` (``python evaluate.py``), before anything is loaded or built."""
    for key, rule in EVALUATE_RULES.items():
        _check(cfg, key, rule)
