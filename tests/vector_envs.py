"""A natively batched test env: ``RandomLength-v0``'s episodes (length L ~ Uniform{1..max_len}), all copies at once.

Registered as ``tests.vector_envs:RandomLengthBatched-v0`` with a single-env entry point (``tests.envs``'
``RandomLengthEnv``) and this class as its ``vector_entry_point``; ``data.vector_env`` can also build it
directly (``{_target_: tests.vector_envs.RandomLengthVectorEnv, num_envs: 8, autoreset_mode: SameStep}``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from tests.envs import RandomLengthEnv


class RandomLengthVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` copies of ``RandomLengthEnv`` in numpy arrays, with either autoreset mode.

    ``NEXT_STEP``: the step after an episode's last one resets that copy (reward 0, flags false, the
    action ignored) and returns its first observation ``[0]``; the last observation ``[L]`` is
    returned by the last step itself. ``SAME_STEP``: the last step returns the next episode's first
    observation and reports ``[L]`` in ``info["final_obs"]``. ``DISABLED`` is accepted too (for the
    collector's error). ``max_episode_steps`` truncates as gymnasium's ``TimeLimit`` would.
    """

    def __init__(self, num_envs: int = 8, max_len: int = 40, autoreset_mode: str = "NextStep",
                 max_episode_steps: int | None = None) -> None:  # fmt: skip
        self.num_envs = num_envs
        self.max_len = max_len
        self.max_episode_steps = max_episode_steps
        self.metadata = {"autoreset_mode": AutoresetMode(autoreset_mode)}
        self.single_observation_space = gym.spaces.Box(0, max_len, (1,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._prev_done = np.zeros(num_envs, np.bool_)

    def _draw(self, n: int) -> np.ndarray:
        return self.np_random.integers(1, self.max_len + 1, size=n)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.length, self.t = self._draw(self.num_envs), np.zeros(self.num_envs, np.int64)
        self._prev_done[:] = False
        return np.zeros((self.num_envs, 1), np.float32), {}

    def step(self, actions):
        assert self.action_space.contains(np.asarray(actions)), actions
        self.t += 1
        limit = self.max_episode_steps
        done = self.t == self.length
        terminated = done & (self.length % 2 == 0)
        truncated = (done & (self.length % 2 == 1)) | (self.t == limit if limit else False)
        truncated &= ~terminated
        obs = self.t.astype(np.float32)[:, None]
        reward = np.ones(self.num_envs)
        info: dict[str, Any] = {}
        mode = self.metadata["autoreset_mode"]
        if mode == AutoresetMode.NEXT_STEP:
            resetting = self._prev_done
            n = int(resetting.sum())
            self.length[resetting], self.t[resetting] = self._draw(n), 0
            obs[resetting], reward[resetting] = 0.0, 0.0
            terminated[resetting] = truncated[resetting] = False
            self._prev_done = terminated | truncated
        elif mode == AutoresetMode.SAME_STEP:
            ended = terminated | truncated
            if ended.any():
                info["final_obs"] = np.array(
                    [o if e else None for o, e in zip(obs.copy(), ended, strict=True)], dtype=object
                )
                info["_final_obs"] = ended
                self.length[ended], self.t[ended] = self._draw(int(ended.sum())), 0
                obs[ended] = 0.0
        return obs, reward, terminated, truncated, info


gym.register("RandomLengthBatched-v0", entry_point=RandomLengthEnv, vector_entry_point=RandomLengthVectorEnv,
             max_episode_steps=None)  # fmt: skip
