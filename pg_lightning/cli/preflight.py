"""`validate` (cli layer): the preflight checks of a composed config, before anything is built; each names the key.

The keys against the signatures they configure (`pg_lightning.cli.schema`), then the checks that need the world:
the env's id and imports, Lightning's own values, a resume's checkpoint (`pg_lightning.cli.checkpoints`), and a
run directory already used. ``conf/evaluate.yaml``'s keys: `check_evaluate_config`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from pg_lightning.cli.build import to_plain, wrapper_specs
from pg_lightning.cli.checkpoints import check_checkpoint, resolve_ckpt_path
from pg_lightning.cli.schema import RunSettings, check_config, check_settings, dry_build
from pg_lightning.core.errors import ConfigError
from pg_lightning.envs.registry import env_spec

__all__ = [
    "check_env_config",
    "check_evaluate_config",
    "validate",
]


log = logging.getLogger(__name__)


def validate(cfg: DictConfig) -> None:
    """Fail before training, with one line naming the config key, for values that cannot work.

    The keys against the constructors' signatures (`pg_lightning.cli.schema.check_config`); then what needs the
    world: the env's id and imports (imported on the way; no env copy is built), the checkpoint of a resume, a run
    directory already used, and the values that Lightning's and torch's constructors judge (the Trainer, the
    optimizer on one parameter, the loss, the baseline, the loggers and callbacks of Lightning and pg_lightning,
    each built once and dropped: `pg_lightning.cli.schema.dry_build`).
    """
    check_config(cfg)
    check_env_config(cfg)
    ckpt = resolve_ckpt_path(cfg)
    if ckpt is not None:
        check_checkpoint(cfg, ckpt)
    else:  # on every rank: no checkpoint can exist before all ranks joined, and each fails alike
        _refuse_a_used_run_dir(cfg)
    trainer = dry_build(cfg.trainer, "trainer", logger=False, callbacks=[])
    if trainer is not None:
        _check_weights_stay_float32(trainer, cfg.trainer.get("precision"))
    optimizer = OmegaConf.select(cfg, "model.optimizer")
    if isinstance(optimizer, DictConfig):  # the partial called on one parameter, as ReinforceModule calls it on all
        dry_build(optimizer, "model.optimizer", call=lambda factory: factory([nn.Parameter(torch.zeros(1))]))
    for key in ("model.loss", "baseline"):
        node = OmegaConf.select(cfg, key)
        if isinstance(node, DictConfig):
            dry_build(node, key)
    for group in ("logger", "callbacks"):
        for name, node in (cfg.get(group) or {}).items():
            if isinstance(node, DictConfig):
                dry_build(node, f"{group}.{name}")


def _check_weights_stay_float32(trainer: Any, precision: Any) -> None:
    """The collector feeds the policy float32 observations: a precision whose plugin casts the weights (64, 16-true,
    bf16-true) would fail at the first collection. Asked of Lightning's own plugin, on a one-weight module."""
    dtype = trainer.precision_plugin.convert_module(nn.Linear(1, 1)).weight.dtype
    if dtype != torch.float32:
        raise ConfigError(
            f"trainer.precision={precision}: Lightning casts the weights to {dtype}, and the collector feeds float32 "
            "observations; use a precision that keeps float32 weights (32-true, 16-mixed, bf16-mixed)"
        )


def check_env_config(cfg: DictConfig) -> None:
    """The ``env`` block against the world: imports importable, the id registered, wrappers ``_target_`` entries."""
    env_spec(OmegaConf.select(cfg, "env.id"), to_plain(OmegaConf.select(cfg, "env.imports")))
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


def check_evaluate_config(cfg: DictConfig) -> None:
    """The keys of ``conf/evaluate.yaml`` (``python evaluate.py``), before anything is loaded or built."""
    from pg_lightning.cli.evaluation import evaluate  # (it imports this module)

    check_settings(cfg, evaluate)
    check_settings(cfg, RunSettings)  # torch_num_threads, as train.py's
