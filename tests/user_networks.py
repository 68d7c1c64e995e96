"""Networks as a user writes them, outside the pg_lightning package (tests/test_custom_networks.py).

Used from the command line as ``network=custom network._target_=tests.user_networks.TinyCategorical``
(the subprocess needs the repository root on ``PYTHONPATH``). Plain torch: nothing here imports
pg_lightning, and no policy has the optional fast ``actor()`` path.

Good ones: :class:`TinyCategorical` (Discrete actions), :class:`TinyGaussian` (Box actions),
:func:`make_value` / :class:`TinyPopArtValue` (``baseline=value``). Broken ones, each failing
one clause of the contract: :class:`ReturnsLogits`, :class:`UnbatchedNormal`,
:class:`RaisesInForward`, :class:`NoParameters`, :class:`ValueColumn`.
"""

from __future__ import annotations

import math

import gymnasium as gym
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, Normal


def _features(observation_space: gym.Space) -> int:
    return math.prod(observation_space.shape)


class Torso(nn.Module):
    """Observations ``(B, *shape)`` of any numeric dtype to ``(B, width)`` features."""

    def __init__(self, observation_space: gym.Space, width: int) -> None:
        super().__init__()
        self.layer = nn.Linear(_features(observation_space), width)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.layer(obs.flatten(1).float()))


class TinyCategorical(nn.Module):
    """``Categorical`` over a ``Discrete`` action space from one hidden layer of ``width`` units."""

    def __init__(self, observation_space: gym.Space, action_space: gym.spaces.Discrete, width: int = 16) -> None:
        super().__init__()
        self.torso = Torso(observation_space, width)
        self.logits = nn.Linear(width, int(action_space.n))

    def forward(self, obs: Tensor) -> Categorical:
        return Categorical(logits=self.logits(self.torso(obs)))


class TinyGaussian(nn.Module):
    """A diagonal Gaussian over a ``Box`` action space: ``Independent(Normal(mean, std), 1)``, so that
    ``log_prob`` sums over the action dimensions (batch shape ``(B,)``, event shape ``(action_dim,)``)."""

    def __init__(self, observation_space: gym.Space, action_space: gym.spaces.Box, width: int = 16) -> None:
        super().__init__()
        self.torso = Torso(observation_space, width)
        self.mean = nn.Linear(width, action_space.shape[0])
        self.log_std = nn.Parameter(torch.zeros(action_space.shape[0]))

    def forward(self, obs: Tensor) -> Independent:
        mean = self.mean(self.torso(obs))
        return Independent(Normal(mean, self.log_std.clamp(-5, 2).exp().expand_as(mean)), 1)


class TinyValue(nn.Module):
    """``V(s)``: ``(B, *shape)`` observations to ``(B,)`` values."""

    def __init__(self, observation_space: gym.Space, width: int = 16) -> None:
        super().__init__()
        self.torso = Torso(observation_space, width)
        self.head = nn.Linear(width, 1)

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(self.torso(obs)).squeeze(-1)


def make_value(observation_space: gym.Space, width: int = 16) -> TinyValue:
    """A value-network factory (a function, not a class): ``(observation_space, **kwargs) -> nn.Module``."""
    return TinyValue(observation_space, width)


class TinyPopArtValue(TinyValue):
    """:class:`TinyValue` with ``rescale_output``, so that ``baseline.normalize_targets=true`` (PopArt) can
    keep its outputs when the return statistics move: the head then computes ``(old - shift) / scale``."""

    @torch.no_grad()
    def rescale_output(self, scale: Tensor, shift: Tensor) -> None:
        self.head.weight.div_(scale)
        self.head.bias.sub_(shift).div_(scale)


# --- broken: each breaks one clause of the contract ------------------------------------------


class ReturnsLogits(TinyCategorical):
    """Forgets the distribution: forward returns the logits tensor."""

    def forward(self, obs: Tensor) -> Tensor:  # type: ignore[override]
        return self.logits(self.torso(obs))


class UnbatchedNormal(TinyGaussian):
    """``Normal`` without ``Independent``: batch shape ``(B, action_dim)``, so ``log_prob`` is ``(B, action_dim)``."""

    def forward(self, obs: Tensor) -> Normal:  # type: ignore[override]
        mean = self.mean(self.torso(obs))
        return Normal(mean, self.log_std.exp().expand_as(mean))


class RaisesInForward(TinyCategorical):
    """Forward fails on a batch (a shape bug, as in real life)."""

    def forward(self, obs: Tensor) -> Categorical:
        raise RuntimeError("deliberate bug in forward")


class NoParameters(nn.Module):
    """Uniform over the actions, with nothing to learn."""

    def __init__(self, observation_space: gym.Space, action_space: gym.spaces.Discrete) -> None:
        super().__init__()
        self.n = int(action_space.n)

    def forward(self, obs: Tensor) -> Categorical:
        return Categorical(logits=torch.zeros(obs.shape[0], self.n))


class ValueColumn(TinyValue):
    """Forgets the squeeze: ``(B, 1)`` values."""

    def forward(self, obs: Tensor) -> Tensor:
        return self.head(self.torso(obs))
