"""Lightning callbacks of pg_lightning."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import pytorch_lightning as pl

import pg_lightning.envs  # noqa: F401  (registers the tabular envs)
from pg_lightning.errors import ConfigError
from pg_lightning.tabular import optimal_values, policy_table, solve

__all__ = ["ExactReturn"]


class ExactReturn(pl.Callback):
    """On tabular envs, log the policy's exact objective every epoch, and the optimum.

    - ``exact/return``: ``J(theta)`` of the current policy, from the Bellman solve;
    - ``exact/return_optimal``: ``J*`` by value iteration;
    - ``exact/gap``: ``(J* - J) / |J*|``, the relative shortfall (0 is optimal; ``J* - J`` when
      ``J* = 0``).

    ``J`` uses the MDP's own ``gamma`` (an env kwarg), so keep ``model.loss.gamma`` equal to it
    (``conf/env/chain.yaml`` does). Works under DDP (every rank computes the same numbers).

    Args:
        env_id: a tabular env (``env.unwrapped.mdp`` is its :class:`~pg_lightning.tabular.TabularMDP`).
        env_kwargs: the env's keyword arguments (the same ``env.kwargs`` as the collector's).
    """

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None) -> None:
        env = gym.make(env_id, **(env_kwargs or {}))
        mdp = getattr(env.unwrapped, "mdp", None)
        env.close()
        if mdp is None:
            raise ConfigError(
                f"callbacks.exact_return: {env_id!r} is not a tabular env (it has no .mdp); "
                "remove this callback or use env=chain / env=bandit"
            )
        self.mdp = mdp
        self.optimal = float(optimal_values(mdp).J)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        policy = pl_module.policy
        was_training = policy.training
        policy.eval()
        J = float(solve(self.mdp, policy_table(policy, self.mdp).detach()).J)
        policy.train(was_training)
        log = dict(on_step=False, on_epoch=True, batch_size=1)
        pl_module.log("exact/return", J, **log)
        pl_module.log("exact/return_optimal", self.optimal, **log)
        # relative to |J*|; where J* = 0 the absolute shortfall
        pl_module.log("exact/gap", (self.optimal - J) / (abs(self.optimal) or 1.0), **log)
