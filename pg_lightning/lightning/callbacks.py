"""Lightning callbacks of pg_lightning (layer: lightning).

`ExactReturn` (the exact objective of tabular envs), `GradientDiagnostics` (the estimator's variance,
live), the checkpoint callbacks `TimedCheckpoint` (by time, not by epoch), `ExceptionCheckpoint` (safe under
DDP) and `BestCheckpoint` (the best of the whole run, across resumes), and `PipeAwareProgressBar` (a bar on a
terminal, lines elsewhere).
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from typing import Annotated, Any, cast

import gymnasium as gym
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, OnExceptionCheckpoint, TQDMProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import Tensor, nn

from pg_lightning.core.arguments import Interval, check_arguments
from pg_lightning.core.diagnostics import ESTIMATORS, estimator_weights, gradient_stats, per_episode_gradients
from pg_lightning.core.errors import ConfigError
from pg_lightning.core.loss import ReinforceLoss
from pg_lightning.core.tabular import optimal_values, policy_table, solve
from pg_lightning.lightning.module import StepRecord, non_finite_state, reinforce_module, saved_checkpoints

__all__ = [
    "BestCheckpoint",
    "ExactReturn",
    "ExceptionCheckpoint",
    "GradientDiagnostics",
    "PipeAwareProgressBar",
    "TimedCheckpoint",
]

log = logging.getLogger(__name__)


class ExactReturn(pl.Callback):
    """On tabular envs, log the policy's exact objective every epoch, and the optimum.

    - ``exact/return``: ``J(theta)`` of the current policy, from the Bellman solve;
    - ``exact/return_optimal``: ``J*`` by value iteration;
    - ``exact/gap``: ``(J* - J) / |J*|``, the relative shortfall (0 is optimal; ``J* - J`` when
      ``J* = 0``).

    ``J`` uses the MDP's own ``gamma`` (an env kwarg), so keep ``model.loss.gamma`` equal to it
    (``conf/env/chain.yaml`` does). Works under DDP (every rank computes the same numbers).

    Args:
        env_id: a tabular env (``env.unwrapped.mdp`` is its :class:`~pg_lightning.core.tabular.TabularMDP`).
        env_kwargs: the env's keyword arguments (the same ``env.kwargs`` as the collector's).
    """

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None) -> None:
        env = gym.make(env_id, **(env_kwargs or {}))
        mdp = getattr(env.unwrapped, "mdp", None)
        env.close()
        if mdp is None:
            raise ConfigError(
                f"callbacks.exact_return: {env_id!r} is not a tabular env (it has no .mdp); "
                "remove this callback or use env=chain / env=bandit"
            )
        self.mdp = mdp
        self.optimal = float(optimal_values(mdp).J)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        policy = cast(nn.Module, pl_module.policy)
        was_training = policy.training
        policy.eval()
        J = float(solve(self.mdp, policy_table(policy, self.mdp).detach()).J)
        policy.train(was_training)
        gap = (self.optimal - J) / (abs(self.optimal) or 1.0)  # relative to |J*|; where J* = 0 the absolute shortfall
        reinforce_module(pl_module).log_scalars(
            {"exact/return": J, "exact/return_optimal": self.optimal, "exact/gap": gap}
        )


class GradientDiagnostics(pl.Callback):
    """Every ``every_n_epochs`` epochs, measure the variance of the policy-gradient estimator on the epoch's batch.

    The batch holds ``E`` independent complete episodes and the estimate is the mean of one term
    per episode, so the spread of those terms measures the estimator's noise, live, on any env
    (:mod:`pg_lightning.core.diagnostics`). Logged (``on_epoch``, synced over DDP ranks as a mean):

    - ``diag/grad_var``: ``trace(Cov(g_hat))`` of the run's own estimator (its weights as the loss
      uses them: after the baseline, normalisation and ``gamma^t``), estimated as ``trace(S) / E``;
    - ``diag/grad_snr``: ``||g_hat||^2 / diag/grad_var``; ``diag/grad_norm_mean``: ``||g_hat||``;
    - ``diag/var/<name>``: on the same batch, the variance each estimator of
      :data:`~pg_lightning.core.diagnostics.ESTIMATORS` would have, with raw weights (not normalised):
      ``total``, ``reward_to_go``, ``reward_to_go_baseline`` (the run's baseline),
      ``reward_to_go_gamma_t`` and ``reward_to_go_baseline_gamma_t``. Their ratios show what
      reward-to-go, the baseline and ``gamma^t`` buy on this env, now.

    It runs in ``on_before_optimizer_step``, on the parameters that collected the batch, from what
    ``training_step`` recorded (``ReinforceModule.last_step``): nothing is recomputed that could
    move a baseline's state, nothing is written to ``.grad``, and the global RNG is restored, so the
    training batches and updates are exactly those of a run without it. Cost: one forward and one
    batched backward per episode (``benchmarks/diagnostics_cost.py``).

    Args:
        every_n_epochs: measure in epochs ``n-1, 2n-1, ...`` (0-based, as ``metrics.csv`` counts).
    """

    def __init__(self, every_n_epochs: Annotated[int, Interval(ge=1)] = 10) -> None:
        check_arguments(type(self), locals())
        self.every_n_epochs = every_n_epochs

    def should_measure(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) is measured."""
        return (epoch + 1) % self.every_n_epochs == 0

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        record: StepRecord | None = getattr(pl_module, "last_step", None)  # ReinforceModule's
        if record is None or not self.should_measure(trainer.current_epoch):
            return
        batch = record.batch
        if batch.num_episodes < 2:
            return  # one episode has no spread to measure
        loss = cast(ReinforceLoss, pl_module.loss_fn)
        psi = record.psi
        # the run weighs by R(tau): the baseline rows use G_t, bootstrapped alike
        if loss.return_type != "reward_to_go":
            bootstrap = batch.truncated & ~batch.terminated
            psi = ReinforceLoss(gamma=loss.gamma).returns(batch.rewards, batch.dones, record.final_values, bootstrap)
        alternatives = estimator_weights(batch.rewards, batch.dones, loss.gamma, psi=psi, baseline=record.baseline)
        weights = torch.stack([record.weights.to(torch.float64), *(alternatives[name] for name in ESTIMATORS)])
        with torch.random.fork_rng(devices=[]):  # a stochastic forward must not move the run's RNG
            per_episode = per_episode_gradients(
                cast(nn.Module, pl_module.policy), batch.obs, batch.actions, batch.dones, weights
            )
        stats = gradient_stats(per_episode)
        values = {
            "diag/grad_var": stats.var[0],
            "diag/grad_snr": stats.snr[0],
            "diag/grad_norm_mean": stats.mean_norm[0],
        }
        values |= {f"diag/var/{name}": stats.var[i] for i, name in enumerate(ESTIMATORS, start=1)}
        reinforce_module(pl_module).log_scalars(values, mean=True)


class ExceptionCheckpoint(OnExceptionCheckpoint):
    """Lightning's ``OnExceptionCheckpoint`` (``on_exception.ckpt``), made safe under DDP.

    Writing a checkpoint is a collective under DDP (the metrics' states are synchronised and every
    rank waits in a barrier), and an exception usually stops one rank only: an env that raises on
    one rank, or a non-finite return in that rank's batch. The failing rank would then wait in the
    checkpoint's barrier while the others wait in another collective (DDP's gradient all-reduce),
    every rank until the 30-minute collective timeout. So with more than one process this callback
    writes nothing and logs why (``last.ckpt`` holds the last epoch written); the failing rank
    exits at once with its message, and the others fail fast: gloo and NCCL raise in the pending
    collective when the peer's connection closes, and Lightning's launcher stops the other ranks
    when one of its child processes exits with an error.

    The one exception that every rank raises at the same point is Lightning's ``SIGTERMException``
    (rank 0 broadcasts a received SIGTERM to all ranks before each batch): for it, as in a single
    process, the checkpoint is written.

    Nor is it written when the parameters (or the optimizer's state) are not finite, whatever the
    exception (an update that overflowed them, a resumed checkpoint that held NaN): a checkpoint is
    only ever a state to resume or evaluate from. It logs why, and which checkpoints hold the last
    finite parameters (``last.ckpt``, ``best.ckpt``).

    Takes ``OnExceptionCheckpoint``'s arguments: ``dirpath`` (the directory of the checkpoint) and
    ``filename`` (its name, without ``.ckpt``).
    """

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        bad = non_finite_state(pl_module, trainer.optimizers)
        if bad:
            saved = saved_checkpoints(trainer)
            log.warning(
                "%s not written: the run stopped with non-finite %s (%s); %s",
                self.ckpt_path,
                "parameters" if bad != ["optimizer state"] else "optimizer state",
                ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""),
                f"the last finite parameters are in {', '.join(saved)}" if saved else "no checkpoint was written",
            )
            return
        if trainer.world_size <= 1 or isinstance(exception, SIGTERMException):
            super().on_exception(trainer, pl_module, exception)
            return
        log.warning(
            "[rank %d] %s not written: this rank stopped with %s under DDP (%d processes), and the other ranks may "
            "be waiting in a collective, where writing a checkpoint would wait for them forever; resume from "
            "last.ckpt (the last epoch written)",
            trainer.global_rank, self.ckpt_path, _one_line(exception), trainer.world_size,
        )  # fmt: skip


def _one_line(exception: BaseException) -> str:
    text = str(exception).strip().splitlines()
    return f"{type(exception).__name__}: {text[0]}" if text else type(exception).__name__


class TimedCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that writes by time, not by epoch: after the first epoch of a fit, then at the end of
    the first epoch that ends ``every_n_seconds`` or more after the previous write, and after the last epoch
    (EarlyStopping's or a callback's stop, ``max_epochs``, ``max_steps``). An exception, Ctrl-C or SIGTERM writes
    ``on_exception.ckpt`` (`ExceptionCheckpoint`). So a ``kill -9`` loses at most ``every_n_seconds`` plus one
    epoch of training.

    Why not Lightning's ``train_time_interval``: it decides at the end of a batch, before the epoch's metrics
    exist (a monitored checkpoint then waits for a validation loop that RL training does not have) and
    before the epoch's loop state is complete; this one decides where ``every_n_epochs`` does, at the epoch's end.

    Takes ``ModelCheckpoint``'s arguments (leave ``every_n_epochs`` at its default: time decides), and

    Args:
        every_n_seconds: the least time between two writes (0: every epoch, as ``every_n_epochs=1``).
    """

    def __init__(self, *args: Any, every_n_seconds: Annotated[float, Interval(ge=0)] = 30.0, **kwargs: Any) -> None:
        check_arguments(TimedCheckpoint, {"every_n_seconds": every_n_seconds})
        kwargs.setdefault("save_on_train_epoch_end", True)  # at the epoch's end, even where a val loop runs
        super().__init__(*args, **kwargs)
        self.every_n_seconds = every_n_seconds
        self._written_at: float | None = None  # monotonic time of the last write of this fit; None: none yet

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._written_at = None  # a fit (a resume too) writes after its first epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.due(trainer):
            super().on_train_epoch_end(trainer, pl_module)
            self._written_at = time.monotonic()

    def due(self, trainer: pl.Trainer) -> bool:
        """Whether this epoch's end writes: the first of the fit, the last, or ``every_n_seconds`` since the
        last write (rank 0's clock decides for every rank under DDP: a write is a collective)."""
        last = (
            trainer.should_stop  # EarlyStopping, signals, Timer: checkpoint callbacks run after the others
            or 0 <= (trainer.max_epochs or -1) <= trainer.current_epoch + 1
            or 0 <= trainer.max_steps <= trainer.global_step
        )
        elapsed = math.inf if self._written_at is None else time.monotonic() - self._written_at
        return bool(trainer.strategy.broadcast(last or elapsed >= self.every_n_seconds))


class BestCheckpoint(TimedCheckpoint):
    """`TimedCheckpoint` whose best (``best.ckpt``) is the best so far of the whole run, across resumes: the best
    of the epochs its timing writes at (``every_n_seconds=0``: of every epoch).

    A resume starts in a new run directory, and Lightning's ``ModelCheckpoint`` then restores only
    ``best_model_path`` (it warns that the dirpath changed): the score to beat is lost, so the first
    epochs after a resume would write a "best" checkpoint that is only the best of the resumed part.
    This one restores the score as well: a checkpoint is written in the new directory only when an
    epoch beats the best of the runs before, and until then ``best_model_path`` (saved in every
    checkpoint, printed at resume) names the earlier run's file. Nothing of the earlier run is deleted.
    Arguments: those of `TimedCheckpoint`.
    """

    _score_to_beat: Tensor | None = None

    @property
    def _legacy_state_key(self) -> str:  # type: ignore[override]  # a str key works, see the docstring
        """The key Lightning's ``ModelCheckpoint`` saved its state under, so checkpoints written before
        ``best_checkpoint`` became a BestCheckpoint still restore it.

        Lightning annotates this property ``type[Callback]``, but only looks it up in the checkpoint's
        callback states, a ``dict[type | str, dict]``: a str key is what ``ModelCheckpoint``'s state has.
        """
        return self.state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        moved = state_dict.get("dirpath", self.dirpath) != self.dirpath
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*The dirpath has changed")  # handled below
            super().load_state_dict(state_dict)
        score = state_dict.get("best_model_score")
        if moved and score is not None:
            self.best_model_score = self._score_to_beat = torch.as_tensor(score)
            log.info(
                "resumed: the best so far is %s (%s=%.6g); %s/%s.ckpt is written when an epoch beats it",
                self.best_model_path,
                self.monitor,
                float(score),
                self.dirpath,
                self.filename,
            )

    def check_monitor_top_k(self, trainer: pl.Trainer, current: Tensor | None = None) -> bool:
        if self._score_to_beat is not None and current is not None and not self.best_k_models:
            better = {"min": torch.lt, "max": torch.gt}[self.mode](current, self._score_to_beat.to(current.device))
            if not trainer.strategy.reduce_boolean_decision(bool(better)):  # (every rank decides alike)
                return False
        return super().check_monitor_top_k(trainer, current)


class PipeAwareProgressBar(TQDMProgressBar):
    """Lightning's ``TQDMProgressBar`` on a terminal; when stdout is not one, a line every ``piped_every_n_epochs``.

    tqdm redraws its bar with carriage returns, which a terminal overwrites in place but a pipe or a
    file keeps: a run's log (``python train.py > run.log``, a SLURM job's output) would hold every
    redraw. So when ``sys.stdout`` is not a terminal (nor a Jupyter cell, which renders the bar) at
    ``setup``, no bar is drawn; instead, after every ``piped_every_n_epochs``-th epoch (0-based
    epochs ``n-1, 2n-1, ...``, as the bar counts), one line with the bar's metrics and the time since
    the training started::

        Epoch 9: rollout/return_mean_100=21.4, rollout/return_mean=24.1 [1.9 s]

    ``refresh_rate=0`` shows neither the bar nor the lines (and ranks other than 0 print nothing).

    Args:
        refresh_rate: as ``TQDMProgressBar``'s: batches between redraws; 0 disables the display.
        process_position: as ``TQDMProgressBar``'s.
        leave: as ``TQDMProgressBar``'s.
        piped_every_n_epochs: when stdout is not a terminal, a line every this many epochs; 0: none.
    """

    def __init__(
        self,
        refresh_rate: Annotated[int, Interval(ge=0)] = 1,
        process_position: int = 0,
        leave: bool = False,
        piped_every_n_epochs: Annotated[int, Interval(ge=0)] = 10,
    ) -> None:
        check_arguments(type(self), locals())
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self.piped_every_n_epochs = piped_every_n_epochs
        self._piped = False
        self._started = time.monotonic()

    @property
    def piped(self) -> bool:
        """Whether stdout was not a terminal at ``setup``: lines instead of the bar."""
        return self._piped

    @property
    def is_enabled(self) -> bool:
        """Whether the tqdm bar is drawn: as ``TQDMProgressBar``'s, and never when piped."""
        return bool(super().is_enabled) and not self._piped

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Decide between the bar and lines, from ``sys.stdout`` now."""
        super().setup(trainer, pl_module, stage)
        self._piped = not _is_interactive(sys.stdout)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the bar (on a terminal) and the clock of the lines."""
        super().on_train_start(trainer, pl_module)
        self._started = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Update the bar; or, piped, print the epoch's line every ``piped_every_n_epochs`` epochs."""
        super().on_train_epoch_end(trainer, pl_module)
        n = self.piped_every_n_epochs
        if self._piped and self._enabled and self.refresh_rate > 0 and n > 0 and (trainer.current_epoch + 1) % n == 0:
            print(self.epoch_line(trainer, pl_module), file=sys.stdout, flush=True)

    def epoch_line(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
        """``Epoch <n>: <the bar's metrics> [<seconds since the training started> s]``."""
        metrics = ", ".join(f"{k}={_short(v)}" for k, v in self.get_metrics(trainer, pl_module).items())
        return f"Epoch {trainer.current_epoch}: {metrics} [{time.monotonic() - self._started:.1f} s]"


def _is_interactive(stream: Any) -> bool:
    """A terminal, or a Jupyter cell (which renders tqdm's carriage returns too)."""
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return type(stream).__module__.startswith("ipykernel")


def _short(value: Any) -> str:
    """A metric as the line shows it: floats to 4 significant digits."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    return f"{value:.4g}" if isinstance(value, float) else str(value)
