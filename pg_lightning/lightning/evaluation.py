"""Evaluation during training: `EvalCallback` (``callbacks=eval``) runs episodes and logs ``eval/*`` metrics.

The episodes themselves are `pg_lightning.envs.evaluation`'s (`run_episodes` on an env of the
callback's own); this module adds the Lightning hook, the logging, and the optional GIF of the first
episode for TensorBoard.

Layer: lightning (may import core and envs).
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import gymnasium as gym
import numpy as np
import pytorch_lightning as pl
from torch import nn

from pg_lightning.core.arguments import Interval, check_arguments
from pg_lightning.core.errors import ArgumentError, ConfigError
from pg_lightning.envs.contract import EnvFactory
from pg_lightning.envs.evaluation import episode_stats, make_eval_env, run_episodes
from pg_lightning.envs.registry import env_spec
from pg_lightning.lightning.module import reinforce_module

__all__ = ["EvalCallback"]


class EvalCallback(pl.Callback):
    """Every ``every_n_epochs`` epochs, run ``episodes`` evaluation episodes on an env of its own and log:

    - ``eval/return_mean``, ``eval/return_std`` (population std), ``eval/length_mean``

    in the epoch's row (`ReinforceModule.log_scalars`), after the epoch's optimizer step, in epochs
    ``every_n_epochs - 1, 2 * every_n_epochs - 1, ...`` (0-based, as ``metrics.csv`` counts).
    Lightning runs this hook before those of EarlyStopping and ModelCheckpoint whatever the order
    of the callbacks, so both can monitor ``eval/return_mean``. With ``every_n_epochs > 1`` the
    metric is missing in the other epochs: give EarlyStopping ``strict: false`` (it then sees the
    last evaluation's value between evaluations).

    Episode ``i`` of every evaluation starts from ``reset(seed=seed + i)``, which also seeds the env's
    action and observation spaces (an env that samples them repeats itself): each evaluation sees
    the same start states, so successive evaluations differ by the policy only. Sampled actions
    (``greedy=False``) come from a generator of its own: the training batches are exactly those
    of a run without this callback. Under DDP every rank runs the same episodes with the same
    (synchronised) weights and seeds, so every rank logs the same numbers (``sync_dist`` averages
    them all the same).

    Args:
        env: the env to evaluate on: an `EnvFactory` or a gymnasium id; ``None`` (the default, and what
            ``conf/callbacks/eval.yaml`` gives): the training env, the datamodule's (`RolloutDataModule.env`),
            with its kwargs, imports and wrappers.
        episodes: complete episodes per evaluation.
        every_n_epochs: evaluate after every n-th epoch.
        greedy: deterministic actions (argmax / the Gaussian's mean), else sampled.
        seed: first episode's env seed; also seeds the action sampler.
        max_episode_steps: cap on episode length (``None``: the env's own time limit, as in
            :func:`~pg_lightning.envs.evaluation.make_eval_env`; use the training run's
            ``data.max_episode_steps`` if it sets one). A value replaces a
            ``max_episode_steps`` of the env's kwargs, as in :func:`~pg_lightning.envs.evaluation.make_eval_env`.
        tensorboard_video: also log the first episode of each evaluation as an animated GIF to
            every ``TensorBoardLogger`` of the trainer (tag ``eval/video``, the Images tab), on
            rank 0. Needs an env that renders ``rgb_array`` frames (``pygame`` for CartPole) and
            Pillow; frames are halved until at most 320 pixels wide.
    """

    def __init__(
        self,
        env: EnvFactory | str | None = None,
        episodes: Annotated[int, Interval(ge=1)] = 10,
        every_n_epochs: Annotated[int, Interval(ge=1)] = 1,
        greedy: bool = True,
        seed: Annotated[int, Interval(ge=0, le=2**32 - 1)] = 0,
        max_episode_steps: Annotated[int, Interval(ge=1)] | None = None,
        tensorboard_video: bool = False,
    ) -> None:
        check_arguments(type(self), locals())
        self.factory = EnvFactory(env) if isinstance(env, str) else env
        if self.factory is not None:
            try:  # an unknown id or import now, not at the first evaluation
                env_spec(self.factory.env_id, self.factory.imports, keys=("env", "env.imports"))
            except ConfigError as err:
                raise ArgumentError("env", str(err)) from err
        self.episodes = episodes
        self.every_n_epochs = every_n_epochs
        self.greedy = greedy
        self.seed = seed
        self.max_episode_steps = max_episode_steps
        self.tensorboard_video = bool(tensorboard_video)
        self.env: gym.Env | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Without an env of its own, the training env: the datamodule's (`RolloutDataModule.env`)."""
        if self.factory is None:
            self.factory = getattr(getattr(trainer, "datamodule", None), "env", None)
            if not isinstance(self.factory, EnvFactory):
                raise ConfigError(
                    "EvalCallback: no env given, and the datamodule has none to share (a RolloutDataModule's env): "
                    "pass EvalCallback(env=...)"
                )

    def _env(self) -> gym.Env:
        if self.env is None:
            assert self.factory is not None, "setup() sets the env"
            self.env = make_eval_env(
                self.factory.env_id,
                self.factory.kwargs,
                render_mode="rgb_array" if self.tensorboard_video else None,
                max_episode_steps=self.max_episode_steps,
                imports=self.factory.imports,
                wrappers=self.factory.wrappers,
            )
        return self.env

    def should_evaluate(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) ends with an evaluation."""
        return (epoch + 1) % self.every_n_epochs == 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Evaluate (in the epochs `should_evaluate` picks) and log ``eval/*``, and the GIF if asked."""
        if not self.should_evaluate(trainer.current_epoch):
            return
        frames: list[np.ndarray] | None = None
        tensorboards = [lg for lg in trainer.loggers if isinstance(lg, pl.loggers.TensorBoardLogger)]
        if self.tensorboard_video and tensorboards and trainer.is_global_zero:
            frames = []
        policy = cast(nn.Module, pl_module.policy)  # a ReinforceModule's policy network
        returns, lengths = run_episodes(policy, self._env(), self.episodes, self.greedy, self.seed, frames)
        stats = episode_stats(returns, lengths)
        scalars = {f"eval/{name}": stats[name] for name in ("return_mean", "return_std", "length_mean")}
        reinforce_module(pl_module).log_scalars(scalars, prog_bar=["eval/return_mean"], mean=True)
        if frames:
            gif, height, width = _gif(frames, fps=self._env().metadata.get("render_fps") or 30)
            for logger in tensorboards:
                _add_gif(logger.experiment, "eval/video", gif, height, width, trainer.global_step)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Close the callback's env."""
        if self.env is not None:
            self.env.close()
            self.env = None


def _gif(frames: list[np.ndarray], fps: float, max_width: int = 320) -> tuple[bytes, int, int]:
    """Encode ``(H, W, 3)`` uint8 frames as an animated GIF (halved until at most ``max_width`` wide)."""
    import io

    from PIL import Image

    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    width, height = images[0].size
    while width > max_width:
        width, height = width // 2, height // 2
    images = [im.resize((width, height)) for im in images]
    buffer = io.BytesIO()
    # GIF delays are in 10 ms units; browsers play delays under 20 ms slowly, hence the floor
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=max(20, round(1000 / fps)), loop=0
    )
    return buffer.getvalue(), height, width


def _add_gif(writer: Any, tag: str, gif: bytes, height: int, width: int, step: int) -> None:
    """Add an encoded GIF to a TensorBoard ``SummaryWriter`` as an image summary.

    This is what ``SummaryWriter.add_video`` writes, without its moviepy encoder: torch's
    ``add_video`` imports ``moviepy.editor``, which moviepy 2 removed (it then prints a warning
    and logs nothing), so the GIF is encoded with Pillow here.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    writer.flush()
