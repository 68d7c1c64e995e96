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


class FaultyEnv(gym.Env):
    """CartPole-like observations; a fault after ``fault_after`` steps of this copy's life.

    ``fault="raise"`` raises ``RuntimeError("deliberate env fault")``; ``"nan_obs"`` returns a NaN
    observation; ``"huge_reward"`` returns a reward of ``3e38`` (finite, but two of them
    overflow float32). Episodes last 5 steps. Registered without a time limit.
    """

    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, fault: str = "raise", fault_after: int = 20):
        self.fault, self.fault_after, self.steps = fault, fault_after, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.normal(size=4).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        self.steps += 1
        obs, reward = self.np_random.normal(size=4).astype(np.float32), 1.0
        if self.steps > self.fault_after:
            if self.fault == "raise":
                raise RuntimeError("deliberate env fault")
            if self.fault == "nan_obs":
                obs[0] = np.nan
            if self.fault == "huge_reward":
                reward = 3e38
        return obs, reward, self.t == 5, False, {}


class EndlessEnv(gym.Env):
    """Never terminates; registered without a time limit."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 0.0, False, False, {}


for _id, _cls in [
    ("RandomLength-v0", RandomLengthEnv),
    ("ClipEcho-v0", ClipEchoEnv),
    ("Faulty-v0", FaultyEnv),
    ("Endless-v0", EndlessEnv),
]:
    if _id not in gym.registry:
        gym.register(_id, entry_point=_cls)
