"""Hydra callback (cli layer): `ValidateBeforeRun` checks the config before Hydra makes the run directory.

Hydra's ``run_job`` makes ``hydra.run.dir`` and writes ``.hydra/`` (config, overrides) before the
task function starts, so a config that ``main`` then refuses would leave a run directory behind
for every mistyped command (and, in a used ``hydra.run.dir``, overwrite its ``.hydra/config.yaml``
before refusing it). `ValidateBeforeRun` runs the same check in ``on_run_start``, before
``run_job``: a ConfigError prints the one ``Config error: <key> ...`` line and exits with status 2,
as ``main`` does, and nothing is written. Registered under ``hydra.callbacks`` in
``conf/train.yaml`` (:func:`pg_lightning.cli.preflight.validate`) and ``conf/evaluate.yaml``
(:func:`check_evaluate_run`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from pg_lightning.core.errors import config_error_in

__all__ = ["ValidateBeforeRun", "check_evaluate_run"]


class ValidateBeforeRun(Callback):
    """Check a single run's config before Hydra makes its run directory; a ConfigError exits with status 2.

    In ``on_run_start`` (Hydra calls it before ``run_job`` makes ``hydra.run.dir`` and writes
    ``.hydra/``), ``check`` gets the job's config as the task function will: without the ``hydra``
    node, with ``hydra.runtime.output_dir`` (so ``paths.output_dir``) set to the directory that
    ``run_job`` is about to make. A ConfigError (also behind another exception) prints
    ``Config error: <message>`` on stderr and exits with status 2: no run directory is made.

    What it does not stop, the task function meets again and reports as before: any other
    exception of ``check``, everything with ``HYDRA_FULL_ERROR=1`` (the traceback, from the job),
    runs with ``hydra.job.chdir=true`` (relative paths would mean another thing in the job) and
    multiruns (Hydra calls ``on_multirun_start`` once, before the sweeper has made the jobs'
    configs: a job with a config error fails alone, in its own directory, and the others run).

    Args:
        check: the dotted path of a function taking the job's config and raising ConfigError,
            e.g. ``pg_lightning.cli.preflight.validate``.
    """

    def __init__(self, check: str = "pg_lightning.cli.preflight.validate") -> None:
        self.check: Callable[[DictConfig], Any] = get_method(check)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Run ``check`` on the job's config; a ConfigError prints one line and exits with status 2."""
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or OmegaConf.select(config, "hydra.job.chdir"):
            return
        try:
            with _job_config(config) as job:
                self.check(job)
        except Exception as err:  # noqa: BLE001  (anything else: the job meets it again and reports it)
            config_error = config_error_in(err)
            if config_error is None:
                return
            print(f"Config error: {config_error}", file=sys.stderr)
            sys.exit(2)


@contextlib.contextmanager
def _job_config(config: DictConfig) -> Iterator[DictConfig]:
    """The config that ``run_job`` will hand the task function, for the duration of the block.

    ``hydra.run.dir`` is resolved on Hydra's own ``config``: its ``${now:...}`` is cached there,
    so ``run_job`` makes this very directory. ``HydraConfig`` (``${hydra:...}``, and what
    ``HydraConfig.get()`` returns) is set to a copy holding ``runtime.output_dir``, and restored
    on exit.
    """
    run_dir = os.path.abspath(str(OmegaConf.select(config, "hydra.run.dir")))
    full = copy.deepcopy(config)  # (the resolver cache travels with it)
    with read_write(full.hydra.runtime), open_dict(full.hydra.runtime):
        full.hydra.runtime.output_dir = run_dir
    hydra_config = HydraConfig.instance()
    saved = hydra_config.cfg
    hydra_config.set_config(full)
    try:
        job = copy.deepcopy(full)
        with read_write(job), open_dict(job):
            del job["hydra"]
        yield job
    finally:
        hydra_config.cfg = saved


def check_evaluate_run(cfg: DictConfig) -> None:
    """What ``evaluate.py`` checks before it builds anything: the keys of ``conf/evaluate.yaml``, and that
    ``ckpt_path`` is a pg_lightning checkpoint whose code may be called (``trust_checkpoint_code``)."""
    from pg_lightning.cli.checkpoints import check_checkpoint_code, load_checkpoint
    from pg_lightning.cli.preflight import check_evaluate_config

    check_evaluate_config(cfg)
    ckpt_path = cfg.get("ckpt_path")
    checkpoint = load_checkpoint(ckpt_path)
    if cfg.get("trust_checkpoint_code") is not True:
        check_checkpoint_code(checkpoint["hyper_parameters"]["config"], str(ckpt_path))
