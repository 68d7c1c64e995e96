"""Checkpoints (cli layer): ``ckpt_path=last`` resolved, a checkpoint loaded safely and checked against the run.

`load_checkpoint` loads one with ``torch.load(weights_only=True)`` and refuses anything that is not a
pg_lightning checkpoint, a damaged archive (CRC) and non-finite weights; `check_checkpoint` (before anything
is built) and `check_fits` (once the model is) say, naming ``ckpt_path``, why a checkpoint cannot resume this run.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import gymnasium as gym
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch import nn

from pg_lightning.cli.build import build_policy, env_factory, make_baseline, wrapper_specs
from pg_lightning.cli.schema import instantiate
from pg_lightning.cli.trust import check_checkpoint_code, check_resume_code
from pg_lightning.core.errors import ConfigError

if TYPE_CHECKING:
    from pg_lightning.lightning.module import ReinforceModule

__all__ = [
    "LAST_CHECKPOINTS",
    "WEIGHT_PREFIXES",
    "check_checkpoint",
    "check_fits",
    "env_spaces",
    "load_checkpoint",
    "load_module",
    "resolve_ckpt_path",
]

# What ckpt_path=last looks for in earlier runs: every epoch's last.ckpt, the checkpoint an exception
# or SIGTERM wrote (OnExceptionCheckpoint), and Lightning's SLURM requeue checkpoints (SIGUSR1).
LAST_CHECKPOINTS = ("*/*/checkpoints/last.ckpt", "*/*/checkpoints/on_exception.ckpt", "*/*/hpc_ckpt_*.ckpt")
WEIGHT_PREFIXES = ("policy.", "baseline.")
"""The state_dict entries that are weights (the policy's and the baseline's): they must be finite."""


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``cfg.ckpt_path``, with ``last`` resolved to the newest checkpoint of earlier runs.

    "Earlier runs" are the run directories beside this one's grandparent: with the default
    ``hydra.run.dir=outputs/<date>/<time>``, every ``outputs/*/*``; their checkpoints are those of
    :data:`LAST_CHECKPOINTS` (``last.ckpt``, ``on_exception.ckpt``, ``hpc_ckpt_<n>.ckpt``), and the
    newest by modification time wins: after a crash or a preemption, the one written last.
    """
    ckpt = cfg.get("ckpt_path")
    if ckpt != "last":
        return ckpt
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        # the jobs of one sweep sit side by side: "the newest" could be another job of this sweep
        raise ConfigError("ckpt_path=last is ambiguous in a multirun; give each job its checkpoint's path")
    here = Path(cfg.paths.output_dir).resolve()
    root = here.parent.parent
    found = [p for pattern in LAST_CHECKPOINTS for p in root.glob(pattern) if here not in p.resolve().parents]
    if not found:
        raise ConfigError(
            f"ckpt_path=last: no checkpoint ({', '.join(LAST_CHECKPOINTS)}) under {root}; give the checkpoint's path"
        )
    return str(max(found, key=lambda p: p.stat().st_mtime))


def load_checkpoint(ckpt_path: str | os.PathLike | None) -> dict[str, Any]:
    """Load a checkpoint written by ``train.py`` safely, on the CPU; every error names ``ckpt_path``.

    ``torch.load(weights_only=True)``: the unpickler accepts tensors and plain containers only, so
    a checkpoint file cannot run code. Ours load that way (the config in it is plain data:
    ``hyper_parameters.config`` is ``OmegaConf.to_container(cfg, resolve=True)``; Lightning's own
    entries are tensors, numbers and strings), so there is no fallback to the unsafe unpickler.

    Before loading, every member of the zip archive must pass its CRC check (``torch.load`` does
    not check them, so a damaged tensor would load as wrong weights); after, the policy's and the
    baseline's weights (:data:`WEIGHT_PREFIXES`) must be finite. What the config in it may make
    pg_lightning call is `pg_lightning.cli.trust`'s business.
    """
    if ckpt_path is None or str(ckpt_path).strip() == "":
        raise ConfigError(
            "ckpt_path: missing; pass the checkpoint to evaluate, e.g. ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt"
        )
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path: no checkpoint file at {str(ckpt_path)!r}")
    if not zipfile.is_zipfile(path):  # torch.save (and so Lightning) writes zip archives
        raise ConfigError(
            f"ckpt_path: {str(path)!r} is not a readable checkpoint (not a PyTorch checkpoint file), "
            "so not a pg_lightning checkpoint"
        )
    _check_archive(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # e.g. objects that only the unsafe unpickler would load
        refusal = re.search(r"WeightsUnpickler error: *(.*?)(?: Please use|$)", str(err), re.DOTALL)
        reason = " ".join((refusal.group(1) if refusal else str(err)).split())[:300] or type(err).__name__
        raise ConfigError(
            f"ckpt_path: {str(path)!r} is not a pg_lightning checkpoint: torch.load(weights_only=True) refuses it "
            f"({reason}); train.py's checkpoints hold tensors and plain data only"
        ) from err
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    config = hparams.get("config") if isinstance(hparams, dict) else None
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("env"), dict)
        or not isinstance(config.get("network"), dict)
    ):
        raise ConfigError(
            f"ckpt_path: {str(path)!r} is not a pg_lightning checkpoint: it has no training config "
            "(hyper_parameters.config with env and network), as train.py writes"
        )
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict) or not any(k.startswith("policy.") for k in state):
        raise ConfigError(
            f"ckpt_path: {str(path)!r} is not a pg_lightning checkpoint: no policy.* weights in its state_dict"
        )
    for key, value in state.items():
        if (
            key.startswith(WEIGHT_PREFIXES)
            and isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and not bool(torch.isfinite(value).all())
        ):
            raise ConfigError(
                f"ckpt_path: {str(path)!r} holds non-finite weights ({key} has NaN or infinite values): "
                "a policy with them acts on NaN; use an earlier checkpoint of the run"
            )
    return checkpoint


def _check_archive(path: Path) -> None:
    """Refuse a checkpoint whose zip archive is damaged: a member fails its CRC (``ZipFile.testzip``).

    ``torch.load`` does not check the CRCs: overwritten bytes inside a tensor would load as wrong weights.
    """
    fix = "the file changed after it was written; use another checkpoint (best.ckpt, or an earlier one of the run)"
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as err:  # a damaged header or a compressed member that no longer decompresses
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ConfigError(
            f"ckpt_path: {str(path)!r} is corrupted: its zip archive cannot be read ({reason}): {fix}"
        ) from err
    if damaged is not None:
        raise ConfigError(f"ckpt_path: {str(path)!r} is corrupted: {damaged} fails the archive's CRC check: {fix}")


def check_checkpoint(cfg: DictConfig, ckpt: str) -> None:
    """The checkpoint is one of ours (:func:`load_checkpoint`) and was trained on this env.

    A resume builds everything from the run's own config: nothing the checkpoint's config names is
    imported or called here. Its ``network`` and ``env.wrappers`` targets must be on the allowlist
    of `pg_lightning.cli.trust` or be this run's own (:func:`~pg_lightning.cli.trust.check_resume_code`),
    and its ``env.wrappers`` are compared as data. Whether its weights fit this run's network and
    baseline is :func:`check_fits`, once the model is built.
    """
    config = load_checkpoint(ckpt)["hyper_parameters"]["config"]
    ours = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(ours, dict)
    for key in ("env.id", "env.kwargs", "env.wrappers"):
        theirs_value, ours_value = _get(config, key), _get(ours, key)
        if key == "env.wrappers":  # as run() normalises them (checkpoints from before env.wrappers: none)
            theirs_value, ours_value = _as_entries(theirs_value or []), wrapper_specs(ours_value or [])
        if theirs_value != ours_value:
            raise ConfigError(
                f"ckpt_path: {ckpt!r} was trained with {key}={theirs_value!r}, this run has {key}={ours_value!r}; "
                "resume with the same settings (e.g. the run's .hydra/overrides.yaml) or drop ckpt_path"
            )
    check_resume_code(config, ours, ckpt)  # the network block: nothing above looked a target up


def check_fits(model: nn.Module, ckpt: str, checkpoint: dict[str, Any] | None = None) -> None:
    """The checkpoint's weights fit ``model``: the same keys and shapes, or a ConfigError naming them.

    (Instead of Lightning's strict-load ``RuntimeError``.) Compares what the state dicts hold,
    so any option that changes the model (network widths, ``network.action_bounds``, the
    baseline) is covered, and options that do not (e.g. ``log_std_init``) may change on resume.
    ``checkpoint``: ``ckpt`` already loaded (:func:`load_checkpoint`).
    """
    checkpoint = load_checkpoint(ckpt) if checkpoint is None else checkpoint
    theirs, ours = checkpoint["state_dict"], model.state_dict()
    missing, unexpected = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
    reshaped = sorted(k for k in ours.keys() & theirs.keys() if ours[k].shape != theirs[k].shape)
    if missing or unexpected or reshaped:
        config = checkpoint["hyper_parameters"]["config"]
        problems = [
            f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", reshaped))
            if keys
        ]
        raise ConfigError(
            f"ckpt_path: {ckpt!r} does not fit this run's model ({'; '.join(problems)}); it was trained with "
            f"network={config.get('network')!r}, baseline={config.get('baseline')!r}: resume with the same settings"
        )


def env_spaces(config: dict[str, Any]) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces of a saved config's env, built as training built it."""
    env = env_factory(config["env"], (config.get("data") or {}).get("max_episode_steps"))()
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def load_module(ckpt_path: str | os.PathLike, trust_checkpoint_code: bool = False) -> ReinforceModule:
    """The `ReinforceModule` of a checkpoint that ``train.py`` wrote, rebuilt from the config saved in it
    (``hyper_parameters.config``), with every weight and running metric of the checkpoint; what
    ``ReinforceModule.load_from_checkpoint(path)`` returns for such a checkpoint.

    The same trust rule as ``evaluate.py`` (`pg_lightning.cli.evaluation.load_policy`): the file is read with
    ``torch.load(weights_only=True)``, and without ``trust_checkpoint_code=True`` every ``_target_`` of its
    ``network``, ``env.wrappers``, ``model`` and ``baseline`` must resolve to an object of the allowlist of
    `pg_lightning.cli.trust` before anything is called. The module is on the CPU, in training mode, as
    Lightning's ``load_from_checkpoint`` leaves it; its optimizer is configured by a Trainer, as usual.
    """
    checkpoint = load_checkpoint(ckpt_path)
    config = checkpoint["hyper_parameters"]["config"]
    source = str(ckpt_path)
    if not trust_checkpoint_code:  # before anything looks a target up
        check_checkpoint_code(config, source, module=True)
    cfg = OmegaConf.create(config)
    if OmegaConf.select(cfg, "model._target_") is None:
        raise ConfigError(f"ckpt_path: {source!r} has no model block in its config (hyper_parameters.config.model)")
    observation_space, action_space = env_spaces(config)
    policy = build_policy(cfg.network, observation_space, action_space)
    model = instantiate(cfg.model, "model", policy=policy, baseline=make_baseline(cfg, observation_space))
    model.save_hyperparameters({"config": config})  # saved again, as train.py saved it
    check_fits(model, source, checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return cast("ReinforceModule", model)


def _as_entries(wrappers: Any) -> Any:
    """A checkpoint's ``env.wrappers`` in :func:`wrapper_specs`' form, without looking any target up."""
    if not isinstance(wrappers, list):
        return wrappers
    entries = [{"_target_": w} if isinstance(w, str) else w for w in wrappers]
    return [{**e, "_partial_": True} if isinstance(e, dict) else e for e in entries]


def _get(tree: Any, dotted: str) -> Any:
    """The value at a dotted key of plain nested dicts (a config's), or None where a part is missing."""
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree
