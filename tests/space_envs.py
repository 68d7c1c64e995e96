"""Test envs for every kind of gymnasium space: ``tests.space_envs:Spaces-v0`` with ``obs=<name>`` and ``action=<name>``.

Observations are sampled from the observation space (seeded by ``reset``), episodes last a random
1..``max_length`` steps (so parallel copies end at different times), and the reward is 1 when the
action's first component is "high" (the largest index / a one / positive), so that a policy can
learn it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

OBSERVATIONS = {
    "box": lambda: spaces.Box(-1.0, 1.0, (3,), np.float32),
    "discrete": lambda: spaces.Discrete(5, start=-2),
    "multidiscrete": lambda: spaces.MultiDiscrete([3, 4], start=[1, 0]),
    "multibinary": lambda: spaces.MultiBinary(4),
    "image": lambda: spaces.Box(0, 255, (6, 6, 3), np.uint8),
    "dict": lambda: spaces.Dict(
        {
            "image": spaces.Box(0, 255, (5, 5, 3), np.uint8),
            "direction": spaces.Discrete(4),
            "mission": spaces.Text(12),
            "inner": spaces.Tuple((spaces.Box(-1.0, 1.0, (2,), np.float32), spaces.MultiBinary(3))),
        }
    ),
    "tuple": lambda: spaces.Tuple((spaces.Discrete(3), spaces.Box(-1.0, 1.0, (2, 2), np.float32))),
    "graph": lambda: spaces.Graph(node_space=spaces.Box(-1.0, 1.0, (2,)), edge_space=None),
    "sequence": lambda: spaces.Sequence(spaces.Discrete(3)),
}

ACTIONS = {
    "discrete": lambda: spaces.Discrete(3, start=2),
    "multidiscrete": lambda: spaces.MultiDiscrete([2, 3, 4], start=[0, 1, -1]),
    "multidiscrete2d": lambda: spaces.MultiDiscrete(np.array([[2, 3], [3, 2]])),
    "multibinary": lambda: spaces.MultiBinary(3),
    "box": lambda: spaces.Box(-1.0, 1.0, (2,), np.float32),
    "box2d": lambda: spaces.Box(-2.0, 2.0, (2, 3), np.float32),
}


def _high(space: gym.Space, action: Any) -> bool:
    first = np.asarray(action).flatten()[0]
    if isinstance(space, spaces.Discrete):
        return int(action) == space.start + space.n - 1
    if isinstance(space, spaces.MultiDiscrete):
        return int(first) == int((space.start + space.nvec - 1).flatten()[0])
    return float(first) > 0


class SpacesEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, obs: str = "box", action: str = "discrete", max_length: int = 6) -> None:
        self.observation_space = OBSERVATIONS[obs]()
        self.action_space = ACTIONS[action]()
        self.max_length = max_length
        self._t = 0
        self._length = 1

    def _obs(self) -> Any:
        return self.observation_space.sample()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self._t = 0
        self._length = int(self.np_random.integers(1, self.max_length + 1))
        return self._obs(), {}

    def step(self, action):
        if not self.action_space.contains(np.asarray(action, dtype=self.action_space.dtype)):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        self._t += 1
        reward = 1.0 if _high(self.action_space, action) else 0.0
        return self._obs(), reward, self._t >= self._length, False, {}


gym.register("Spaces-v0", entry_point=SpacesEnv)
