"""Gymnasium environments for the finite MDPs of :mod:`pg_lightning.core.tabular`.

Importing this module registers (``pg_lightning.envs.collector`` and ``pg_lightning.cli.train`` import it):

- ``pg_lightning/TwoArmedBandit-v0``: :func:`~pg_lightning.core.tabular.two_armed_bandit`;
- ``pg_lightning/Chain-v0``: :func:`~pg_lightning.core.tabular.chain`, the slippery corridor;
- ``pg_lightning/CueMemory-v0``: :class:`~pg_lightning.envs.memory.CueMemoryEnv`, remember the cue
  shown at the first step (a memory task: only a recurrent policy beats chance).

Keyword arguments of ``gym.make`` go to those MDP constructors, e.g.
``gym.make("pg_lightning/Chain-v0", length=8, slip=0.1)``. Observations are ``Discrete(S)`` state
indices and actions ``Discrete(A)``; an episode terminates when it enters a terminal state and is
never truncated by the env itself. The MDP is ``env.unwrapped.mdp``, for the exact solver.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

import pg_lightning.envs.memory  # noqa: F401  (registers pg_lightning/CueMemory-v0)
from pg_lightning.core.tabular import TabularMDP, chain, two_armed_bandit

__all__ = ["TabularEnv", "make_bandit", "make_chain"]


class TabularEnv(gym.Env[np.int64, np.int64]):
    """A :class:`~pg_lightning.core.tabular.TabularMDP` as a gymnasium environment.

    ``reset`` draws the first state from ``mdp.initial``; ``step(a)`` draws ``s'`` from
    ``P[s, a]``, pays ``R[s, a, s']`` and terminates when ``s'`` is terminal. ``render_mode="ansi"``
    returns the current state as text.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, mdp: TabularMDP, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.mdp = mdp
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Discrete(mdp.num_states)
        self.action_space = gym.spaces.Discrete(mdp.num_actions)
        self._initial = mdp.initial.numpy()
        self._cdf = mdp.transitions.cumsum(-1).numpy()
        self._rewards = mdp.rewards.numpy()
        self._terminal = mdp.terminal.numpy()
        self._state: int | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.int64, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = int(self.np_random.choice(len(self._initial), p=self._initial))
        return np.int64(self._state), {}

    def step(self, action: int | np.integer) -> tuple[np.int64, float, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._terminal[self._state]:
            raise RuntimeError("the episode has ended: call reset()")
        if not self.action_space.contains(np.int64(action)):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        s, a = self._state, int(action)
        cdf = self._cdf[s, a]
        next_state = min(int(np.searchsorted(cdf, self.np_random.random(), side="right")), len(cdf) - 1)
        reward = float(self._rewards[s, a, next_state])
        self._state = next_state
        return np.int64(next_state), reward, bool(self._terminal[next_state]), False, {}

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return f"state {self._state} of {self.mdp.num_states}"
        return None


def make_chain(render_mode: str | None = None, **kwargs: Any) -> TabularEnv:
    """``TabularEnv(chain(**kwargs))``."""
    return TabularEnv(chain(**kwargs), render_mode=render_mode)


def make_bandit(render_mode: str | None = None, **kwargs: Any) -> TabularEnv:
    """``TabularEnv(two_armed_bandit(**kwargs))``."""
    return TabularEnv(two_armed_bandit(**kwargs), render_mode=render_mode)


def _register() -> None:
    for env_id, entry_point in (
        ("pg_lightning/Chain-v0", "pg_lightning.envs.tabular_envs:make_chain"),
        ("pg_lightning/TwoArmedBandit-v0", "pg_lightning.envs.tabular_envs:make_bandit"),
    ):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point)


_register()
