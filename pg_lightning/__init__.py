"""pg_lightning: REINFORCE, the policy gradient theorem as an algorithm, under PyTorch Lightning.

The public API, by layer (each name is also importable from its module):

- plain torch (`pg_lightning.core`), imported eagerly: the returns, the loss, the baselines, the batch type,
  the policies;
- gymnasium (`pg_lightning.envs`): the collector, vector envs, policies from spaces, the network checks;
- Lightning (`pg_lightning.lightning`): the module, the data module, the callbacks;
- the command line (`pg_lightning.cli`): ``run(cfg)``, the whole of ``python train.py``.

The gymnasium, Lightning and CLI names are imported on first use, so ``import pg_lightning`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pg_lightning.core.baselines import (
    Baseline,
    ConstantBaseline,
    EMABaseline,
    LeaveOneOutBaseline,
    MeanBaseline,
    NoBaseline,
    ValueBaseline,
)
from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.encoders import OneHot
from pg_lightning.core.loss import LossTerms, ReinforceLoss
from pg_lightning.core.policies import (
    BernoulliPolicy,
    CategoricalPolicy,
    GaussianPolicy,
    MultiCategoricalPolicy,
    Policy,
)
from pg_lightning.core.returns import discounted_returns, step_in_episode, total_returns
from pg_lightning.core.torso import MLP

if TYPE_CHECKING:  # the names of _LAZY, for type checkers and editors
    from pg_lightning.cli.train import run
    from pg_lightning.envs.checks import check_policy, check_value_network
    from pg_lightning.envs.collector import EpisodeCollector
    from pg_lightning.envs.networks import make_policy, make_value_network
    from pg_lightning.envs.vector_envs import make_vector_env
    from pg_lightning.lightning.callbacks import BestCheckpoint, ExactReturn, GradientDiagnostics
    from pg_lightning.lightning.data import RolloutDataModule
    from pg_lightning.lightning.evaluation import EvalCallback
    from pg_lightning.lightning.module import ReinforceModule
    from pg_lightning.lightning.signals import DeferredSignals

__version__ = "0.2.0"

_LAZY = {
    "EpisodeCollector": "pg_lightning.envs.collector",
    "make_vector_env": "pg_lightning.envs.vector_envs",
    "make_policy": "pg_lightning.envs.networks",
    "make_value_network": "pg_lightning.envs.networks",
    "check_policy": "pg_lightning.envs.checks",
    "check_value_network": "pg_lightning.envs.checks",
    "RolloutDataModule": "pg_lightning.lightning.data",
    "ReinforceModule": "pg_lightning.lightning.module",
    "BestCheckpoint": "pg_lightning.lightning.callbacks",
    "ExactReturn": "pg_lightning.lightning.callbacks",
    "GradientDiagnostics": "pg_lightning.lightning.callbacks",
    "EvalCallback": "pg_lightning.lightning.evaluation",
    "DeferredSignals": "pg_lightning.lightning.signals",
    "run": "pg_lightning.cli.train",
}

__all__ = [
    "MLP",
    "Baseline",
    "BernoulliPolicy",
    "BestCheckpoint",
    "CategoricalPolicy",
    "ConstantBaseline",
    "DeferredSignals",
    "EMABaseline",
    "EpisodeBatch",
    "EpisodeCollector",
    "EvalCallback",
    "ExactReturn",
    "GaussianPolicy",
    "GradientDiagnostics",
    "LeaveOneOutBaseline",
    "LossTerms",
    "MeanBaseline",
    "MultiCategoricalPolicy",
    "NoBaseline",
    "OneHot",
    "Policy",
    "ReinforceLoss",
    "ReinforceModule",
    "RolloutDataModule",
    "ValueBaseline",
    "check_policy",
    "check_value_network",
    "discounted_returns",
    "make_policy",
    "make_value_network",
    "make_vector_env",
    "run",
    "step_in_episode",
    "total_returns",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pg_lightning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
