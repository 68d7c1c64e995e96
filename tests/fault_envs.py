"""Test environments that fail on one chosen DDP rank, at a chosen epoch (tests/test_faults.py).

Registered as ``tests.fault_envs:RankFault-v0`` (``env.imports=[tests.fault_envs]``); the
subprocess needs the repository root on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import gymnasium as gym
import numpy as np


def current_rank() -> int:
    """This process's global rank: torch.distributed's once the group is up, else ``RANK``/``LOCAL_RANK`` (0)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
    except ImportError:  # pragma: no cover
        pass
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


class RankFaultEnv(gym.Env):
    """CartPole-shaped observations, reward 1, episodes of 5 steps; a fault on rank ``fault_rank`` only.

    Epochs are counted by the seeded resets (the collector reseeds every copy once per collection,
    and autoreset passes no seed): the fault happens at the first step of epoch ``fault_epoch``
    (0-based) of a copy that lives in the process of global rank ``fault_rank``.

    Args:
        fault: ``"raise"``: ``RuntimeError("deliberate fault on rank R at epoch E")``;
            ``"huge_reward"``: every reward is ``3e38`` from then on (finite, fits float32, but the
            returns overflow: a NonFiniteError on that rank's batch); ``"none"``: no fault.
        fault_rank: the global rank that faults.
        fault_epoch: the epoch (0-based collection) at which it faults.
        pid_dir: when set, every copy writes an empty file named after its process id there
            (the test then checks that none of those processes is left).
    """

    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, fault: str = "raise", fault_rank: int = 1, fault_epoch: int = 1, pid_dir: str | None = None):
        self.fault, self.fault_rank, self.fault_epoch = fault, int(fault_rank), int(fault_epoch)
        self.seeded_resets = 0
        self.t = 0
        if pid_dir:
            Path(pid_dir).mkdir(parents=True, exist_ok=True)
            (Path(pid_dir) / str(os.getpid())).touch()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.seeded_resets += 1
        self.t = 0
        return self.np_random.normal(size=4).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        obs, reward = self.np_random.normal(size=4).astype(np.float32), 1.0
        epoch = self.seeded_resets - 1
        if self.fault != "none" and epoch >= self.fault_epoch and current_rank() == self.fault_rank:
            if self.fault == "raise":
                raise RuntimeError(f"deliberate fault on rank {self.fault_rank} at epoch {epoch}")
            if self.fault == "huge_reward":
                reward = 3e38
        return obs, reward, self.t == 5, False, {}


class SuicideEnv(gym.Env):
    """Like :class:`RankFaultEnv` without faults, but one async worker SIGKILLs itself.

    The copy whose process finds ``flag`` (a file path) kills its own process with ``SIGKILL``
    at its ``kill_after``-th step, after deleting the flag (so exactly one worker dies). The
    process id of every copy is written to ``pid_dir`` when set.
    """

    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, flag: str = "", kill_after: int = 3, pid_dir: str | None = None):
        self.flag, self.kill_after, self.steps, self.t = flag, int(kill_after), 0, 0
        if pid_dir:
            Path(pid_dir).mkdir(parents=True, exist_ok=True)
            (Path(pid_dir) / str(os.getpid())).touch()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.normal(size=4).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        self.steps += 1
        if self.flag and self.steps >= self.kill_after:
            try:
                os.unlink(self.flag)
            except FileNotFoundError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(10)  # pragma: no cover  (never reached)
        return self.np_random.normal(size=4).astype(np.float32), 1.0, self.t == 5, False, {}


class ValueEnv(gym.Env):
    """Episodes of 3 steps; from step ``at`` of an episode on, ``obs[0]`` is ``obs_value`` (the final
    observation included); every reward is ``reward``. E.g. ``obs_value=inf`` or ``nan``, ``reward=1e39``."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, obs_value: float = 0.0, reward: float = 1.0, at: int = 1):
        self.obs_value, self.reward, self.at, self.t = float(obs_value), float(reward), int(at), 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(4, np.float32)
        obs[1] = self.t
        if self.t >= self.at:
            obs[0] = self.obs_value
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), self.reward, self.t == 3, False, {}


for _id, _cls in [("RankFault-v0", RankFaultEnv), ("Suicide-v0", SuicideEnv), ("Value-v0", ValueEnv)]:
    if _id not in gym.registry:
        gym.register(_id, entry_point=_cls, max_episode_steps=100)


class BadStepEnv(gym.Env):
    """Episodes of 3 steps, reward 1.0; at step ``at`` of each episode, ``field`` (``terminated``, ``truncated`` or
    ``reward``) is ``value`` instead (``"no"``, ``None``, ``"1.0"``, ...). ``field="numpy"``: numpy flags and rewards
    at every step (``numpy.bool_``, 0-d bool arrays, ``numpy.float32``): all valid."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, field: str = "terminated", value: object = "no", at: int = 2):
        self.field, self.value, self.at, self.t = field, value, int(at), 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        out = {"reward": 1.0, "terminated": self.t == 3, "truncated": False}
        if self.field == "numpy":
            out = {"reward": np.float32(1.0), "terminated": np.bool_(self.t == 3), "truncated": np.array(False)}
        elif self.t == self.at:
            out[self.field] = self.value
        return np.full(2, self.t, np.float32), out["reward"], out["terminated"], out["truncated"], {}


if "BadStep-v0" not in gym.registry:
    gym.register("BadStep-v0", entry_point=BadStepEnv, max_episode_steps=100)
