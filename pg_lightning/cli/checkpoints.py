"""Checkpoints read back (cli layer): loaded safely, trusted only for what they may call, rebuilt, checked against a run.

- `load_checkpoint` loads one with ``torch.load(weights_only=True)`` and refuses anything that is not a
  pg_lightning checkpoint, a damaged archive (CRC) and non-finite weights;
- what the config saved in it may make pg_lightning call: an allowlist, checked on the object each ``_target_``
  resolves to before anything is called (`check_checkpoint_code`, `check_resume_code`; below);
- `load_module` rebuilds a train.py run's `ReinforceModule` from it (``ReinforceModule.load_from_checkpoint``);
- `resolve_ckpt_path` finds ``ckpt_path=last``; `check_checkpoint` (before anything is built) and `check_fits`
  (once the model is) say, naming ``ckpt_path``, why a checkpoint cannot resume this run.

What a checkpoint may call.

A checkpoint carries its run's config (``hyper_parameters.config``), and ``evaluate.py`` rebuilds the
network and the env wrappers from it with Hydra, which calls every ``_target_`` it meets, at any depth
(nested ``_target_`` entries, ``_args_``, keyword arguments, wrapper entries). A *name* proves nothing:
Hydra looks a name up through module attributes, so ``gymnasium.os.makedirs`` is :func:`os.makedirs`
and ``pg_lightning.cli.evaluation.Path.write_text`` is :meth:`pathlib.Path.write_text`. So each
target is resolved here, importing nothing outside the packages of :data:`TRUSTED_PACKAGES`, and the
**object** it resolves to must be one of:

- the project's own module, loss, baselines, factories and wrappers that configs name (:data:`PROJECT_TARGETS`, by identity,
  under whatever path reaches them);
- a gymnasium wrapper class (a subclass of :class:`gymnasium.Wrapper` defined under
  ``gymnasium.wrappers``), except those that write files (:data:`FILE_WRITING_WRAPPERS`);
- a ``torch.optim`` optimizer or a ``torch.optim.lr_scheduler`` scheduler class.

Anything else (a function or method reached through a module attribute, a class of any other
package, a name that cannot be found, a non-string ``_target_``) is refused before anything is
called, in one line naming the config path (``network.hidden_sizes._target_``,
``env.wrappers[0].func._target_``) and the object; so are OmegaConf interpolations (``${...}``),
which Hydra would resolve (``oc.decode`` can make new ``_target_`` entries) and which a checkpoint
that ``train.py`` wrote never holds (its config is saved resolved).

- :func:`check_checkpoint_code` (``evaluate.py`` without ``trust_checkpoint_code=true``): the
  message says how to trust the checkpoint.
- :func:`check_resume_code` (``train.py ckpt_path=...``): a resume builds everything from the
  run's own config and calls nothing of the checkpoint's; a target the checkpoint names is
  accepted where the run's own config names the same one at the same path, so a checkpoint that
  names other code is refused as not one of this run's.

Not covered: ``env.imports`` and the module of a ``module:EnvId`` id are imported, as gymnasium
does for any such id (an installed module, by its name). The checkpoint file itself is read with
``torch.load(weights_only=True)`` (`pg_lightning.cli.checkpoints.load_checkpoint`).
Layer: cli (may import every layer).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import re
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import gymnasium as gym
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from torch import nn

from pg_lightning.cli.build import build_policy, make_baseline, probe_env, wrapper_specs
from pg_lightning.cli.schema import instantiate
from pg_lightning.core import baselines
from pg_lightning.core.errors import ConfigError

if TYPE_CHECKING:
    from pg_lightning.lightning.module import ReinforceModule

__all__ = [
    "FILE_WRITING_WRAPPERS",
    "LAST_CHECKPOINTS",
    "PROJECT_TARGETS",
    "TRUSTED_PACKAGES",
    "WEIGHT_PREFIXES",
    "check_checkpoint",
    "check_checkpoint_code",
    "check_fits",
    "check_rebuilt_fits",
    "check_resume_code",
    "checkpoint_code",
    "is_allowed",
    "load_checkpoint",
    "load_module",
    "misfit",
    "refusals",
    "resolve_ckpt_path",
    "resolve_target",
    "saved_env_spaces",
]

# --------------------------------------------------------------------------------- what a checkpoint may call

TRUSTED_PACKAGES = ("pg_lightning", "gymnasium", "torch.optim")
"""The packages whose modules resolving a checkpoint's target may import (``torch`` itself is already imported)."""

PROJECT_TARGETS = (
    "pg_lightning.envs.networks.make_policy",  # conf/network/*.yaml
    "pg_lightning.envs.networks.make_value_network",  # conf/baseline/value.yaml's value_net
    "pg_lightning.envs.spaces.DropText",  # the project's own wrapper (text observations)
    "pg_lightning.lightning.module.ReinforceModule",  # model (ReinforceModule.load_from_checkpoint)
    "pg_lightning.core.loss.ReinforceLoss",  # model.loss
    *(f"pg_lightning.core.baselines.{name}" for name in baselines.__all__),  # conf/baseline/*.yaml
)
"""The project's own callables that a checkpoint's config may name: in ``network`` and ``env.wrappers``
(evaluation), and in ``model`` and ``baseline`` (`pg_lightning.cli.checkpoints.load_module`)."""

FILE_WRITING_WRAPPERS = ("gymnasium.wrappers.RecordVideo",)
"""gymnasium wrappers that write files (to a folder their arguments name): not called from a checkpoint
without trust (``evaluate.py video=true`` records videos itself)."""

_ALLOWED = (
    "pg_lightning's module, loss, baselines, network factories and wrappers, gymnasium's wrappers, torch.optim's "
    "optimizers and lr schedulers"
)


def _importable(name: str) -> bool:
    return name == "torch" or any(name == p or name.startswith(p + ".") for p in TRUSTED_PACKAGES)


def resolve_target(target: str) -> Any:
    """The object a ``_target_`` string names, looked up as Hydra looks it up, importing only trusted modules.

    Hydra imports the first part, then walks attributes, importing ``a.b.c`` where ``c`` is no
    attribute of the module ``a.b``: the same walk here, but any module to import must be in
    :data:`TRUSTED_PACKAGES` (``ValueError`` otherwise, naming why; ``LookupError`` for a name that
    is not there). Whatever it returns, Hydra's lookup of the same string returns too.
    """
    parts = target.split(".")
    if not all(part.isidentifier() for part in parts):
        raise LookupError("not a dotted path of names")
    if not _importable(parts[0]):
        raise ValueError(f"is outside {', '.join(TRUSTED_PACKAGES)}")
    try:
        obj: Any = importlib.import_module(parts[0])
    except Exception as err:
        raise LookupError(_one_line(err)) from err
    for i, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
            continue
        except AttributeError:
            pass
        except Exception as err:  # e.g. a lazy module attribute whose dependency is missing
            raise LookupError(_one_line(err)) from err
        name = ".".join(parts[: i + 1])
        if isinstance(obj, ModuleType):  # Hydra imports the submodule
            if not _importable(name):
                raise ValueError(f"would import {name}, outside {', '.join(TRUSTED_PACKAGES)}")
            try:
                obj = importlib.import_module(name)
            except Exception as err:
                raise LookupError(_one_line(err)) from err
            continue
        raise LookupError(f"{'.'.join(parts[:i])} has no attribute {part}")
    return obj


@functools.lru_cache(maxsize=1)
def _project_objects() -> tuple[Any, ...]:
    objects = []
    for path in PROJECT_TARGETS:
        module, _, name = path.rpartition(".")
        objects.append(getattr(importlib.import_module(module), name))
    return tuple(objects)


@functools.lru_cache(maxsize=1)
def _file_writing_wrappers() -> tuple[Any, ...]:
    found = []
    for path in FILE_WRITING_WRAPPERS:
        with contextlib.suppress(LookupError, ValueError):  # not in this gymnasium: nothing to exclude
            found.append(resolve_target(path))
    return tuple(found)


def is_allowed(obj: Any) -> bool:
    """Whether a checkpoint's config may call ``obj`` without trust (see the module's docstring)."""
    if any(obj is allowed for allowed in _project_objects()):
        return True
    if not isinstance(obj, type) or any(obj is unsafe for unsafe in _file_writing_wrappers()):
        return False
    module = str(getattr(obj, "__module__", "") or "")
    if issubclass(obj, gym.Wrapper):
        return module == "gymnasium.wrappers" or module.startswith("gymnasium.wrappers.")
    if issubclass(obj, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)):
        return module == "torch.optim" or module.startswith("torch.optim.")
    return False


def _describe(obj: Any) -> str:
    if isinstance(obj, ModuleType):
        return f"the module {obj.__name__}"
    qualname = getattr(obj, "__qualname__", None)
    module = getattr(obj, "__module__", None)
    if isinstance(qualname, str) and isinstance(module, str):
        return f"{module}.{qualname}"
    return f"a {type(obj).__name__} value"


def checkpoint_code(config: Mapping[Any, Any], module: bool = False) -> dict[str, Any]:
    """The parts of a saved config that evaluation instantiates, by key: ``network`` and ``env.wrappers``;
    with ``module``, also ``model`` and ``baseline``, which rebuilding the `ReinforceModule` instantiates.

    A wrapper given as a bare class path is the entry ``{_target_: path}``, as ``wrapper_specs`` reads it.
    """
    env = config.get("env")
    wrappers = env.get("wrappers") if isinstance(env, Mapping) else None
    if isinstance(wrappers, list):
        wrappers = [{"_target_": w} if isinstance(w, str) else w for w in wrappers]
    parts = {"network": config.get("network"), "env.wrappers": wrappers}
    return parts | ({"model": config.get("model"), "baseline": config.get("baseline")} if module else {})


def _code_leaves(tree: Any, where: str) -> Iterator[tuple[str, Any]]:
    """``(path, value)`` of every ``_target_`` and every interpolation string in ``tree``, depth first."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            path = f"{where}.{key}"
            if key == "_target_":
                yield path, value
            else:
                yield from _code_leaves(value, path)
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _code_leaves(value, f"{where}[{i}]")
    elif isinstance(tree, str) and "${" in tree:
        yield where, tree


def refusals(tree: Any, where: str, own: Mapping[str, Any] | None = None) -> Iterator[str]:
    """``"<path>=<value> <why>"`` for each target (or interpolation) of ``tree`` that may not be called.

    ``where``: the config key of ``tree`` (``network``); ``own``: values accepted at a path
    whatever they are, because the run's own config holds them there (see :func:`check_resume_code`).
    """
    for path, value in _code_leaves(tree, where):
        if own is not None and path in own and own[path] == value:
            continue
        shown = value if isinstance(value, str) else repr(value)
        shown = shown if len(shown) <= 120 else shown[:117] + "..."
        if not path.endswith("._target_"):
            yield f"{path}={shown} is an interpolation (train.py saves configs resolved)"
            continue
        if not isinstance(value, str):
            yield f"{path}={shown} is not the path of a class or function"
            continue
        try:
            obj = resolve_target(value)
        except ValueError as err:
            yield f"{path}={shown} {err}"
            continue
        except LookupError as err:
            yield f"{path}={shown} cannot be found ({err})"
            continue
        if not is_allowed(obj):
            yield f"{path}={shown} resolves to {_describe(obj)}"


def _first(config: Mapping[str, Any], own: Mapping[str, Any] | None = None, module: bool = False) -> str | None:
    for key, tree in checkpoint_code(config, module).items():
        for refusal in refusals(tree, key, own):
            return refusal
    return None


def check_checkpoint_code(config: Mapping[str, Any], ckpt: str, module: bool = False) -> None:
    """Refuse (ConfigError, one line) a saved config whose ``network`` or ``env.wrappers`` (with ``module``, also
    ``model`` or ``baseline``) names code outside the allowlist; nothing is called or imported (beyond
    :data:`TRUSTED_PACKAGES`) on the way.

    ``evaluate.py`` and ``ReinforceModule.load_from_checkpoint`` call it unless ``trust_checkpoint_code=true``;
    ``ckpt`` names the file in the message.
    """
    refusal = _first(config, module=module)
    if refusal is not None:
        raise ConfigError(
            f"trust_checkpoint_code: {ckpt!r}: {refusal}, which pg_lightning does not run from a checkpoint without "
            f"trust (it calls {_ALLOWED}); pass trust_checkpoint_code=true if you trust this checkpoint"
        )


def check_resume_code(config: Mapping[str, Any], ours: Mapping[Any, Any], ckpt: str) -> None:
    """Refuse (ConfigError naming ``ckpt_path``) to resume from a checkpoint whose saved config names
    code that is neither on the allowlist nor in this run's own config at the same path.

    A resume calls nothing of the checkpoint's config (the run's own config builds everything), so
    this only tells a crafted or foreign checkpoint apart; ``ours``: the run's resolved config.
    """
    own = {path: value for key, tree in checkpoint_code(ours).items() for path, value in _code_leaves(tree, key)}
    refusal = _first(config, own)
    if refusal is not None:
        raise ConfigError(
            f"ckpt_path: {ckpt!r}: {refusal}, which pg_lightning does not run from a checkpoint (it calls {_ALLOWED}), "
            "and this run's config does not name it there: resume with the settings of the checkpoint's own run"
        )


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------------- loading, rebuilding, resuming

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
    pg_lightning call is `pg_lightning.cli.checkpoints`'s business.
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
    of `pg_lightning.cli.checkpoints` or be this run's own (:func:`~pg_lightning.cli.checkpoints.check_resume_code`),
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


def misfit(ours: Mapping[str, torch.Tensor], theirs: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps the state dict ``theirs`` from loading into ``ours`` (``"missing: a, b; other shape: c (2,) vs
    (3,)"``, at most 4 keys of each), or None when the keys and shapes are the same."""
    missing, unexpected = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
    reshaped = [
        f"{k} {tuple(theirs[k].shape)} vs {tuple(ours[k].shape)}"
        for k in sorted(ours.keys() & theirs.keys())
        if theirs[k].shape != ours[k].shape
    ]
    problems = [
        f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", reshaped))
        if keys
    ]
    return "; ".join(problems) or None


def check_fits(model: nn.Module, ckpt: str) -> None:
    """The checkpoint's weights fit this run's ``model`` (a resume): the same keys and shapes, or a ConfigError
    naming them (`misfit`; instead of Lightning's strict-load ``RuntimeError``).

    Compares what the state dicts hold, so any option that changes the model (network widths,
    ``network.action_bounds``, the baseline) is covered, and options that do not (e.g. ``log_std_init``) may
    change on resume.
    """
    checkpoint = load_checkpoint(ckpt)
    problems = misfit(model.state_dict(), checkpoint["state_dict"])
    if problems:
        config = checkpoint["hyper_parameters"]["config"]
        raise ConfigError(
            f"ckpt_path: {ckpt!r} does not fit this run's model ({problems}); it was trained with "
            f"network={config.get('network')!r}, baseline={config.get('baseline')!r}: resume with the same settings"
        )


def check_rebuilt_fits(
    model: nn.Module, weights: Mapping[str, torch.Tensor], source: str, what: str = "weights", key: str = ""
) -> None:
    """A checkpoint's ``weights`` fit the ``model`` its own saved config builds (`load_policy`, `load_module`), or
    one line naming the keys (`misfit`): then the config in the checkpoint (``hyper_parameters.config.<key>``) no
    longer matches its weights."""
    problems = misfit(model.state_dict(), weights)
    if problems:
        raise ConfigError(
            f"ckpt_path: {source!r}: its {what} do not fit the network its saved config builds ({problems}): the "
            f"config in the checkpoint (hyper_parameters.config{'.' + key if key else ''}) no longer matches the "
            "weights"
        )


def saved_env_spaces(config: dict[str, Any]) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces of a saved config's env, built as training built it (`probe_env`)."""
    return probe_env(config["env"], (config.get("data") or {}).get("max_episode_steps"), warn_stateful=False)


def load_module(ckpt_path: str | os.PathLike, trust_checkpoint_code: bool = False) -> ReinforceModule:
    """The `ReinforceModule` of a checkpoint that ``train.py`` wrote, rebuilt from the config saved in it
    (``hyper_parameters.config``), with every weight and running metric of the checkpoint; what
    ``ReinforceModule.load_from_checkpoint(path)`` returns for such a checkpoint.

    The same trust rule as ``evaluate.py`` (`pg_lightning.cli.evaluation.load_policy`): the file is read with
    ``torch.load(weights_only=True)``, and without ``trust_checkpoint_code=True`` every ``_target_`` of its
    ``network``, ``env.wrappers``, ``model`` and ``baseline`` must resolve to an object of the allowlist of
    `pg_lightning.cli.checkpoints` before anything is called. The module is on the CPU, in training mode, as
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
    observation_space, action_space = saved_env_spaces(config)
    policy = build_policy(cfg.network, observation_space, action_space)
    model = instantiate(cfg.model, "model", policy=policy, baseline=make_baseline(cfg, observation_space))
    model.save_hyperparameters({"config": config})  # saved again, as train.py saved it
    check_rebuilt_fits(model, checkpoint["state_dict"], source)
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
