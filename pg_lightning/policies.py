"""Policies: ``nn.Module``s that map a batch of observations to a ``torch.distributions`` object.

Plain torch: no Lightning, no gymnasium. :func:`pg_lightning.factory.make_policy` builds the
right policy from an environment's spaces.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from pg_lightning.errors import ConfigError

__all__ = ["MLP", "CategoricalPolicy", "GaussianPolicy", "OneHot", "sample"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class OneHot(nn.Module):
    """Encodes integer observations ``(B,)`` in ``start .. start+n-1`` as one-hot floats ``(B, n)``."""

    def __init__(self, n: int, start: int = 0) -> None:
        super().__init__()
        self.n = n
        self.start = start

    def forward(self, obs: Tensor) -> Tensor:
        return nn.functional.one_hot(obs.long() - self.start, self.n).to(torch.get_default_dtype())


class MLP(nn.Sequential):
    """``in_features -> hidden_sizes... -> out_features``; ``hidden_sizes=[]`` is a linear map.

    Args:
        in_features: input width.
        out_features: output width.
        hidden_sizes: widths of the hidden layers.
        activation: one of ``tanh, relu, elu, gelu, silu``, applied after each hidden layer.
    """

    def __init__(self, in_features: int, out_features: int, hidden_sizes: Sequence[int], activation: str) -> None:
        if activation not in ACTIVATIONS:
            raise ConfigError(f"network.activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, int(size)), ACTIVATIONS[activation]()]
            width = int(size)
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)


class CategoricalPolicy(nn.Module):
    """``pi(a|s) = softmax(net(encode(s)))`` for ``n`` discrete actions.

    Args:
        encoder: maps raw observations ``(B, *obs_shape)`` to features ``(B, F)``
            (``nn.Flatten`` for vectors, :class:`OneHot` for discrete observations).
        net: maps features ``(B, F)`` to logits ``(B, n)``.

    ``forward(obs)`` returns ``Categorical`` with batch shape ``(B,)``; actions are ``(B,)`` long.
    """

    def __init__(self, encoder: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.net = net

    def forward(self, obs: Tensor) -> Categorical:
        return Categorical(logits=self.net(self.encoder(obs)), validate_args=False)


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian ``N(net(encode(s)), exp(log_std)^2)`` with a state-independent log-std.

    Args:
        encoder: maps raw observations to features ``(B, F)``.
        net: maps features to the mean ``(B, action_dim)``.
        action_dim: number of action dimensions.
        log_std_init: initial value of every entry of ``log_std``.
        log_std_bounds: ``log_std`` is clamped to this range in ``forward``, so the scale can
            neither vanish nor explode.

    ``forward(obs)`` returns ``Independent(Normal, 1)``: batch shape ``(B,)``, event shape
    ``(action_dim,)``; ``log_prob`` sums over action dimensions. Box bounds are not applied
    here: the collector clips what the env receives (gymnasium's ``ClipAction``) and the batch
    keeps the unclipped sample whose log-probability this distribution gives.
    """

    def __init__(
        self,
        encoder: nn.Module,
        net: nn.Module,
        action_dim: int,
        log_std_init: float = 0.0,
        log_std_bounds: tuple[float, float] = (-5.0, 2.0),
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.net = net
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self.log_std_bounds = (float(log_std_bounds[0]), float(log_std_bounds[1]))

    def forward(self, obs: Tensor) -> Independent:
        mean = self.net(self.encoder(obs))
        std = self.log_std.clamp(*self.log_std_bounds).exp().expand_as(mean)
        return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)


def sample(dist: Distribution, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``dist.sample()`` from a private ``generator`` (``torch.distributions`` has no such argument).

    A generator of its own gives every collector (and every DDP rank) an independent,
    reproducible stream without touching the global torch RNG. The draw happens on the
    generator's device (the CPU for the collector's), so the actions of a seed are the same
    whether the policy runs on a CPU or a GPU. Supports the distributions our policies produce;
    anything else falls back to ``dist.sample()``.
    """
    if generator is None:
        return dist.sample()
    device = generator.device
    if isinstance(dist, Categorical):
        probs = dist.probs.to(device)
        return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).reshape(dist.batch_shape)
    if isinstance(dist, Normal):
        loc, scale = dist.loc.to(device), dist.scale.to(device)
        return loc + scale * torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=device)
    if isinstance(dist, Independent):
        return sample(dist.base_dist, generator)
    return dist.sample()
