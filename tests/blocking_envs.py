"""A test env whose ``step`` blocks for good at a chosen epoch, in a chosen copy, on a chosen DDP rank.

Registered as ``tests.blocking_envs:Blocking-v0`` (the subprocess needs the repository root on ``PYTHONPATH``);
tests/test_stuck_envs.py stops runs that it hangs.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from tests.fault_envs import current_rank

_tickets: dict[tuple[str, int], itertools.count] = {}


def copy_index(flag_dir: str, epoch: int) -> int:
    """This env's copy index: an async worker's from its process name (gymnasium names it ``Worker<...>-i``), else
    the order in which this process's copies take their first step of ``epoch`` (the sync loop steps the copies in
    order at the epoch's first step)."""
    name = multiprocessing.current_process().name
    if name.startswith("Worker<"):
        return int(name.rsplit("-", 1)[1])
    return next(_tickets.setdefault((flag_dir, epoch), itertools.count()))


class BlockingEnv(gym.Env):
    """CartPole-shaped observations, reward 1, episodes of 5 steps; ``step`` sleeps forever from the first step of
    epoch ``block_epoch`` (0-based, counted by the seeded resets) in copy ``block_copy`` on rank ``block_rank``.

    Before it blocks it writes ``<flag_dir>/blocked`` (the test's cue); every copy writes ``<flag_dir>/pid-<pid>``.
    """

    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, block_epoch: int = 1, block_copy: int = 0, block_rank: int = 0, flag_dir: str = "") -> None:
        self.block_epoch, self.block_copy, self.block_rank = block_epoch, block_copy, block_rank
        self.flag_dir = Path(flag_dir) if flag_dir else None
        self.copy: int | None = None
        self.seeded_resets = 0
        self.t = 0
        if self.flag_dir is not None:
            self.flag_dir.mkdir(parents=True, exist_ok=True)
            (self.flag_dir / f"pid-{os.getpid()}").touch()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.seeded_resets += int(seed is not None)
        self.t = 0
        return self.np_random.normal(size=4).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        epoch = self.seeded_resets - 1
        if epoch == self.block_epoch and self.copy is None:
            self.copy = copy_index(str(self.flag_dir), epoch)
        if epoch >= self.block_epoch and self.copy == self.block_copy and current_rank() == self.block_rank:
            if self.flag_dir is not None:
                (self.flag_dir / "blocked").touch()
            while True:  # a simulator that deadlocked
                time.sleep(3600)
        return self.np_random.normal(size=4).astype(np.float32), 1.0, self.t == 5, False, {}


gym.register("Blocking-v0", entry_point=BlockingEnv, max_episode_steps=100)
