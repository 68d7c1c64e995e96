"""Checks of a composed config before anything is built: each failure names the key to fix."""

from __future__ import annotations

import difflib
from pathlib import Path

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

import pg_lightning.envs  # noqa: F401  (registers the tabular envs: env=chain, env=bandit)
from pg_lightning.errors import ConfigError

__all__ = ["validate"]


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
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and not Path(ckpt).is_file():
        raise ConfigError(f"ckpt_path: no checkpoint file at {ckpt!r}")
