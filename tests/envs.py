"""Test environments whose behaviour is known exactly."""

import gymnasium as gym
import numpy as np


class RandomLengthEnv(gym.Env):
    """Episode length L ~ Uniform{1..max_len}, drawn at reset, independent of the actions.

    Observation: ``[t]``, the step inside the episode. Reward 1 per step. The last step is
    ``terminated`` when L is even and ``truncated`` when L is odd, and the final observation is ``[L]``.
    """

    def __init__(self, max_len: int = 40):
        self.max_len = max_len
        self.observation_space = gym.spaces.Box(0, max_len, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.length = int(self.np_random.integers(1, self.max_len + 1))
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.t == self.length
        terminated = done and self.length % 2 == 0
        truncated = done and self.length % 2 == 1
        return np.array([self.t], np.float32), 1.0, terminated, truncated, {}


class ClipEchoEnv(gym.Env):
    """Box action in [-1, 1]; the reward is the action the env received. Episodes of 3 steps."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), float(action[0]), self.t == 3, False, {}


for _id, _cls in [("RandomLength-v0", RandomLengthEnv), ("ClipEcho-v0", ClipEchoEnv)]:
    if _id not in gym.registry:
        gym.register(_id, entry_point=_cls)
