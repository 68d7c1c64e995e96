"""Returns of the policy gradient theorem, as pure torch functions.

Every function takes data first and options keyword-only, works on a flat batch ``(T,)`` or a
time-major batch ``(T, N)`` (time is always dim 0), and restarts at every episode boundary:
``dones[t]`` true means step ``t`` is the last step of its episode, so nothing after it leaks
into the return of step ``t``.

Terminology (``t`` is the step index *inside* its episode, ``k`` runs over later steps):

- reward-to-go   ``G_t = sum_{k >= t} gamma^(k - t) r_k``
- total return   ``R(tau) = G_0 = sum_k gamma^k r_k``, broadcast to every step of the episode
- discount weight ``gamma^t``, which turns ``G_t`` into the exact term of the discounted theorem

This module imports neither Lightning nor gymnasium.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "discounted_returns",
    "episode_index",
    "episode_returns",
    "episode_start_mask",
    "step_in_episode",
    "total_returns",
]


def _check(rewards: Tensor, dones: Tensor, gamma: float) -> None:
    if rewards.shape != dones.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and dones {tuple(dones.shape)} must have the same shape")
    if rewards.dim() not in (1, 2):
        raise ValueError(f"expected (T,) or (T, N) tensors, got shape {tuple(rewards.shape)}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")


def discounted_returns(rewards: Tensor, dones: Tensor, gamma: float) -> Tensor:
    """Reward-to-go ``G_t = r_t + gamma * (1 - done_t) * G_{t+1}``, restarting after every done.

    Args:
        rewards: ``(T,)`` or ``(T, N)`` rewards, time-major.
        dones: same shape, bool; true on the last step of an episode (terminated or truncated).
        gamma: discount in ``[0, 1]``.

    Returns:
        ``(T,)`` or ``(T, N)`` float tensor ``G``. Steps after the last done of a column are
        treated as an unfinished episode whose future is zero.

    The linear recurrence is solved by a parallel (Hillis-Steele) scan: ``ceil(log2 T)`` vector
    operations instead of a Python loop over ``T``, and only products of factors in ``[0, 1]``
    appear, so it is as stable as the loop (``tests/test_returns.py`` checks one against the other).

    Examples:
        >>> r = torch.tensor([1.0, 1.0, 1.0, 1.0])
        >>> d = torch.tensor([False, True, False, True])
        >>> discounted_returns(r, d, gamma=0.5)
        tensor([1.5000, 1.0000, 1.5000, 1.0000])
    """
    _check(rewards, dones, gamma)
    # G_t = b_t + a_t * G_{t+1}; after the pass with offset k, (a_t, b_t) spans steps t .. t+2k-1.
    b = rewards.to(torch.get_default_dtype() if not rewards.is_floating_point() else rewards.dtype).clone()
    a = (~dones.bool()).to(b.dtype) * gamma
    length = b.shape[0]
    offset = 1
    while offset < length:
        b[:-offset] = b[:-offset] + a[:-offset] * b[offset:]
        a[:-offset] = a[:-offset] * a[offset:]
        a[-offset:] = 0.0  # beyond the end of the batch the future is zero
        offset *= 2
    return b


def episode_start_mask(dones: Tensor) -> Tensor:
    """Bool mask of the first step of every episode: step 0 and every step after a done."""
    starts = torch.ones_like(dones, dtype=torch.bool)
    starts[1:] = dones[:-1].bool()
    return starts


def episode_index(dones: Tensor) -> Tensor:
    """Index of the episode each step belongs to, for a flat ``(T,)`` batch of contiguous episodes.

    Examples:
        >>> episode_index(torch.tensor([False, True, True, False, True]))
        tensor([0, 0, 1, 2, 2])
    """
    if dones.dim() != 1:
        raise ValueError(f"episode_index expects a flat (T,) batch, got shape {tuple(dones.shape)}")
    return torch.cumsum(episode_start_mask(dones).long(), 0) - 1


def _start_positions(dones: Tensor) -> tuple[Tensor, Tensor]:
    """``(positions, starts)``: each step's index along dim 0 and that of its episode's first step."""
    positions = torch.arange(dones.shape[0], device=dones.device).view(-1, *([1] * (dones.dim() - 1)))
    positions = positions.expand_as(dones)
    starts = torch.where(episode_start_mask(dones), positions, torch.zeros_like(positions)).cummax(0).values
    return positions, starts


def step_in_episode(dones: Tensor) -> Tensor:
    """Time step ``t`` of every step inside its own episode (0 at each episode start).

    Works on ``(T,)`` and ``(T, N)``; each column restarts independently.

    Examples:
        >>> step_in_episode(torch.tensor([False, True, False, False, True]))
        tensor([0, 1, 0, 1, 2])
    """
    positions, starts = _start_positions(dones)
    return positions - starts


def total_returns(rewards: Tensor, dones: Tensor, gamma: float) -> Tensor:
    """Discounted total return ``R(tau) = sum_k gamma^k r_k`` of each step's episode, per step.

    Every step of an episode gets the same value: the reward-to-go of the episode's first step.
    Shapes as :func:`discounted_returns`.

    Examples:
        >>> r = torch.tensor([1.0, 1.0, 1.0, 1.0])
        >>> d = torch.tensor([False, True, False, True])
        >>> total_returns(r, d, gamma=0.5)
        tensor([1.5000, 1.5000, 1.5000, 1.5000])
    """
    g = discounted_returns(rewards, dones, gamma)
    _, starts = _start_positions(dones)
    return torch.gather(g, 0, starts)


def episode_returns(rewards: Tensor, dones: Tensor) -> Tensor:
    """Undiscounted return of every episode of a flat batch, ``(E,)`` in episode order."""
    index = episode_index(dones)
    num_episodes = int(index[-1]) + 1 if index.numel() else 0
    out = torch.zeros(num_episodes, dtype=rewards.dtype, device=rewards.device)
    return out.index_add_(0, index, rewards)
