"""Training entry point: ``run(cfg)`` is importable; ``main`` is the thin ``@hydra.main`` shell.

    python train.py                               # REINFORCE on CartPole-v1 until solved
    python train.py env=acrobot trainer.max_epochs=50
    python train.py -m seed=0,1,2 baseline=none,mean
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path

import gymnasium as gym
import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import pg_lightning.envs  # noqa: F401  (registers the tabular envs: env=chain, env=bandit)
from pg_lightning.errors import ConfigError
from pg_lightning.validation import validate

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "main", "make_baseline", "run", "validate"]  # ConfigError re-exported for convenience

CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def make_baseline(cfg: DictConfig, observation_space: gym.Space):
    """Instantiate ``cfg.baseline``; a learned one's ``value_net`` (a partial) gets the space."""
    value_net = OmegaConf.select(cfg, "baseline.value_net")
    built = {}
    if value_net is not None:
        built["value_net"] = hydra.utils.instantiate(value_net)(observation_space=observation_space)
    return hydra.utils.instantiate(cfg.baseline, **built)


def run(cfg: DictConfig) -> dict[str, float]:
    """Train REINFORCE as configured; return the final metrics (``cfg.optimized_metric`` among them).

    ``cfg`` is the composed ``conf/train.yaml`` (from ``@hydra.main`` or ``hydra.compose``; with
    the compose API set ``paths.output_dir``).
    """
    validate(cfg)
    if cfg.get("torch_num_threads") is not None:
        torch.set_num_threads(int(cfg.torch_num_threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)

    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    # The policy needs the env's spaces: read them from a throwaway env.
    probe = gym.make(cfg.env.id, **cfg.env.kwargs)
    policy = hydra.utils.instantiate(cfg.network)(
        observation_space=probe.observation_space, action_space=probe.action_space
    )
    baseline = make_baseline(cfg, probe.observation_space)
    probe.close()
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model, policy=policy, baseline=baseline)
    # The full resolved config travels in every checkpoint (hyper_parameters.config) and to loggers.
    model.save_hyperparameters({"config": OmegaConf.to_container(cfg, resolve=True)})

    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    seconds = time.perf_counter() - start

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.as_tensor(v).numel() == 1}
    threshold = cfg.env.get("return_threshold")
    final = metrics.get("rollout/return_mean_100", math.nan)
    metrics.update(
        {
            "time/train_seconds": seconds,
            "epochs": float(trainer.current_epoch),
            "solved": float(threshold is not None and final >= threshold),
        }
    )
    if trainer.is_global_zero:
        _summary(cfg, trainer, metrics, output_dir)
    return {cfg.optimized_metric: metrics.get(cfg.optimized_metric, math.nan)} | metrics


def _summary(cfg: DictConfig, trainer: pl.Trainer, metrics: dict[str, float], output_dir: Path) -> None:
    ckpt_dirs = sorted({str(c.dirpath) for c in trainer.checkpoint_callbacks if getattr(c, "dirpath", None)})
    threshold = cfg.env.get("return_threshold")
    solved = "no threshold" if threshold is None else ("yes" if metrics["solved"] else "no")
    lines = [
        f"{cfg.env.id}: {int(metrics['epochs'])} epochs, "
        f"{int(metrics.get('rollout/env_steps', 0))} env steps, "
        f"{int(metrics.get('rollout/episodes', 0))} episodes, {metrics['time/train_seconds']:.1f} s",
        f"100-episode mean return {metrics.get('rollout/return_mean_100', math.nan):.1f} "
        f"(threshold {threshold}, solved: {solved})",
        f"checkpoints: {', '.join(ckpt_dirs) or 'none'}",
        f"logs: {trainer.log_dir or output_dir}",
    ]
    if "exact/return" in metrics:  # tabular envs with the ExactReturn callback
        lines.insert(
            2,
            f"exact J of the final policy {metrics['exact/return']:.4f}, optimal J* "
            f"{metrics['exact/return_optimal']:.4f} (gap {100 * metrics['exact/gap']:.2f}% of |J*|)",
        )
    log.info("\n".join(lines))


def _config_error(err: BaseException) -> ConfigError | None:
    """The ConfigError behind ``err``, also when Hydra's instantiate or Lightning wrapped it."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, ConfigError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """CLI: train, print the summary, return the optimized metric (for sweepers).

    A config mistake prints one line naming the key and exits with status 2 (``HYDRA_FULL_ERROR=1``
    shows the traceback). In a multirun the error is raised instead, so Hydra records that job as
    failed and still runs the others.
    """
    try:
        metrics = run(cfg)
    except Exception as err:
        config_error = _config_error(err)
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if config_error is None or multirun or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"Config error: {config_error}", file=sys.stderr)
        sys.exit(2)
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
