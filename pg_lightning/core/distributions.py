"""The action distributions of pg_lightning's policies, and how actions are drawn from any distribution.

One distribution per kind of action space (the policies in :mod:`pg_lightning.core.policies` build them):

============================  ==========================================  =========================
action space                  distribution (batch ``(B,)``)               greedy action
============================  ==========================================  =========================
``Discrete(n, start)``        :class:`DiscreteCategorical` (``start``)    argmax (+ ``start``)
``MultiDiscrete(nvec, start)``  :class:`MultiCategorical`: independent     argmax per head
                              categoricals, log-probs summed              (+ ``start``)
``MultiBinary(shape)``        :class:`MultiBernoulli`: independent        ``p > 0.5``
                              Bernoullis from logits
``Box`` (any shape), clip     ``Independent(Normal)``                     the mean
``Box`` (any shape), tanh     :class:`TanhNormal`                         the squashed mean
============================  ==========================================  =========================

A distribution whose samples are not what the env receives has ``env_action(sample)`` (a
start offset, an integer dtype, a squash into the box): the batch keeps the sample, whose
``log_prob`` the distribution gives, and the env receives ``env_action(sample)``.

Plain torch: no Lightning, no gymnasium.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution, Independent, Normal

__all__ = [
    "DiscreteCategorical",
    "MultiBernoulli",
    "MultiCategorical",
    "TanhNormal",
    "draw",
    "greedy_action",
    "sample",
]

_NO_SAMPLE_DIMS = torch.Size()  # the default sample shape of rsample: one draw per batch entry


class DiscreteCategorical(Categorical):
    """``Categorical`` over ``n`` actions whose env action is ``sample + start`` (gymnasium's ``Discrete(n, start)``)."""

    def __init__(self, logits: Tensor, start: int = 0) -> None:
        super().__init__(logits=logits, validate_args=False)
        self.start = int(start)

    def env_action(self, sample: Tensor) -> Tensor:
        return sample + self.start


class MultiCategorical(Independent):
    """Independent categoricals, one per component of a ``MultiDiscrete(nvec, start)`` space.

    Args:
        logits: ``(B, *nvec.shape, max(nvec))``, component ``i``'s logits beyond ``nvec[i]``
            set to ``-inf`` (those actions have probability 0).
        start: ``(*nvec.shape,)`` the components' offsets.

    Samples are ``(B, *nvec.shape)`` long indices from 0; ``log_prob`` and ``entropy`` sum over
    the components; the env receives ``sample + start``.
    """

    def __init__(self, logits: Tensor, start: Tensor) -> None:
        self.start = start.to(logits.device)
        super().__init__(Categorical(logits=logits, validate_args=False), start.dim(), validate_args=False)

    def env_action(self, sample: Tensor) -> Tensor:
        return sample + self.start.to(sample.device)


class MultiBernoulli(Independent):
    """Independent Bernoullis from ``logits`` ``(B, *shape)``, one per component of a ``MultiBinary(shape)`` space.

    Samples are float 0/1 (what ``log_prob`` takes); the env receives them as ``int8``.
    """

    def __init__(self, logits: Tensor) -> None:
        super().__init__(Bernoulli(logits=logits, validate_args=False), logits.dim() - 1, validate_args=False)

    def env_action(self, sample: Tensor) -> Tensor:
        return sample.to(torch.int8)


class TanhNormal(Distribution):
    """A diagonal Gaussian squashed into a box: the env receives ``a = low + (tanh(u) + 1) * (high - low) / 2``, ``u ~ N(loc, scale)``.

    Samples are the pre-squash ``u`` (what the batch stores and ``log_prob`` takes);
    :meth:`env_action` maps them into the box for the env. ``log_prob(u)`` is the log-density of
    the action ``a`` that ``u`` gives, by the exact change of variables,
    ``log N(u) - sum_i [log(1 - tanh(u_i)^2) + log((high_i - low_i) / 2)]``, computed stably
    (``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``): no inverse ``atanh`` is ever taken,
    so it is exact and finite even for samples that saturate on the bounds. ``loc`` is
    ``(B, *action_shape)`` with ``event_dims = len(action_shape)`` (default 1): batch shape
    ``(B,)``, log-probs summed over the action's dimensions.

    ``entropy()`` (of ``a``) has no closed form: it returns the one-sample estimate
    ``-log_prob(u)`` with ``u`` reparameterised, unbiased and differentiable. ``mean`` is ``loc``
    (pre-squash: ``env_action(mean)`` is the deterministic action).
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor, low: Tensor, high: Tensor, event_dims: int = 1) -> None:
        self.base = Normal(loc, scale, validate_args=False)
        # float32 whatever loc's dtype (fp16 under 16-mixed would overflow large bounds), and high/2 - low/2 rather
        # than (high - low)/2, which overflows for bounds near float32's largest
        self.low = low.to(device=loc.device, dtype=torch.float32)
        self.half_range = (high / 2 - low / 2).to(device=loc.device, dtype=torch.float32)
        self.centre = (low / 2 + high / 2).to(device=loc.device, dtype=torch.float32)
        self.event_dims = int(event_dims)
        split = loc.dim() - self.event_dims
        super().__init__(loc.shape[:split], loc.shape[split:], validate_args=False)

    def env_action(self, u: Tensor) -> Tensor:
        """The action in ``[low, high]`` that the env receives for the sample ``u`` (on ``u``'s device)."""
        squashed = self.centre + torch.tanh(u.to(self.low.device)) * self.half_range  # low + (tanh + 1) * half_range
        return squashed.to(u.device)

    @staticmethod
    def _log_dtanh(u: Tensor) -> Tensor:
        return 2 * (math.log(2.0) - u - nn.functional.softplus(-2 * u))

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = _NO_SAMPLE_DIMS) -> Tensor:
        return self.base.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        per_dim = self.base.log_prob(value) - self._log_dtanh(value) - self.half_range.log()
        return per_dim.flatten(-self.event_dims).sum(-1) if self.event_dims else per_dim  # a 0-d Box: one number

    def entropy(self) -> Tensor:
        return -self.log_prob(self.base.rsample())

    @property
    def mean(self) -> Tensor:
        return self.base.loc

    @property
    def stddev(self) -> Tensor:
        return self.base.scale


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
        return categorical_sample(dist.logits, generator)
    if isinstance(dist, Bernoulli):
        return bernoulli_sample(dist.logits, generator)
    if isinstance(dist, Normal):
        return normal_sample(dist.loc, dist.scale, generator)
    if isinstance(dist, Independent):
        return sample(dist.base_dist, generator)
    if isinstance(dist, TanhNormal):
        return sample(dist.base, generator)  # pre-squash u; the env gets dist.env_action(u)
    return dist.sample()


def draw(dist: Distribution, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(sample, what the env receives)``: a distribution with ``env_action`` (a start offset, a
    squash into the box, an integer dtype) maps its sample for the env; the batch keeps the sample."""
    sampled = sample(dist, generator)
    return sampled, dist.env_action(sampled) if hasattr(dist, "env_action") else sampled


def greedy_action(dist: Distribution) -> Tensor:
    """The action the env receives from a deterministic policy: the mode of ``dist``, batched.

    Categoricals (``Discrete`` and, per component, ``MultiDiscrete``): the argmax of the logits
    (the first on ties), plus ``start``. :class:`MultiBernoulli`: ``p > 0.5`` (logit > 0). A
    Gaussian (``Independent(Normal)``, Box actions with ``action_bounds=clip``): its mean (the env
    clips it to the box). :class:`TanhNormal` (``action_bounds=tanh``): the squashed mean.

    Raises:
        TypeError: for any other distribution.
    """
    if isinstance(dist, MultiCategorical):
        return dist.env_action(dist.base_dist.logits.argmax(-1))
    if isinstance(dist, MultiBernoulli):
        return dist.env_action((dist.base_dist.logits > 0).to(dist.base_dist.logits.dtype))
    if isinstance(dist, Categorical):
        mode = dist.logits.argmax(-1)
        return dist.env_action(mode) if hasattr(dist, "env_action") else mode
    if isinstance(dist, TanhNormal):
        return dist.env_action(dist.mean)
    if isinstance(dist, Independent):
        return greedy_action(dist.base_dist)
    if isinstance(dist, Normal):
        return dist.mean
    raise TypeError(f"no greedy action for a {type(dist).__name__}")


def categorical_sample(logits: Tensor, generator: torch.Generator) -> Tensor:
    """``argmax_a (logits_a - log E_a)`` with ``E_a ~ Exp(1)`` i.i.d.: exactly a draw from ``softmax(logits)``.

    (The "exponential race": ``E_a / p_a ~ Exp(p_a)`` and the smallest of independent exponential
    clocks is clock ``a`` with probability ``p_a / sum p``; it is the Gumbel-max trick, with
    ``-log E`` a Gumbel variable.) Unnormalised logits give the same draw: the argmax does not
    see a shift, and a ``-inf`` logit never wins. One ``exponential_`` and an ``argmax``: cheaper
    than ``softmax`` + ``multinomial``.
    """
    device = generator.device
    # float64 clocks: a clock of exactly 0 (probability ~2**-53 instead of float32's ~2**-24) would win outright
    clocks = torch.empty(logits.shape, dtype=torch.float64, device=device).exponential_(generator=generator)
    return (logits.to(device) - clocks.log_()).argmax(-1)  # float32 logits are promoted to float64


def bernoulli_sample(logits: Tensor, generator: torch.Generator) -> Tensor:
    """0/1 floats, 1 with probability ``sigmoid(logits)``: ``U < sigmoid(logits)``, ``U ~ U[0, 1)``."""
    device = generator.device
    logits = logits.to(device)
    uniform = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=device)
    return (uniform < torch.sigmoid(logits)).to(logits.dtype)


def normal_sample(mean: Tensor, std: Tensor, generator: torch.Generator) -> Tensor:
    """``mean + std * N(0, 1)``, drawn on the generator's device (the collector's: the CPU)."""
    device = generator.device
    mean, std = mean.to(device), std.to(device)
    return mean + std * torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=device)


def padded_logits(flat: Tensor, nvec: Sequence[int], slots: Tensor) -> Tensor:
    """``(B, sum(nvec))`` concatenated logits to ``(B, len(nvec), max(nvec))``, the gaps ``-inf``.

    ``slots``: ``(sum(nvec),)`` long, where each flat logit goes in the ``len(nvec) * max(nvec)`` grid.
    """
    k, width = len(nvec), max(nvec)
    grid = flat.new_full((flat.shape[0], k * width), -math.inf)
    return grid.index_copy(1, slots.to(flat.device), flat).view(flat.shape[0], k, width)
