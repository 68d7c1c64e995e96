"""Checks of a composed config before anything is built: each failure names the key to fix."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import gymnasium as gym
import torch
from omegaconf import DictConfig, OmegaConf

import pg_lightning.envs  # noqa: F401  (registers the tabular envs: env=chain, env=bandit)
from pg_lightning.errors import ConfigError

__all__ = ["check_checkpoint", "resolve_ckpt_path", "validate"]


def _number(cfg: DictConfig, key: str, kind: type, minimum: float | None = None, allow: tuple = ()) -> None:
    value = OmegaConf.select(cfg, key)
    if value in allow and not isinstance(value, bool):
        return
    ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    if not ok or (minimum is not None and not value >= minimum) or (minimum is None and not value > 0):
        what = "an integer" if kind is int else "a number"
        bound = f">= {minimum}" if minimum is not None else "> 0"
        extra = f" (or {', '.join(map(str, allow))})" if allow else ""
        raise ConfigError(f"{key} must be {what} {bound}{extra}, got {value!r}")


def validate(cfg: DictConfig) -> None:
    """Fail before training, with a message naming the config key, for values that cannot work."""
    env_id = OmegaConf.select(cfg, "env.id")
    if env_id not in gym.registry:
        close = difflib.get_close_matches(str(env_id), list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"env.id: unknown gymnasium environment {env_id!r}{hint}")
    gamma = OmegaConf.select(cfg, "model.loss.gamma")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"model.loss.gamma must be in [0, 1], got {gamma!r}")
    _number(cfg, "data.episodes_per_epoch", int, minimum=1)
    _number(cfg, "data.num_envs", int, minimum=1)
    _number(cfg, "model.optimizer.lr", float)
    _number(cfg, "model.loss.entropy_coef", float, minimum=0.0)
    _number(cfg, "trainer.max_epochs", int, minimum=1, allow=(None, -1))
    optional = {"baseline.loss_coef": (float, 0.0), "baseline.lr": (float, None), "data.max_episode_steps": (int, 1)}
    for key, (kind, minimum) in optional.items():  # keys that only some configs have
        if OmegaConf.select(cfg, key) is not None:
            _number(cfg, key, kind, minimum=minimum)
    ckpt = resolve_ckpt_path(cfg)
    if ckpt is not None:
        check_checkpoint(cfg, ckpt)
    elif "LOCAL_RANK" not in os.environ:  # (a DDP rank started by rank 0 joins rank 0's fresh run)
        _refuse_a_used_run_dir(cfg)


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


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``cfg.ckpt_path``, with ``last`` resolved to the newest ``checkpoints/last.ckpt`` of earlier runs.

    "Earlier runs" are the run directories beside this one's grandparent: with the default
    ``hydra.run.dir=outputs/<date>/<time>``, every ``outputs/*/*/checkpoints/last.ckpt``.
    """
    ckpt = cfg.get("ckpt_path")
    if ckpt != "last":
        return ckpt
    here = Path(cfg.paths.output_dir).resolve()
    root = here.parent.parent
    found = [p for p in root.glob("*/*/checkpoints/last.ckpt") if here not in p.resolve().parents]
    if not found:
        raise ConfigError(f"ckpt_path=last: no */*/checkpoints/last.ckpt under {root}; give the checkpoint's path")
    return str(max(found, key=lambda p: p.stat().st_mtime))


def check_checkpoint(cfg: DictConfig, ckpt: str) -> None:
    """The checkpoint exists, is one of ours, and was trained on this env and network."""
    path = Path(ckpt)
    if not path.is_file():
        raise ConfigError(f"ckpt_path: no checkpoint file at {ckpt!r}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, or not loadable without unpickling code
        raise ConfigError(f"ckpt_path: {ckpt!r} is not a readable checkpoint ({type(err).__name__}: {err})") from err
    config = saved.get("hyper_parameters", {}).get("config") if isinstance(saved, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(f"ckpt_path: {ckpt!r} is not a pg_lightning checkpoint (no hyper_parameters.config)")
    ours = OmegaConf.to_container(cfg, resolve=True)
    for key in ("env.id", "env.kwargs", "network"):
        theirs_value, ours_value = _get(config, key), _get(ours, key)
        if key == "network":  # the layers must match; other options may change on resume
            theirs_value, ours_value = (
                {k: v.get(k) for k in ("_target_", "hidden_sizes", "state_dependent_std")} if v else v
                for v in (theirs_value, ours_value)
            )
        if theirs_value != ours_value:
            raise ConfigError(
                f"ckpt_path: {ckpt!r} was trained with {key}={theirs_value!r}, this run has {key}={ours_value!r}; "
                "resume with the same settings (e.g. the run's .hydra/overrides.yaml) or drop ckpt_path"
            )


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree
