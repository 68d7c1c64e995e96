"""A memory task: remember a cue across a corridor, then answer it.

Importing this module registers ``pg_lightning/CueMemory-v0`` (:class:`CueMemoryEnv`; no time
limit, since every episode ends by itself after ``delay + 2`` steps; ``reward_threshold=0.9``).
Keyword arguments of ``gym.make`` go to :class:`CueMemoryEnv`, e.g.
``gym.make("pg_lightning/CueMemory-v0", delay=8)``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["ENV_ID", "CueMemoryEnv", "register"]

ENV_ID = "pg_lightning/CueMemory-v0"


class CueMemoryEnv(gym.Env[np.ndarray, np.int64]):
    """Remember the cue: see a cue, walk a corridor that shows nothing of it, then name it.

    At reset a cue ``c`` in {0, 1} is drawn uniformly from the env's ``np_random``. An episode is
    exactly ``delay + 2`` steps:

    - t = 0, the cue step: observation ``[+1, 0, 0]`` if ``c == 1``, ``[-1, 0, 0]`` if ``c == 0``;
    - t = 1 .. delay, the corridor: observation ``[0, 1, 0]``;
    - t = delay + 1, the decision step: observation ``[0, 0, 1]``.

    The observation is ``[cue_signal, corridor_flag, decision_flag]`` in ``Box(-1, 1, (3,), float32)``;
    actions are ``Discrete(2)``. Actions before the decision step do nothing and pay 0. At the
    decision step, action ``== c`` pays +1 and any other action pays ``wrong_reward`` (-1 by default);
    then the episode terminates (the final observation is ``[0, 0, 0]``). It is never truncated.
    With ``delay=0`` the decision step comes right after the cue step.

    **Why it needs memory.** Only the first observation depends on the cue; every later one, the
    decision step's included, is the same whatever the cue. A feedforward (memoryless) policy acts
    at the decision step on an observation that carries no information about ``c``, so whatever it
    does it answers right with probability exactly 1/2: its expected return is exactly
    ``(1 + wrong_reward) / 2``, which is 0 with the default ``wrong_reward=-1``. A policy with memory
    (an RNN, or a frame stack of at least ``delay + 2`` frames) can answer the cue it saw at t = 0
    and get +1 every episode: the optimal return is 1.

    ``render_mode="ansi"`` makes :meth:`render` return the state as one line of text.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, delay: int = 4, wrong_reward: float = -1.0, render_mode: str | None = None) -> None:
        self.delay = _checked_delay(delay)  # both may come from a config (env.kwargs): checked as any objects
        self.wrong_reward = _checked_wrong_reward(wrong_reward)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._cue: int | None = None
        self._t = 0
        self._done = False
        self._last: tuple[int, float] | None = None  # (action, reward) at the decision step, for render

    @property
    def episode_length(self) -> int:
        """Steps in every episode: the cue step, ``delay`` corridor steps, the decision step."""
        return self.delay + 2

    def _observation(self) -> np.ndarray:
        obs = np.zeros(3, dtype=np.float32)
        if self._done:
            return obs
        if self._t == 0:
            obs[0] = 1.0 if self._cue == 1 else -1.0
        elif self._t <= self.delay:
            obs[1] = 1.0
        else:
            obs[2] = 1.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(2))
        self._t = 0
        self._done = False
        self._last = None
        return self._observation(), {}

    def step(self, action: int | np.integer) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._cue is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("the episode has ended: call reset()")
        if not self.action_space.contains(np.int64(action)):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        if self._t < self.delay + 1:  # cue or corridor step: the action does nothing
            self._t += 1
            return self._observation(), 0.0, False, False, {}
        correct = int(action) == self._cue
        reward = 1.0 if correct else self.wrong_reward
        self._done = True
        self._last = (int(action), reward)
        return self._observation(), reward, True, False, {"correct": correct}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._cue is None:
            return "not reset"
        if self._done:
            assert self._last is not None  # set by the decision step, which ends the episode
            action, reward = self._last
            return f"done: cue {self._cue}, answered {action}, reward {reward:+g}"
        if self._t == 0:
            return f"t=0 of {self.episode_length}: cue {self._cue}"
        if self._t <= self.delay:
            return f"t={self._t} of {self.episode_length}: corridor {self._t}/{self.delay}"
        return f"t={self._t} of {self.episode_length}: decision"


def _checked_delay(delay: object) -> int:
    """``delay`` as an int, or a ValueError (for a value of any wrong type too: one exception type for bad kwargs)."""
    if isinstance(delay, bool) or not isinstance(delay, Integral):
        raise ValueError(f"delay must be an int >= 0 (the number of corridor steps), got {delay!r}")  # noqa: TRY004
    if delay < 0:
        raise ValueError(f"delay must be >= 0 (the number of corridor steps), got {delay}")
    return int(delay)


def _checked_wrong_reward(wrong_reward: object) -> float:
    """``wrong_reward`` as a float below 1, or a ValueError."""
    if isinstance(wrong_reward, bool) or not isinstance(wrong_reward, Real) or not math.isfinite(wrong_reward):
        raise ValueError(f"wrong_reward must be a finite number, got {wrong_reward!r}")
    value = float(wrong_reward)
    if value >= 1.0:
        raise ValueError(
            f"wrong_reward must be < 1, the reward for the right answer (else there is nothing to remember), "
            f"got {wrong_reward}"
        )
    return value


def register() -> None:
    """Register ``pg_lightning/CueMemory-v0`` unless it is registered already."""
    if ENV_ID not in gym.envs.registry:
        gym.register(ENV_ID, entry_point="pg_lightning.envs.memory:CueMemoryEnv", reward_threshold=0.9)


register()
