"""The typed batch that flows from the collector to the loss. Plain torch."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from pg_lightning.core.returns import episode_index, episode_returns, step_in_episode
from pg_lightning.core.tree import Obs, leaves


class EpisodeBatch(NamedTuple):
    """Complete episodes, flattened and time-ordered, one after another.

    ``B`` is the total number of steps in the batch and ``E`` the number of episodes. Episodes
    are contiguous: episode ``e`` occupies one run of rows, and its last row is the only one
    of that run where ``terminated | truncated`` is true. The last row of the batch always
    ends an episode (no partial episodes).

    Fields:
        obs: ``(B, *obs_shape)`` observation ``s_t`` the action was chosen in (raw: integer
            indices for Discrete spaces, the policy one-hot encodes them). For ``Dict`` and
            ``Tuple`` spaces, a dict / tuple (nested as the space) of such tensors, one per
            leaf (:mod:`pg_lightning.core.tree`).
        actions: ``(B, *action_shape)`` action ``a_t`` as sampled by the policy (for Box
            spaces, before any clipping to the bounds that the env receives; with
            ``action_bounds=tanh``, the pre-squash Gaussian sample ``u``).
        rewards: ``(B,)`` float reward ``r_t``.
        terminated: ``(B,)`` bool, the episode reached a terminal state at this step: zero future.
        truncated: ``(B,)`` bool, the episode was cut (e.g. time limit) at this step; its
            future is unknown, not zero.
        final_obs: ``(E, *obs_shape)`` observation after each episode's last step (the one
            gymnasium reports as ``final_obs``), for bootstrapping truncated episodes (a tree
            as ``obs`` for ``Dict`` / ``Tuple`` spaces).
        log_probs: ``(B,)`` ``log pi(a_t|s_t)`` when the actions were drawn, if the collector was
            asked to record them (``collect(..., record_log_probs=True)``), else None.
        stepped: ``()`` long, the copy-steps the vector env ran to collect the batch (idle copies of a
            vector env stepped as a whole, and ``NEXT_STEP`` reset steps, included), or None;
            ``num_steps / stepped`` is the fraction kept.
    """

    obs: Obs
    actions: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    final_obs: Obs
    log_probs: Tensor | None = None
    stepped: Tensor | None = None

    @property
    def dones(self) -> Tensor:
        """``(B,)`` bool, last step of an episode (terminated or truncated)."""
        return self.terminated | self.truncated

    @property
    def num_steps(self) -> int:
        return self.rewards.shape[0]

    @property
    def num_episodes(self) -> int:
        return leaves(self.final_obs)[0].shape[0]

    def episode_index(self) -> Tensor:
        """``(B,)`` long, the episode each step belongs to."""
        return episode_index(self.dones)

    def step_in_episode(self) -> Tensor:
        """``(B,)`` long, ``t`` inside the step's own episode."""
        return step_in_episode(self.dones)

    def episode_returns(self) -> Tensor:
        """``(E,)`` undiscounted return of each episode."""
        return episode_returns(self.rewards, self.dones)

    def episode_lengths(self) -> Tensor:
        """``(E,)`` number of steps of each episode."""
        return torch.bincount(self.episode_index(), minlength=self.num_episodes)
