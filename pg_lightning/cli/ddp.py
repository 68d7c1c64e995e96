"""Processes (cli layer): environment variables set for a block, and DDP ranks that join this Hydra job.

`set_environ` keeps ``OMP_NUM_THREADS`` (``torch_num_threads``) in force while Lightning starts DDP
ranks; `ddp_ranks_join_this_job` makes the ranks Lightning's DDP launcher starts replay this job's
config in this job's directory, also in a multirun.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, read_write

__all__ = ["ddp_ranks_join_this_job", "set_environ"]


@contextlib.contextmanager
def set_environ(**values: str | None) -> Iterator[None]:
    """Set the environment variables given (``None``: leave as is), and restore them on exit."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        _restore_environ(saved)


def _restore_environ(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# What Lightning's DDP launcher sets in the launching process (and torchrun or SLURM may set before).
_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextlib.contextmanager
def ddp_ranks_join_this_job() -> Iterator[None]:
    """Make the ranks that Lightning's DDP launcher starts (``strategy=ddp``) join this Hydra job.

    Lightning starts ranks ``1..devices-1`` by running ``__main__`` again with ``sys.argv[1:]``
    plus ``hydra.run.dir=<HydraConfig run.dir>`` (``_hydra_subprocess_cmd``), which recomposes
    the config from the command line. In a multirun that command line is the whole sweep
    (``-m seed=0,1 ...``), ``run.dir`` is not the job's directory, and under the joblib launcher
    ``__main__`` is joblib's worker, not this script: each rank would start a sweep of its own.
    So for the job's duration the ranks' command is ``python -m pg_lightning.cli.train`` replaying
    the config this job saved (``<job dir>/.hydra/config.yaml``: exactly what the sweeper chose,
    whatever the config files say by then; the job's overrides where ``hydra.output_subdir`` is
    null), as a single run in the job's directory. Afterwards the process group is destroyed and
    the rendezvous variables Lightning set are restored, so that the next job of a sweep in this
    process starts a group of its own (Lightning would otherwise find ``LOCAL_RANK`` set, start
    no ranks and wait for them). Ranks started by torchrun or SLURM are not affected.
    """
    hydra_cfg = HydraConfig.get()
    job_dir = Path(hydra_cfg.runtime.output_dir)
    main_module = sys.modules["__main__"]
    argv, main_spec = list(sys.argv), getattr(main_module, "__spec__", None)
    environ = {k: os.environ.get(k) for k in _DDP_ENV}
    if hydra_cfg.output_subdir is not None:
        sys.argv = [argv[0], f"--config-path={job_dir / hydra_cfg.output_subdir}", "--config-name=config"]
    else:
        sys.argv = [argv[0], *hydra_cfg.overrides.task]
    main_module.__spec__ = importlib.util.find_spec("pg_lightning.cli.train")
    # (HydraConfig.get() is annotated with the schema's dataclass, HydraConf; what it returns is the DictConfig)
    with read_write(cast(DictConfig, hydra_cfg)):  # this job's copy: Hydra sets the next job's HydraConfig afresh
        hydra_cfg.run.dir = str(job_dir)
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        sys.argv, main_module.__spec__ = argv, main_spec
        _restore_environ(environ)
