"""One collection in progress: `Rollout`, the collector's step arrays and where each env copy stands.

Both collection loops of `pg_lightning.envs.collector` (the single copies of a sync vector env, stepped one by one,
and any other vector env, stepped as a whole) go through the same calls at every step, so a storage rule cannot
differ between them: `Rollout.draw` (the policy's actions on the current observations, stored), `Rollout.store`
(what the envs returned: one copy's step, or a vector step) and `Rollout.end_step` (the episodes that ended, and
which copies start another). `Rollout.batch` flattens the kept steps into the episode-contiguous
`pg_lightning.core.batch.EpisodeBatch`. Layer: envs (numpy and torch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.tree import as_tensors, flatten, leaves_as, unflatten
from pg_lightning.envs.actors import Actor

__all__ = ["Rollout"]


class Rollout:
    """The steps of one collection so far, and where each of the ``N`` env copies stands.

    The steps are time-major arrays ``(capacity, N, ...)``, preallocated and doubled when full: row ``t``
    holds the observations the policy sees at step ``t``, the actions drawn, what the envs returned (rewards
    as float64, ``terminated`` and ``truncated``) and which steps are ``kept`` (those of the episodes collected);
    the next observations go to row ``t + 1``. A Dict or Tuple observation has one array per leaf, written by key
    (`leaves`: an env's dict may come in any key order).

    The state of the copies: ``active`` (the copies whose episode in progress is collected), ``to_start`` (the
    episodes still to start), ``starts`` (the copies whose observation in row ``t`` is the first of an
    episode), ``resetting`` (``NEXT_STEP``: the copies whose next step is a reset), ``lengths`` (each copy's steps
    in its episode, when tracked), ``stepped`` (the copy-steps the envs ran) and the finished episodes' last
    observations.

    Args:
        obs: the copies' first observations, as numpy arrays (a Dict/Tuple of them); ``N`` is their length.
        num_episodes: the episodes to collect: copies ``0 .. num_episodes - 1`` start one now, the others are idle.
        device: where the policy takes its observations.
        recurrent: the actor takes ``(obs, starts)`` (a recurrent policy's: see `pg_lightning.envs.actors.Actor`).
        log_probs: keep the log-probability of each action (the actor's third output).
        next_step: the envs autoreset ``NEXT_STEP``: an episode's last observation is the next row's, and the
            copy's next step is its reset (no transition: not kept).
        track_lengths: keep ``lengths`` up to date (else None).
    """

    def __init__(
        self,
        obs: Any,
        num_episodes: int,
        device: torch.device,
        recurrent: bool = False,
        log_probs: bool = False,
        next_step: bool = False,
        track_lengths: bool = False,
        capacity: int = 256,
    ) -> None:
        leaves, self.obs_spec = flatten(obs)  # obs_spec None: one array (the common case, kept cheap)
        n = len(leaves[0])
        self.num_envs, self.capacity, self.device = n, capacity, device
        self.recurrent, self.log_probs, self.next_step = recurrent, log_probs, next_step
        self.obs = [np.zeros((capacity, n, *np.shape(leaf)[1:]), np.asarray(leaf).dtype) for leaf in leaves]
        for array, leaf in zip(self.obs, leaves, strict=True):
            array[0] = leaf
        self.fields: dict[str, np.ndarray] = {}  # kept, actions, rewards, flags, log-probs: made at the first step
        self.active = np.arange(n) < num_episodes
        self.to_start = num_episodes - int(self.active.sum())
        self.starts = np.ones(n, np.bool_)
        self.resetting = np.zeros(n, np.bool_)
        self.lengths = np.zeros(n, np.int64) if track_lengths else None
        self.t = self.stepped = 0
        self.final_obs: list[tuple[int, int, Any]] = []  # (copy, t, obs) of every finished episode
        self.final_rows: list[tuple[int, np.ndarray]] = []  # NEXT_STEP: (t, copies) whose last obs is in row t + 1
        self._rows: tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]  # step t's, set by `draw`
        self._flagged = False  # whether a flag was stored at step t (see `end_step`)
        self._nobody = np.zeros(n, np.bool_)

    def leaves(self, obs: Any) -> list[Any]:
        """The leaves of an observation in the order of the first one's (by key: a missing or extra key is a
        ``pg_lightning.core.tree.StructureError``)."""
        return [obs] if self.obs_spec is None else leaves_as(self.obs_spec, obs)

    def draw(self, act: Actor) -> np.ndarray:
        """Step ``t``'s actions: ``act`` on row ``t``'s observations, stored with the kept flags (and the log-probs);
        returns what the envs receive. Row ``t + 1`` starts as a copy of row ``t``: a copy not stepped keeps its
        observation."""
        t = self.t
        if t + 1 >= self.capacity:
            self._grow()
        rows = [array[t] for array in self.obs]
        if self.obs_spec is None:
            obs = torch.as_tensor(rows[0], device=self.device)
        else:
            obs = as_tensors(unflatten(self.obs_spec, rows), self.device)
        out = act(obs, torch.from_numpy(self.starts)) if self.recurrent else act(obs)
        action = out[0].cpu().numpy()
        if not self.fields:
            self._add_fields(action, out[2].cpu().numpy() if self.log_probs else None)
        fields = self.fields
        fields["kept"][t] = self.active & ~self.resetting if self.next_step else self.active
        fields["actions"][t] = action
        if self.log_probs:
            fields["log_probs"][t] = out[2].cpu().numpy()
        next_rows = [array[t + 1] for array in self.obs]
        for row, now in zip(next_rows, rows, strict=True):
            row[:] = now
        self._rows = (next_rows, fields["rewards"][t], fields["terminated"][t], fields["truncated"][t])
        return action if out[1] is out[0] else out[1].cpu().numpy()

    def store(self, copies: int | slice, obs: Any, reward: Any, terminated: Any, truncated: Any) -> None:
        """What the envs returned at step ``t`` for ``copies``: one copy (an int, with its observation, reward and
        flags) or all of them (``slice(None)``, with a vector step's arrays)."""
        next_rows, rewards, terminated_row, truncated_row = self._rows
        if self.obs_spec is None:  # `store_obs`, inlined: this runs for every copy-step
            next_rows[0][copies] = obs
        else:
            self.store_obs(copies, obs)
        rewards[copies] = reward
        if terminated is not False or truncated is not False:  # the rows start False: a copy's usual step skips this
            terminated_row[copies] = terminated
            truncated_row[copies] = truncated
            self._flagged = True

    def store_obs(self, copies: int | slice, obs: Any) -> None:
        """The observations of ``copies`` after step ``t``, e.g. those of a copy's reset (by key: `leaves`)."""
        for row, value in zip(self._rows[0], self.leaves(obs), strict=True):
            row[copies] = value

    def end_step(self, stepped: int, final_obs: Callable[[int], Any] | None) -> list[int]:
        """The episodes that ended at step ``t`` (once all its copies are stored); moves on to step ``t + 1``.

        ``stepped``: the copy-steps the envs ran. ``final_obs(i)``: the last observation of copy ``i``'s finished
        episode (None with ``NEXT_STEP``: it is the one stored). Of the collected copies whose episode ended, the
        first ``to_start`` (in copy order) start another one and the others go idle: whether an episode starts
        never depends on how it will go. Returns those that start another (a copy stepped alone is reset by the
        loop, which stores its observation with `store_obs`; a vector env resets its copies itself).
        """
        t = self.t
        self.t, self.stepped = t + 1, self.stepped + stepped
        if self._flagged:
            self._flagged = False
            _, _, terminated, truncated = self._rows
            done = terminated | truncated
            if self.next_step:  # a reset step is no transition
                done &= ~self.resetting
            ends = done.nonzero()[0]
            ends = ends[self.active[ends]]
        else:  # no flag stored (the usual step of copies stepped alone): nothing ended, and no numpy call is needed
            done, ends = self._nobody, _NO_COPIES
        if self.next_step:  # the copies that ended reset at their next step, and start an episode after it
            self.starts, self.resetting = self.resetting, done
        else:
            self.starts = done
        if self.lengths is not None:
            self.lengths += self.fields["kept"][t]
            self.lengths[done] = 0
        if not len(ends):
            return []
        if self.next_step:
            self.final_rows.append((t, ends))  # their last observations, in row t + 1: gathered by `batch`
        else:
            assert final_obs is not None, "the last observations of SAME_STEP envs and copies stepped alone"
            self.final_obs.extend((int(i), t, final_obs(int(i))) for i in ends)
        restart = ends[: self.to_start].tolist()
        self.active[ends[self.to_start :]] = False
        self.to_start -= len(restart)
        return restart

    def batch(self) -> EpisodeBatch:
        """The kept steps of rows ``0 .. t - 1``, flat ``(B, ...)``, copy by copy, so episodes are contiguous.

        The final observations are those of ``final_obs`` (``(copy, t, obs)``) or, for ``NEXT_STEP`` envs, those in
        the rows after the ``final_rows``, gathered at once; either way their Dict leaves are matched by key
        (`leaves`), so ``final_obs`` has the structure and key order of ``obs``; a missing or extra key is a
        ``pg_lightning.core.tree.StructureError``.
        """
        t = self.t
        mask = self.fields["kept"][:t].T  # (N, T)

        def flat(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(np.swapaxes(array[:t], 0, 1)[mask]))

        if self.next_step:
            ts = np.concatenate([np.full(len(copies), step) for step, copies in self.final_rows])
            copies = np.concatenate([copies for _, copies in self.final_rows])
            order = np.lexsort((ts, copies))  # by copy, then by time
            final = [torch.from_numpy(array[ts[order] + 1, copies[order]]) for array in self.obs]
        else:
            in_order = [self.leaves(o) for _, _, o in sorted(self.final_obs, key=lambda e: (e[0], e[1]))]
            final = [torch.from_numpy(np.stack(column)) for column in zip(*in_order, strict=True)]
        fields = {k: flat(v) for k, v in self.fields.items() if k != "kept"}
        return EpisodeBatch(
            obs=unflatten(self.obs_spec, [flat(array) for array in self.obs]),
            actions=fields["actions"],
            rewards=fields["rewards"],
            terminated=fields["terminated"],
            truncated=fields["truncated"],
            final_obs=unflatten(self.obs_spec, final),
            log_probs=fields.get("log_probs"),
            stepped=torch.tensor(self.stepped),
        )

    def _add_fields(self, action: np.ndarray, log_probs: np.ndarray | None) -> None:
        """The fields of a step, shaped at the first step (as its actions and log-probs, ``(N, ...)``)."""
        rows = (self.capacity, self.num_envs)
        self.fields = {
            "kept": np.zeros(rows, np.bool_),
            "actions": np.zeros((*rows, *action.shape[1:]), action.dtype),
            "rewards": np.zeros(rows, np.float64),  # as the envs give them: checked and cast once, by the collector
            "terminated": np.zeros(rows, np.bool_),
            "truncated": np.zeros(rows, np.bool_),
        }
        if log_probs is not None:
            self.fields["log_probs"] = np.zeros((*rows, *log_probs.shape[1:]), log_probs.dtype)

    def _grow(self) -> None:
        """Twice the rows."""
        self.capacity *= 2
        self.obs = [np.concatenate([v, np.zeros_like(v)]) for v in self.obs]
        self.fields = {k: np.concatenate([v, np.zeros_like(v)]) for k, v in self.fields.items()}


_NO_COPIES = np.zeros(0, np.int64)
