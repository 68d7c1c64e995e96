"""`ReinforceModule`: the policy and the REINFORCE loss as a LightningModule (Lightning layer, thin glue).

The optimizer and schedule helpers are in `pg_lightning.lightning.optim`. Below the module: what a step leaves
behind (`StepRecord`, for callbacks that look at it before the optimizer step, such as `GradientDiagnostics`), and
the checks and messages of a step that meets a non-finite number (`all_finite`, `non_finite_parameters`,
`describe_non_finite`, `saved_checkpoints`: the files that hold the last finite parameters). The module installs no
signal handler: `pg_lightning.run` adds the `pg_lightning.lightning.signals.DeferredSignals` callback to its Trainer.
"""

from __future__ import annotations

import importlib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, NamedTuple, cast

import pytorch_lightning as pl
import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.utilities import grad_norm
from pytorch_lightning.utilities.types import LRSchedulerConfigType, OptimizerLRSchedulerConfig
from torch import Tensor, nn
from torchmetrics import SumMetric

from pg_lightning.core.arguments import Interval, check_arguments
from pg_lightning.core.baselines import Baseline, NoBaseline
from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.errors import NonFiniteError
from pg_lightning.core.loss import LossTerms, ReinforceLoss
from pg_lightning.core.metrics import WindowMean
from pg_lightning.core.policies import distribution
from pg_lightning.core.tree import Obs, leaves
from pg_lightning.envs.evaluation import episode_stats, run_episodes
from pg_lightning.lightning.data import EvalEpisodes
from pg_lightning.lightning.optim import (
    DEFAULT_OPTIMIZER,
    OptimizerFactory,
    SchedulerFactory,
    check_resumable_schedule,
    make_optimizer,
    make_scheduler,
    scheduler_horizon,
)

__all__ = [
    "ReinforceModule",
    "StepRecord",
    "all_finite",
    "describe_non_finite",
    "describe_non_finite_update",
    "non_finite_parameters",
    "non_finite_state",
    "reinforce_module",
    "saved_checkpoints",
    "snapshot_state",
]


class ReinforceModule(pl.LightningModule):
    """REINFORCE as a LightningModule: one batch of fresh episodes, one optimizer step.

    Args:
        policy: maps observations to a ``torch.distributions.Distribution``
            (see :func:`pg_lightning.envs.networks.make_policy`).
        loss: the estimator's options (:class:`ReinforceLoss`).
        baseline: subtracted from ``Psi_t``; its parameters (if any) are optimised too.
        optimizer: ``params -> Optimizer``, e.g. a Hydra ``_partial_`` of ``torch.optim.Adam``
            (default: `DEFAULT_OPTIMIZER`, Adam at ``lr=1e-2``).
        return_window: episodes in the moving "solved" average, ``rollout/return_mean_100``.
        scheduler: ``optimizer -> LRScheduler`` or None (a constant learning rate), e.g. a Hydra
            ``_partial_`` of any ``torch.optim.lr_scheduler`` class (``conf/scheduler/linear.yaml``:
            ``LinearLR`` from ``lr`` to 0 over ``trainer.max_epochs``). It is stepped once per
            update (``interval: step``; one update per epoch), after the update, so that epoch
            ``e`` (0-based) trains with the schedule's ``e``-th value. A length argument
            (``total_iters``, ``T_max``, ``total_steps``) must be a positive integer. Its state
            is checkpointed and restored on resume, which must then configure the same schedule.

    ``training_step(batch, batch_idx)`` returns the loss whose gradient is the estimator; it
    also works outside a Trainer (no logging then). Logged every epoch:

    - ``rollout/return_mean_100``: mean return of the last 100 finished episodes, of all ranks
      under DDP (progress bar);
    - ``rollout/return_mean``, ``rollout/length_mean``: this epoch's episodes (all ranks);
    - ``rollout/env_steps``, ``rollout/episodes``: totals since the start of training (all ranks);
    - ``train/loss``, ``train/policy_loss``, ``train/entropy_loss``, ``train/entropy``, and the
      baseline's own terms as ``train/<name>``; ``train/grad_norm`` (total 2-norm);
    - ``train/psi_sq`` and ``train/advantage_sq``: mean over the batch's steps of ``Psi_t^2`` and
      of ``(Psi_t - b(s_t))^2`` (before normalisation), a cheap proxy of the estimator's variance
      (which scales with the second moment of the weights of ``grad log pi``): their ratio shows
      how much the baseline removes;
    - ``train/lr``: the learning rate this epoch's update used (of the policy's param group), and
      ``train/lr_baseline`` when the baseline has a param group of its own;
    - ``time/collect_fps``: env steps per second of this epoch's collection;
    - ``rollout/kept_fraction``: the batch's steps over the copy-steps the vector env ran for it,
      where idle copies are stepped with the others (async and batched envs; not logged when it is 1).
    """

    def __init__(
        self,
        policy: nn.Module,
        loss: ReinforceLoss | None = None,
        baseline: Baseline | None = None,
        optimizer: OptimizerFactory = DEFAULT_OPTIMIZER,
        return_window: Annotated[int, Interval(ge=1)] = 100,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        check_arguments(type(self), {"return_window": return_window})
        self.policy = policy
        self.loss_fn = loss if loss is not None else ReinforceLoss()
        self.baseline = baseline if baseline is not None else NoBaseline()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._scheduler_horizon = scheduler_horizon(scheduler)
        # Running metrics (window, totals) are updated with every rank's episodes (all-gathered),
        # so their state is the same on every rank and needs no sync: rank 0's checkpoint restores
        # every rank exactly.
        self.return_window = WindowMean(return_window, sync_on_compute=False)
        self.env_steps = SumMetric(sync_on_compute=False)
        self.episodes = SumMetric(sync_on_compute=False)
        for metric in (self.env_steps, self.episodes):
            metric.set_dtype(torch.float64)  # exact counts beyond float32's 2**24
            metric.persistent(True)  # totals survive a resume from checkpoint
        self._epoch_start = time.perf_counter()
        self.last_step: StepRecord | None = None
        self._baseline_before: dict[str, Tensor] | None = None  # see training_step
        self._row: dict[str, Tensor] = {}  # this epoch's logged scalars (log_scalars), written at its end

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]  # adds trust_checkpoint_code
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        trust_checkpoint_code: bool = False,
        **kwargs: Any,
    ) -> ReinforceModule:
        """Lightning's ``load_from_checkpoint``; for a checkpoint that ``train.py`` wrote, the module rebuilt
        from the config saved in it.

        - ``ReinforceModule.load_from_checkpoint(path)``, ``path`` written by ``train.py`` (its config is in
          ``hyper_parameters.config``): the policy, baseline, loss and optimizer settings are rebuilt from that
          config and get the checkpoint's weights (`pg_lightning.cli.checkpoints.load_module`). The trust rule of
          ``evaluate.py``: without ``trust_checkpoint_code=True``, a config naming code outside pg_lightning's
          allowlist (your own network, wrapper or baseline) is refused before anything is called.
        - With ``policy=...`` (and ``loss``, ``baseline``, ... as the module was built): Lightning's own, for a
          checkpoint of a module you built yourself.
        - Neither: a TypeError that says what to pass.

        ``map_location``: where the module goes (a device or its name); the checkpoint is read on the CPU.
        """
        if "policy" in kwargs:
            return super().load_from_checkpoint(
                checkpoint_path, map_location, hparams_file, strict, weights_only, **kwargs
            )
        hparams = torch.load(checkpoint_path, map_location="cpu", weights_only=True).get("hyper_parameters") or {}
        if not isinstance(hparams.get("config"), dict):
            raise TypeError(
                f"ReinforceModule.load_from_checkpoint({str(checkpoint_path)!r}): the checkpoint holds no train.py "
                "config (hyper_parameters.config) to rebuild the module from; pass what the module was built with: "
                "load_from_checkpoint(path, policy=..., loss=..., baseline=...)"
            )
        # The one call up the layers, by name: rebuilding from a Hydra config is the cli layer's job (it imports
        # Hydra; this layer does not), and only this classmethod, called on a train.py checkpoint, needs it.
        load_module = importlib.import_module("pg_lightning.cli.checkpoints").load_module
        module = load_module(checkpoint_path, trust_checkpoint_code=trust_checkpoint_code)
        return module if map_location is None else module.to(map_location)

    def forward(self, obs: Obs, dones: Tensor | None = None) -> torch.distributions.Distribution:
        """The policy's distribution: ``policy(obs)``, or ``policy(obs, dones)`` for a recurrent policy."""
        return self.policy(obs) if dones is None else distribution(self.policy, obs, dones)

    def returns(self, batch: EpisodeBatch, final_values: Tensor | None = None) -> Tensor:
        """``(B,)`` ``Psi_t`` of the batch, truncated episodes bootstrapped when the baseline can.

        ``final_values``: ``(E,)`` ``V(s_T)`` already computed (default: the baseline's ``final_values``).
        """
        if final_values is None:
            final_values = self.baseline.final_values(batch)
        bootstrap = batch.truncated & ~batch.terminated  # a terminal state's future is zero, even at the time limit
        return self.loss_fn.returns(batch.rewards, batch.dones, final_values, bootstrap)

    def training_step(self, batch: EpisodeBatch, batch_idx: int) -> Tensor:
        # A baseline's state moves while the loss is built (the EMA takes the batch's mean; PopArt
        # moves its statistics and rescales the value net's output layer, which the loss's gradient
        # needs). It is kept as it was before this step, and put back if the step fails: on a
        # non-finite loss here, or a non-finite gradient in on_before_optimizer_step.
        self._baseline_before = snapshot_state(self.baseline)
        final_values = self.baseline.final_values(batch)
        psi = self.returns(batch, final_values)
        if not torch.isfinite(psi).all():  # before the baseline sees them: its statistics stay finite
            raise self._failed(describe_non_finite(self, self.current_epoch, batch, psi, saved=self._saved()))
        dist = distribution(self.policy, batch.obs, batch.dones)
        baseline = self.baseline(batch, psi)
        entropy = self._entropy(dist)
        terms = self.loss_fn(dist.log_prob(batch.actions), psi, batch.dones, baseline=baseline, entropy=entropy)
        baseline_terms = self.baseline.loss(batch, psi)
        loss = terms.loss + sum(baseline_terms.values())
        if not torch.isfinite(loss):
            raise self._failed(
                describe_non_finite(self, self.current_epoch, batch, psi, terms, baseline_terms, self._saved())
            )
        # what this update's estimator was made of, for callbacks that look at it before the optimizer
        # step (GradientDiagnostics): references only, dropped at the next step
        self.last_step = StepRecord(batch, psi.detach(), baseline.detach(), terms.weights, final_values)
        if self._current_fx_name == "training_step":  # called by a Trainer (not by hand, even after fit)
            moments = {"psi_sq": psi.pow(2).mean(), "advantage_sq": (psi - baseline).pow(2).mean()}
            diagnostics = self.baseline.metrics(batch, psi, baseline)
            self._log_epoch(batch, terms, baseline_terms | moments | diagnostics, loss)
        return loss

    def validation_step(self, batch: EvalEpisodes, batch_idx: int) -> None:
        """``trainer.validate(module, datamodule=...)``: the batch's greedy episodes (`RolloutDataModule`'s
        `val_dataloader`), logged as ``eval/return_mean`` (progress bar), ``eval/return_std``, ``eval/length_mean``:
        the names of ``EvalCallback``, whose episodes these are (the same env, seeds and greedy actions)."""
        returns, lengths = run_episodes(self.policy, batch.env, batch.episodes, greedy=True, seed=batch.seed)
        stats = episode_stats(returns, lengths)
        for name in ("return_mean", "return_std", "length_mean"):
            value = torch.tensor(stats[name], dtype=torch.float64)
            self.log(f"eval/{name}", value, prog_bar=name == "return_mean", batch_size=1, sync_dist=True)

    def test_step(self, batch: EvalEpisodes, batch_idx: int) -> None:
        """``trainer.test(module, datamodule=...)``: as `validation_step`."""
        self.validation_step(batch, batch_idx)

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_fit_start(self) -> None:
        self._stream_seed = torch.initial_seed()  # the run's seed (pl.seed_everything), the same on every rank

    def on_train_start(self) -> None:
        bad = non_finite_parameters(self)
        if bad:  # before the first collection: NaN weights would sample NaN actions, blamed on the env
            origin = (
                f"the checkpoint resumed (ckpt_path={self.trainer.ckpt_path})"
                if self.trainer.ckpt_path
                else "the network's initial values (network.log_std_init, network.output_init_scale, or your "
                "network factory)"
            )
            raise NonFiniteError(
                f"non-finite parameters before the first update: {', '.join(bad)}, from {origin}; nothing was "
                "trained or saved"
            )

    def _entropy(self, dist: torch.distributions.Distribution) -> Tensor:
        """``dist.entropy()``, whose random draws (the squashed Gaussian's entropy is estimated from one
        reparameterised sample) come from a stream of this rank and epoch, seeded by ``(seed, rank,
        epoch)``, not from the global RNG: under DDP every rank's draws are then a function of the
        checkpoint's epoch, so a resume replays them on every rank (a checkpoint holds one rank's RNG)."""
        seed = getattr(self, "_stream_seed", None)
        if seed is None:  # training_step called by hand, outside fit
            return dist.entropy()
        device = next(self.policy.parameters(), torch.empty(0)).device
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # manual_seed seeds CUDA too: restore it as well
            torch.manual_seed(((seed * 1_000_003 + self.global_rank) * 1_000_003 + self.current_epoch) % 2**63)
            return dist.entropy()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        norms = grad_norm(self, norm_type=2)
        total = norms.get("grad_2.0_norm_total")
        if total is not None and not torch.isfinite(torch.as_tensor(total)):
            # stop before the step: the parameters (and the last checkpoint) stay finite
            bad = [n for n, p in self.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
            where = (
                f"in {', '.join(bad)}"
                if bad
                else "(every entry is finite, but their 2-norm overflows float32: the gradient is beyond use)"
            )
            raise self._failed(
                f"non-finite gradient at epoch {self.current_epoch} {where} "
                f"(the loss was finite); lower model.optimizer.lr or check the env's rewards"
            )
        if total is not None:
            self.log_scalars({"train/grad_norm": total}, mean=True)

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: torch.optim.Optimizer | LightningOptimizer,
        optimizer_closure: Callable[[], Any] | None = None,
    ) -> None:
        """The optimizer's step, then a check of the parameters: an update from a finite loss and gradient
        can still overflow them (``lr`` far too large). Then the run stops here (`NonFiniteError`), before
        the epoch's end writes ``last.ckpt`` or ``best.ckpt``; ``ExceptionCheckpoint`` writes no checkpoint
        of non-finite parameters either. One fused check (`all_finite`), about 50 us per update on a CPU."""
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if not all_finite(self.parameters()):
            self._baseline_before = None  # the policy moved too: the failed state is not put back half-way
            lrs = [float(group["lr"]) for group in optimizer.param_groups]
            bad = non_finite_parameters(self)
            raise NonFiniteError(describe_non_finite_update(self.current_epoch, bad, lrs, self._saved()))

    def _saved(self) -> list[str] | None:
        """The checkpoint files written so far (`saved_checkpoints`), None outside a Trainer."""
        return saved_checkpoints(self._trainer) if self._trainer is not None else None

    def on_train_batch_end(self, outputs: object, batch: EpisodeBatch, batch_idx: int) -> None:
        self._baseline_before = None  # the step is taken: the baseline's new state stands

    def _failed(self, message: str) -> NonFiniteError:
        """The error of a failing step, after putting the baseline's state back as it was before the step."""
        if self._baseline_before is not None:
            self.baseline.load_state_dict(self._baseline_before)  # in place: the optimizer keeps the same tensors
            self._baseline_before = None
        return NonFiniteError(message)

    def _log_epoch(self, batch: EpisodeBatch, terms: LossTerms, extra_terms: dict[str, Tensor], loss: Tensor) -> None:
        collect_seconds = time.perf_counter() - self._epoch_start  # the batch was collected since epoch start
        returns, lengths = batch.episode_returns(), batch.episode_lengths()
        # every rank's episodes, in rank order (one batch of the same size per rank; as is without DDP): one
        # all_gather for the returns and the lengths, so every rank computes the same means and totals
        pair = torch.stack([returns.double(), lengths.double()])  # float64: exact step counts of any batch
        gathered = cast(Tensor, self.all_gather(pair)).reshape(-1, 2, len(returns))
        all_returns, all_lengths = gathered[:, 0].flatten(), gathered[:, 1].flatten()
        self.return_window.update(all_returns.to(returns.dtype))
        self.env_steps.update(all_lengths.sum())
        self.episodes.update(torch.tensor(float(all_lengths.numel()), dtype=torch.float64, device=returns.device))
        same = {  # the same value on every rank
            "rollout/return_mean_100": self.return_window.compute(),
            "rollout/return_mean": all_returns.mean(),
            "rollout/length_mean": all_lengths.mean(),
            "rollout/env_steps": self.env_steps.compute(),
            "rollout/episodes": self.episodes.compute(),
        }
        if batch.stepped is not None:
            # idle copies of a vector env stepped as a whole (async, batched), and NEXT_STEP resets, cost steps too.
            # Over all ranks, and logged only where some copy-steps were wasted (sync copies are stepped only while
            # active): the decision is the same on every rank, so is the number of logged keys (DDP's collectives)
            kept = torch.tensor(
                [float(batch.num_steps), float(batch.stepped)], dtype=torch.float64, device=returns.device
            )
            kept = cast(Tensor, self.all_gather(kept)).reshape(-1, 2).sum(0)
            if kept[0] != kept[1]:
                same["rollout/kept_fraction"] = kept[0] / kept[1]
        # the lr of this update: the scheduler steps after it. (Logged here, in the epoch's row of
        # metrics.csv; Lightning's LearningRateMonitor would write rows of its own, without an epoch.)
        groups = self.trainer.optimizers[0].param_groups
        names = ["train/lr", "train/lr_baseline"][: len(groups)]  # the baseline's own group (configure_optimizers)
        same |= {name: torch.tensor(float(group["lr"]), dtype=torch.float64) for name, group in zip(names, groups)}
        self.log_scalars(same, prog_bar=("rollout/return_mean_100", "rollout/return_mean"))
        per_rank = {  # their mean over the ranks
            "time/collect_fps": torch.tensor(batch.num_steps / max(collect_seconds, 1e-9)),
            "train/loss": loss,
            "train/policy_loss": terms.policy_loss,
            "train/entropy_loss": terms.entropy_loss,
            "train/entropy": terms.entropy,
        }
        self.log_scalars(per_rank | {f"train/{name}": value for name, value in extra_terms.items()}, mean=True)

    def log_scalars(
        self, values: Mapping[str, Tensor | float], prog_bar: Iterable[str] = (), mean: bool = False
    ) -> None:
        """Log scalars in this epoch's row of the loggers (``metrics.csv``), at once in ``trainer.callback_metrics``
        (what EarlyStopping and checkpoints monitor) and, those named in ``prog_bar``, on the progress bar.
        ``mean``: the values are this rank's, logged as their mean over the ranks (one all_reduce; every rank must
        call it); otherwise they are the same on every rank. Not in a Trainer: nothing.

        What ``self.log(name, value, on_epoch=True)`` does for one-batch epochs, at a fraction of its cost:
        Lightning's ``self.log`` costs 0.3 to 0.5 ms per key and epoch (it moves its result object to the value's
        device at every call; ``benchmarks/log_cost.py``): 5 to 8 ms of a CartPole epoch for this module's 16 keys. The
        row is written once, at the module's ``on_train_epoch_end``, after the other callbacks' (whose values,
        such as ``EvalCallback``'s, join it) and before EarlyStopping's and the checkpoints'. What is logged with
        ``self.log`` (by other callbacks) keeps Lightning's path and rows of its own.
        """
        if self._trainer is None or not values:
            return
        row = {name: torch.as_tensor(value).detach().reshape(()) for name, value in values.items()}
        if mean and self.trainer.world_size > 1:
            stacked = torch.stack([value.to(self.device, torch.float64) for value in row.values()])
            means = cast(Tensor, self.trainer.strategy.reduce(stacked, reduce_op="mean"))
            row = {name: mean.to(value) for (name, value), mean in zip(row.items(), means)}
        self._row.update(row)
        self.trainer.callback_metrics.update(row)
        self.trainer.progress_bar_metrics.update({k: float(row[k]) for k in prog_bar if k in row})

    def on_train_epoch_end(self) -> None:
        """Write this epoch's row (`log_scalars`) to every logger, as Lightning writes ``self.log``'s: one row,
        with ``epoch`` and the step of the epoch's last update."""
        if not self._row:
            return
        self.trainer.logged_metrics.update(self._row)
        row = {k: float(v) + 0.0 for k, v in self._row.items()}  # + 0.0: -0.0 written as 0.0, as Lightning's mean does
        self._row = {}
        for logger in self.loggers:
            logger.log_metrics(row | {"epoch": self.current_epoch}, step=self.trainer.global_step - 1)
            logger.save()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the global torch RNG draws the tanh policy's entropy sample: saved so a resume replays it
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
        if self._trainer is not None and self.trainer.state.fn == "fit":  # a resume (not load_from_checkpoint)
            self.check_resumable(checkpoint)

    def check_resumable(self, checkpoint: dict[str, Any]) -> None:
        """Refuse (ConfigError) to resume ``checkpoint`` with another ``model.scheduler`` than its run's.

        Lightning restores the checkpoint's scheduler state over the configured one (its length
        included) and the optimizer's current lr with it: a different configuration would not be
        followed, e.g. a longer ``trainer.max_epochs`` would keep a linear schedule at lr 0.
        Called on resume by ``on_load_checkpoint``; may be called before ``fit`` as well.
        """
        check_resumable_schedule(checkpoint, self.scheduler_factory is not None, self._scheduler_horizon)

    def configure_optimizers(self) -> torch.optim.Optimizer | OptimizerLRSchedulerConfig:
        """The optimizer over all parameters, and the lr scheduler if any (stepped after every update).

        A baseline with its own ``lr`` gets its own param group (the scheduler scales both groups).
        """
        optimizer = make_optimizer(self.optimizer_factory, self.parameters(), self.baseline)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = make_scheduler(self.scheduler_factory, optimizer)
        schedule: LRSchedulerConfigType = {"scheduler": scheduler, "interval": "step", "frequency": 1}  # one per update
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def reinforce_module(pl_module: pl.LightningModule) -> ReinforceModule:
    """``pl_module`` as the `ReinforceModule` that pg_lightning's callbacks need (its policy, its `log_scalars`), or
    a TypeError that says so."""
    if not isinstance(pl_module, ReinforceModule):
        raise TypeError(f"this callback needs a pg_lightning ReinforceModule, not a {type(pl_module).__name__}")
    return pl_module


# --- what a step leaves behind, and the checks of a step that meets a non-finite number


class StepRecord(NamedTuple):
    """What the last ``training_step`` estimated the gradient from (all ``(B,)`` but the batch, no gradient).

    - ``batch``: the `EpisodeBatch`;
    - ``psi``: ``Psi_t`` before the baseline (bootstrapped where the baseline bootstraps);
    - ``baseline``: ``b(s_t)``;
    - ``weights``: the loss's per-step weights (after normalisation and ``gamma^t``): the
      estimate is ``(1/E) sum_t weights_t grad log pi(a_t|s_t)``;
    - ``final_values``: ``(E,)`` ``V(s_T)`` that bootstrapped truncated episodes, or None.
    """

    batch: EpisodeBatch
    psi: Tensor
    baseline: Tensor
    weights: Tensor
    final_values: Tensor | None = None


def snapshot_state(module: nn.Module) -> dict[str, Tensor] | None:
    """A copy of ``module``'s parameters and buffers (None when it has none)."""
    state = module.state_dict()
    return {k: v.detach().clone() for k, v in state.items()} if state else None


def all_finite(tensors: Iterable[Tensor]) -> bool:
    """Whether every entry of ``tensors`` is finite: one fused max-abs per tensor (``torch._foreach_norm``, which
    keeps NaN and cannot overflow as a 2-norm would) and one host sync; about 50 us for the default MLP on a CPU."""
    tensors = [t for t in tensors if t.numel() and (t.is_floating_point() or t.is_complex())]
    if not tensors:
        return True
    with torch.no_grad():
        norms = list(torch._foreach_norm(tensors, math.inf))
        if len({n.dtype for n in norms}) > 1:  # (torch.stack takes one dtype)
            norms = [n.double() for n in norms]
        return bool(torch.stack(norms).max().isfinite())


def non_finite_parameters(module: nn.Module) -> list[str]:
    """The names of ``module``'s parameters that hold a NaN or an infinity."""
    return [n for n, p in module.named_parameters() if not torch.isfinite(p.detach()).all()]


def non_finite_state(module: nn.Module, optimizers: Iterable[torch.optim.Optimizer] = ()) -> list[str]:
    """`non_finite_parameters`, and ``optimizer state`` when some floating tensor of the optimizers'
    state (Adam's moments, ...) is not finite: what must not go into a checkpoint."""
    bad = non_finite_parameters(module)
    states = [v for opt in optimizers for state in opt.state.values() for v in state.values() if isinstance(v, Tensor)]
    if not all_finite(states):
        bad.append("optimizer state")
    return bad


def saved_checkpoints(trainer: Any) -> list[str]:
    """The checkpoint files the trainer's checkpoint callbacks have written so far (``last.ckpt``,
    ``best.ckpt``, ...) and that exist: each was written at the end of an epoch whose update passed
    the finiteness checks. ``[]`` without a trainer or checkpoint callbacks."""
    paths: list[str] = []
    for callback in getattr(trainer, "checkpoint_callbacks", None) or []:
        for attr in ("last_model_path", "best_model_path"):
            path = getattr(callback, attr, None)
            if isinstance(path, str) and path and path not in paths and os.path.isfile(path):
                paths.append(path)
    return paths


def _kept(saved: list[str] | None) -> str:
    """Where the last finite parameters are, for a message: the checkpoint files, or that there is none."""
    if saved is None:  # outside a Trainer
        return ""
    if not saved:
        return "; no checkpoint was written before it"
    return f"; the checkpoints written before it hold finite parameters: {', '.join(saved)}"


def _stats(x: Tensor) -> str:
    """How many entries of ``x`` are not finite, and the range of the others."""
    x = x.detach().double()
    finite = x[torch.isfinite(x)]
    rng = f"[{finite.min().item():.4g}, {finite.max().item():.4g}]" if finite.numel() else "[]"
    return f"{int((~torch.isfinite(x)).sum())} non-finite of {x.numel()}, finite range {rng}"


def describe_non_finite(
    module: nn.Module,
    epoch: int,
    batch: EpisodeBatch,
    psi: Tensor,
    terms: LossTerms | None = None,
    baseline_terms: dict[str, Tensor] | None = None,
    saved: list[str] | None = None,
) -> str:
    """Which term of the loss is not finite, and the batch statistics that explain it.

    Args:
        module: the module whose parameters are checked (named in the message when not finite).
        epoch: the failing epoch.
        batch: the step's batch.
        psi: the step's returns ``Psi_t``.
        terms: the loss's terms, or None when the returns failed before the loss was built.
        baseline_terms: the baseline's own loss terms.
        saved: the checkpoint files written so far (`saved_checkpoints`), None outside a Trainer.
    """
    if terms is None:
        bad = ["the returns Psi"]
    else:
        named = {"policy_loss": terms.policy_loss, "entropy_loss": terms.entropy_loss, **(baseline_terms or {})}
        bad = [k for k, v in named.items() if not torch.isfinite(v).all()] or ["loss"]
    lines = [
        f"non-finite loss at epoch {epoch}: {', '.join(bad)} is not finite",
        f"  observations: {_stats(torch.cat([leaf.float().flatten() for leaf in leaves(batch.obs)]))}",
        f"  rewards: {_stats(batch.rewards)}",
        f"  returns Psi: {_stats(psi)}",
    ]
    if terms is not None:
        lines.append(f"  log-prob weights: {_stats(terms.weights)}")
    bad_params = non_finite_parameters(module)
    if bad_params:  # (ReinforceModule checks them before the first update and after each: not in a Trainer's run)
        lines.append(
            f"  non-finite parameters: {', '.join(bad_params)}: they were not finite when this step began "
            "(nothing was updated by it); no checkpoint of them is good"
        )
    else:
        lines.append(f"  nothing was updated: the parameters are still finite{_kept(saved)}")
    return "\n".join(lines)


def describe_non_finite_update(epoch: int, bad: list[str], lrs: list[float], saved: list[str] | None) -> str:
    """One line: the optimizer step of ``epoch`` made the parameters ``bad`` non-finite, from a finite
    loss and gradient; ``lrs``: the learning rates of its param groups; ``saved``: `saved_checkpoints`."""
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    lr = ", ".join(f"{x:g}" for x in lrs)
    return (
        f"non-finite parameters after the optimizer step of epoch {epoch}: {shown} (the loss and the gradient "
        f"were finite: the update itself overflowed, at lr {lr}); lower model.optimizer.lr. They are not "
        f"saved (the run stops before the epoch's checkpoints){_kept(saved)}"
    )
