"""Policies: ``nn.Module``s that map a batch of observations to a ``torch.distributions`` object.

Every policy here is ``encoder -> [recurrent core] -> net -> distribution``:

- the encoder maps raw observations (a tensor, or a dict / tuple of them) to features ``(B, F)``
  (:mod:`pg_lightning.core.encoders`);
- the optional core (:class:`~pg_lightning.core.recurrent.RecurrentCore`, ``network=gru|lstm``) gives
  the policy a memory of the episode so far;
- ``net`` (an `pg_lightning.core.torso.MLP`) maps features to the distribution's parameters, and the policy's
  class to the distribution of its action space (:mod:`pg_lightning.core.distributions`).

The shared ``encoder -> [core] -> net`` structure is `pg_lightning.core.torso.Torso`. Plain torch (layer: core):
no Lightning, no gymnasium. :func:`pg_lightning.envs.networks.make_policy` builds the right policy from an
environment's spaces.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, get_args

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from pg_lightning.core.arguments import check_arguments
from pg_lightning.core.distributions import (
    DiscreteCategorical,
    MultiBernoulli,
    MultiCategorical,
    TanhNormal,
    bernoulli_sample,
    categorical_sample,
    draw,
    normal_sample,
    padded_logits,
)
from pg_lightning.core.errors import ArgumentError
from pg_lightning.core.recurrent import RecurrentCore, State, carry_state, is_recurrent
from pg_lightning.core.torso import Torso, snapshot
from pg_lightning.core.tree import Obs

__all__ = [
    "ACTION_BOUNDS",
    "LOG_STD_BOUNDS",
    "BernoulliPolicy",
    "CategoricalPolicy",
    "GaussianPolicy",
    "MultiCategoricalPolicy",
    "Policy",
    "distribution",
]

ActionBounds = Literal["clip", "tanh"]
ACTION_BOUNDS = get_args(ActionBounds)
LOG_STD_BOUNDS = (-5.0, 2.0)
"""`GaussianPolicy`'s default clamp of the log-std: a standard deviation in ``[e^-5, e^2]``."""


class Policy(Torso):
    """``encoder -> [core] -> net -> distribution``: the base of every policy here.

    Args:
        encoder: raw observations (``(B, *obs_shape)``, or a dict / tuple of them) -> features ``(B, F)``.
        net: features (the core's output when there is one) -> the distribution's parameters.
        core: a :class:`~pg_lightning.core.recurrent.RecurrentCore`, or None for a feedforward policy.

    ``forward(obs)`` (feedforward) or ``forward(obs, dones)`` (recurrent: ``obs`` holds complete
    episodes one after another, ``dones`` ``(B,)`` marks their last steps) returns the
    distribution of the ``B`` actions, batch shape ``(B,)``. A recurrent policy also acts one
    step at a time: ``initial_state(n)`` and ``step(obs, state) -> (distribution, state)``.
    Subclasses define :meth:`distribution` (and, for speed, :meth:`_draw`).
    """

    def forward(self, obs: Obs, dones: Tensor | None = None) -> Distribution:
        return self.distribution(self.net(self.features(obs, dones)))

    def initial_state(self, n: int) -> State:
        """The core's state of ``n`` copies starting an episode (zeros), on the policy's device."""
        core = self._core()
        return core.initial_state(n, next(core.parameters()).device)

    def step(self, obs: Obs, state: State) -> tuple[Distribution, State]:
        """One step of ``N`` copies of a recurrent policy: ``(distribution (N,), next state)``."""
        features, state = self._core().step(self.encoder(obs), state)
        return self.distribution(self.net(features)), state

    def _core(self) -> RecurrentCore:
        if self.core is None:
            raise ValueError(f"{type(self).__name__} is feedforward: it has no state")
        return self.core

    def distribution(self, out: Tensor) -> Distribution:
        """The distribution of the actions for the net's output ``out`` ``(B, ...)``."""
        raise NotImplementedError

    def _draw(self, out: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(sample, env action)`` for the net's output: the draw of ``draw(self.distribution(out), generator)``."""
        return draw(self.distribution(out), generator)

    def actor(self, generator: torch.Generator, with_log_prob: bool = False) -> Callable[..., tuple[Tensor, ...]]:
        """The collector's fast path: a function that draws the actions of one vector step.

        Feedforward: ``act(obs) -> (batch actions, env actions)``; recurrent: ``act(obs, starts)``,
        ``starts`` ``(N,)`` bool marking the copies whose ``obs`` is the first of an episode
        (their state restarts from zero; the first call must start every copy). The actor carries
        the state of the ``N`` copies between calls (:func:`~pg_lightning.core.recurrent.carry_state`). It runs on a :func:`snapshot` of the current
        parameters (built once per collection) and draws exactly what
        ``draw(policy(obs), generator)`` (or ``step``) would. ``with_log_prob``: also return the
        log-probabilities of the drawn actions (for checks; slower).
        """
        encode, net = snapshot(self.encoder), snapshot(self.net)

        def finish(out: Tensor) -> tuple[Tensor, ...]:
            sampled, env_action = self._draw(out, generator)
            if with_log_prob:
                return sampled, env_action, self.distribution(out).log_prob(sampled.to(out.device))
            return sampled, env_action

        if self.core is None:
            return lambda obs: finish(net(encode(obs)))
        step = carry_state(self.core.step, self.initial_state)
        return lambda obs, starts: finish(net(step(encode(obs), starts)))


class CategoricalPolicy(Policy):
    """``pi(a|s) = softmax(net(features(s)))`` for ``Discrete(n, start)`` actions.

    Args:
        encoder: see :class:`Policy`.
        net: features -> ``n`` logits.
        core: see :class:`Policy`.
        start: the env's first action (gymnasium's ``Discrete(n, start)``): the batch keeps
            ``0 .. n-1`` and the env receives ``sample + start``.

    Returns :class:`~pg_lightning.core.distributions.DiscreteCategorical`; actions are ``(B,)`` long.
    """

    def __init__(self, encoder: nn.Module, net: nn.Module, start: int = 0, core: RecurrentCore | None = None) -> None:
        super().__init__(encoder, net, core)
        self.start = int(start)

    def distribution(self, out: Tensor) -> Distribution:
        return DiscreteCategorical(out, self.start)

    def _draw(self, out: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        action = categorical_sample(out, generator)
        return action, action + self.start if self.start else action


class MultiCategoricalPolicy(Policy):
    """Independent categoricals for ``MultiDiscrete(nvec, start)`` actions (any shape of ``nvec``).

    ``net`` outputs ``sum(nvec)`` logits, component by component (``nvec`` flattened in C order).
    Returns :class:`~pg_lightning.core.distributions.MultiCategorical`: actions ``(B, *nvec.shape)``
    long from 0, log-probs summed over the components, the env receives ``sample + start``.
    """

    slots: Tensor  # buffer (sum(nvec),): where each real logit goes among the K * max(nvec) padded ones
    start: Tensor  # buffer nvec.shape: the env's first action of each component

    def __init__(
        self,
        encoder: nn.Module,
        net: nn.Module,
        nvec: Sequence[int] | Tensor,
        start: Sequence[int] | Tensor | None = None,
        core: RecurrentCore | None = None,
    ) -> None:
        super().__init__(encoder, net, core)
        nvec_t = torch.as_tensor(nvec, dtype=torch.long)
        self.nvec = [int(n) for n in nvec_t.flatten()]
        self.shape = tuple(nvec_t.shape)
        width = max(self.nvec)
        slots = torch.cat([torch.arange(n) + i * width for i, n in enumerate(self.nvec)])
        self.register_buffer("slots", slots, persistent=False)
        start_t = torch.zeros_like(nvec_t) if start is None else torch.as_tensor(start, dtype=torch.long)
        self.register_buffer("start", start_t.expand(self.shape).clone(), persistent=False)

    def _logits(self, out: Tensor) -> Tensor:
        return padded_logits(out, self.nvec, self.slots).view(out.shape[0], *self.shape, max(self.nvec))

    def distribution(self, out: Tensor) -> Distribution:
        return MultiCategorical(self._logits(out), self.start)

    def _draw(self, out: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        action = categorical_sample(self._logits(out), generator)
        return action, action + self.start.to(action.device)


class BernoulliPolicy(Policy):
    """Independent Bernoullis for ``MultiBinary(shape)`` actions: ``net`` outputs one logit per component.

    Returns :class:`~pg_lightning.core.distributions.MultiBernoulli`: actions ``(B, *shape)`` float 0/1,
    the env receives them as ``int8``.
    """

    def __init__(
        self, encoder: nn.Module, net: nn.Module, shape: Sequence[int], core: RecurrentCore | None = None
    ) -> None:
        super().__init__(encoder, net, core)
        self.shape = tuple(int(n) for n in shape)

    def distribution(self, out: Tensor) -> Distribution:
        return MultiBernoulli(out.view(out.shape[0], *self.shape))

    def _draw(self, out: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        action = bernoulli_sample(out.view(out.shape[0], *self.shape), generator)
        return action, action.to(torch.int8)


class GaussianPolicy(Policy):
    """Diagonal Gaussian policy for ``Box`` actions of any shape, with the log-std clamped to a sane range.

    Args:
        encoder: see :class:`Policy`.
        net: features -> the mean ``(B, action_dim)``, or the mean and the log-std ``(B, 2 * action_dim)``
            when ``state_dependent_std``.
        core: see :class:`Policy`.
        action_dim: number of action components (``prod(action_shape)``).
        log_std_init: initial log-std (state-dependent: an offset added to the net's output).
        log_std_bounds: the log-std is clamped to this range, so the scale can neither vanish
            nor explode.
        state_dependent_std: the log-std is an output of ``net`` (else a free parameter vector).
        action_bounds: ``"clip"``: ``Independent(Normal)``, unbounded samples, the collector
            clips what the env receives (gymnasium's ``ClipAction``) and the batch keeps the
            unclipped sample, whose log-probability this distribution gives. ``"tanh"``: a
            :class:`~pg_lightning.core.distributions.TanhNormal` squashed into ``[low, high]``: the
            batch keeps the pre-squash sample and every action the env receives is inside the bounds.
        low: the Box's lower bounds (needed for ``"tanh"``), broadcastable to ``action_shape``.
        high: the Box's upper bounds, likewise.
        action_shape: the Box's shape (default ``(action_dim,)``); the Gaussian is over the
            flattened components and its samples have this shape.

    ``forward(obs)`` returns a distribution with batch shape ``(B,)`` and event shape
    ``action_shape``; ``log_prob`` sums over the action's components.
    """

    low: Tensor  # buffer action_shape: the Box's bounds (action_bounds="tanh" only)
    high: Tensor

    def __init__(
        self,
        encoder: nn.Module,
        net: nn.Module,
        action_dim: int,
        log_std_init: float = 0.0,
        log_std_bounds: tuple[float, float] = LOG_STD_BOUNDS,
        state_dependent_std: bool = False,
        action_bounds: ActionBounds = "clip",
        low: Sequence[float] | Tensor | None = None,
        high: Sequence[float] | Tensor | None = None,
        action_shape: Sequence[int] | None = None,
        core: RecurrentCore | None = None,
    ) -> None:
        super().__init__(encoder, net, core)
        # (a NaN log-std makes every sampled action NaN: the env's next observations would look like its fault)
        check_arguments(type(self), {"log_std_init": log_std_init, "action_bounds": action_bounds})
        self.action_dim = int(action_dim)
        self.action_shape = (self.action_dim,) if action_shape is None else tuple(int(n) for n in action_shape)
        if math.prod(self.action_shape) != self.action_dim:
            raise ValueError(f"action_shape {self.action_shape} does not hold action_dim={action_dim} components")
        self.state_dependent_std = bool(state_dependent_std)
        self.log_std_init = float(log_std_init)
        self.log_std = None if state_dependent_std else nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self.log_std_bounds = (float(log_std_bounds[0]), float(log_std_bounds[1]))
        self.action_bounds = action_bounds
        if action_bounds == "tanh":
            if low is None or high is None:
                raise ArgumentError("action_bounds", "action_bounds=tanh needs the Box's low and high")
            low, high = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
            if not (torch.isfinite(low).all() and torch.isfinite(high).all() and (high > low).all()):
                raise ArgumentError(
                    "action_bounds",
                    f"action_bounds=tanh needs finite bounds with high > low, got low={low.tolist()}, "
                    f"high={high.tolist()}; use action_bounds=clip",
                )
            self.register_buffer("low", low.expand(self.action_shape).clone())
            self.register_buffer("high", high.expand(self.action_shape).clone())

    def mean_std(self, out: Tensor) -> tuple[Tensor, Tensor]:
        """The Gaussian's (pre-squash) mean and standard deviation, each ``(B, *action_shape)``, from the net's output."""
        log_std_param = self.log_std  # one Module.__getattr__ per step: this runs in the collector's actor
        if log_std_param is None:  # state_dependent_std
            mean, log_std = out.split(self.action_dim, dim=-1)
            log_std = log_std + self.log_std_init
        else:
            mean, log_std = out, log_std_param.expand_as(out)
        shape = (out.shape[0], *self.action_shape)
        return mean.reshape(shape), log_std.clamp(*self.log_std_bounds).exp().reshape(shape)

    def distribution(self, out: Tensor) -> Distribution:
        mean, std = self.mean_std(out)
        if self.action_bounds == "tanh":
            return TanhNormal(mean, std, self.low, self.high, event_dims=len(self.action_shape))
        return Independent(Normal(mean, std, validate_args=False), len(self.action_shape), validate_args=False)

    def _draw(self, out: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        mean, std = self.mean_std(out)
        u = normal_sample(mean, std, generator)
        if self.action_bounds == "tanh":
            return u, TanhNormal(mean, std, self.low, self.high, event_dims=len(self.action_shape)).env_action(u)
        return u, u


def distribution(policy: nn.Module, obs: Obs, dones: Tensor) -> Distribution:
    """``policy``'s distribution of the actions of a batch of complete episodes: ``policy(obs, dones)``
    for a recurrent policy (:func:`~pg_lightning.core.recurrent.is_recurrent`), ``policy(obs)`` otherwise."""
    return policy(obs, dones) if is_recurrent(policy) else policy(obs)
