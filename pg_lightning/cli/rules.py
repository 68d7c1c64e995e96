"""The valid values of the config's keys (cli layer): `Rule` and the tables `check_keys` reads.

`ARGUMENT_RULES` holds the arguments of each class a node's ``_target_`` may name, `TOP_LEVEL_RULES`
the top-level keys of ``conf/train.yaml``, `EVALUATE_RULES` the keys of ``conf/evaluate.yaml``. The
checks that apply them are in `pg_lightning.cli.config_keys`; the table of keys, valid values and the
errors they give is ``docs/config_keys.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from omegaconf import DictConfig

__all__ = [
    "ACTIVATION",
    "ARGUMENT_RULES",
    "BOOL",
    "DEVICES",
    "EVALUATE_RULES",
    "FRACTION",
    "INT",
    "NUMBER",
    "ONE_OF",
    "SEED",
    "STR",
    "TOP_LEVEL_RULES",
    "VERSION",
    "WIDTHS",
    "Rule",
]


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
    "pg_lightning.lightning.evaluation.EvalCallback": {
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
