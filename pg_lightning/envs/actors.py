"""The collector's actor: the function that draws one vector step's actions from a policy.

`make_actor` returns the policy's own ``actor(generator)`` when it has one (pg_lightning's policies do), else one
built on ``forward`` (any ``obs -> Distribution`` module) or, for a recurrent policy, on ``initial_state`` and
``step`` with one state per env copy. Layer: envs (torch; used by `pg_lightning.envs.collector`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from pg_lightning.core.distributions import draw
from pg_lightning.core.recurrent import RecurrentPolicy, reset_state

__all__ = ["make_actor"]


def make_actor(
    policy: nn.Module, generator: torch.Generator, num_envs: int, recurrent: bool, with_log_prob: bool
) -> Callable[..., tuple[Tensor, ...]]:
    """The function that draws one vector step's actions: the policy's ``actor`` when it has one,
    else one built on ``forward`` (feedforward) or ``step`` (recurrent).

    It maps ``obs`` (``(obs, starts)`` for a recurrent policy, ``starts`` marking the copies whose observation
    is the first of an episode) to ``(sample, env action)``, plus the sample's log-probability when
    ``with_log_prob``. Actions are drawn from ``generator``; a recurrent policy keeps the state of its
    ``num_envs`` copies from call to call, reset to the initial state where ``starts`` is true.
    """
    actor = getattr(policy, "actor", None)
    if actor is not None:
        return actor(generator, with_log_prob=True) if with_log_prob else actor(generator)
    if not recurrent:
        return partial(_act_from_distribution, policy, generator, with_log_prob)
    stepper = cast(RecurrentPolicy, policy)
    state: list[Any] = []

    def act(obs: Any, starts: Tensor) -> tuple[Tensor, ...]:
        if not state:  # [zero state of the copies, their state], made at the first step
            initial = stepper.initial_state(num_envs)
            state[:] = [initial, initial]
        elif bool(starts.any()):
            state[1] = reset_state(state[1], state[0], starts)
        dist, state[1] = stepper.step(obs, state[1])
        return _drawn(dist, generator, with_log_prob)

    return act


def _act_from_distribution(
    policy: nn.Module, generator: torch.Generator, with_log_prob: bool, obs: Any
) -> tuple[Tensor, ...]:
    """The actor of any ``obs -> Distribution`` policy: the sample, and what the env receives."""
    return _drawn(policy(obs), generator, with_log_prob)


def _drawn(dist: Distribution, generator: torch.Generator, with_log_prob: bool) -> tuple[Tensor, ...]:
    sampled, env_action = draw(dist, generator)
    return (sampled, env_action, dist.log_prob(sampled)) if with_log_prob else (sampled, env_action)
