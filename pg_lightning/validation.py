"""Checks of a composed config before anything is built: each failure names the key to fix."""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

import pg_lightning.envs  # noqa: F401  (registers the tabular envs: env=chain, env=bandit)
from pg_lightning.env_factory import EnvFactory, env_spec, episode_limit
from pg_lightning.errors import ConfigError

__all__ = [
    "LAST_CHECKPOINTS",
    "as_wrappers",
    "check_checkpoint",
    "check_env_config",
    "check_fits",
    "env_factory",
    "instantiate_wrappers",
    "load_checkpoint",
    "probe_env",
    "resolve_ckpt_path",
    "validate",
    "wrapper_specs",
]


log = logging.getLogger(__name__)

# Attributes of gymnasium wrappers that hold running statistics (NormalizeObservation, NormalizeReward).
STATEFUL_ATTRIBUTES = ("obs_rms", "return_rms")


def _number(cfg: DictConfig, key: str, kind: type, minimum: float | None = None, allow: tuple = ()) -> None:
    value = OmegaConf.select(cfg, key)
    if value in allow and not isinstance(value, bool):
        return
    ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    if not ok or (minimum is not None and not value >= minimum) or (minimum is None and not value > 0):
        what = "an integer" if kind is int else "a number"
        bound = f">= {minimum}" if minimum is not None else "> 0"
        extra = f" (or {', '.join(map(str, allow))})" if allow else ""
        raise ConfigError(f"{key} must be {what} {bound}{extra}, got {value!r}")


def validate(cfg: DictConfig) -> None:
    """Fail before training, with a message naming the config key, for values that cannot work.

    Imports ``env.imports`` (and the module of a ``module:EnvId`` id) on the way; builds nothing.
    """
    check_env_config(cfg)
    gamma = OmegaConf.select(cfg, "model.loss.gamma")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"model.loss.gamma must be in [0, 1], got {gamma!r}")
    _number(cfg, "data.episodes_per_epoch", int, minimum=1)
    _number(cfg, "data.num_envs", int, minimum=1)
    _number(cfg, "model.optimizer.lr", float)
    _number(cfg, "model.loss.entropy_coef", float, minimum=0.0)
    _number(cfg, "trainer.max_epochs", int, minimum=1, allow=(None, -1))
    seed = OmegaConf.select(cfg, "seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        # numpy's seeds (the envs') are unsigned 32-bit words; a negative one failed only at the first reset
        raise ConfigError(f"seed must be an integer in [0, 2**32 - 1], got {seed!r}")
    optional = {"baseline.loss_coef": (float, 0.0), "baseline.lr": (float, None), "data.max_episode_steps": (int, 1)}
    for key, (kind, minimum) in optional.items():  # keys that only some configs have
        if OmegaConf.select(cfg, key) is not None:
            _number(cfg, key, kind, minimum=minimum)
    ckpt = resolve_ckpt_path(cfg)
    if ckpt is not None:
        check_checkpoint(cfg, ckpt)
    elif _launched_as_rank_zero():  # (the other DDP ranks join rank 0's fresh run)
        _refuse_a_used_run_dir(cfg)


def _launched_as_rank_zero() -> bool:
    """Whether this process is rank 0 as its launcher announced it, before any process group exists.

    torchrun sets ``RANK`` and ``LOCAL_RANK`` on every rank (rank 0 too), Lightning's DDP launcher
    ``LOCAL_RANK`` (and ``NODE_RANK``) on the ranks it starts, SLURM ``SLURM_PROCID``: rank 0 is the
    process where none of them is above 0 (a single process sets none).
    """
    for key in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"):
        value = os.environ.get(key, "")
        if value.isdigit() and int(value) > 0:
            return False
    return True


def check_env_config(cfg: DictConfig) -> None:
    """The ``env`` block: imports importable, the id registered, kwargs a mapping, wrappers ``_target_`` entries."""
    env_spec(OmegaConf.select(cfg, "env.id"), _imports(cfg))
    kwargs = OmegaConf.select(cfg, "env.kwargs")
    if kwargs is not None and not isinstance(kwargs, DictConfig):
        raise ConfigError(f"env.kwargs must be a mapping of constructor arguments, got {kwargs!r}")
    threshold = OmegaConf.select(cfg, "env.return_threshold")
    if threshold != "spec" and threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float))
    ):
        raise ConfigError(f"env.return_threshold must be a number, null or spec, got {threshold!r}")
    wrapper_specs(OmegaConf.select(cfg, "env.wrappers"))


def _imports(cfg: DictConfig) -> list[str]:
    imports = OmegaConf.select(cfg, "env.imports")
    return list(imports) if isinstance(imports, ListConfig) else imports


def wrapper_specs(wrappers: Any, key: str = "env.wrappers") -> list[dict[str, Any]]:
    """``env.wrappers`` checked: a list of ``{_target_: wrapper, **args}`` whose targets exist.

    Returns plain dicts with ``_partial_: true``: :func:`instantiate_wrappers` makes each an
    ``env -> env`` callable (what :class:`~pg_lightning.env_factory.EnvFactory` applies), whether
    or not the user wrote ``_partial_``. A bare class path is the entry ``{_target_: path}``.
    """
    if wrappers is None:
        return []
    if isinstance(wrappers, (DictConfig, ListConfig)):
        wrappers = OmegaConf.to_container(wrappers, resolve=True)
    if not isinstance(wrappers, list):
        raise ConfigError(f"{key} must be a list of wrappers ({{_target_: ..., args}}), got {wrappers!r}")
    specs = []
    for i, spec in enumerate(wrappers):
        if isinstance(spec, str):
            spec = {"_target_": spec}  # a bare class path, e.g. gymnasium.wrappers.FlattenObservation
        if not isinstance(spec, dict) or not isinstance(spec.get("_target_"), str):
            raise ConfigError(f"{key}[{i}] must be a mapping with a _target_ (a wrapper class or function), got {spec!r}")
        try:
            hydra.utils.get_object(spec["_target_"])  # what instantiate will look up: fail before building
        except Exception as err:
            reason = " ".join(str(err).split())  # one line
            raise ConfigError(f"{key}[{i}]._target_: cannot find {spec['_target_']!r} ({reason})") from err
        specs.append({**spec, "_partial_": True})
    return specs


def instantiate_wrappers(specs: list[dict[str, Any]], key: str = "env.wrappers") -> tuple[Callable, ...]:
    """Hydra-instantiate checked :func:`wrapper_specs` to ``env -> env`` partials; errors name ``env.wrappers[i]``."""
    built = []
    for i, spec in enumerate(specs):
        try:
            built.append(hydra.utils.instantiate(spec))
        except Exception as err:
            raise ConfigError(f"{key}[{i}]: cannot build {spec['_target_']!r}: {err}") from err
    return tuple(built)


def env_factory(env: Any, max_episode_steps: int | None = None, render_mode: str | None = None) -> EnvFactory:
    """The :class:`EnvFactory` of a run's ``env`` block and its ``data.max_episode_steps``: one env of the run.

    ``env`` is the composed ``cfg.env`` or the plain dict a checkpoint saved
    (``hyper_parameters.config["env"]``): the one recipe for training's probe, ``load_policy`` and
    ``evaluate`` (the vector env applies the same :func:`episode_limit` rule to each copy).
    """
    env = _container(env)
    imports = tuple(env.get("imports") or ())
    kwargs, steps, _ = episode_limit(env["id"], env.get("kwargs"), max_episode_steps, imports)
    return EnvFactory(env["id"], kwargs, imports, as_wrappers(env.get("wrappers")), steps, render_mode)


def as_wrappers(wrappers: Any, key: str = "env.wrappers") -> tuple[Callable, ...]:
    """``env.wrappers`` as ``env -> env`` callables: callables (built by Hydra, or given in Python) as
    they are; config entries (``{_target_: ..., args}`` or a class path) checked and built."""
    items = list(_container(wrappers) or [])
    if all(callable(w) for w in items):
        return tuple(items)
    return instantiate_wrappers(wrapper_specs(items, key), key)


def probe_env(cfg: DictConfig) -> tuple[gym.Space, gym.Space]:
    """Build one env exactly as training will (imports, id, kwargs, time limit, wrappers); return its spaces.

    Every failure is a ConfigError naming ``env.imports[i]``, ``env.id``, ``env.kwargs[.<key>]`` or
    ``env.wrappers[i]``. Wrappers that keep running statistics are named in a warning: their
    state lives in each env copy and is not saved in checkpoints.
    """
    env = env_factory(cfg.env, OmegaConf.select(cfg, "data.max_episode_steps"))()
    try:
        warn_stateful_wrappers(env, cfg.env.id)
        return env.observation_space, env.action_space
    finally:
        env.close()


def warn_stateful_wrappers(env: gym.Env, env_id: str) -> None:
    """Log a warning for each wrapper of ``env`` that keeps running statistics (gymnasium's Normalize*)."""
    while isinstance(env, gym.Wrapper):
        stats = [name for name in STATEFUL_ATTRIBUTES if name in vars(env)]
        if stats:
            log.warning(
                "%s: the wrapper %s keeps running statistics (%s) in each env copy; they are not saved in "
                "checkpoints: a resumed run, evaluate.py and EvalCallback start them afresh",
                env_id, type(env).__name__, ", ".join(stats),
            )
        env = env.env


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def _refuse_a_used_run_dir(cfg: DictConfig) -> None:
    """A fresh run must not start where checkpoints already are.

    With ``OnExceptionCheckpoint`` among the callbacks, Lightning's ``fit(ckpt_path=None)``
    means ``"last"``: it would silently resume from them, while the CSV logger starts its
    ``metrics.csv`` afresh. Resuming is explicit here (``ckpt_path``).
    """
    for name, callback in (cfg.get("callbacks") or {}).items():
        dirpath = callback.get("dirpath") if callback is not None else None
        if dirpath and any(Path(dirpath).glob("*.ckpt")):
            raise ConfigError(
                f"callbacks.{name}.dirpath: {dirpath} already holds checkpoints of another run; resume it with "
                "ckpt_path=... (its run directory stays as it is), or start this run in a new hydra.run.dir"
            )


# What ckpt_path=last looks for in earlier runs: every epoch's last.ckpt, the checkpoint an exception
# or SIGTERM wrote (OnExceptionCheckpoint), and Lightning's SLURM requeue checkpoints (SIGUSR1).
LAST_CHECKPOINTS = ("*/*/checkpoints/last.ckpt", "*/*/checkpoints/on_exception.ckpt", "*/*/hpc_ckpt_*.ckpt")


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
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # e.g. objects that only the unsafe unpickler would load
        reason = re.search(r"WeightsUnpickler error: *(.*?)(?: Please use|$)", str(err), re.DOTALL)
        reason = " ".join((reason.group(1) if reason else str(err)).split())[:300] or type(err).__name__
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
    return checkpoint


def check_checkpoint(cfg: DictConfig, ckpt: str) -> None:
    """The checkpoint is one of ours (:func:`load_checkpoint`) and was trained on this env.

    Whether its weights fit this run's network and baseline is :func:`check_fits`, once the
    model is built.
    """
    config = load_checkpoint(ckpt)["hyper_parameters"]["config"]
    ours = OmegaConf.to_container(cfg, resolve=True)
    for key in ("env.id", "env.kwargs", "env.wrappers"):
        theirs_value, ours_value = _get(config, key), _get(ours, key)
        if key == "env.wrappers":  # as run() normalises them (checkpoints from before env.wrappers: none)
            theirs_value, ours_value = wrapper_specs(theirs_value or []), wrapper_specs(ours_value or [])
        if theirs_value != ours_value:
            raise ConfigError(
                f"ckpt_path: {ckpt!r} was trained with {key}={theirs_value!r}, this run has {key}={ours_value!r}; "
                "resume with the same settings (e.g. the run's .hydra/overrides.yaml) or drop ckpt_path"
            )


def check_fits(model: nn.Module, ckpt: str) -> None:
    """The checkpoint's weights fit ``model``: the same keys and shapes, or a ConfigError naming them.

    (Instead of Lightning's strict-load ``RuntimeError``.) Compares what the state dicts hold,
    so any option that changes the model (network widths, ``network.action_bounds``, the
    baseline) is covered, and options that do not (e.g. ``log_std_init``) may change on resume.
    """
    checkpoint = load_checkpoint(ckpt)
    theirs, ours = checkpoint["state_dict"], model.state_dict()
    missing, unexpected = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
    reshaped = sorted(k for k in ours.keys() & theirs.keys() if ours[k].shape != theirs[k].shape)
    if missing or unexpected or reshaped:
        config = checkpoint["hyper_parameters"]["config"]
        problems = [f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                    for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", reshaped)) if keys]
        raise ConfigError(
            f"ckpt_path: {ckpt!r} does not fit this run's model ({'; '.join(problems)}); it was trained with "
            f"network={config.get('network')!r}, baseline={config.get('baseline')!r}: resume with the same settings"
        )


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree
