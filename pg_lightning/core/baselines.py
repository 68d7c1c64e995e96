"""Baselines ``b(s_t)`` subtracted from ``Psi_t``. Plain torch.

Baseline invariance: for any ``b`` that does not depend on the action ``a_t`` (nor on anything
that ``a_t`` influences), ``E[grad log pi(a_t|s_t) * b] = 0``, so ``Psi_t - b`` keeps the
estimator unbiased while it can lower its variance.

Every baseline is an ``nn.Module`` with one interface, so the loss never changes when one is
added:

- ``forward(batch, psi) -> (B,)`` values to subtract (no gradient flows through them into the
  policy);
- ``loss(batch, psi) -> dict`` of extra terms to minimise, for baselines that learn;
- ``metrics(batch, psi, values) -> dict`` of diagnostics to log;
- ``final_values(batch) -> (E,) | None``: ``V(s_final)`` of each episode, to bootstrap the
  returns of truncated episodes (only a learned value function has them).

State that must survive across epochs goes in buffers or parameters, so it is saved in checkpoints,
and so that :class:`~pg_lightning.lightning.module.ReinforceModule` can put it back when a step fails: a
baseline may move its state while the loss is built (``ema``'s average, ``value``'s PopArt
statistics and rescaled output layer), and a step whose loss or gradient is not finite leaves the
baseline's ``state_dict()`` exactly as it was before that step.

Which are unbiased: ``none``, ``constant``, ``ema`` (built from earlier batches only),
``rloo`` (built from the *other* episodes of the batch) and ``value`` (a function of the state
whose parameters were fitted on earlier batches: the batch is baselined before the optimizer step
that fits ``V`` to it). ``mean`` includes each episode's own return, a bias of order
``1/episodes``. Bootstrapping truncated episodes with ``V`` (``value``'s ``bootstrap_truncated``)
changes the objective on purpose: a time limit is then treated as an interruption of an endless
task, not as part of it.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Protocol, cast

import torch
from torch import Tensor, nn

from pg_lightning.core.arguments import Interval, check_arguments
from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.errors import ArgumentError
from pg_lightning.core.recurrent import is_recurrent
from pg_lightning.core.tree import Obs

__all__ = [
    "Baseline",
    "ConstantBaseline",
    "EMABaseline",
    "LeaveOneOutBaseline",
    "MeanBaseline",
    "NoBaseline",
    "ValueBaseline",
]


FLOAT32_MAX = 3.4028234663852886e38
"""float32's largest finite value: the returns, and so a constant baseline, are float32."""


class Baseline(nn.Module):
    """Interface. Subclasses implement :meth:`forward`; learned ones also :meth:`loss`."""

    def forward(self, batch: EpisodeBatch, psi: Tensor) -> Tensor:
        """``(B,)`` baseline value for every step of ``batch``, given ``psi`` ``(B,)``."""
        raise NotImplementedError

    def loss(self, batch: EpisodeBatch, psi: Tensor) -> dict[str, Tensor]:
        """Extra loss terms to minimise (named, each a scalar). None by default."""
        return {}

    def metrics(self, batch: EpisodeBatch, psi: Tensor, values: Tensor) -> dict[str, Tensor]:
        """Diagnostics to log (named scalars), given this batch's baseline ``values``. None by default."""
        return {}

    def final_values(self, batch: EpisodeBatch) -> Tensor | None:
        """``(E,)`` ``V(s_final)`` per episode for bootstrapping truncated episodes, or None."""
        return None


class NoBaseline(Baseline):
    """``b = 0``: the plain estimator."""

    def forward(self, batch: EpisodeBatch, psi: Tensor) -> Tensor:
        return torch.zeros_like(psi)


class ConstantBaseline(Baseline):
    """``b = value``, a fixed number: exactly unbiased, whatever the value (a teaching case)."""

    def __init__(self, value: Annotated[float, Interval(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]) -> None:
        super().__init__()
        check_arguments(type(self), locals())
        self.value = float(value)

    def forward(self, batch: EpisodeBatch, psi: Tensor) -> Tensor:
        return torch.full_like(psi, self.value)


class MeanBaseline(Baseline):
    """``b = mean_t Psi_t`` over all steps of the batch.

    The common practical choice. It uses the batch's own returns, so each episode's return
    is (with weight ``1/B``) inside its own baseline: a bias of order ``1/episodes`` that
    vanishes as the batch grows. A constant baseline or a leave-one-out baseline is exactly
    unbiased.
    """

    def forward(self, batch: EpisodeBatch, psi: Tensor) -> Tensor:
        return psi.mean().expand_as(psi).detach()


class EMABaseline(Baseline):
    """``b = `` an exponential moving average, across epochs, of the batches' mean ``Psi``.

    Each batch is baselined with the average of the *earlier* batches (0 before the first), then
    its own mean enters the average: ``m <- decay * m + (1 - decay) * mean(Psi)``. Independent of
    the batch it is applied to, so exactly unbiased. Stateful: the average is a buffer, saved in
    checkpoints; it updates whenever the module is in training mode. Under DDP, buffers are
    broadcast from rank 0 at every step, so the average follows rank 0's batches (still unbiased).

    Args:
        decay: weight of the past, in ``[0, 1)``.
    """

    average: Tensor  # buffer (): the moving average of the earlier batches' mean Psi (float64)
    count: Tensor  # buffer (): the number of batches averaged

    def __init__(self, decay: Annotated[float, Interval(ge=0, lt=1)] = 0.9) -> None:
        super().__init__()
        check_arguments(type(self), locals())
        self.decay = float(decay)
        self.register_buffer("average", torch.zeros((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def forward(self, batch: EpisodeBatch, psi: Tensor) -> Tensor:
        values = self.average.to(psi.dtype).expand_as(psi).clone()
        if self.training:
            with torch.no_grad():
                mean = psi.detach().double().mean()
                # the first batch sets the average (no decay toward the arbitrary initial 0)
                self.average.copy_(mean if self.count == 0 else self.decay * self.average + (1 - self.decay) * mean)
                self.count += 1
        return values


class LeaveOneOutBaseline(Baseline):
    """RLOO: each episode is baselined with the other episodes of its batch. Exactly unbiased.

    - ``mode="step"``: ``b_{e,t} =`` mean of ``Psi_{e',t}`` over the other episodes ``e'`` that
      lasted beyond step ``t`` (0 where none did);
    - ``mode="episode"``: ``b_e =`` mean over the other episodes of their ``Psi`` at their first step
      (their return), for every step of ``e``.

    With one episode in the batch there are no others and ``b = 0``.
    """

    MODES = ("step", "episode")

    def __init__(self, mode: Literal["step", "episode"] = "step") -> None:
        super().__init__()
        check_arguments(type(self), locals())
        self.mode = mode

    def forward(self, batch: EpisodeBatch, psi: Tensor) -> Tensor:
        psi = psi.detach()
        episode = batch.episode_index()
        if self.mode == "episode":
            first = torch.ones_like(batch.dones)
            first[1:] = batch.dones[:-1]
            per_episode = psi[first]  # (E,) Psi at each episode's first step
            others = per_episode.sum() - per_episode
            count = per_episode.numel() - 1
            return (others / count)[episode] if count > 0 else torch.zeros_like(psi)
        t = batch.step_in_episode()
        horizon = int(t.max()) + 1
        total = torch.zeros(horizon, dtype=psi.dtype, device=psi.device).index_add_(0, t, psi)
        reached = torch.bincount(t, minlength=horizon).to(psi.dtype)  # the episodes that reached each step
        others = reached[t] - 1
        return torch.where(others > 0, (total[t] - psi) / others.clamp_min(1), torch.zeros_like(psi))


class ValueBaseline(Baseline):
    """A learned state value ``b(s) = V_phi(s)``, fitted to ``Psi`` by least squares.

    The policy sees ``V`` detached; the loss adds ``loss_coef * mean_t (V_phi(s_t) - Psi_t)^2``
    (logged as ``value_loss``) and ``value_explained_var = 1 - Var(Psi - V) / Var(Psi)`` is
    logged as a diagnostic (1 is perfect, 0 no better than a constant).

    With ``normalize_targets`` the network predicts ``(Psi - mu) / sigma`` and ``V = mu + sigma *
    output``, where ``mu`` and ``sigma`` are moving averages of the returns' mean and standard
    deviation over batches (buffers, saved in checkpoints; under DDP, of all ranks' batches); when
    they move, the output layer is rescaled so that ``V`` is unchanged (PopArt). Returns of
    hundreds then cost the regression no more than returns of one: one optimizer step per epoch
    is enough to track them. The loss is the regression on the normalised scale.

    Args:
        value_net: maps a batch of raw observations ``(B, ...)`` to ``(B,)`` values (see
            :func:`pg_lightning.envs.networks.make_value_network`).
        loss_coef: weight of the regression loss in the total loss.
        lr: learning rate of the value net's own optimizer param group (None: the policy's).
            With Adam, a loss coefficient barely changes the step size, a learning rate does.
        bootstrap_truncated: for episodes cut by a time limit (``truncated``), add
            ``gamma^(T-t) V(s_T)`` to ``Psi_t``, ``s_T`` the final observation gymnasium reports:
            the return the episode would have had. Terminated episodes are never bootstrapped.
        normalize_targets: learn ``V`` on a normalised scale (above); needs a ``value_net`` with
            ``rescale_output`` (:class:`~pg_lightning.envs.networks.ValueNetwork` has it).
        stats_decay: weight of the past in the moving mean and standard deviation of the returns.
    """

    target_mean: Tensor  # buffer (): mu, the moving mean of the returns
    target_std: Tensor  # buffer (): sigma, their moving standard deviation
    stats_count: Tensor  # buffer (): the number of batches in mu and sigma

    def __init__(
        self,
        value_net: nn.Module,
        loss_coef: Annotated[float, Interval(ge=0)] = 1.0,
        lr: Annotated[float, Interval(gt=0, le=1e3)] | None = None,
        bootstrap_truncated: bool = True,
        normalize_targets: bool = True,
        stats_decay: Annotated[float, Interval(ge=0, lt=1)] = 0.9,
    ) -> None:
        super().__init__()
        check_arguments(type(self), locals())
        if normalize_targets and not hasattr(value_net, "rescale_output"):
            raise ArgumentError(
                "normalize_targets",
                f"normalize_targets=true needs a value_net with rescale_output(scale, shift) (PopArt), which "
                f"{type(value_net).__name__} has not: give it one (see pg_lightning.envs.networks.ValueNetwork."
                "rescale_output) or set normalize_targets=false",
            )
        self.value_net = value_net
        self.loss_coef = float(loss_coef)
        self.lr = None if lr is None else float(lr)
        self.bootstrap_truncated = bool(bootstrap_truncated)
        self.normalize_targets = bool(normalize_targets)
        self.stats_decay = float(stats_decay)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self.register_buffer("stats_count", torch.zeros((), dtype=torch.long))

    def _net(self, batch: EpisodeBatch) -> Tensor:
        """``(B,)`` the value net's output on the batch (a recurrent one runs over each episode)."""
        return self.value_net(batch.obs, batch.dones) if is_recurrent(self.value_net) else self.value_net(batch.obs)

    def _scaled(self, out: Tensor) -> Tensor:
        return self.target_mean + self.target_std * out if self.normalize_targets else out

    def value(self, batch: EpisodeBatch) -> Tensor:
        """``(B,)`` ``V(s_t)`` of the batch's steps, on the returns' scale (with gradient)."""
        return self._scaled(self._net(batch))

    def forward(self, batch: EpisodeBatch, psi: Tensor) -> Tensor:
        with torch.no_grad():
            return self.value(batch).to(psi.dtype)

    def loss(self, batch: EpisodeBatch, psi: Tensor) -> dict[str, Tensor]:
        target = psi.detach().float()
        if self.normalize_targets and self.training:
            self._update_stats(target)
        if self.normalize_targets:
            target = (target - self.target_mean) / self.target_std
        return {"value_loss": self.loss_coef * (self._net(batch) - target).pow(2).mean()}

    @torch.no_grad()
    def _update_stats(self, target: Tensor) -> None:
        # float64 sums: E[x^2] - E[x]^2 would cancel in float32 for returns with a large mean
        x = target.double()
        sums = torch.stack([x.new_tensor(float(x.numel())), x.sum(), x.pow(2).sum()])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # every DDP rank must rescale its copy of the output layer identically
            torch.distributed.all_reduce(sums)
        n, mean = sums[0], sums[1] / sums[0]
        std = ((sums[2] / n - mean**2).clamp_min(0).sqrt() if n > 1 else x.new_ones(())).clamp_min(1e-4)
        mean, std = mean.to(self.target_mean.dtype), std.to(self.target_std.dtype)
        if self.stats_count > 0:
            d = self.stats_decay
            var = d * self.target_std**2 + (1 - d) * std**2 + d * (1 - d) * (self.target_mean - mean) ** 2
            mean, std = d * self.target_mean + (1 - d) * mean, var.sqrt()
        # (Adam's moments of the output layer stay on the old scale: harmless at these decays)
        # __init__ checked that a normalize_targets value_net has rescale_output
        cast(_PopArtNet, self.value_net).rescale_output(
            std / self.target_std, (mean - self.target_mean) / self.target_std
        )
        self.target_mean.copy_(mean)
        self.target_std.copy_(std)
        self.stats_count += 1

    def metrics(self, batch: EpisodeBatch, psi: Tensor, values: Tensor) -> dict[str, Tensor]:
        var = psi.var()
        explained = 1 - (psi - values).var() / var if var > 0 else torch.tensor(math.nan)
        return {"value_explained_var": explained.detach()}

    def final_values(self, batch: EpisodeBatch) -> Tensor | None:
        if not self.bootstrap_truncated:
            return None
        with torch.no_grad():
            if is_recurrent(self.value_net):  # V(s_T) with the state each episode left
                value_net = cast(_RecurrentValueNet, self.value_net)  # the recurrent value-net contract
                return self._scaled(value_net.final_values(batch.obs, batch.dones, batch.final_obs))
            return self._scaled(self.value_net(batch.final_obs))


class _PopArtNet(Protocol):
    """A value net that ``normalize_targets`` can rescale (``ValueNetwork.rescale_output``)."""

    def rescale_output(self, scale: Tensor, shift: Tensor) -> None: ...


class _RecurrentValueNet(Protocol):
    """A recurrent value net: ``V`` of each episode's final observation with the state the episode left."""

    def final_values(self, obs: Obs, dones: Tensor, final_obs: Obs) -> Tensor: ...
