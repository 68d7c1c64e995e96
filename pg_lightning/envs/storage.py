"""The collector's storage: preallocated time-major arrays of vector steps, and their flattening into a batch.

`StepStorage` holds one array per field (observation leaves, actions, rewards, flags, log-probs), written in place
by the collection loops of `pg_lightning.envs.collector.EpisodeCollector`; `StepStorage.batch` turns the rows of a
collection into the flat, episode-contiguous `pg_lightning.core.batch.EpisodeBatch`. Layer: envs (numpy and torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import DTypeLike

from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.tree import flatten, leaves_as, unflatten

__all__ = ["StepStorage"]


class StepStorage:
    """Preallocated time-major arrays ``(capacity, num_envs, *shape)``, one per field, that double when full.

    The collector writes each vector step straight into row ``t`` (and the next observations into
    row ``t + 1``): no per-step allocation or copy beyond the env's own.

    Args:
        num_envs: the vector env's copies (the second dimension of every array).
        capacity: rows allocated at first (doubled whenever a step needs more).
    """

    def __init__(self, num_envs: int, capacity: int = 256) -> None:
        self.num_envs = num_envs
        self.capacity = capacity
        self.data: dict[str, np.ndarray] = {}

    def add(self, name: str, example: np.ndarray, dtype: DTypeLike | None = None) -> np.ndarray:
        """A field shaped as ``example`` ``(num_envs, *shape)``, zero-filled."""
        shape = np.shape(example)[1:]
        self.data[name] = np.zeros((self.capacity, self.num_envs, *shape), dtype=dtype or np.asarray(example).dtype)
        return self.data[name]

    def add_step_fields(self, action: np.ndarray, active: np.ndarray, log_probs: np.ndarray | None) -> None:
        """The fields of a step, shaped at the first step: actions, rewards (float64, as the env gives them: checked
        and cast once, in the batch), the two flags, and the log-probs when they are recorded."""
        self.add("actions", action)
        for name, dtype in (("rewards", np.float64), ("terminated", np.bool_), ("truncated", np.bool_)):
            self.add(name, active, dtype)
        if log_probs is not None:
            self.add("log_probs", log_probs)

    def reserve(self, t: int) -> None:
        """Room for rows ``0 .. t + 1``."""
        if t + 1 >= self.capacity:
            self.capacity *= 2
            self.data = {k: np.concatenate([v, np.zeros_like(v)]) for k, v in self.data.items()}

    def batch(
        self,
        t: int,
        final_obs: list[tuple[int, int, Any]],
        obs_spec: Any,
        final_rows: Sequence[tuple[int, np.ndarray]] = (),
    ) -> EpisodeBatch:
        """Time-major ``(T, N, ...)`` rows ``0 .. t - 1`` to flat ``(B, ...)``, env by env, so episodes are contiguous.

        Only the steps of the ``kept`` field are taken. The final observations are ``final_obs`` (``(env, t,
        obs)``), or, for ``NEXT_STEP`` envs, those stored in the rows after the ``final_rows`` (``(t, envs)``),
        gathered at once. ``obs_spec`` is the tree structure of an observation (``pg_lightning.core.tree.flatten``):
        the final observations' Dict leaves are matched by key (``pg_lightning.core.tree.leaves_as``), so
        ``final_obs`` has the structure and key order of ``obs``; a missing or extra key is a
        ``pg_lightning.core.tree.StructureError``.
        """
        mask = self.data["kept"][:t].T  # (N, T)
        flat = {
            k: torch.from_numpy(np.ascontiguousarray(np.swapaxes(v[:t], 0, 1)[mask]))
            for k, v in self.data.items()
            if k != "kept"
        }
        obs = unflatten(obs_spec, [flat[f"obs/{i}"] for i in range(len(flatten(obs_spec)[0]))])
        if final_rows:
            ts = np.concatenate([np.full(len(envs), step) for step, envs in final_rows])
            envs = np.concatenate([envs for _, envs in final_rows])
            order = np.lexsort((ts, envs))  # by env, then by time
            keys = [f"obs/{i}" for i in range(len(flatten(obs_spec)[0]))]
            final = unflatten(obs_spec, [torch.from_numpy(self.data[k][ts[order] + 1, envs[order]]) for k in keys])
        else:  # each observation's leaves taken by key, in the order of obs_spec: an env's own dict order never matters
            in_order = [leaves_as(obs_spec, o) for _, _, o in sorted(final_obs, key=lambda e: (e[0], e[1]))]
            final = unflatten(obs_spec, [torch.from_numpy(np.stack(column)) for column in zip(*in_order, strict=True)])
        return EpisodeBatch(
            obs=obs,
            actions=flat["actions"],
            rewards=flat["rewards"],
            terminated=flat["terminated"],
            truncated=flat["truncated"],
            final_obs=final,
            log_probs=flat.get("log_probs"),
        )
