"""`validate` (cli layer): checks of a composed config before anything is built; each failure names the key to fix.

The env block, the numbers every run needs, and ``ckpt_path`` are checked here; the other keys by
`pg_lightning.cli.config_keys.check_keys`, checkpoints by `pg_lightning.cli.checkpoints`.
``conf/evaluate.yaml``'s keys: `check_evaluate_config`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

import pg_lightning.envs.tabular_envs  # noqa: F401  (registers the tabular envs: env=chain, env=bandit)
from pg_lightning.cli.checkpoints import check_checkpoint, resolve_ckpt_path
from pg_lightning.cli.config_keys import check_key, check_keys
from pg_lightning.cli.rules import ARGUMENT_RULES, EVALUATE_RULES, INT, LR, NUMBER, Rule
from pg_lightning.core.errors import ConfigError
from pg_lightning.envs.env_factory import env_spec
from pg_lightning.envs.from_config import to_plain, wrapper_specs

__all__ = [
    "check_env_config",
    "check_evaluate_config",
    "validate",
]


log = logging.getLogger(__name__)


# Keys every run needs, checked before check_keys (which passes an absent key): an absent one is refused as null.
_REQUIRED: dict[str, Rule] = {
    "data.episodes_per_epoch": INT(1),
    "data.num_envs": INT(1),
    "model.optimizer.lr": LR,
    "model.loss.entropy_coef": NUMBER(minimum=0),
    "trainer.max_epochs": INT(1, -1, None),
}
# Keys that only some configs have (null: not used), whatever the node's _target_.
_OPTIONAL: dict[str, Rule] = {
    "baseline.loss_coef": ARGUMENT_RULES["pg_lightning.core.baselines.ValueBaseline"]["loss_coef"],
    "baseline.lr": ARGUMENT_RULES["pg_lightning.core.baselines.ValueBaseline"]["lr"],
    "data.max_episode_steps": INT(1),
}


def validate(cfg: DictConfig) -> None:
    """Fail before training, with a message naming the config key, for values that cannot work.

    Imports ``env.imports`` (and the module of a ``module:EnvId`` id) on the way; builds nothing.
    """
    check_env_config(cfg)
    gamma = OmegaConf.select(cfg, "model.loss.gamma")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"model.loss.gamma must be in [0, 1], got {gamma!r}")
    for key, rule in _REQUIRED.items():
        check_key(cfg, key, rule, required=True)
    seed = OmegaConf.select(cfg, "seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        # numpy's seeds (the envs') are unsigned 32-bit words; a negative one failed only at the first reset
        raise ConfigError(f"seed must be an integer in [0, 2**32 - 1], got {seed!r}")
    for key, rule in _OPTIONAL.items():
        if OmegaConf.select(cfg, key) is not None:
            check_key(cfg, key, rule)
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
    if threshold != "spec" and threshold is not None and not NUMBER().ok(threshold):
        # nan or inf: EarlyStopping would never stop on it (null says so)
        what = "a finite number" if isinstance(threshold, float) else "a number"
        raise ConfigError(f"env.return_threshold must be {what}, null or spec, got {threshold!r}")
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
    for key, rule in EVALUATE_RULES.items():
        check_key(cfg, key, rule)
