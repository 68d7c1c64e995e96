"""The collector's actor: the function that draws one vector step's actions from a policy.

`make_actor` wraps the policy's own ``actor(generator)`` when it has one (pg_lightning's policies do), else draws
from ``forward`` (any ``obs -> Distribution`` module) or, for a recurrent policy, from ``step``, its state carried by
`pg_lightning.core.recurrent.carry_state`. Layer: envs (torch; used by `pg_lightning.envs.collector`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from pg_lightning.core.distributions import draw
from pg_lightning.core.recurrent import RecurrentPolicy, carry_state

__all__ = ["Actor", "make_actor"]

Actor = Callable[..., tuple[Tensor, ...]]
"""``act(obs) -> (sample, env action[, log-prob])``; a recurrent policy's is ``act(obs, starts)``, ``starts``
``(N,)`` bool marking the copies whose observation is the first of an episode (their state restarts)."""


def make_actor(policy: nn.Module, generator: torch.Generator, recurrent: bool, with_log_prob: bool) -> Actor:
    """The `Actor` of ``policy``: its own ``actor`` when it has one, else one that draws from ``forward``
    (feedforward) or from ``step`` (recurrent: the copies' state carried by `carry_state`).

    Actions are drawn from ``generator``; the sample's log-probability is returned too when ``with_log_prob``.
    """
    own = getattr(policy, "actor", None)
    if own is not None:
        return own(generator, with_log_prob=True) if with_log_prob else own(generator)
    if not recurrent:
        return lambda obs: _drawn(policy(obs), generator, with_log_prob)
    stepper = cast(RecurrentPolicy, policy)
    step = carry_state(stepper.step, stepper.initial_state)
    return lambda obs, starts: _drawn(step(obs, starts), generator, with_log_prob)


def _drawn(dist: Distribution, generator: torch.Generator, with_log_prob: bool) -> tuple[Tensor, ...]:
    """The sample of ``dist``, what the env receives, and the sample's log-probability when ``with_log_prob``."""
    sampled, env_action = draw(dist, generator)
    return (sampled, env_action, dist.log_prob(sampled)) if with_log_prob else (sampled, env_action)
