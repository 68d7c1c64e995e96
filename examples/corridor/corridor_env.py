"""A user-defined gymnasium env, as a researcher would write one: a 1-D corridor.

Importing this module registers ``Corridor-v0``. pg_lightning imports it for you, in every process
that builds an env, when the config says ``env.id: corridor_env:Corridor-v0`` (gymnasium's
``module:EnvId`` form) or ``env.imports: [corridor_env]``; it only has to be importable.

The agent starts in cell 0 of a corridor of ``length`` cells and moves left (action 0) or right
(action 1); walking into the left wall leaves it where it is. Every step costs ``step_reward``;
entering the last cell pays ``goal_reward`` instead and ends the episode (terminated). The
registered time limit truncates an episode after 100 steps.

With the default 12 cells a uniformly random walk needs (12 - 1)**2 = 121 steps on average to
reach the goal, so it often runs out of time (a return of -1.0); always walking right takes 11
steps, a return of 1.0 - 10 * 0.01 = 0.90. The registered reward_threshold, 0.85 (episodes of at
most 16 steps on average), is where pg_lightning's ``env.return_threshold: spec`` stops training.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["CorridorEnv"]


class CorridorEnv(gym.Env[np.int64, np.int64]):
    """Observations: the cell, ``Discrete(length)``; actions: ``Discrete(2)`` (0 left, 1 right)."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        length: int = 12,
        step_reward: float = -0.01,
        goal_reward: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        if length < 2:
            raise ValueError(f"length must be at least 2, got {length}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.length = int(length)
        self.step_reward = float(step_reward)
        self.goal_reward = float(goal_reward)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Discrete(self.length)
        self.action_space = gym.spaces.Discrete(2)
        self._pos = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._pos = 0
        return np.int64(self._pos), {}

    def step(self, action):
        if not self.action_space.contains(np.int64(action)):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        self._pos = max(0, self._pos + (1 if int(action) == 1 else -1))
        terminated = self._pos == self.length - 1
        reward = self.goal_reward if terminated else self.step_reward
        return np.int64(self._pos), reward, terminated, False, {}

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            cells = ["A" if i == self._pos else "." for i in range(self.length - 1)]
            return "".join(cells) + ("A" if self._pos == self.length - 1 else "G")
        return None


if "Corridor-v0" not in gym.registry:  # once, even if the module is imported under a second name
    gym.register(
        id="Corridor-v0",
        entry_point=f"{__name__}:CorridorEnv",
        max_episode_steps=100,
        reward_threshold=0.85,
    )
