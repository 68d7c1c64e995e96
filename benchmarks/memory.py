"""Memory over a long run: resident set size (RSS) of the training process, epoch by epoch.

    python benchmarks/memory.py                         # CartPole-v1, 1000 short epochs
    python benchmarks/memory.py --epochs 30             # smoke run
    python benchmarks/memory.py --epochs 2000 -- data.num_envs=8 env=acrobot

The real training path: ``pg_lightning.cli.train.run(cfg)`` on the default config (last.ckpt and
best.ckpt every epoch, EarlyStopping with its threshold off so that every epoch runs, the
progress bar, the CSV logger) with short epochs (``--episodes-per-epoch 4``, ``--num-envs 4``),
plus anything after ``--`` as Hydra overrides. A small callback, added to ``cfg.callbacks``, reads
``VmRSS`` from ``/proc/self/status`` at the end of every epoch (no psutil needed).

Prints RSS after the warm-up (epoch ``--warmup``, default 100), at the end, the peak (``VmHWM``,
the process's high-water mark, and the largest epoch sample), the growth from the warm-up epoch
to the end (target: < 5%), the least-squares slope after the warm-up, and a few sample points.
The CSV logger keeps up to 100 rows in memory between flushes, so RSS moves a little with a
100-epoch period. Linux only (``/proc``). Not a test: a run takes minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root
from benchmarks.common import machine
from pg_lightning.cli.train import run

CONF = Path(__file__).resolve().parents[1] / "conf"


def proc_status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/self/status")


class RssSampler(pl.Callback):
    """Reads VmRSS at every epoch end; at the epochs in ``detail_epochs`` also counts Python objects.

    Added to ``cfg.callbacks`` by its import path, so ``run(cfg)`` builds it like any other
    callback; every instance is appended to ``RssSampler.instances``.
    """

    instances: list[RssSampler] = []

    def __init__(self, detail_epochs: list[int] | None = None) -> None:
        self.detail_epochs = set(detail_epochs or [])
        self.rss_kib: list[int] = []  # index e: after epoch e + 1
        self.env_steps: list[int] = []
        self.objects: dict[int, int] = {}
        self.seconds: dict[int, float] = {}
        self._start = time.perf_counter()
        self._steps = 0
        RssSampler.instances.append(self)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        self._steps += batch.num_steps

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rss_kib.append(proc_status_kib("VmRSS"))
        self.env_steps.append(self._steps)
        epoch = len(self.rss_kib)
        if epoch in self.detail_epochs:
            self.objects[epoch] = len(gc.get_objects())
            self.seconds[epoch] = time.perf_counter() - self._start


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys on xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument(
        "--warmup", type=int, default=100, help="the epoch growth is measured from (at most epochs / 2)"
    )
    parser.add_argument("--episodes-per-epoch", type=int, default=4)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show-bar", action="store_true", help="let the progress bar write to the terminal")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")

    epochs = args.epochs
    warmup = max(1, min(args.warmup, epochs // 2))
    points = sorted(
        {p for p in (1, 10, warmup, 2 * warmup, epochs // 4, epochs // 2, 3 * epochs // 4, epochs) if p >= 1}
    )
    rss_before = proc_status_kib("VmRSS")
    RssSampler.instances.clear()
    sampler = f"{RssSampler.__module__}.{RssSampler.__qualname__}"
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"seed={args.seed}",
                f"paths.output_dir={out}",
                f"trainer.max_epochs={epochs}",
                f"data.episodes_per_epoch={args.episodes_per_epoch}",
                f"data.num_envs={args.num_envs}",
                "callbacks.early_stopping.stopping_threshold=null",
                f"+callbacks.rss_sampler._target_={sampler}",
                f"+callbacks.rss_sampler.detail_epochs=[{','.join(map(str, points))}]",
                *extra,
            ],
        )
        with contextlib.ExitStack() as stack:
            if not args.show_bar:  # TQDMProgressBar writes to sys.stdout
                stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
            metrics = run(cfg)
    (s,) = RssSampler.instances
    hwm = proc_status_kib("VmHWM")
    rss = s.rss_kib
    mib = lambda kib: kib / 1024
    at_warmup, at_end, peak_sample = rss[warmup - 1], rss[-1], max(rss)
    growth = 100 * (at_end / at_warmup - 1)
    tail = list(range(warmup, len(rss) + 1))
    per_100 = 100 * slope([float(e) for e in tail], [float(rss[e - 1]) for e in tail]) if len(tail) > 1 else 0.0

    print(f"\n{machine()}")
    print(
        f"{cfg.env.id}, {len(rss)} epochs of {args.episodes_per_epoch} episodes from {args.num_envs} "
        f"{cfg.data.vectorization_mode} envs ({s.env_steps[-1]} env steps, {metrics['time/train_seconds']:.0f} s), "
        f"seed {args.seed}, default callbacks and CSV logger, overrides {extra or 'none'}\n"
    )
    print(f"| epoch | env steps | RSS MiB | vs epoch {warmup} | Python objects | s since start |")
    print("|--:|--:|--:|--:|--:|--:|")
    for p in points:
        if p <= len(rss):
            objects = f"{s.objects[p]:,}" if p in s.objects else ""
            seconds = f"{s.seconds[p]:.1f}" if p in s.seconds else ""
            print(
                f"| {p} | {s.env_steps[p - 1]} | {mib(rss[p - 1]):.1f} | {100 * (rss[p - 1] / at_warmup - 1):+.2f}% "
                f"| {objects} | {seconds} |"
            )
    print(
        f"\nRSS before training {mib(rss_before):.1f} MiB; at epoch {warmup} (after warm-up) {mib(at_warmup):.1f} MiB; "
        f"at the end (epoch {len(rss)}) {mib(at_end):.1f} MiB; peak {mib(peak_sample):.1f} MiB over the epoch samples, "
        f"{mib(hwm):.1f} MiB VmHWM (whole process)"
    )
    print(
        f"growth epoch {warmup} -> {len(rss)}: {growth:+.2f}% ({mib(at_end - at_warmup):+.2f} MiB; "
        f"least-squares slope {per_100 / 1024:+.3f} MiB per 100 epochs); target < 5%: "
        f"{'met' if growth < 5 else 'NOT met'}"
    )
    return {"rss_kib": rss, "warmup": warmup, "growth_percent": growth, "vm_hwm_kib": hwm}


if __name__ == "__main__":
    main()
