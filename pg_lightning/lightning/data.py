"""Lightning data side (layer: lightning): one fresh batch of on-policy episodes per epoch.

`RolloutDataModule` builds the vector env and the collector of each process; `EpisodeDataset` yields
the epoch's batch, collected when the training loop asks for it. For ``trainer.validate`` and ``trainer.test``,
its val and test dataloaders yield one `EvalEpisodes` request: greedy episodes that `ReinforceModule` runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal, cast

import gymnasium as gym
import pytorch_lightning as pl
from torch import nn
from torch.utils.data import IterableDataset

from pg_lightning.core.arguments import Interval, check_arguments
from pg_lightning.core.batch import EpisodeBatch
from pg_lightning.core.errors import ArgumentError, ConfigError
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.contract import EnvFactory
from pg_lightning.envs.evaluation import make_eval_env
from pg_lightning.envs.registry import EPISODE_CAP, import_modules
from pg_lightning.envs.vector_envs import check_vector_env
from pg_lightning.envs.watchdog import StepWatchdog
from pg_lightning.envs.worker_faults import stop_busy_workers

__all__ = ["EpisodeDataset", "EvalEpisodes", "RolloutDataModule"]


class EpisodeDataset(IterableDataset):
    """Yields exactly one :class:`EpisodeBatch` per iteration (= per epoch), collected when asked.

    Collection happens inside ``__iter__``, when the training loop asks for the epoch's batch,
    so it always uses the parameters left by the previous optimizer step: every update is
    on-policy. All collection state lives in the collector.
    """

    def __init__(
        self,
        collector: EpisodeCollector,
        policy: nn.Module,
        episodes_per_epoch: int,
        step_timeout: float | None = None,
    ) -> None:
        self.collector = collector
        self.policy = policy
        self.episodes_per_epoch = episodes_per_epoch
        self.step_timeout = step_timeout

    def __iter__(self) -> Iterator[EpisodeBatch]:
        try:
            if self.step_timeout is None:
                batch = self.collector.collect(self.policy, self.episodes_per_epoch)
            else:
                with StepWatchdog(self.step_timeout):  # an env call that never returns stops the run, naming the copy
                    batch = self.collector.collect(self.policy, self.episodes_per_epoch)
        except BaseException:
            # interrupted (SIGTERM, the watchdog) while an async worker was stuck: Lightning does not tear the
            # datamodule down after an exception, and nothing else could stop that worker
            stop_busy_workers(self.collector.envs)
            raise
        yield batch

    def __len__(self) -> int:
        return 1  # one batch per epoch; lets the progress bar show 1/1


class EvalEpisodes:
    """The one batch of ``trainer.validate`` and ``trainer.test``: run ``episodes`` greedy episodes on ``env``,
    episode ``i`` from ``env.reset(seed=seed + i)`` (`pg_lightning.envs.evaluation.run_episodes`).

    A plain class, not a dataclass: Lightning moves a batch to the device with ``apply_to_collection``, which
    deep-copies a dataclass (and so the env); this one it passes as it is.
    """

    def __init__(self, env: gym.Env, episodes: int, seed: int) -> None:
        self.env, self.episodes, self.seed = env, episodes, seed

    def __repr__(self) -> str:
        return f"EvalEpisodes({self.env}, episodes={self.episodes}, seed={self.seed})"


class _Once:
    """A dataloader of one batch (a list would be read by Lightning as a list of dataloaders)."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch

    def __iter__(self) -> Iterator[Any]:
        yield self.batch

    def __len__(self) -> int:
        return 1


class RolloutDataModule(pl.LightningDataModule):
    """Builds the vector env and collector on each process and serves one batch per epoch.

    The policy comes from the trained LightningModule (``trainer.lightning_module.policy``), so
    collection always runs on the live parameters. Under DDP each rank builds its own envs,
    seeded from ``(seed, global_rank)``; ``episodes_per_epoch`` is per rank.

    Args:
        env: the env, built once per copy: an :class:`~pg_lightning.envs.contract.EnvFactory` (its id, kwargs,
            imports and ``env -> env`` wrappers; ``pg_lightning.cli.build.env_block`` makes one of a config's
            ``env`` block), or a gymnasium id (``"CartPole-v1"``, ``"module:EnvId"``).
        episodes_per_epoch: complete episodes collected per epoch (per rank); one gradient step each.
        num_envs: parallel env copies.
        vectorization_mode: ``"sync"``, ``"async"`` or ``"vector_entry_point"`` (the env's own batched
            implementation, e.g. CartPole-v1's ``CartPoleVectorEnv``; see :func:`make_vector_env`).
        seed: the run's seed.
        max_episode_steps: truncate episodes after this many steps, applied to ``env`` (it must agree with the
            env's own ``max_episode_steps`` or ``kwargs["max_episode_steps"]`` where it sets one); ``None``: the
            env's, else its registered time limit, or a cap for envs without one (see :func:`make_vector_env`).
        vector_env: your own ``gymnasium.vector.VectorEnv`` instead of one built from ``env``: an instance, or a
            ``() -> VectorEnv`` callable (a Hydra node with ``_partial_: true``; ``pg_lightning.cli.train.run``
            passes a builder of ``data.vector_env``), built on each process and for each fit. Its single spaces must
            be ``env``'s (checked); ``num_envs`` is its own. It ends its own episodes: ``max_episode_steps`` cannot
            truncate them (one copy of a batched env cannot be reset alone), so setting both is refused, and an
            episode that runs past the cap of :data:`~pg_lightning.envs.registry.EPISODE_CAP` steps stops the
            run with an error.
        step_timeout: seconds an env call (``step``, ``reset``) may take before the run stops with one line
            naming the env copy (`pg_lightning.envs.watchdog.StepWatchdog`); ``None``: no limit. Costs nothing
            per step (a thread samples the main thread's stack). At most 1e6 s: a longer wait overflows
            ``threading.TIMEOUT_MAX`` on some platforms.
        eval_episodes: the greedy episodes of a validation or test (`val_dataloader`), on an env as training
            builds each copy, episode ``i`` from ``reset(seed=seed + i)``.
    """

    def __init__(
        self,
        env: EnvFactory | str,
        episodes_per_epoch: Annotated[int, Interval(ge=1)] = 16,
        num_envs: Annotated[int, Interval(ge=1)] = 8,
        vectorization_mode: Literal["sync", "async", "vector_entry_point"] = "sync",
        seed: Annotated[int, Interval(ge=0, le=2**32 - 1)] = 0,
        max_episode_steps: Annotated[int, Interval(ge=1)] | None = None,
        vector_env: Any = None,
        step_timeout: Annotated[float, Interval(gt=0, le=1e6)] | None = None,
        eval_episodes: Annotated[int, Interval(ge=1)] = 10,
    ) -> None:
        super().__init__()
        check_arguments(type(self), locals())
        self.env = EnvFactory(env) if isinstance(env, str) else env
        own = self.env.max_episode_steps
        if max_episode_steps is not None and own is not None and own != max_episode_steps:
            raise ArgumentError(
                "max_episode_steps",
                f"max_episode_steps={max_episode_steps} and the env's max_episode_steps={own} disagree; set one",
            )
        if max_episode_steps is None:
            max_episode_steps = own
        if vector_env is not None and (max_episode_steps is not None or "max_episode_steps" in self.env.kwargs):
            key = "data.max_episode_steps" if max_episode_steps is not None else "env.kwargs.max_episode_steps"
            raise ConfigError(
                f"{key}: cannot truncate the episodes of data.vector_env (one copy of a batched env cannot be reset "
                "alone); give the time limit to the batched env itself and drop this key"
            )
        self.episodes_per_epoch = episodes_per_epoch
        self.num_envs = num_envs
        self.vectorization_mode = vectorization_mode
        self.seed = seed
        self.max_episode_steps = max_episode_steps
        self.vector_env = vector_env
        self.step_timeout = None if step_timeout is None else float(step_timeout)
        self.eval_episodes = eval_episodes
        self._eval_env: gym.Env | None = None
        self._envs: gym.vector.VectorEnv | None = None
        self.collector: EpisodeCollector | None = None
        self._restored: dict[str, Any] = {}

    def build_envs(self) -> gym.vector.VectorEnv:
        """Build this process's vector env now, so that a mistake in it is a ConfigError before ``fit``
        (``pg_lightning.cli.train.run`` calls it); ``setup`` then uses it rather than building another."""
        if self._envs is None:
            self._envs = self._make_envs()
        return self._envs

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.collector is None:
            envs, self._envs = (self._envs if self._envs is not None else self._make_envs()), None
            self.collector = EpisodeCollector(
                envs,
                seed=self.seed,
                rank=self.trainer.global_rank if self.trainer else 0,
                # make_vector_env's copies carry their time limit (data.max_episode_steps may exceed the cap);
                # a batched env of one's own must end its episodes: one that runs past the cap stops the run
                episode_cap=EPISODE_CAP if self.vector_env is not None else None,
            )
            if self._restored:
                self.collector.load_state_dict(self._restored)

    def _make_envs(self) -> gym.vector.VectorEnv:
        if self.vector_env is not None:
            return self._user_vector_env()
        env = self.env
        return make_vector_env(
            env.env_id,
            self.num_envs,
            self.vectorization_mode,
            env.kwargs,
            self.max_episode_steps,
            imports=env.imports,
            wrappers=env.wrappers,
        )

    def _user_vector_env(self) -> gym.vector.VectorEnv:
        """``data.vector_env``, built and checked against ``env.id`` (a ConfigError naming ``data.vector_env``)."""
        env = self.env
        if env.wrappers:
            raise ConfigError(
                "env.wrappers: single-env wrappers cannot wrap data.vector_env (training would run without them, "
                "evaluation with them); wrap your vector env itself (gymnasium.wrappers.vector) and drop env.wrappers"
            )
        import_modules(env.imports)
        spec = self.vector_env
        if isinstance(spec, gym.vector.VectorEnv) and getattr(spec, "closed", False):
            raise ConfigError(
                "data.vector_env: the VectorEnv instance given was closed (a datamodule closes its envs at the end of "
                "fit); give a callable that builds a new one for each fit (in config: _partial_: true)"
            )
        try:
            if isinstance(spec, gym.vector.VectorEnv):
                envs = spec
            elif callable(spec):
                envs = spec()
            else:
                raise ConfigError(
                    f"data.vector_env: expected a gymnasium.vector.VectorEnv or a callable that builds one, got a "
                    f"{type(spec).__name__} (a config entry is built by pg_lightning.cli.train.run, or by Hydra's "
                    "instantiate of the data node)"
                )
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError(f"data.vector_env: building it raised {type(err).__name__}: {err}") from err
        check_vector_env(envs, env.env_id, env.kwargs, env.imports)
        if isinstance(envs.single_action_space, gym.spaces.Box):
            envs = gym.wrappers.vector.ClipAction(envs)
        return envs

    def train_dataloader(self) -> EpisodeDataset:
        """The epoch's one batch, as an iterable that Lightning loops over as it is: no ``DataLoader`` around it, since
        collection must run on the live policy in this process (no workers, no sampler, no collation), so Lightning's
        hints about workers and about ``__len__`` with multi-process loading, which it gives for a ``DataLoader``, do
        not arise (and no warning filter is needed)."""
        assert self.collector is not None and self.trainer is not None, "setup() builds the collector"
        policy = cast(nn.Module, self.trainer.lightning_module.policy)  # ReinforceModule's
        return EpisodeDataset(self.collector, policy, self.episodes_per_epoch, self.step_timeout)

    def val_dataloader(self) -> Iterable[EvalEpisodes]:
        """``trainer.validate`` (and ``fit``, as Lightning validates: every ``check_val_every_n_epoch`` epochs,
        after a sanity check, unless ``limit_val_batches=0`` as ``conf/train.yaml`` sets): one `EvalEpisodes` of
        ``eval_episodes`` greedy episodes, logged as ``eval/*`` by `ReinforceModule.validation_step`."""
        return self._eval_batches()

    def test_dataloader(self) -> Iterable[EvalEpisodes]:
        """``trainer.test``: as `val_dataloader`."""
        return self._eval_batches()

    def _eval_batches(self) -> Iterable[EvalEpisodes]:
        if self._eval_env is None:
            env = self.env
            self._eval_env = make_eval_env(
                env.env_id, env.kwargs, None, self.max_episode_steps, env.imports, env.wrappers
            )
        return _Once(EvalEpisodes(self._eval_env, self.eval_episodes, self.seed))

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: the collector's epoch, which fixes its seeds (see EpisodeCollector).

        Between two ``fit`` calls (the collector closed), the position the last one reached.
        """
        return self.collector.state_dict() if self.collector is not None else dict(self._restored)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = dict(state)
        if self.collector is not None:
            self.collector.load_state_dict(state)

    def teardown(self, stage: str) -> None:
        """Close the envs, keeping the collector's position: a later ``fit`` with this datamodule
        continues the data stream where this one stopped (new seeds), unless it resumes a checkpoint,
        whose position Lightning loads after ``setup``."""
        if self.collector is not None:
            self._restored = self.collector.state_dict()
            self.collector.close()
            self.collector = None
        if self._eval_env is not None:
            self._eval_env.close()
            self._eval_env = None
