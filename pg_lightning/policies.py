"""Policies: ``nn.Module``s that map a batch of observations to a ``torch.distributions`` object.

Plain torch: no Lightning, no gymnasium. :func:`pg_lightning.factory.make_policy` builds the
right policy from an environment's spaces.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from pg_lightning.errors import ConfigError

__all__ = ["ACTION_BOUNDS", "MLP", "CategoricalPolicy", "GaussianPolicy", "OneHot", "TanhNormal", "draw", "sample", "snapshot"]

ACTION_BOUNDS = ("clip", "tanh")

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
        if not _positive_ints(hidden_sizes):
            raise ConfigError(
                f"network.hidden_sizes must be a list of positive integers (layer widths), got {_plain_list(hidden_sizes)!r}"
            )
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, int(size)), ACTIVATIONS[activation]()]
            width = int(size)
        layers.append(nn.Linear(width, out_features))
        super().__init__(*layers)


def _positive_ints(sizes: object) -> bool:
    """``sizes`` is a sequence (not a string) of integers >= 1 (bools are not widths)."""
    return (
        isinstance(sizes, Sequence)
        and not isinstance(sizes, (str, bytes))
        and all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in sizes)
    )


def _plain_list(hidden_sizes: object) -> object:
    return list(hidden_sizes) if isinstance(hidden_sizes, Sequence) and not isinstance(hidden_sizes, str) else hidden_sizes


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

    def actor(self, generator: torch.Generator) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
        """``obs -> (batch actions, env actions)``, both ``(B,)`` long, for one collection.

        The same draw as ``sample(self(obs), generator)``, without building a distribution, on a
        :func:`snapshot` of the current parameters (the collector calls it once per vector step).
        """
        logits = snapshot(nn.Sequential(self.encoder, self.net))

        def act(obs: Tensor) -> tuple[Tensor, Tensor]:
            action = _categorical_sample(logits(obs), generator)
            return action, action

        return act


class TanhNormal(Distribution):
    """A diagonal Gaussian squashed into a box: the env receives ``a = low + (tanh(u) + 1) * (high - low) / 2``, ``u ~ N(loc, scale)``.

    Samples are the pre-squash ``u`` (what the batch stores and ``log_prob`` takes);
    :meth:`env_action` maps them into the box for the env. ``log_prob(u)`` is the log-density of
    the action ``a`` that ``u`` gives, by the exact change of variables,
    ``log N(u) - sum_i [log(1 - tanh(u_i)^2) + log((high_i - low_i) / 2)]``, computed stably
    (``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``): no inverse ``atanh`` is ever taken,
    so it is exact and finite even for samples that saturate on the bounds. Batch shape ``(B,)``,
    event shape ``(action_dim,)`` (log-probs sum over action dimensions).

    ``entropy()`` (of ``a``) has no closed form: it returns the one-sample estimate
    ``-log_prob(u)`` with ``u`` reparameterised, unbiased and differentiable. ``mean`` is ``loc``
    (pre-squash: ``env_action(mean)`` is the deterministic action).
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor, low: Tensor, high: Tensor) -> None:
        self.base = Normal(loc, scale, validate_args=False)
        self.low = low.to(loc)
        self.half_range = ((high - low) / 2).to(loc)
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def env_action(self, u: Tensor) -> Tensor:
        """The action in ``[low, high]`` that the env receives for the sample ``u`` (on ``u``'s device)."""
        squashed = self.low + (torch.tanh(u.to(self.low.device)) + 1) * self.half_range
        return squashed.to(u.device)

    @staticmethod
    def _log_dtanh(u: Tensor) -> Tensor:
        return 2 * (math.log(2.0) - u - nn.functional.softplus(-2 * u))

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        return self.base.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        return (self.base.log_prob(value) - self._log_dtanh(value) - self.half_range.log()).sum(-1)

    def entropy(self) -> Tensor:
        return -self.log_prob(self.base.rsample())

    @property
    def mean(self) -> Tensor:
        return self.base.loc

    @property
    def stddev(self) -> Tensor:
        return self.base.scale


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian policy for ``Box`` actions, with the log-std clamped to a sane range.

    Args:
        encoder: maps raw observations to features ``(B, F)``.
        net: maps features to the mean ``(B, action_dim)``, or to the mean and the log-std
            ``(B, 2 * action_dim)`` when ``state_dependent_std``.
        action_dim: number of action dimensions.
        log_std_init: initial log-std (state-dependent: an offset added to the net's output).
        log_std_bounds: the log-std is clamped to this range, so the scale can neither vanish
            nor explode.
        state_dependent_std: the log-std is an output of ``net`` (else a free parameter vector).
        action_bounds: ``"clip"``: ``Independent(Normal, 1)``, unbounded samples, the collector
            clips what the env receives (gymnasium's ``ClipAction``) and the batch keeps the
            unclipped sample, whose log-probability this distribution gives. ``"tanh"``: a
            :class:`TanhNormal` squashed into ``[low, high]``: the batch keeps the pre-squash
            sample and every action the env receives is inside the bounds.
        low, high: the Box bounds (needed for ``"tanh"``), ``(action_dim,)``.

    ``forward(obs)`` returns a distribution with batch shape ``(B,)`` and event shape
    ``(action_dim,)``; ``log_prob`` sums over action dimensions.
    """

    def __init__(
        self,
        encoder: nn.Module,
        net: nn.Module,
        action_dim: int,
        log_std_init: float = 0.0,
        log_std_bounds: tuple[float, float] = (-5.0, 2.0),
        state_dependent_std: bool = False,
        action_bounds: str = "clip",
        low: Sequence[float] | Tensor | None = None,
        high: Sequence[float] | Tensor | None = None,
    ) -> None:
        super().__init__()
        if action_bounds not in ACTION_BOUNDS:
            raise ConfigError(f"network.action_bounds must be one of {ACTION_BOUNDS}, got {action_bounds!r}")
        self.encoder = encoder
        self.net = net
        self.action_dim = int(action_dim)
        self.state_dependent_std = bool(state_dependent_std)
        self.log_std_init = float(log_std_init)
        self.log_std = None if state_dependent_std else nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self.log_std_bounds = (float(log_std_bounds[0]), float(log_std_bounds[1]))
        self.action_bounds = action_bounds
        if action_bounds == "tanh":
            if low is None or high is None:
                raise ConfigError("network.action_bounds=tanh needs the Box's low and high")
            low, high = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
            if not (torch.isfinite(low).all() and torch.isfinite(high).all() and (high > low).all()):
                raise ConfigError(
                    f"network.action_bounds=tanh needs finite bounds with high > low, got low={low.tolist()}, "
                    f"high={high.tolist()}; use network.action_bounds=clip"
                )
            self.register_buffer("low", low.expand(action_dim).clone())
            self.register_buffer("high", high.expand(action_dim).clone())

    def mean_std(self, obs: Tensor, net: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """The Gaussian's (pre-squash) mean and standard deviation, each ``(B, action_dim)``.

        ``net``: the encoder and network as one function (default: the modules themselves).
        """
        out = net(obs) if net is not None else self.net(self.encoder(obs))
        if self.state_dependent_std:
            mean, log_std = out.split(self.action_dim, dim=-1)
            log_std = log_std + self.log_std_init
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        return mean, log_std.clamp(*self.log_std_bounds).exp()

    def forward(self, obs: Tensor) -> Distribution:
        mean, std = self.mean_std(obs)
        if self.action_bounds == "tanh":
            return TanhNormal(mean, std, self.low, self.high)
        return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)

    def actor(self, generator: torch.Generator) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
        """``obs -> (batch actions, env actions)``, each ``(B, action_dim)``, for one collection.

        The same draw as ``sample(self(obs), generator)``, without building a distribution, on a
        :func:`snapshot` of the current parameters. The batch keeps the Gaussian sample ``u``;
        the env gets ``u`` (``clip``: gymnasium's ``ClipAction`` clips it) or
        ``TanhNormal.env_action(u)`` (``tanh``).
        """
        net = snapshot(nn.Sequential(self.encoder, self.net))

        def act(obs: Tensor) -> tuple[Tensor, Tensor]:
            mean, std = self.mean_std(obs, net)
            u = _normal_sample(mean, std, generator)
            if self.action_bounds == "tanh":
                return u, TanhNormal(mean, std, self.low, self.high).env_action(u)
            return u, u

        return act


_ELEMENTWISE = {nn.Tanh: torch.tanh, nn.ReLU: torch.relu}


def snapshot(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """``module``'s forward as a plain function of its current parameters, for per-step inference.

    ``nn.Module.__call__`` (hook dispatch) and ``Parameter`` arguments cost more than a 64-wide
    layer on a CPU, and the collector runs the policy once per vector step with parameters that
    do not change during a collection. So it builds this once per collection: ``Sequential``
    containers are unrolled, a ``Linear`` becomes ``F.linear`` with detached views of its
    parameters (the same kernel as its ``forward``: bit-identical outputs; the views share
    storage, so call this again after moving the module to another device), ``Tanh``/``ReLU``
    become ``torch.tanh``/``torch.relu``, and any other module (or one with hooks of its own,
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
    return _ELEMENTWISE.get(type(module), module)


def _detach(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


@torch.no_grad()
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
    if isinstance(dist, Categorical):
        return _categorical_sample(dist.logits, generator)
    if isinstance(dist, Normal):
        return _normal_sample(dist.loc, dist.scale, generator)
    if isinstance(dist, Independent):
        return sample(dist.base_dist, generator)
    if isinstance(dist, TanhNormal):
        return sample(dist.base, generator)  # pre-squash u; the env gets dist.env_action(u)
    return dist.sample()


def draw(dist: Distribution, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(sample, what the env receives)``: a squashing distribution (``env_action``) maps its sample
    into the box, and the batch keeps the sample itself."""
    sampled = sample(dist, generator)
    return sampled, dist.env_action(sampled) if hasattr(dist, "env_action") else sampled


def _categorical_sample(logits: Tensor, generator: torch.Generator) -> Tensor:
    """``argmax_a (logits_a - log E_a)`` with ``E_a ~ Exp(1)`` i.i.d.: exactly a draw from ``softmax(logits)``.

    (The "exponential race": ``E_a / p_a ~ Exp(p_a)`` and the smallest of independent exponential
    clocks is clock ``a`` with probability ``p_a / sum p``; it is the Gumbel-max trick, with
    ``-log E`` a Gumbel variable.) Unnormalised logits give the same draw: the argmax does not
    see a shift. One ``exponential_`` and an ``argmax``: cheaper than ``softmax`` + ``multinomial``.
    """
    device = generator.device
    # float64 clocks: a clock of exactly 0 (probability ~2**-53 instead of float32's ~2**-24) would win outright
    clocks = torch.empty(logits.shape, dtype=torch.float64, device=device).exponential_(generator=generator)
    return (logits.to(device) - clocks.log_()).argmax(-1)  # float32 logits are promoted to float64


def _normal_sample(mean: Tensor, std: Tensor, generator: torch.Generator) -> Tensor:
    device = generator.device
    mean, std = mean.to(device), std.to(device)
    return mean + std * torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=device)
