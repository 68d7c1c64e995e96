"""pg_lightning: REINFORCE, the policy gradient theorem as an algorithm, under PyTorch Lightning.

The math (returns, loss, baselines, policies, the batch type) imports neither Lightning nor
gymnasium and is imported eagerly. The Lightning and gymnasium parts are imported on first use.
"""

from pg_lightning import _compat
from pg_lightning.core.baselines import Baseline, MeanBaseline, NoBaseline
from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.loss import LossTerms, ReinforceLoss
from pg_lightning.core.policies import MLP, CategoricalPolicy, GaussianPolicy, OneHot
from pg_lightning.core.returns import discounted_returns, step_in_episode, total_returns

__version__ = "0.2.0"

_compat.install()  # the 0.1 module paths (pg_lightning.module, ...) keep working, with a DeprecationWarning

_LAZY = {
    "EpisodeCollector": "pg_lightning.envs.collector",
    "make_vector_env": "pg_lightning.envs.collector",
    "make_policy": "pg_lightning.envs.networks",
    "RolloutDataModule": "pg_lightning.lightning.data",
    "ReinforceModule": "pg_lightning.lightning.module",
    "run": "pg_lightning.cli.train",
}

__all__ = [
    "MLP",
    "Baseline",
    "CategoricalPolicy",
    "EpisodeBatch",
    "GaussianPolicy",
    "LossTerms",
    "MeanBaseline",
    "NoBaseline",
    "OneHot",
    "ReinforceLoss",
    "discounted_returns",
    "step_in_episode",
    "total_returns",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pg_lightning' has no attribute {name!r}")
