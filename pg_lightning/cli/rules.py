"""The valid values of the config's keys (cli layer): `Rule` and the tables `check_keys` reads.

`ARGUMENT_RULES` holds the arguments of each class a node's ``_target_`` may name, `TOP_LEVEL_RULES`
the top-level keys of ``conf/train.yaml``, `EVALUATE_RULES` the keys of ``conf/evaluate.yaml``. The
checks that apply them are in `pg_lightning.cli.config_keys`; the table of keys, valid values and the
errors they give is ``docs/config_keys.md``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from omegaconf import DictConfig

from pg_lightning.core.policies import LOG_STD_BOUNDS

__all__ = [
    "ACTIVATION",
    "ARGUMENT_RULES",
    "BOOL",
    "DEVICES",
    "EVALUATE_RULES",
    "FLOAT32_MAX",
    "FRACTION",
    "INT",
    "LR",
    "LR_MAX",
    "NUMBER",
    "ONE_OF",
    "SEED",
    "STR",
    "THREADS",
    "TOP_LEVEL_RULES",
    "VERSION",
    "WIDTHS",
    "Rule",
]


class Rule(NamedTuple):
    """A valid value: ``ok(value)`` says whether ``value`` is one; ``text`` says what is (``"an integer >= 1"``).

    ``hint(value)``, if given, adds to the message of an invalid value what depends on this machine (the
    same ``text`` for every machine: ``docs/config_keys.md`` quotes it).
    """

    ok: Callable[[Any], bool]
    text: str
    hint: Callable[[Any], str] | None = None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    """An int or a finite float: every number rule refuses nan and +-inf (and an int beyond a float's range)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float: torch and the optimizers cannot take it either
        return False


def INT(minimum: int, *also: Any) -> Rule:
    """The rule: an integer >= ``minimum`` (or one of ``also``)."""
    extra = "".join(f" or {'null' if a is None else a}" for a in also)
    return Rule(
        lambda v: (_is_int(v) and v >= minimum) or (v in also and not isinstance(v, bool)),
        f"an integer >= {minimum}{extra}",
    )


def _bound(x: float) -> str:
    return f"{x:g}"


def NUMBER(
    nullable: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    note: str = "",
) -> Rule:
    """The rule: a finite int or float (never nan or +-inf), within ``[minimum, maximum]`` where given
    (``(minimum, ...`` with ``exclusive_minimum``), or null when ``nullable``; ``note`` ends the text."""

    def ok(v: Any) -> bool:
        if v is None:
            return nullable
        if not _is_number(v):
            return False
        if minimum is not None and (v <= minimum if exclusive_minimum else v < minimum):
            return False
        return maximum is None or v <= maximum

    if minimum is not None and maximum is not None:
        text = f"a number in {'(' if exclusive_minimum else '['}{_bound(minimum)}, {_bound(maximum)}]"
    elif minimum is not None:
        text = f"a finite number {'>' if exclusive_minimum else '>='} {_bound(minimum)}"
    elif maximum is not None:
        text = f"a finite number <= {_bound(maximum)}"
    else:
        text = "a finite number"
    return Rule(ok, text + (" or null" if nullable else "") + (f" {note}" if note else ""))


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

LR_MAX = 1e3
"""The largest learning rate accepted (``model.optimizer.lr``, ``baseline.lr``). Adam moves every weight by
about ``lr`` per update whatever the gradient's scale, and SGD by ``lr`` times a gradient that normalised
advantages keep of order one: beyond 1e3 an update only overflows the weights (``lr=1e308`` makes them inf
at the first step); a schedule or a smaller batch is the way to a larger step."""
LR = NUMBER(minimum=0, maximum=LR_MAX, exclusive_minimum=True)

FLOAT32_MAX = 3.4028234663852886e38
"""float32's largest finite value: the returns, the baseline's values and the weights are float32."""


def _threads_max() -> int:
    return 4 * (os.cpu_count() or 1)


THREADS = Rule(
    lambda v: v is None or (_is_int(v) and 1 <= v <= _threads_max()),
    "an integer from 1 to 4 x os.cpu_count() (threads per CPU of this machine), or null",
    lambda v: (
        f" (this machine has {os.cpu_count() or 1} CPUs: at most {_threads_max()})"
        if _is_int(v) and v > _threads_max()
        else ""
    ),
)
"""``torch_num_threads``: more threads than CPUs only slow a run down, and torch.set_num_threads(100000)
crashes the process (libgomp: out of memory, or a segfault); 4 per CPU leave room for a config written
for a larger machine."""

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
        "gradient_clip_val": NUMBER(nullable=True, minimum=0),
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
    "pg_lightning.lightning.callbacks.PipeAwareProgressBar": {
        "refresh_rate": INT(0),
        "leave": BOOL,
        "piped_every_n_epochs": INT(0),
    },
    "pytorch_lightning.callbacks.progress.rich_progress.RichProgressBar": {"refresh_rate": INT(0), "leave": BOOL},
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
        "log_std_init": NUMBER(
            minimum=LOG_STD_BOUNDS[0],
            maximum=LOG_STD_BOUNDS[1],
            note="(GaussianPolicy's log-std bounds: outside them the clamp stops its gradient)",
        ),
        "state_dependent_std": BOOL,
        "action_bounds": ONE_OF("clip", "tanh"),
        # a factor of PyTorch's initial output weights (|w| <= 1/sqrt(fan_in)): 0.01 is the usual choice; 100
        # already saturates the initial softmax (or puts the Gaussian's mean at +-100)
        "output_init_scale": NUMBER(nullable=True, minimum=0, maximum=100, exclusive_minimum=True),
    },
    "pg_lightning.envs.networks.make_value_network": {"hidden_sizes": WIDTHS, "activation": ACTIVATION},
    "pg_lightning.core.baselines.ConstantBaseline": {
        "value": Rule(
            lambda v: _is_number(v) and abs(v) <= FLOAT32_MAX,
            "a finite number within float32's range (|value| <= 3.4e38), as the returns",
        )
    },
    "pg_lightning.core.baselines.EMABaseline": {"decay": FRACTION()},
    "pg_lightning.core.baselines.LeaveOneOutBaseline": {"mode": ONE_OF("step", "episode")},
    "pg_lightning.core.baselines.ValueBaseline": {
        "loss_coef": NUMBER(minimum=0),
        "lr": NUMBER(nullable=True, minimum=0, maximum=LR_MAX, exclusive_minimum=True, note="(model.optimizer's lr)"),
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
        # seconds an env step may take (null: no limit). At most 1e6 s (11.6 days): a wait beyond
        # threading.TIMEOUT_MAX (4.3e6 s on Windows) raises OverflowError
        "step_timeout": NUMBER(
            nullable=True, minimum=0, maximum=1e6, exclusive_minimum=True, note="(seconds; null: no limit)"
        ),
    },
    "torch.optim.lr_scheduler.LinearLR": {
        "start_factor": Rule(lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
        "end_factor": Rule(lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    },
    "torch.optim.lr_scheduler.CosineAnnealingLR": {"eta_min": NUMBER(minimum=0, maximum=LR_MAX)},
}

# Top-level keys of conf/train.yaml (the others are nodes with a _target_, checked by ARGUMENT_RULES).
TOP_LEVEL_RULES: dict[str, Rule] = {
    "torch_num_threads": THREADS,
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
    "torch_num_threads": THREADS,
}
