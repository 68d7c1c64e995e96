"""From gymnasium spaces to a policy: the one place that knows both worlds."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from pg_lightning.errors import ConfigError
from pg_lightning.policies import MLP, CategoricalPolicy, GaussianPolicy, OneHot

__all__ = ["UnsupportedSpaceError", "ValueNetwork", "make_policy", "make_value_network"]


class UnsupportedSpaceError(ConfigError):
    """The environment has an observation or action space that no policy here can handle."""


OBS_LIMIT = 1e9
"""Observations are clamped to ``[-OBS_LIMIT, OBS_LIMIT]`` on their way into a network."""


class FlattenFloat(nn.Module):
    """``(B, *shape)`` numeric observations to float features ``(B, prod(shape))``, clamped to ``±OBS_LIMIT``.

    The clamp keeps the activations of any MLP finite for any finite (or infinite) observation:
    an overflow to ``inf`` in a hidden layer would become ``inf - inf = nan`` in the next one.
    No environment we know of produces values near ``1e9``; a NaN observation stays NaN (the
    collector reports it as an env fault).
    """

    def forward(self, obs: Tensor) -> Tensor:
        return obs.flatten(1).to(torch.get_default_dtype()).clamp(-OBS_LIMIT, OBS_LIMIT)


def _encoder(space: gym.Space) -> tuple[nn.Module, int]:
    if isinstance(space, gym.spaces.Discrete):
        return OneHot(int(space.n), int(space.start)), int(space.n)
    if isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary)):
        return FlattenFloat(), int(np.prod(space.shape))
    raise UnsupportedSpaceError(
        f"env.id: unsupported observation space {space}: pg_lightning handles Box, Discrete and MultiBinary "
        "observations (flatten Dict/Tuple spaces with a gymnasium wrapper first)"
    )


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
    log_std_init: float = 0.0,
    state_dependent_std: bool = False,
    action_bounds: str = "clip",
    output_init_scale: float | None = None,
) -> nn.Module:
    """Build the policy for an environment's (single-env) spaces.

    - ``Discrete(n)`` actions: :class:`CategoricalPolicy` over ``n`` logits.
    - 1-D ``Box`` actions: :class:`GaussianPolicy` (log-std free or state-dependent; clip or tanh bounds).
    - ``Discrete`` observations are one-hot encoded (tabular environments), ``Box`` and
      ``MultiBinary`` observations are flattened to float vectors.

    Args:
        observation_space: ``env.single_observation_space``.
        action_space: ``env.single_action_space``.
        hidden_sizes: hidden widths of the MLP; ``[]`` gives a linear (tabular softmax) policy.
        activation: MLP activation (``tanh``, ``relu``, ``elu``, ``gelu``, ``silu``).
        log_std_init: initial log standard deviation of Gaussian policies.
        state_dependent_std: Gaussian policies: the log-std is a second head of the MLP
            (else one free parameter per action dimension).
        action_bounds: Gaussian policies: ``clip`` (clip what the env receives) or ``tanh``
            (squash samples into the Box, exact log-probabilities).
        output_init_scale: if set, the output layer's initial weights are multiplied by it and its
            bias is zeroed, so that the initial policy is (nearly) the same in every state:
            uniform logits, or the Gaussian's mean near 0 (``0.01`` is the usual choice).
            None keeps PyTorch's default initialisation.

    Raises:
        UnsupportedSpaceError: for any other space, naming it.
    """
    encoder, in_features = _encoder(observation_space)
    if isinstance(action_space, gym.spaces.Discrete):
        if int(action_space.start) != 0:
            raise UnsupportedSpaceError(f"env.id: unsupported action space {action_space}: Discrete actions must start at 0")
        net = MLP(in_features, int(action_space.n), hidden_sizes, activation)
        policy: nn.Module = CategoricalPolicy(encoder, net)
    elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        action_dim = int(action_space.shape[0])
        net = MLP(in_features, action_dim * (2 if state_dependent_std else 1), hidden_sizes, activation)
        policy = GaussianPolicy(
            encoder,
            net,
            action_dim,
            log_std_init=log_std_init,
            state_dependent_std=state_dependent_std,
            action_bounds=action_bounds,
            low=action_space.low,
            high=action_space.high,
        )
    else:
        raise UnsupportedSpaceError(
            f"env.id: unsupported action space {action_space}: pg_lightning handles Discrete and 1-D Box actions"
        )
    if output_init_scale is not None:
        with torch.no_grad():
            net[-1].weight.mul_(float(output_init_scale))
            net[-1].bias.zero_()
    return policy


class ValueNetwork(nn.Module):
    """``V(s)``: an encoder and an MLP with one output; ``forward(obs) -> (B,)``."""

    def __init__(self, encoder: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.net = net

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(self.encoder(obs)).squeeze(-1)

    @torch.no_grad()
    def rescale_output(self, scale: Tensor, shift: Tensor) -> None:
        """Make the output layer compute ``(old_output - shift) / scale`` (PopArt's preservation
        step, used by ``ValueBaseline(normalize_targets=True)`` when its target statistics move)."""
        last = self.net[-1]
        last.weight.div_(scale)
        last.bias.sub_(shift).div_(scale)


def make_value_network(
    observation_space: gym.Space,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
) -> ValueNetwork:
    """The state-value network of ``baseline=value``, for an env's (single-env) observation space.

    Observations are encoded as for the policy (one-hot for ``Discrete``, flattened for ``Box``).
    """
    encoder, in_features = _encoder(observation_space)
    return ValueNetwork(encoder, MLP(in_features, 1, hidden_sizes, activation))
