"""Lightning overhead: wall-clock per epoch under the Trainer against the same work in a plain loop.

    python benchmarks/overhead.py                          # CartPole-v1, 30 epochs, 3 repeats
    python benchmarks/overhead.py --epochs 5 --repeats 1   # smoke run
    python benchmarks/overhead.py --variants default lean -- env=acrobot

Both sides run the same collect + update, from the same composed config (``conf/train.yaml`` plus
anything after ``--``), with early stopping's threshold off so that both run exactly ``--epochs``:

- Lightning: ``pg_lightning.cli.train.run(cfg)``, the real training path (its callbacks, CSV logger and
  Trainer), in several configurations (``--variants``):

  - ``default``: the default config: last.ckpt and best.ckpt by time (after the first epoch, then at
    most every 30 s, and after the last), EarlyStopping, the TQDM progress bar, the CSV logger;
  - ``no_bar``: without the progress bar; ``no_ckpt``: without last.ckpt and best.ckpt (an
    ``OnExceptionCheckpoint``, which writes only when a run dies, stays);
  - ``ckpt_every_epoch``: last.ckpt and best.ckpt at every epoch's end (``every_n_seconds=0``);
  - ``csv_flush_100``: the CSV logger writes its file every 100 epochs (Lightning's default)
    instead of every epoch;
  - ``lean``: no progress bar and no checkpoints (CSV logger and EarlyStopping kept);
  - ``bare``: no callbacks and no logger at all;
  - ``bare_nolog``: ``bare`` with ``ReinforceModule``'s own logging patched out (``_log_epoch``,
    the grad-norm hook, the row's write), for this benchmark only: Lightning's loop alone, no config gives that.

- plain: ``torch.manual_seed(seed)``, the same policy, baseline and ``ReinforceModule`` built from
  the same config, the same ``make_vector_env`` + ``EpisodeCollector`` with the same seed (built by
  ``RolloutDataModule.setup`` with no Trainer attached, i.e. rank 0), and per epoch
  ``batch = collector.collect(policy, episodes_per_epoch)``, ``loss = module.training_step(batch, 0)``,
  ``loss.backward(); opt.step(); opt.zero_grad()`` with ``opt = module.configure_optimizers()``.

Time per epoch is the training loop's wall-clock (Lightning: ``on_train_start`` to ``on_train_end``;
plain: first collect to last optimizer step) over the number of epochs, and the process's CPU time
over the same span (steadier on a shared machine; it misses waits on the disk); the runs are
interleaved (plain, then every variant, ``--repeats`` times, after an untimed 2-epoch warm-up of
each side) and the median is reported. ``fit s`` is the
whole ``trainer.fit`` (setup and teardown included) against the whole plain run (env creation
included). Every Lightning run's final parameters are compared with the plain run's: equal
parameters show that both sides trained on the same batches from the same seeds.

Then one more ``default`` run under cProfile, summarised per epoch by where the time goes
(checkpoints, progress bar, logging, DataLoader, loop), against the plain loop under cProfile.
cProfile inflates Python-heavy code (Lightning's hooks) more than torch kernels, so use its
numbers for the split and the variants' timings for the cost. (The progress bar's
``refresh_rate`` changes nothing here: with one batch per epoch it redraws at every epoch's start
and end whatever the rate, so no variant tries it.) The progress bar writes to
/dev/null (``--show-bar`` to see it): a terminal adds its own rendering cost. Checkpoints and logs go
to a temporary directory (``--output-root`` to put them on another disk). Not a test: timings
vary run to run; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import logging
import math
import os
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

import gymnasium as gym
import hydra
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root
from benchmarks.common import machine, markdown_capture
from pg_lightning.cli.train import make_baseline, make_datamodule, run
from pg_lightning.envs.collector import EpisodeCollector
from pg_lightning.lightning.module import ReinforceModule

CONF = Path(__file__).resolve().parents[1] / "conf"

NO_BAR = ["progress_bar=none"]
NO_CKPT = ["~callbacks.last_checkpoint", "~callbacks.best_checkpoint"]  # see resolve_variants
NO_EARLY_STOP = ["callbacks.early_stopping.stopping_threshold=null"]
VARIANTS: dict[str, list[str]] = {
    "default": NO_EARLY_STOP,
    "no_bar": NO_EARLY_STOP + NO_BAR,
    "no_ckpt": NO_EARLY_STOP + NO_CKPT,
    "ckpt_every_epoch": NO_EARLY_STOP
    + ["callbacks.last_checkpoint.every_n_seconds=0", "callbacks.best_checkpoint.every_n_seconds=0"],
    "csv_flush_100": NO_EARLY_STOP + ["logger.csv.flush_logs_every_n_steps=100"],
    "async_ckpt": NO_EARLY_STOP + ["trainer.plugins=[{_target_: pytorch_lightning.plugins.io.AsyncCheckpointIO}]"],
    "lean": NO_EARLY_STOP + NO_BAR + NO_CKPT,
    "bare": ["~callbacks", "~logger", "progress_bar=none"],
    "bare_nolog": ["~callbacks", "~logger", "progress_bar=none"],
}
NO_MODULE_LOGGING = {"bare_nolog"}  # ReinforceModule's own logging patched out


def resolve_variants(names: list[str], extra: list[str]) -> dict[str, list[str]]:
    """The variants' overrides, with ``enable_checkpointing=false`` where no checkpoint callback is left.

    Lightning adds a ModelCheckpoint of its own (one save every epoch) when no ``Checkpoint``
    callback is configured, and refuses ``enable_checkpointing=false`` while one is (such as
    ``OnExceptionCheckpoint``, which writes nothing until an exception): so set it only when none is left.
    """
    resolved = {}
    for name in names:
        cfg = compose("train", overrides=[*VARIANTS[name], *extra])
        checkpoints = [
            c
            for c in (cfg.get("callbacks") or {}).values()
            if issubclass(hydra.utils.get_class(c._target_), pl.callbacks.Checkpoint)
        ]
        resolved[name] = VARIANTS[name] + ([] if checkpoints else ["++trainer.enable_checkpointing=false"])
    return resolved


class EpochTimer(pl.Callback):
    """Records the training loop's wall-clock, and the final parameters, of the run it is part of.

    Added to ``cfg.callbacks`` by its import path, so ``run(cfg)`` builds it like any other
    callback; every instance is appended to ``EpochTimer.instances``.
    """

    instances: list[EpochTimer] = []

    def __init__(self) -> None:
        self.train_start = self.train_end = self.cpu_start = self.cpu_end = 0.0
        self.env_steps = 0
        self.params: dict[str, torch.Tensor] = {}
        EpochTimer.instances.append(self)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        self.env_steps += batch.num_steps

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_end, self.cpu_end = time.perf_counter(), time.process_time()
        self.params = {k: v.detach().clone() for k, v in pl_module.named_parameters()}


def compose_cfg(seed: int, epochs: int, out: str, variant: list[str], extra: list[str]) -> DictConfig:
    timer = f"+callbacks.epoch_timer._target_={EpochTimer.__module__}.{EpochTimer.__qualname__}"
    return compose(
        "train",
        overrides=[f"seed={seed}", f"paths.output_dir={out}", f"trainer.max_epochs={epochs}", *variant, timer, *extra],
    )


def _no_op(*args, **kwargs) -> None:
    return None


def lightning_run(cfg: DictConfig, show_bar: bool, no_module_logging: bool = False) -> dict:
    """``run(cfg)``; its loop seconds (from the EpochTimer), fit seconds and final parameters."""
    EpochTimer.instances.clear()
    with contextlib.ExitStack() as stack:
        if not show_bar:  # TQDMProgressBar writes to sys.stdout
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        if no_module_logging:
            stack.enter_context(mock.patch.object(ReinforceModule, "_log_epoch", _no_op))
            stack.enter_context(mock.patch.object(ReinforceModule, "on_before_optimizer_step", _no_op))
            stack.enter_context(mock.patch.object(ReinforceModule, "on_train_epoch_end", _no_op))
        metrics = run(cfg)
    (timer,) = EpochTimer.instances
    return {
        "loop": timer.train_end - timer.train_start,
        "cpu": timer.cpu_end - timer.cpu_start,
        "fit": metrics["time/train_seconds"],
        "epochs": int(metrics["epochs"]),
        "env_steps": timer.env_steps,
        "params": timer.params,
    }


def plain_run(cfg: DictConfig, epochs: int) -> dict:
    """The same collect + update as ``run(cfg)``, in a plain PyTorch loop."""
    start = time.perf_counter()
    if cfg.get("torch_num_threads") is not None:
        torch.set_num_threads(int(cfg.torch_num_threads))
    torch.manual_seed(cfg.seed)  # what pl.seed_everything does for torch: the same network init
    probe = gym.make(cfg.env.id, **cfg.env.kwargs)
    policy = hydra.utils.instantiate(cfg.network)(
        observation_space=probe.observation_space, action_space=probe.action_space
    )
    baseline = make_baseline(cfg, probe.observation_space)
    probe.close()
    module = hydra.utils.instantiate(cfg.model, policy=policy, baseline=baseline)
    module.train()
    # make_vector_env + EpisodeCollector(seed, rank 0) with the config's arguments, built by the
    # datamodule's own setup (no Trainer attached) so that both sides get the very same env
    datamodule = make_datamodule(cfg)  # the env passed once, as run() builds it
    datamodule.setup("fit")
    collector: EpisodeCollector = datamodule.collector
    opt = module.configure_optimizers()
    loop_start, cpu_start = time.perf_counter(), time.process_time()
    env_steps = plain_loop(collector, module, opt, cfg.data.episodes_per_epoch, epochs)
    loop_end, cpu_end = time.perf_counter(), time.process_time()
    datamodule.teardown("fit")
    return {
        "loop": loop_end - loop_start,
        "cpu": cpu_end - cpu_start,
        "fit": time.perf_counter() - start,
        "epochs": epochs,
        "env_steps": env_steps,
        "params": {k: v.detach().clone() for k, v in module.named_parameters()},
    }


def plain_loop(
    collector: EpisodeCollector, module: pl.LightningModule, opt: torch.optim.Optimizer, episodes: int, epochs: int
) -> int:
    """The training loop itself; returns the env steps."""
    env_steps = 0
    for _ in range(epochs):
        batch = collector.collect(module.policy, episodes)
        loss = module.training_step(batch, 0)
        loss.backward()
        opt.step()
        opt.zero_grad()
        env_steps += batch.num_steps
    return env_steps


def param_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between two parameter dicts (inf if their names differ)."""
    if a.keys() != b.keys():
        return float("inf")
    return max((x - b[k]).abs().max().item() for k, x in a.items())


# cProfile summary: (label, [(path suffix, function name)], counted in the plain loop too).
# Entries with one name at several lines (a method and its override) count once: the largest.
CATEGORIES: list[tuple[str, list[tuple[str, str]], bool]] = [
    ("collection (EpisodeCollector.collect)", [("pg_lightning/envs/collector.py", "collect")], True),
    ("loss: training_step without its logging", [("pg_lightning/lightning/module.py", "training_step")], True),
    ("backward", [("torch/_tensor.py", "backward")], True),
    ("Adam step (without the closure)", [("torch/optim/adam.py", "step")], True),
    (
        "module logging: training_step's scalars (_log_epoch)",
        [("pg_lightning/lightning/module.py", "_log_epoch")],
        False,
    ),
    (
        "module logging: the epoch's row to the loggers (on_train_epoch_end)",
        [("pg_lightning/lightning/module.py", "on_train_epoch_end")],
        False,
    ),
    (
        "module: grad norm log + finite check (on_before_optimizer_step)",
        [("pg_lightning/lightning/module.py", "on_before_optimizer_step")],
        False,
    ),
    (
        "checkpoints (ModelCheckpoint.on_train_epoch_end)",
        [("callbacks/model_checkpoint.py", "on_train_epoch_end")],
        False,
    ),
    (
        "progress bar (TQDMProgressBar hooks)",
        [
            ("callbacks/progress/tqdm_progress.py", n)
            for n in (
                "on_train_start",
                "on_train_epoch_start",
                "on_train_batch_end",
                "on_train_epoch_end",
                "on_train_end",
            )
        ],
        False,
    ),
    ("early stopping check", [("callbacks/early_stopping.py", "on_train_epoch_end")], False),
    (
        "epoch metrics + CSV logger (LoggerConnector)",
        [
            ("logger_connector/logger_connector.py", n)
            for n in (
                "on_epoch_start",
                "on_batch_start",
                "on_batch_end",
                "update_train_step_metrics",
                "on_epoch_end",
                "update_train_epoch_metrics",
            )
        ],
        False,
    ),
    ("  of which CSVLogger.log_metrics (+ save)", [("loggers/csv_logs.py", "log_metrics")], False),
    (
        "DataLoader iterator per epoch (iter + fetcher)",
        [("pytorch_lightning/loops/fetchers.py", "__iter__")],
        False,
    ),
]


def _cumtime(stats: pstats.Stats, funcs: list[tuple[str, str]]) -> float:
    best: dict[tuple[str, str], float] = {}
    for (path, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        path = path.replace(os.sep, "/")
        for suffix, func in funcs:
            if name == func and path.endswith(suffix):
                best[(suffix, func)] = max(best.get((suffix, func), 0.0), ct)
    return sum(best.values())


def profile_breakdown(
    seed: int, epochs: int, root: str | None, variant: list[str], extra: list[str], show_bar: bool
) -> None:
    profiles = {}
    for side in ("plain", "lightning"):
        with tempfile.TemporaryDirectory(dir=root) as out:
            cfg = compose_cfg(seed, epochs, out, variant, extra)
            prof = cProfile.Profile()
            prof.enable()
            if side == "plain":
                plain_run(cfg, epochs)
            else:
                lightning_run(cfg, show_bar)
            prof.disable()
        profiles[side] = pstats.Stats(prof)
    plain_total = _cumtime(profiles["plain"], [("overhead.py", "plain_loop")])
    lit = profiles["lightning"]
    lit_total = _cumtime(lit, [("pytorch_lightning/loops/fit_loop.py", "run")])  # the training loop
    rows = {label: _cumtime(lit, funcs) for label, funcs, _ in CATEGORIES}
    # the loss's own time: training_step minus the logging it does; Adam minus the Lightning closure
    rows["loss: training_step without its logging"] -= rows["module logging: training_step's scalars (_log_epoch)"]
    rows["Adam step (without the closure)"] -= _cumtime(lit, [("plugins/precision/precision.py", "_wrap_closure")])
    counted = sum(v for (label, _, _), v in zip(CATEGORIES, rows.values(), strict=True) if not label.startswith("  "))
    rest = lit_total - counted

    ms = lambda s: 1000 * s / epochs
    print(
        f"\n### Where the time goes: `default` under cProfile, {epochs} epochs (ms per epoch, inflated by cProfile)\n"
    )
    print("| part | in plain loop too | ms / epoch | % of Lightning loop |")
    print("|---|:-:|--:|--:|")
    for label, _funcs, shared in CATEGORIES:
        print(
            f"| {label} | {'yes' if shared else 'no'} | {ms(rows[label]):.1f} | {100 * rows[label] / lit_total:.1f} |"
        )
    print(
        f"| Lightning loop, hooks, progress tracking, the rest | no | {ms(rest):.1f} | {100 * rest / lit_total:.1f} |"
    )
    print(f"| **Lightning training loop (FitLoop.run)** | | **{ms(lit_total):.1f}** | 100.0 |")
    print(f"| **plain training loop** | | **{ms(plain_total):.1f}** | |")
    extra_time = sum(rows[label] for label, _, shared in CATEGORIES if not shared and not label.startswith("  ")) + rest
    print(
        f"\nLightning-only parts: {ms(extra_time):.1f} ms/epoch under cProfile "
        f"(Lightning loop - plain loop: {ms(lit_total - plain_total):.1f} ms/epoch)."
    )


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile breakdown")
    parser.add_argument("--show-bar", action="store_true", help="let the progress bar write to the terminal")
    parser.add_argument(
        "--output-root", default=None, help="where the runs' checkpoints and logs go (default: a temp dir)"
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables (with the command) to this file")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no "GPU available" lines per run
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own deprecation, once per run
    results: dict[str, list[dict]] = {name: [] for name in ["plain", *args.variants]}
    with initialize_config_dir(str(CONF), version_base="1.3"):
        variants = resolve_variants(sorted({"default", *args.variants}), extra)
        # warm-up: imports, first backward, first checkpoint (not timed)
        with tempfile.TemporaryDirectory(dir=args.output_root) as out:
            cfg = compose_cfg(args.seed, 2, out, variants["default"], extra)
            plain_run(cfg, 2)
            lightning_run(cfg, args.show_bar)
        for rep in range(args.repeats):
            for name, runs in results.items():
                with tempfile.TemporaryDirectory(dir=args.output_root) as out:
                    variant = variants["default" if name == "plain" else name]
                    cfg = compose_cfg(args.seed, args.epochs, out, variant, extra)
                    if name == "plain":
                        r = plain_run(cfg, args.epochs)
                    else:
                        r = lightning_run(cfg, args.show_bar, no_module_logging=name in NO_MODULE_LOGGING)
                runs.append(r)
                if r["epochs"] != args.epochs:
                    print(f"warning: {name} ran {r['epochs']} epochs, not {args.epochs}", file=sys.stderr)
                diff = (
                    ""
                    if name == "plain"
                    else f", max |param - plain| {param_diff(r['params'], results['plain'][rep]['params']):.3g}"
                )
                print(
                    f"round {rep} {name}: {1000 * r['loop'] / args.epochs:.1f} ms/epoch (CPU {1000 * r['cpu'] / args.epochs:.1f}), fit {r['fit']:.2f} s, "
                    f"{r['env_steps']} env steps{diff}",
                    flush=True,
                )

        with markdown_capture(args.markdown, "benchmarks/overhead.py", argv):
            print(f"\n{machine()}")
            print(
                f"{cfg.env.id}, {args.epochs} epochs, {cfg.data.episodes_per_epoch} episodes/epoch, {cfg.data.num_envs} "
                f"{cfg.data.vectorization_mode} envs, seed {args.seed}, overrides {extra or 'none'}; median of {args.repeats} "
                f"interleaved round(s); env steps per run: {results['plain'][0]['env_steps']}\n"
            )
            per_epoch = lambda rows, key: statistics.median(1000 * r[key] / args.epochs for r in rows)
            plain_ms, plain_cpu = per_epoch(results["plain"], "loop"), per_epoch(results["plain"], "cpu")
            plain_fit = statistics.median(r["fit"] for r in results["plain"])
            default_ms = per_epoch(results["default"], "loop") if "default" in results else math.nan
            print(
                "| run | ms / epoch | overhead ms / epoch | overhead % (L / plain - 1) | vs default ms / epoch "
                "| CPU ms / epoch | CPU overhead % | fit s | same final params as plain |"
            )
            print("|---|--:|--:|--:|--:|--:|--:|--:|---|")
            print(f"| plain PyTorch loop | {plain_ms:.1f} | | | | {plain_cpu:.1f} | | {plain_fit:.2f} | |")
            for name in args.variants:
                rows = results[name]
                ms, cpu = per_epoch(rows, "loop"), per_epoch(rows, "cpu")
                fit = statistics.median(r["fit"] for r in rows)
                diffs = [param_diff(r["params"], p["params"]) for r, p in zip(rows, results["plain"], strict=True)]
                same = (
                    "bit for bit"
                    if max(diffs) == 0
                    else (f"to {max(diffs):.1g}" if max(diffs) <= 1e-6 else f"NO: max diff {max(diffs):.3g}")
                )
                print(
                    f"| {name} | {ms:.1f} | {ms - plain_ms:+.1f} | {100 * (ms / plain_ms - 1):+.1f}% "
                    f"| {ms - default_ms:+.1f} | {cpu:.1f} | {100 * (cpu / plain_cpu - 1):+.1f}% | {fit:.2f} | {same} |"
                )
            print(
                "\nms: wall-clock of the training loop; CPU: this process's CPU time over the same span (less "
                "sensitive to other processes on the machine; it misses time spent waiting on the disk)."
            )

            if not args.no_profile:
                profile_breakdown(args.seed, args.epochs, args.output_root, variants["default"], extra, args.show_bar)
    return results


if __name__ == "__main__":
    main()
