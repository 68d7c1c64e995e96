"""From gymnasium spaces to networks: the default policy and value network.

``make_policy`` and ``make_value_network`` build pg_lightning's own networks for an env's spaces (the ``network=mlp``
and ``baseline=value`` factories); any network from its config is `pg_lightning.cli.build`'s ``build_policy`` and
``build_value_network``. Layer: envs (gymnasium and torch; no Lightning, no Hydra).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from pg_lightning.core.arguments import Interval, check_arguments
from pg_lightning.core.encoders import OBS_LIMIT, FlattenFloat  # noqa: F401  (0.1: pg_lightning.factory had them)
from pg_lightning.core.errors import ConfigError
from pg_lightning.core.policies import (
    LOG_STD_BOUNDS,
    ActionBounds,
    BernoulliPolicy,
    CategoricalPolicy,
    GaussianPolicy,
    MultiCategoricalPolicy,
    Policy,
)
from pg_lightning.core.recurrent import Core, RecurrentCore
from pg_lightning.core.torso import MLP, Activation, Torso
from pg_lightning.core.tree import Obs
from pg_lightning.envs.spaces import EncoderName, UnsupportedSpaceError, make_encoder

__all__ = [
    "UnsupportedSpaceError",
    "ValueNetwork",
    "make_policy",
    "make_value_network",
]


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: Sequence[Annotated[int, Interval(ge=1)]] = (64, 64),
    activation: Activation = "tanh",
    log_std_init: Annotated[float, Interval(ge=LOG_STD_BOUNDS[0], le=LOG_STD_BOUNDS[1])] = 0.0,
    state_dependent_std: bool = False,
    action_bounds: ActionBounds = "clip",
    output_init_scale: Annotated[float, Interval(gt=0, le=100)] | None = None,
    encoder: EncoderName | Mapping[str, EncoderName] = "auto",
    core: Core | None = None,
    core_size: Annotated[int, Interval(ge=1)] = 64,
) -> Policy:
    """Build the policy for an environment's (single-env) spaces: ``encoder -> [core] -> MLP -> distribution``.

    Actions (:mod:`pg_lightning.core.distributions`):

    - ``Discrete(n, start)``: :class:`CategoricalPolicy` over ``n`` logits (the env gets ``+ start``);
    - ``MultiDiscrete(nvec, start)``: :class:`MultiCategoricalPolicy`, independent categoricals;
    - ``MultiBinary(shape)``: :class:`BernoulliPolicy`, independent Bernoullis;
    - ``Box`` of any shape: :class:`GaussianPolicy` over the flattened components (log-std free
      or state-dependent; clip or tanh bounds), samples reshaped to the Box's shape.

    Observations (:func:`pg_lightning.envs.spaces.make_encoder`): one encoder per leaf of (nested)
    ``Dict``/``Tuple`` spaces, features concatenated: one-hot for ``Discrete`` and
    ``MultiDiscrete``, a CNN for images (``Box`` of ``uint8`` with 3 dimensions), flattened
    floats otherwise.

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
        encoder: ``auto``, or one of ``flatten``, ``onehot``, ``cnn`` for every leaf, or a
            mapping from leaf paths (``image``, ``0``, ``a/b``) to those names.
        core: ``gru`` or ``lstm`` for a recurrent policy (``network=gru``), None for feedforward.
        core_size: width of the recurrent state.

    Raises:
        UnsupportedSpaceError: for any other space, naming it.
    """
    check_arguments(make_policy, locals())
    encoder_module = make_encoder(observation_space, encoder)
    width = int(encoder_module.out_features)
    core_module = None if core is None else RecurrentCore(core, width, core_size)
    if core_module is not None:
        width = core_module.hidden_size

    def mlp(outputs: int) -> MLP:
        return MLP(width, outputs, hidden_sizes, activation)

    if isinstance(action_space, gym.spaces.Discrete):
        net = mlp(int(action_space.n))
        policy: Policy = CategoricalPolicy(encoder_module, net, start=int(action_space.start), core=core_module)
    elif isinstance(action_space, gym.spaces.MultiDiscrete):
        net = mlp(int(action_space.nvec.sum()))
        nvec, start = torch.tensor(action_space.nvec), torch.tensor(action_space.start)
        policy = MultiCategoricalPolicy(encoder_module, net, nvec, start, core=core_module)
    elif isinstance(action_space, gym.spaces.MultiBinary):
        shape = tuple(int(n) for n in np.atleast_1d(action_space.shape))
        net = mlp(int(np.prod(shape)))
        policy = BernoulliPolicy(encoder_module, net, shape, core=core_module)
    elif isinstance(action_space, gym.spaces.Box) and np.issubdtype(action_space.dtype, np.floating):
        shape = tuple(action_space.shape)
        action_dim = int(np.prod(shape))
        net = mlp(action_dim * (2 if state_dependent_std else 1))
        policy = GaussianPolicy(
            encoder_module,
            net,
            action_dim,
            log_std_init=log_std_init,
            state_dependent_std=state_dependent_std,
            action_bounds=action_bounds,
            low=torch.tensor(action_space.low),
            high=torch.tensor(action_space.high),
            action_shape=shape,
            core=core_module,
        )
    else:
        raise UnsupportedSpaceError(
            f"env.id: unsupported action space {action_space}: pg_lightning handles Discrete, MultiDiscrete, "
            "MultiBinary and float Box actions"
        )
    if output_init_scale is not None:
        if isinstance(output_init_scale, bool) or not math.isfinite(float(output_init_scale)):
            # NaN or inf weights: the initial policy's logits (or mean) would be NaN in every state
            raise ConfigError(f"network.output_init_scale must be a finite number or null, got {output_init_scale!r}")
        weight, bias = _output_layer(net)
        with torch.no_grad():
            weight.mul_(float(output_init_scale))
            bias.zero_()
    return policy


def _output_layer(net: nn.Module) -> tuple[Tensor, Tensor]:
    """The weight and bias of ``net``'s output layer: the last module of an ``nn.Sequential`` (an ``MLP``)."""
    last = net[-1] if isinstance(net, nn.Sequential) else None
    weight, bias = getattr(last, "weight", None), getattr(last, "bias", None)
    if not (isinstance(weight, Tensor) and isinstance(bias, Tensor)):
        raise TypeError(f"expected an nn.Sequential whose last layer has a weight and a bias, got {type(net).__name__}")
    return weight, bias


class ValueNetwork(Torso):
    """``V(s)``: an encoder, an optional recurrent core and an MLP with one output.

    ``forward(obs) -> (B,)``; with a core (``baseline.value_net.core=gru``) it is recurrent:
    ``forward(obs, dones)`` over complete episodes, as a recurrent policy, and
    :meth:`final_values` continues each episode's state into its final observation.
    """

    def forward(self, obs: Obs, dones: Tensor | None = None) -> Tensor:
        return self.net(self.features(obs, dones)).squeeze(-1)

    def final_values(self, obs: Obs, dones: Tensor, final_obs: Obs) -> Tensor:
        """``(E,)`` ``V`` of each episode's final observation, with the state the episode left
        (recurrent), or of the final observation alone (feedforward)."""
        if self.core is None:
            return self(final_obs)
        _, state = self.core.sequences(self.encoder(obs), dones)
        out, _ = self.core.step(self.encoder(final_obs), state)
        return self.net(out).squeeze(-1)

    @torch.no_grad()
    def rescale_output(self, scale: Tensor, shift: Tensor) -> None:
        """Make the output layer compute ``(old_output - shift) / scale`` (PopArt's preservation
        step, used by ``ValueBaseline(normalize_targets=True)`` when its target statistics move)."""
        weight, bias = _output_layer(self.net)
        weight.div_(scale)
        bias.sub_(shift).div_(scale)


def make_value_network(
    observation_space: gym.Space,
    hidden_sizes: Sequence[Annotated[int, Interval(ge=1)]] = (64, 64),
    activation: Activation = "tanh",
    encoder: EncoderName | Mapping[str, EncoderName] = "auto",
    core: Core | None = None,
    core_size: Annotated[int, Interval(ge=1)] = 64,
) -> ValueNetwork:
    """The state-value network of ``baseline=value``, for an env's (single-env) observation space.

    Observations are encoded as for the policy (:func:`make_policy`); ``core`` (``gru``,
    ``lstm``) makes it recurrent, as the policy's.
    """
    check_arguments(make_value_network, locals())
    encoder_module = make_encoder(observation_space, encoder, key="baseline.value_net.encoder")
    width = int(encoder_module.out_features)
    core_module = None if core is None else RecurrentCore(core, width, core_size)
    if core_module is not None:
        width = core_module.hidden_size
    return ValueNetwork(encoder_module, MLP(width, 1, hidden_sizes, activation), core_module)
