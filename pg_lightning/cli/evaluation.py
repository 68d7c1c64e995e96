"""Evaluate the policy of a checkpoint: ``evaluate`` and the ``evaluate.py`` / ``pg-evaluate`` CLI.

    python evaluate.py ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt            # 10 greedy episodes
    python evaluate.py ckpt_path=... episodes=100 greedy=false seed=1 video=true

The env and the network are rebuilt from the training config saved in the checkpoint
(``hyper_parameters.config``), so nothing about them is retyped. Episode ``i`` starts from
``env.reset(seed=seed + i)``; greedy actions are the policy's mode (argmax for discrete actions,
the Gaussian's mean for Box actions, squashed into the box for ``network.action_bounds=tanh``),
stochastic ones are drawn as in training, from a ``torch.Generator`` seeded with ``seed``. The same
numbers in, the same episodes out.

The episodes themselves are `pg_lightning.envs.evaluation`'s; evaluation during training is
`pg_lightning.lightning.evaluation.EvalCallback` (``callbacks=eval``).

Layer: cli (Hydra; may import every layer).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from torch import nn

from pg_lightning.cli.build import as_wrappers, build_policy
from pg_lightning.cli.checkpoints import (
    TRUSTED_PACKAGES,
    check_checkpoint_code,
    check_rebuilt_fits,
    load_checkpoint,
    saved_env_spaces,
)
from pg_lightning.cli.preflight import check_evaluate_config
from pg_lightning.cli.schema import SEED
from pg_lightning.conf import CONFIG_PATH
from pg_lightning.core.arguments import Interval, check_arguments
from pg_lightning.core.errors import ArgumentError, ConfigError, config_error_in
from pg_lightning.envs.contract import warn_stateful_wrappers
from pg_lightning.envs.evaluation import episode_stats, make_eval_env, make_video_env, run_episodes

log = logging.getLogger(__name__)

__all__ = ["evaluate", "format_summary", "load_checkpoint", "load_policy", "main"]

SUMMARY_FILE = "evaluation.json"
POLICY_FACTORY = "pg_lightning.envs.networks.make_policy"
# The packages a checkpoint's targets are looked up in without trust_checkpoint_code (0.1's name); what they
# may resolve to is pg_lightning.cli.checkpoints's allowlist.
TRUSTED_TARGETS = TRUSTED_PACKAGES


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
    id are imported (as gymnasium does for any id), and the ``_target_`` entries of ``network``
    and ``env.wrappers`` are called, at any depth. Without ``trust_checkpoint_code=True``, every
    one of them is first resolved to the object it names and checked against the allowlist of
    `pg_lightning.cli.checkpoints` (pg_lightning's network factories and wrappers, gymnasium's wrappers,
    torch.optim's optimizers and schedulers): anything else (a user's network or wrapper, or a
    function reached through a module attribute) is refused before anything is called, since
    calling a target read from a file runs whatever it names. ``checkpoint``: an already loaded
    :func:`load_checkpoint` result.
    """
    checkpoint = load_checkpoint(ckpt_path) if checkpoint is None else checkpoint
    config = checkpoint["hyper_parameters"]["config"]
    source = str(ckpt_path) if ckpt_path is not None else "the checkpoint"
    if not trust_checkpoint_code:  # before wrapper_specs or anything else looks a target up
        check_checkpoint_code(config, source)
    network = dict(config["network"])
    network.setdefault("_target_", POLICY_FACTORY)
    network["_partial_"] = True
    policy = build_policy(network, *saved_env_spaces(config))  # the spaces as train.py saw them
    weights = {k.removeprefix("policy."): v for k, v in checkpoint["state_dict"].items() if k.startswith("policy.")}
    check_rebuilt_fits(policy, weights, source, "policy weights", "network")
    try:
        policy.load_state_dict(weights)
    except RuntimeError as err:  # e.g. a tensor of another dtype: one line all the same
        reason = " ".join(str(err).split())[:300]
        raise ConfigError(f"ckpt_path: {source!r}: its policy weights do not load into the network: {reason}") from err
    return policy.eval(), config


# ---------------------------------------------------------------------------------------------
# evaluate: the function behind the CLI


def evaluate(
    ckpt_path: str | os.PathLike | None,
    episodes: Annotated[int, Interval(ge=1)] = 10,
    greedy: bool = True,
    seed: SEED = 0,
    video: bool = False,
    output_dir: str | os.PathLike | None = None,
    max_episode_steps: Annotated[int, Interval(ge=1)] | None = None,
    trust_checkpoint_code: bool = False,
) -> dict[str, Any]:
    """Evaluate the policy of a ``train.py`` checkpoint on its own env; return the summary.

    Args:
        ckpt_path: a checkpoint written by ``train.py`` (``checkpoints/last.ckpt`` or ``best.ckpt``).
        episodes: complete episodes to run.
        greedy: deterministic actions (:func:`pg_lightning.envs.evaluation.greedy_action`); false samples as in training.
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
        trust_checkpoint_code: call ``_target_`` entries of the checkpoint's config that are not on
            pg_lightning's allowlist (a user's network or wrappers); see :func:`load_policy`.

    Returns:
        ``return_mean``, ``return_std`` (population std), ``return_min``, ``return_max``,
        ``length_mean``, ``length_std``, the per-episode ``returns`` and ``lengths``, the settings,
        the checkpoint's ``epoch`` and ``global_step``, ``summary_path`` and ``videos`` (paths or None).
    """
    try:
        check_arguments(evaluate, locals())  # its arguments are conf/evaluate.yaml's keys
    except ArgumentError as err:
        raise ConfigError(str(err)) from err
    if video and output_dir is None:
        raise ConfigError("video: video=true needs an output_dir for the files")
    if output_dir is not None:
        _check_output_dir(Path(output_dir))
    checkpoint = load_checkpoint(ckpt_path)
    assert ckpt_path is not None  # load_checkpoint names a missing ckpt_path
    policy, config = load_policy(ckpt_path, checkpoint, trust_checkpoint_code)
    env_id, env_kwargs = config["env"]["id"], dict(config["env"].get("kwargs") or {})
    imports = tuple(config["env"].get("imports") or ())
    wrappers = as_wrappers(config["env"].get("wrappers"))
    if max_episode_steps is None:  # the training episodes' cap, if the run set one
        max_episode_steps = (config.get("data") or {}).get("max_episode_steps")
    out = Path(output_dir) if output_dir is not None else None
    video_dir = out / "videos" if video and out is not None else None  # video needs an output_dir (checked)
    env = (
        make_video_env(env_id, env_kwargs, max_episode_steps, video_dir, seed, imports, wrappers)
        if video_dir is not None
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
        **episode_stats(returns, lengths),
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


def _check_output_dir(out: Path) -> None:
    """``output_dir`` is a directory or can be made one: the nearest existing path of it and its parents is a directory."""
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                where = "is a file" if path == out else f"is under {str(path)!r}, a file"
                raise ConfigError(
                    f"output_dir: {str(out)!r} {where}, not a directory; evaluation.json (and videos/) go into a "
                    "directory: give another output_dir"
                )
            return


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


if __name__ == "__main__":
    main()
