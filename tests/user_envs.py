"""A user's env module, outside the package: ``env.id=tests.user_envs:Corridor-v0`` imports and registers it.

- ``Corridor-v0``: walk right along a corridor of ``length`` cells; ``-0.1`` per step, ``+1`` at the
  end, which terminates. Registered with a ``reward_threshold`` (0.5) and a time limit (30 steps).
- ``Tag``: a wrapper that records the order in which wrappers were applied (``env.tags``).
"""

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    def __init__(self, length: int = 4):
        self.length = int(length)
        self.observation_space = gym.spaces.Box(0.0, float(self.length), (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return np.array([self.pos], np.float32), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if int(action) == 1 else -1))
        done = self.pos >= self.length
        return np.array([self.pos], np.float32), 1.0 if done else -0.1, done, False, {}


class BoxRandomLength(gym.Env):
    """Box actions in [-1, 1]; episodes of a random length, 1 to 30 steps, drawn at reset; reward -a^2.

    Ranks (and epochs) get batches of different sizes, so anything drawn per step differs in count.
    """

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.left = int(self.np_random.integers(1, 31))
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        self.left -= 1
        obs = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return obs, -float(np.square(action).sum()), self.left == 0, False, {}


class Tag(gym.Wrapper):
    """Appends ``name`` to ``tags``, the list of the wrappers below it: their order of application."""

    def __init__(self, env: gym.Env, name: str):
        super().__init__(env)
        self.tags = [*getattr(env, "tags", []), name]


if "BoxRandomLength-v0" not in gym.registry:
    gym.register("BoxRandomLength-v0", entry_point=BoxRandomLength, max_episode_steps=50)
if "Corridor-v0" not in gym.registry:
    gym.register("Corridor-v0", entry_point=Corridor, reward_threshold=0.5, max_episode_steps=30)
