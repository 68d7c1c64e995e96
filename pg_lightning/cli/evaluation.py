"""Evaluate trained policies: from a checkpoint (``evaluate``, the CLI) and during training (``EvalCallback``).

    python evaluate.py ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt            # 10 greedy episodes
    python evaluate.py ckpt_path=... episodes=100 greedy=false seed=1 video=true

The env and the network are rebuilt from the training config saved in the checkpoint
(``hyper_parameters.config``), so nothing about them is retyped. Episode ``i`` starts from
``env.reset(seed=seed + i)``; greedy actions are the policy's mode (argmax for discrete actions,
the Gaussian's mean for Box actions, squashed into the box for ``network.action_bounds=tanh``),
stochastic ones are drawn as in training, from a ``torch.Generator`` seeded with ``seed``. The same
numbers in, the same episodes out.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.distributions import Distribution

import pg_lightning.envs.tabular_envs  # noqa: F401  (registers the tabular envs)
from pg_lightning.cli.validation import check_evaluate_config, load_checkpoint
from pg_lightning.conf import CONFIG_PATH
from pg_lightning.core import distributions
from pg_lightning.core.errors import ConfigError, config_error_in
from pg_lightning.core.policies import draw
from pg_lightning.core.recurrent import is_recurrent
from pg_lightning.core.tree import map_tree
from pg_lightning.envs.env_factory import EnvFactory, env_spec, episode_limit
from pg_lightning.envs.from_config import as_wrappers, env_factory, to_plain, warn_stateful_wrappers, wrapper_specs
from pg_lightning.envs.networks import build_policy

log = logging.getLogger(__name__)

__all__ = [
    "EvalCallback",
    "evaluate",
    "format_summary",
    "greedy_action",
    "load_checkpoint",
    "load_policy",
    "main",
    "make_eval_env",
    "run_episodes",
]

SUMMARY_FILE = "evaluation.json"
POLICY_FACTORY = "pg_lightning.envs.networks.make_policy"
# Targets that evaluation calls from a checkpoint's config without trust_checkpoint_code.
TRUSTED_TARGETS = ("pg_lightning.", "gymnasium.")


# ---------------------------------------------------------------------------------------------
# actions and episodes


def greedy_action(dist: Distribution) -> Tensor:
    """The action the env receives from a deterministic policy: :func:`pg_lightning.core.distributions.greedy_action`
    (argmax, per-component argmax, ``p > 0.5``, the mean or the squashed mean), or a ConfigError naming ``greedy``."""
    try:
        return distributions.greedy_action(dist)
    except TypeError:
        raise ConfigError(f"greedy: no greedy action for a {type(dist).__name__} policy; use greedy=false") from None


def _env_action(dist: Distribution, greedy: bool, generator: torch.Generator) -> Tensor:
    return greedy_action(dist) if greedy else draw(dist, generator)[1]  # as the collector draws


def make_eval_env(
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    render_mode: str | None = None,
    max_episode_steps: int | None = None,
    imports: Sequence[str] = (),
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
) -> gym.Env:
    """One env as training builds each copy (:class:`~pg_lightning.envs.env_factory.EnvFactory`), Box actions clipped.

    ``imports`` and ``wrappers`` are the run's ``env.imports`` and (built) ``env.wrappers``.
    ``max_episode_steps`` adds (or replaces) the time limit, an ``env_kwargs["max_episode_steps"]``
    included (it is dropped); ``None`` keeps that kwarg's limit, else the env's registered one,
    or, for an env registered without one, caps episodes at
    :data:`pg_lightning.envs.env_factory.EPISODE_CAP` steps, as training does: no episode runs forever.
    """
    env_kwargs = dict(env_kwargs or {})
    if max_episode_steps is not None:  # the evaluation's own limit wins over the training env's kwarg
        env_kwargs.pop("max_episode_steps", None)
    # the rule training uses
    kwargs, steps, _ = episode_limit(env_id, env_kwargs, max_episode_steps, imports, key="max_episode_steps")
    env = EnvFactory(env_id, kwargs, tuple(imports), tuple(wrappers), steps, render_mode)()
    if isinstance(env.action_space, gym.spaces.Box):
        env = gym.wrappers.ClipAction(env)  # as make_vector_env: the env gets actions inside the bounds
    return env


def run_episodes(
    policy: nn.Module,
    env: gym.Env,
    episodes: int,
    greedy: bool = True,
    seed: int = 0,
    frames: list[np.ndarray] | None = None,
) -> tuple[list[float], list[int]]:
    """Run ``episodes`` complete episodes of ``policy`` on ``env``; return their returns and lengths.

    Episode ``i`` starts from ``env.reset(seed=seed + i)``. Greedy actions: :func:`greedy_action`;
    otherwise sampled as in training, from a private ``torch.Generator`` seeded with ``seed``
    A recurrent policy acts through ``step``, its state restarting from zero with each episode;
    (the global RNG is not touched, so evaluating during training changes nothing else). The
    policy runs in eval mode, without gradient, on its own device, and is put back as it was.
    ``frames``: if a list, ``env.render()`` of the first episode (every step) is appended to it.
    """
    generator = torch.Generator().manual_seed(int(seed))
    device = next(policy.parameters()).device
    recurrent = is_recurrent(policy)
    was_training = policy.training
    policy.eval()
    returns: list[float] = []
    lengths: list[int] = []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=int(seed) + i)
            record = frames is not None and i == 0
            if record:
                frames.append(env.render())
            total, length, done = 0.0, 0, False
            state = policy.initial_state(1) if recurrent else None  # a recurrent policy starts each episode at zero
            while not done:
                with torch.inference_mode():
                    batch = map_tree(lambda x: torch.as_tensor(x, device=device).unsqueeze(0), obs)
                    if recurrent:
                        dist, state = policy.step(batch, state)
                    else:
                        dist = policy(batch)
                    action = _env_action(dist, greedy, generator)[0].cpu().numpy()
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                length += 1
                done = bool(terminated or truncated)
                if record:
                    frames.append(env.render())
            returns.append(total)
            lengths.append(length)
    finally:
        policy.train(was_training)
    return returns, lengths


def _stats(returns: Sequence[float], lengths: Sequence[int]) -> dict[str, float]:
    """Mean, population std (ddof=0), min and max of the returns; mean and std of the lengths."""
    r, n = np.asarray(returns, dtype=np.float64), np.asarray(lengths, dtype=np.float64)
    return {
        "return_mean": float(r.mean()),
        "return_std": float(r.std()),
        "return_min": float(r.min()),
        "return_max": float(r.max()),
        "length_mean": float(n.mean()),
        "length_std": float(n.std()),
    }


# ---------------------------------------------------------------------------------------------
# checkpoints


def load_policy(
    ckpt_path: str | os.PathLike | None,
    checkpoint: dict[str, Any] | None = None,
    trust_checkpoint_code: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained policy (CPU, eval mode) and the training config of a checkpoint.

    The network is rebuilt from the config's ``network`` block and the spaces of the env as
    training built it (``env.id``, ``env.kwargs``, ``env.imports``, ``env.wrappers``), then gets
    the checkpoint's ``policy.*`` weights (strictly: every weight must fit).

    What runs: the checkpoint file is read with ``torch.load(weights_only=True)``, so it cannot
    run code by unpickling. Its config names code, though: ``env.imports`` and a ``module:EnvId``
    id are imported (as gymnasium does for any id), and ``_target_`` entries are called. Targets of
    pg_lightning and gymnasium (``make_policy``, gymnasium's wrappers) are called as they are;
    any other (a user's network or wrapper) only with ``trust_checkpoint_code=True``, since
    calling a target read from a file runs whatever it names. ``checkpoint``: an already loaded
    :func:`load_checkpoint` result.
    """
    checkpoint = load_checkpoint(ckpt_path) if checkpoint is None else checkpoint
    config = checkpoint["hyper_parameters"]["config"]
    env_cfg = config["env"]
    network = dict(config["network"])
    network.setdefault("_target_", POLICY_FACTORY)
    network["_partial_"] = True
    # the wrappers as they will be instantiated (a bare class path becomes a _target_ too)
    untrusted = _foreign_targets({"network": network, "env.wrappers": wrapper_specs(env_cfg.get("wrappers") or [])})
    if untrusted and not trust_checkpoint_code:
        raise ConfigError(
            f"trust_checkpoint_code: the checkpoint's config names code outside pg_lightning and gymnasium "
            f"({', '.join(untrusted)}); calling a target read from a file runs whatever it names: pass "
            "trust_checkpoint_code=true if you trust this checkpoint"
        )
    env = env_factory(env_cfg, (config.get("data") or {}).get("max_episode_steps"))()  # as train.py's probe
    try:  # the spaces as train.py saw them
        policy = build_policy(network, env.observation_space, env.action_space)
    finally:
        env.close()
    weights = {k.removeprefix("policy."): v for k, v in checkpoint["state_dict"].items() if k.startswith("policy.")}
    try:
        policy.load_state_dict(weights)
    except RuntimeError as err:
        raise ConfigError(f"ckpt_path: the policy weights do not fit the network of its config: {err}") from err
    return policy.eval(), config


def _foreign_targets(tree: Any, where: str = "") -> list[str]:
    """``key=target`` for every ``_target_`` in ``tree`` outside :data:`TRUSTED_TARGETS`."""
    found = []
    if isinstance(tree, dict):
        target = tree.get("_target_")
        if isinstance(target, str) and not target.startswith(TRUSTED_TARGETS):
            found.append(f"{where or 'config'}._target_={target}")
        for key, value in tree.items():
            if key != "_target_":
                found += _foreign_targets(value, f"{where}.{key}" if where else str(key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found += _foreign_targets(value, f"{where}[{i}]")
    return found


# ---------------------------------------------------------------------------------------------
# evaluate: the function behind the CLI


def _check_int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def evaluate(
    ckpt_path: str | os.PathLike | None,
    episodes: int = 10,
    greedy: bool = True,
    seed: int = 0,
    video: bool = False,
    output_dir: str | os.PathLike | None = None,
    max_episode_steps: int | None = None,
    trust_checkpoint_code: bool = False,
) -> dict[str, Any]:
    """Evaluate the policy of a ``train.py`` checkpoint on its own env; return the summary.

    Args:
        ckpt_path: a checkpoint written by ``train.py`` (``checkpoints/last.ckpt`` or ``best.ckpt``).
        episodes: complete episodes to run.
        greedy: deterministic actions (:func:`greedy_action`); false samples as in training.
        seed: episode ``i`` starts from ``env.reset(seed=seed + i)``; sampled actions come from a
            ``torch.Generator`` seeded with ``seed``.
        video: record every episode to ``<output_dir>/videos/eval-episode-<i>.mp4``
            (gymnasium's ``RecordVideo``: needs ``moviepy``, and ``pygame`` for the classic-control envs).
        output_dir: where ``evaluation.json`` (this summary) and ``videos/`` go; ``None`` writes nothing.
        max_episode_steps: cap on episode length; ``None``: the training run's limit, its
            ``data.max_episode_steps`` or ``env.kwargs.max_episode_steps`` if it set one, else the
            env's own time limit (or pg_lightning's cap for an env registered without one, as in
            training). A value given here is this evaluation's explicit choice: it replaces the
            training run's limit, ``env.kwargs.max_episode_steps`` included (dropped from the
            kwargs the env is built with; the summary's ``env_kwargs`` still show the checkpoint's).
        trust_checkpoint_code: call ``_target_`` entries of the checkpoint's config that name code
            outside pg_lightning and gymnasium (a user's network or wrappers); see :func:`load_policy`.

    Returns:
        ``return_mean``, ``return_std`` (population std), ``return_min``, ``return_max``,
        ``length_mean``, ``length_std``, the per-episode ``returns`` and ``lengths``, the settings,
        the checkpoint's ``epoch`` and ``global_step``, ``summary_path`` and ``videos`` (paths or None).
    """
    episodes = _check_int("episodes", episodes, 1)
    seed = _check_int("seed", seed, 0)
    if max_episode_steps is not None:
        max_episode_steps = _check_int("max_episode_steps", max_episode_steps, 1)
    if not isinstance(greedy, bool):
        raise ConfigError(f"greedy must be true or false, got {greedy!r}")
    if video and output_dir is None:
        raise ConfigError("video: video=true needs an output_dir for the files")
    if not isinstance(trust_checkpoint_code, bool):
        raise ConfigError(f"trust_checkpoint_code must be true or false, got {trust_checkpoint_code!r}")
    checkpoint = load_checkpoint(ckpt_path)
    policy, config = load_policy(ckpt_path, checkpoint, trust_checkpoint_code)
    env_id, env_kwargs = config["env"]["id"], dict(config["env"].get("kwargs") or {})
    imports = tuple(config["env"].get("imports") or ())
    wrappers = as_wrappers(config["env"].get("wrappers"))
    if max_episode_steps is None:  # the training episodes' cap, if the run set one
        max_episode_steps = (config.get("data") or {}).get("max_episode_steps")
    out = Path(output_dir) if output_dir is not None else None
    video_dir = out / "videos" if video else None
    env = (
        _video_env(env_id, env_kwargs, max_episode_steps, video_dir, seed, imports, wrappers)
        if video
        else make_eval_env(env_id, env_kwargs, max_episode_steps=max_episode_steps, imports=imports, wrappers=wrappers)
    )
    warn_stateful_wrappers(env, env_id)
    time_limit = env.spec.max_episode_steps if env.spec is not None else None
    try:
        returns, lengths = run_episodes(policy, env, episodes, greedy=greedy, seed=seed)
    finally:
        env.close()  # RecordVideo writes the last episode's file here
    summary: dict[str, Any] = {
        "ckpt_path": str(Path(ckpt_path).resolve()),
        "checkpoint_epoch": checkpoint.get("epoch"),
        "checkpoint_global_step": checkpoint.get("global_step"),
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "episodes": episodes,
        "greedy": greedy,
        "seed": seed,
        "max_episode_steps": time_limit,  # the time limit in force
        **_stats(returns, lengths),
        "returns": returns,
        "lengths": lengths,
        "videos": sorted(str(p) for p in video_dir.glob("*.mp4")) if video_dir is not None else None,
        "summary_path": None,
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        summary["summary_path"] = str((out / SUMMARY_FILE).resolve())
        Path(summary["summary_path"]).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _video_env(
    env_id: str,
    env_kwargs: dict[str, Any],
    max_episode_steps: int | None,
    video_dir: Path,
    seed: int,
    imports: Sequence[str] = (),
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
) -> gym.Env:
    """``make_eval_env`` rendering ``rgb_array`` frames, under gymnasium's ``RecordVideo`` (every episode)."""
    from gymnasium.error import DependencyNotInstalled

    hint = 'install the video extra: pip install -e ".[video]" (moviepy, pygame-ce)'
    try:
        env = make_eval_env(
            env_id,
            env_kwargs,
            render_mode="rgb_array",
            max_episode_steps=max_episode_steps,
            imports=imports,
            wrappers=wrappers,
        )
    except (ValueError, gym.error.Error) as err:
        raise ConfigError(f"video: {env_id} cannot render rgb_array frames ({err})") from err
    try:
        env.reset(seed=seed)  # a first frame now, so that a missing renderer fails before any episode
        if not isinstance(env.render(), np.ndarray):
            raise ConfigError(f"video: {env_id} renders no rgb_array frames")
        return gym.wrappers.RecordVideo(env, str(video_dir), episode_trigger=lambda _: True, name_prefix="eval")
    except DependencyNotInstalled as err:
        env.close()
        raise ConfigError(f"video: {err}; {hint}") from err
    except BaseException:
        env.close()
        raise


def format_summary(summary: dict[str, Any]) -> str:
    """The lines the CLI prints."""
    kind = "greedy" if summary["greedy"] else "stochastic"
    lines = [
        (
            f"{summary['env_id']}, checkpoint epoch {summary['checkpoint_epoch']} ({summary['ckpt_path']}): "
            f"{summary['episodes']} {kind} episodes from seed {summary['seed']}"
        ),
        (
            f"return {summary['return_mean']:.2f} ± {summary['return_std']:.2f} "
            f"(min {summary['return_min']:.2f}, max {summary['return_max']:.2f}), "
            f"length {summary['length_mean']:.1f} ± {summary['length_std']:.1f}"
        ),
    ]
    if summary.get("summary_path"):
        lines.append(f"summary: {summary['summary_path']}")
    if summary.get("videos") is not None:
        videos = summary["videos"]
        where = str(Path(videos[0]).parent) if videos else "none written"
        lines.append(f"videos: {where} ({len(videos)} files)")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    """CLI: evaluate, print mean ± std of the return and length, write the JSON summary.

    Returns the mean return (for sweepers). A config mistake prints one line naming the key and
    exits with status 2, as in ``train.py``; in a multirun it is raised, failing that job only.
    """
    try:
        check_evaluate_config(cfg)  # every key of conf/evaluate.yaml, before anything is built
        if cfg.get("torch_num_threads") is not None:
            torch.set_num_threads(int(cfg.torch_num_threads))
        summary = evaluate(
            ckpt_path=cfg.ckpt_path,
            episodes=cfg.episodes,
            greedy=cfg.greedy,
            seed=cfg.seed,
            video=cfg.video,
            output_dir=cfg.output_dir,
            max_episode_steps=cfg.max_episode_steps,
            trust_checkpoint_code=cfg.get("trust_checkpoint_code", False),
        )
    except Exception as err:
        config_error = config_error_in(err)
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if config_error is None or multirun or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"Config error: {config_error}", file=sys.stderr)
        sys.exit(2)
    log.info(format_summary(summary))
    return summary["return_mean"]


# ---------------------------------------------------------------------------------------------
# during training


class EvalCallback(pl.Callback):
    """Every ``every_n_epochs`` epochs, run ``episodes`` evaluation episodes on an env of its own and log:

    - ``eval/return_mean``, ``eval/return_std`` (population std), ``eval/length_mean``

    with ``pl_module.log(on_epoch=True)``, after the epoch's optimizer step, in epochs
    ``every_n_epochs - 1, 2 * every_n_epochs - 1, ...`` (0-based, as ``metrics.csv`` counts).
    Lightning runs this hook before those of EarlyStopping and ModelCheckpoint whatever the order
    of the callbacks, so both can monitor ``eval/return_mean``. With ``every_n_epochs > 1`` the
    metric is missing in the other epochs: give EarlyStopping ``strict: false`` (it then sees the
    last evaluation's value between evaluations).

    Episode ``i`` of every evaluation starts from ``reset(seed=seed + i)``: each evaluation sees
    the same start states, so successive evaluations differ by the policy only. Sampled actions
    (``greedy=False``) come from a generator of its own: the training batches are exactly those
    of a run without this callback. Under DDP every rank runs the same episodes with the same
    (synchronised) weights and seeds, so every rank logs the same numbers (``sync_dist`` averages
    them all the same).

    Args:
        env_id: the env to evaluate on (usually the training env, ``${env.id}``).
        env_kwargs: its keyword arguments (``${env.kwargs}``).
        episodes: complete episodes per evaluation.
        every_n_epochs: evaluate after every n-th epoch.
        greedy: deterministic actions (argmax / the Gaussian's mean), else sampled.
        seed: first episode's env seed; also seeds the action sampler.
        max_episode_steps: cap on episode length (``None``: the env's own time limit, as in
            :func:`make_eval_env`; use the training run's ``data.max_episode_steps`` if it sets one).
            A value replaces an ``env_kwargs`` ``max_episode_steps``, as in :func:`make_eval_env`.
        tensorboard_video: also log the first episode of each evaluation as an animated GIF to
            every ``TensorBoardLogger`` of the trainer (tag ``eval/video``, the Images tab), on
            rank 0. Needs an env that renders ``rgb_array`` frames (``pygame`` for CartPole) and
            Pillow; frames are halved until at most 320 pixels wide.
        imports: modules to import before the env is built (``${env.imports}``).
        wrappers: ``env -> env`` callables applied in order, or ``env.wrappers`` config entries
            (``${env.wrappers}``: the node is not instantiated recursively), so evaluation sees the
            env as training does.
    """

    def __init__(
        self,
        env_id: str,
        env_kwargs: dict[str, Any] | None = None,
        episodes: int = 10,
        every_n_epochs: int = 1,
        greedy: bool = True,
        seed: int = 0,
        max_episode_steps: int | None = None,
        tensorboard_video: bool = False,
        imports: Sequence[str] = (),
        wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
    ) -> None:
        key = "callbacks.evaluation"
        try:
            env_spec(env_id, imports)
        except ConfigError as err:  # env.id / env.imports[i]: this callback's env_id / imports[i]
            message = re.sub(r"^env\.id", "env_id", re.sub(r"^env\.imports", "imports", str(err)))
            raise ConfigError(f"{key}.{message}") from err
        self.env_id = env_id
        self.imports = tuple(imports or ())
        self.wrappers = as_wrappers(wrappers, f"{key}.wrappers")
        self.env_kwargs = dict(to_plain(env_kwargs) or {})
        self.episodes = _check_int(f"{key}.episodes", episodes, 1)
        self.every_n_epochs = _check_int(f"{key}.every_n_epochs", every_n_epochs, 1)
        self.greedy = bool(greedy)
        self.seed = _check_int(f"{key}.seed", seed, 0)
        self.max_episode_steps = (
            None if max_episode_steps is None else _check_int(f"{key}.max_episode_steps", max_episode_steps, 1)
        )
        self.tensorboard_video = bool(tensorboard_video)
        self.env: gym.Env | None = None

    def _env(self) -> gym.Env:
        if self.env is None:
            self.env = make_eval_env(
                self.env_id,
                self.env_kwargs,
                render_mode="rgb_array" if self.tensorboard_video else None,
                max_episode_steps=self.max_episode_steps,
                imports=self.imports,
                wrappers=self.wrappers,
            )
        return self.env

    def should_evaluate(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) ends with an evaluation."""
        return (epoch + 1) % self.every_n_epochs == 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.should_evaluate(trainer.current_epoch):
            return
        frames: list[np.ndarray] | None = None
        tensorboards = [lg for lg in trainer.loggers if isinstance(lg, pl.loggers.TensorBoardLogger)]
        if self.tensorboard_video and tensorboards and trainer.is_global_zero:
            frames = []
        returns, lengths = run_episodes(pl_module.policy, self._env(), self.episodes, self.greedy, self.seed, frames)
        stats = _stats(returns, lengths)
        log = {"on_step": False, "on_epoch": True, "batch_size": 1, "sync_dist": True}
        pl_module.log("eval/return_mean", stats["return_mean"], prog_bar=True, **log)
        pl_module.log("eval/return_std", stats["return_std"], **log)
        pl_module.log("eval/length_mean", stats["length_mean"], **log)
        if frames:
            gif, height, width = _gif(frames, fps=self._env().metadata.get("render_fps") or 30)
            for logger in tensorboards:
                _add_gif(logger.experiment, "eval/video", gif, height, width, trainer.global_step)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
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


if __name__ == "__main__":
    main()
