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


# --- Dict observations in another key order than the space's (tests/test_dict_observations.py) -------------------

LEAF_CODES = {"a": 100, "b": 200, "x": 300, "y": 400}
"""Every value of leaf ``k`` lies in ``[code, code + 100)``: a leaf stored under another key shows."""


def reversed_dict_space(shapes: str = "same", nested: bool = False) -> spaces.Dict:
    """``Dict(a, b[, c: Dict(x, y)])`` (sorted, as gymnasium sorts a dict's keys); leaves of shape ``(2,)``
    (``shapes="same"``) or of shapes ``(1,)``, ``(3,)``, ``(2,)``, ``(4,)`` (``"different"``)."""
    sizes = dict(zip("abxy", (2, 2, 2, 2) if shapes == "same" else (1, 3, 2, 4), strict=True))

    def box(key: str) -> spaces.Box:
        return spaces.Box(0.0, 1000.0, (sizes[key],), np.float32)

    entries: dict[str, gym.Space] = {"a": box("a"), "b": box("b")}
    if nested:
        entries["c"] = spaces.Dict({"x": box("x"), "y": box("y")})
    return spaces.Dict(entries)


class ReversedDictEnv(gym.Env):
    """A Dict observation (`reversed_dict_space`) built as a dict in the reverse of the space's key order, at every
    level: ``{"c": {"y", "x"}, "b", "a"}``. Leaf ``k`` holds ``LEAF_CODES[k] + t`` (``t``: the step in the episode);
    episodes last 1..4 steps (``np_random``), the reward is the action.

    ``fault="missing"`` drops key ``b`` and ``fault="extra"`` adds a key ``z`` from step ``fault_at`` of an episode on.
    """

    metadata = {"render_modes": []}

    def __init__(self, shapes: str = "same", nested: bool = False, fault: str = "none", fault_at: int = 2) -> None:
        self.observation_space = reversed_dict_space(shapes, nested)
        self.action_space = spaces.Discrete(2)
        self.fault, self.fault_at = fault, int(fault_at)
        self._t = 0
        self._length = 1

    def _leaf(self, space: spaces.Box, key: str) -> np.ndarray:
        return np.full(space.shape, LEAF_CODES[key] + self._t, np.float32)

    def _obs(self) -> dict[str, Any]:
        def build(space: spaces.Dict) -> dict[str, Any]:
            items = [(k, build(s) if isinstance(s, spaces.Dict) else self._leaf(s, k)) for k, s in space.spaces.items()]
            return dict(reversed(items))

        obs = build(self.observation_space)
        if self._t >= self.fault_at and self.fault == "missing":
            del obs["b"]
        if self._t >= self.fault_at and self.fault == "extra":
            obs["z"] = np.zeros(2, np.float32)
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._length = int(self.np_random.integers(1, 5))
        return self._obs(), {}

    def step(self, action):
        self._t += 1
        return self._obs(), float(action), self._t >= self._length, False, {}


gym.register("ReversedDict-v0", entry_point=ReversedDictEnv, max_episode_steps=50)


# --- An env that draws from its own spaces, which gymnasium's reset(seed=...) does not seed (tests/test_seeding.py) --


class SpaceSamplerEnv(gym.Env):
    """Observations from ``observation_space.sample()``, rewards from ``action_space.sample()`` (as many toy
    envs do); episodes of 1..5 steps from ``np_random``. The spaces are never seeded by the env itself."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Discrete(3)
        self._t = 0
        self._length = 1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._length = int(self.np_random.integers(1, 6))
        return self.observation_space.sample(), {}

    def step(self, action):
        self._t += 1
        reward = float(self.action_space.sample() == int(action))
        return self.observation_space.sample(), reward, self._t >= self._length, False, {}


gym.register("SpaceSampler-v0", entry_point=SpaceSamplerEnv, max_episode_steps=50)
