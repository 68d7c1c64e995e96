"""Training entry point: ``run(cfg)`` is importable; ``main`` is the thin ``@hydra.main`` shell.

```bash
python train.py                                     # REINFORCE on CartPole-v1 until solved
python train.py experiment=acrobot                  # an env with the settings that solve it
python train.py -m seed=0,1,2 baseline=none,mean
python train.py trainer=ddp_cpu trainer.devices=2   # DDP: 2 processes, one run directory
```
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities.exceptions import SIGTERMException

from pg_lightning.cli.build import build_policy, env_block, make_baseline, probe_env, wrapper_specs
from pg_lightning.cli.checkpoints import check_fits, load_checkpoint, resolve_ckpt_path
from pg_lightning.cli.ddp import ddp_ranks_join_this_job, set_environ
from pg_lightning.cli.preflight import validate
from pg_lightning.cli.schema import instantiate
from pg_lightning.conf import CONFIG_PATH
from pg_lightning.core.errors import ConfigError, EnvError, NonFiniteError, config_error_in
from pg_lightning.envs.registry import reward_threshold
from pg_lightning.lightning.signals import DeferredSignals, StoppedInCollection, sigterm_received

if TYPE_CHECKING:
    from pg_lightning.lightning.data import RolloutDataModule
    from pg_lightning.lightning.module import ReinforceModule

log = logging.getLogger(__name__)

__all__ = ["ConfigError", "main", "make_baseline", "run", "validate"]  # ConfigError re-exported for convenience


def make_datamodule(cfg: DictConfig) -> RolloutDataModule:
    """``cfg.data`` built with the env of ``cfg.env`` passed once, as the policy is passed to the module. A
    ``data.vector_env`` node is passed as its builder: the datamodule builds a new batched env for each fit."""
    vector_env = OmegaConf.select(cfg, "data.vector_env")
    build_vector_env = (
        None if vector_env is None else functools.partial(instantiate, vector_env, "data.vector_env", _convert_="all")
    )
    return instantiate(cfg.data, "data", env=env_block(cfg.env), vector_env=build_vector_env)


def run(cfg: DictConfig) -> dict[str, float]:
    """Train REINFORCE as configured; return the final metrics (``cfg.optimized_metric`` among them).

    ``cfg`` is the composed ``conf/train.yaml`` (from ``@hydra.main`` or ``hydra.compose``; with
    the compose API set ``paths.output_dir``).
    """
    _quiet_lightning()
    validate(cfg)
    _resolve_env(cfg)
    threads = cfg.get("torch_num_threads")
    if threads is not None:
        torch.set_num_threads(int(threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)

    # The policy needs the env's spaces: read them from one env built as training builds them.
    observation_space, action_space = probe_env(cfg.env, OmegaConf.select(cfg, "data.max_episode_steps"))
    datamodule = make_datamodule(cfg)
    policy = build_policy(cfg.network, observation_space, action_space)  # checked: one line naming network
    baseline = make_baseline(cfg, observation_space)
    model: ReinforceModule = instantiate(cfg.model, policy=policy, baseline=baseline)
    # The full resolved config travels in every checkpoint (hyper_parameters.config) and to loggers.
    model.save_hyperparameters({"config": OmegaConf.to_container(cfg, resolve=True)})
    # Errors that Lightning would only meet inside fit(), after OnExceptionCheckpoint and the loggers
    # had written files: the optimizer and scheduler are built once here (and dropped), and a resume
    # is checked against the checkpoint's weights and schedule.
    model.configure_optimizers()
    ckpt_path = resolve_ckpt_path(cfg)
    if cfg.get("ckpt_path") == "last":
        log.info("ckpt_path=last: resuming from %s, the newest checkpoint of the earlier runs", ckpt_path)
    if ckpt_path is not None:
        check_fits(model, ckpt_path)
        model.check_resumable(load_checkpoint(ckpt_path))

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    callbacks.append(DeferredSignals())  # SIGTERM and SIGUSR1 at safe points; a stuck env stopped within seconds
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if OmegaConf.select(cfg, "data.vector_env") is not None or OmegaConf.select(cfg, "data.vectorization_mode") == (
        "vector_entry_point"
    ):
        # a batched env is checked here, last before fit, so that no earlier check leaves it open (sync/async
        # copies were checked by probe_env above)
        datamodule.build_envs()

    start = time.perf_counter()
    # Lightning's DDP launcher sets torch's threads to cores / processes unless OMP_NUM_THREADS is
    # set: set it during fit, so that this process and the ranks it starts keep torch_num_threads.
    with set_environ(OMP_NUM_THREADS=None if threads is None else str(int(threads))), warnings.catch_warnings():
        # OnExceptionCheckpoint makes Lightning read ckpt_path=None as "last" and warn that there
        # is none: validate() already refused a run directory that holds checkpoints
        warnings.filterwarnings("ignore", message=r".*ckpt_path=None\)` was called without a model")
        warnings.filterwarnings("ignore", message=r'.*ckpt_path="last"\) is set, but there is no last checkpoint')
        # Lightning 2.6's own use of a torch API that torch 2.10+ deprecated, on every run; nothing
        # for a user (or us) to change, and Lightning will follow torch
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        # a resume runs in a new run directory by design; BestCheckpoint restores what matters
        warnings.filterwarnings("ignore", message=r".*The dirpath has changed from")
        # the rollout/ totals and means are computed from all ranks' episodes (all_gather) and logged as they
        # are, the same value on every rank: no sync_dist needed, whatever Lightning's generic advice says
        warnings.filterwarnings("ignore", message=r".*sync_dist=True.*when logging on epoch level in distributed")
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
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
    log_dir = trainer.log_dir  # a collective under DDP (rank 0 broadcasts it): every rank must ask
    if trainer.is_global_zero:
        _summary(cfg, trainer, metrics, log_dir or output_dir)
    return {cfg.optimized_metric: metrics.get(cfg.optimized_metric, math.nan)} | metrics


class _DropAdvert(logging.Filter):
    """Drops Lightning's "install litlogger" tip, printed by every Trainer that has no LitLogger."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the tip's record."""
        return "litlogger" not in record.getMessage()


def _quiet_lightning() -> None:
    """A run prints the progress bar, the log lines and the summary: not Lightning's product tip."""
    lightning_log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropAdvert) for f in lightning_log.filters):
        lightning_log.addFilter(_DropAdvert())


def _resolve_env(cfg: DictConfig) -> None:
    """Settle the env block in place, so that callbacks, checkpoints and loggers see the values in force.

    ``env.return_threshold: spec`` becomes the env's registered ``reward_threshold`` (or null), and
    ``env.wrappers`` entries take their checked form (``{_target_: ..., _partial_: true, ...}``, a
    bare class path included), as checkpoints save them and ``check_checkpoint`` compares them.
    """
    with open_dict(cfg):
        cfg.env.wrappers = wrapper_specs(cfg.env.get("wrappers"))
        if cfg.env.get("return_threshold") == "spec":
            cfg.env.return_threshold = reward_threshold(cfg.env.id, cfg.env.get("imports"))
            log.info(
                "%s: env.return_threshold=spec is %s (the env's registered reward_threshold)",
                cfg.env.id,
                cfg.env.return_threshold,
            )


def _summary(cfg: DictConfig, trainer: pl.Trainer, metrics: dict[str, float], log_dir: str | Path) -> None:
    ckpt_dirs = sorted({str(d) for c in trainer.checkpoint_callbacks if (d := getattr(c, "dirpath", None))})
    threshold = cfg.env.get("return_threshold")
    solved = "no threshold" if threshold is None else ("yes" if metrics["solved"] else "no")
    lines = [
        (
            f"{cfg.env.id}: {int(metrics['epochs'])} epochs, "
            f"{int(metrics.get('rollout/env_steps', 0))} env steps, "
            f"{int(metrics.get('rollout/episodes', 0))} episodes, {metrics['time/train_seconds']:.1f} s"
        ),
        (
            f"100-episode mean return {metrics.get('rollout/return_mean_100', math.nan):.4g} "
            f"(threshold {threshold}, solved: {solved})"
        ),
        f"checkpoints: {', '.join(ckpt_dirs) or 'none'}",
        f"logs: {log_dir}",
    ]
    if "exact/return" in metrics:  # tabular envs with the ExactReturn callback
        lines.insert(
            2,
            f"exact J of the final policy {metrics['exact/return']:.4f}, optimal J* "
            f"{metrics['exact/return_optimal']:.4f} (gap {100 * metrics['exact/gap']:.2f}% of |J*|)",
        )
    log.info("\n".join(lines))


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """CLI: train, print the summary, return the optimized metric (for sweepers).

    A config mistake prints one line naming the key and exits with status 2 (``HYDRA_FULL_ERROR=1``
    shows the traceback). In a multirun the error is raised instead, so Hydra records that job as
    failed and still runs the others.
    """
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        with ddp_ranks_join_this_job():
            metrics = run(cfg)
    except (Exception, SIGTERMException) as err:
        if not isinstance(err, SIGTERMException) and not sigterm_received():
            _exit_on_config_error(err, multirun)
            _exit_on_run_error(err, multirun)
            raise
        # Lightning ends fit with SystemExit() on SIGTERM (SLURM, Kubernetes): exit code 0, as if the run had
        # finished. Exit 143 (128 + SIGTERM) instead, so schedulers see a stopped job; also when the signal ended
        # the run another way (under DDP, a rank stopped for a stuck env makes the others' collectives fail).
        print(f"Stopped by SIGTERM{_stopped_where(err)}; {_checkpoints_written(cfg)}", file=sys.stderr)
        sys.exit(143)
    return metrics.get(cfg.optimized_metric)


def _exit_on_config_error(err: BaseException, multirun: bool) -> None:
    """A ConfigError (behind ``err``) as one line and exit status 2, outside a multirun; else nothing."""
    config_error = config_error_in(err)
    if config_error is None or multirun or os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    print(f"Config error: {config_error}", file=sys.stderr)
    sys.exit(2)


def _exit_on_run_error(err: BaseException, multirun: bool) -> None:
    """A run stopped by its env (`EnvError`) or by a non-finite number (`NonFiniteError`): its message, whose first
    line says what happened, and exit status 1, without the traceback (``HYDRA_FULL_ERROR=1`` shows it); in a
    multirun the error is raised, failing that job only."""
    if not isinstance(err, (EnvError, NonFiniteError)) or multirun or os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    print(f"{type(err).__name__}: {err}", file=sys.stderr)
    sys.exit(1)


def _stopped_where(err: BaseException) -> str:
    """Where the SIGTERM stopped the run: the env call it interrupted, or the error that ended the run after it."""
    if isinstance(err, StoppedInCollection):
        return f" during collection, in {err.where}"
    if not isinstance(err, SIGTERMException):
        return f" ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
    return ""


def _checkpoints_written(cfg: DictConfig) -> str:
    written = sorted(p.name for p in Path(cfg.paths.output_dir).glob("**/*.ckpt"))
    if not written:
        return "no checkpoint was written (no checkpoint callback, or none before the signal)"
    return f"{', '.join(written)} under {cfg.paths.output_dir}: resume with ckpt_path=last"


if __name__ == "__main__":
    main()
