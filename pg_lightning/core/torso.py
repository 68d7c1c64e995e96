"""The network blocks every policy and value network is built from: `MLP`, `Torso`, and `snapshot`. Plain torch (layer: core).

- `MLP`: the fully connected net that maps features to a distribution's parameters (or to a value);
- `Torso`: ``encoder -> [recurrent core] -> net``, the structure shared by the policies of
  `pg_lightning.core.policies` and `pg_lightning.envs.networks.ValueNetwork`;
- `snapshot`: a module's forward as a plain function of its current parameters, the collector's fast path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Annotated, Literal

import torch
from torch import Tensor, nn

from pg_lightning.core.arguments import Interval, check_arguments
from pg_lightning.core.encoders import FlattenFloat
from pg_lightning.core.recurrent import RecurrentCore
from pg_lightning.core.tree import Obs

__all__ = ["ACTIVATIONS", "MLP", "Activation", "Torso", "snapshot"]

Activation = Literal["tanh", "relu", "elu", "gelu", "silu"]
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class MLP(nn.Sequential):
    """``in_features -> hidden_sizes... -> out_features``; ``hidden_sizes=[]`` is a linear map.

    Args:
        in_features: input width.
        out_features: output width.
        hidden_sizes: widths of the hidden layers.
        activation: one of ``tanh, relu, elu, gelu, silu``, applied after each hidden layer.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_sizes: Sequence[Annotated[int, Interval(ge=1)]],
        activation: Activation,
    ) -> None:
        check_arguments(type(self), {"hidden_sizes": hidden_sizes, "activation": activation})
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, int(size)), ACTIVATIONS[activation]()]
            width = int(size)
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)


class Torso(nn.Module):
    """``encoder -> [core] -> net``, the structure every network here shares (policies, ``ValueNetwork``).

    Args:
        encoder: raw observations (``(B, *obs_shape)``, or a dict / tuple of them) -> features ``(B, F)``.
        net: features (the core's output when there is one) -> the network's outputs.
        core: a :class:`~pg_lightning.core.recurrent.RecurrentCore`, or None for a feedforward network.
    """

    def __init__(self, encoder: nn.Module, net: nn.Module, core: RecurrentCore | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.core = core
        self.net = net

    @property
    def is_recurrent(self) -> bool:
        return self.core is not None

    def features(self, obs: Obs, dones: Tensor | None = None) -> Tensor:
        """``(B, F)`` the net's input: encoded observations, through the core over whole episodes when recurrent
        (``obs`` then holds complete episodes one after another, ``dones`` ``(B,)`` marks their last steps)."""
        features = self.encoder(obs)
        if self.core is None:
            return features
        if dones is None:
            raise ValueError(f"{type(self).__name__} is recurrent: call it as (obs, dones) on complete episodes")
        return self.core.sequences(features, dones)[0]


_ELEMENTWISE = {nn.Tanh: torch.tanh, nn.ReLU: torch.relu}


def snapshot(module: nn.Module) -> Callable[..., Tensor]:
    """``module``'s forward as a plain function of its current parameters, for per-step inference.

    ``nn.Module.__call__`` (hook dispatch) and ``Parameter`` arguments cost more than a 64-wide
    layer on a CPU, and the collector runs the policy once per vector step with parameters that
    do not change during a collection. So it builds this once per collection: ``Sequential``
    containers are unrolled, a ``Linear`` becomes ``F.linear`` with detached views of its
    parameters (the same kernel as its ``forward``: bit-identical outputs; the views share
    storage, so call this again after moving the module to another device), ``Tanh``/``ReLU``
    become ``torch.tanh``/``torch.relu``, ``FlattenFloat`` its bound ``forward``, and any other module (or one with hooks of its own,
    which must still run) is called as is. Use it under ``torch.inference_mode``/``no_grad``.
    """
    if module._forward_hooks or module._forward_pre_hooks:
        return module
    if isinstance(module, nn.Sequential):
        steps = [snapshot(layer) for layer in module]

        def forward(x: Tensor) -> Tensor:
            for step in steps:
                x = step(x)
            return x

        return forward
    if type(module) is nn.Linear:
        return partial(nn.functional.linear, weight=module.weight.detach(), bias=_detach(module.bias))
    if type(module) is FlattenFloat:
        return module.forward  # parameter-free: its forward without nn.Module's call machinery
    return _ELEMENTWISE.get(type(module), module)


def _detach(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()
