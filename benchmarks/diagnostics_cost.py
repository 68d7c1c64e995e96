"""What ``callbacks=diagnostics`` costs: per call, per epoch at the default N, as a fraction of the epoch.

    python benchmarks/diagnostics_cost.py                           # CartPole-v1, 40 epochs, 5 rounds
    python benchmarks/diagnostics_cost.py --epochs 10 --rounds 1    # smoke run
    python benchmarks/diagnostics_cost.py --every 5 -- env=acrobot  # another N, another env

The same training (the default config plus anything after ``--``, early stopping's threshold off so
that every run does exactly ``--epochs`` epochs, seed fixed) runs without and with
``GradientDiagnostics(every_n_epochs=--every)``, interleaved over ``--rounds`` rounds after an
untimed warm-up of each; medians over rounds are reported. In the runs with the callback, its hook
(``on_before_optimizer_step``) is wrapped and timed call by call (wall clock, ``pl_module.log``
included): a measured epoch does one forward and one batched backward per episode; the
other epochs return at once. So:

- per call: the median over a round's measured calls, then over rounds;
- per epoch: all the hook's time over the number of epochs (at N=10, about a tenth of a call);
- the ratio: per epoch / the epoch time of the run without the callback (the training loop's wall
  clock, ``on_train_start`` to ``on_train_end``, over the epochs), the figure the target (at most
  10% at N=10) is about; the runs' own difference in ms/epoch is printed as a cross-check (noisier).

The cost grows with the batch's steps (the forward and the backward run over all of them) and so
does the epoch (collection). A third run per round trains to the default threshold with N=1 (the
callback in every epoch) and reports, for its last epochs (the solved policy: CartPole episodes
near 500 steps), the steps in the batch, the call, the epoch without the call, and the ratio at N=10
(call / (10 x epoch)).

Every run with the callback must end with the same parameters as the run without it (checked).
Not a test: timings vary run to run; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root
from benchmarks.common import machine
from pg_lightning.cli.train import run
from pg_lightning.lightning.callbacks import GradientDiagnostics

CONF = Path(__file__).resolve().parents[1] / "conf"
NO_EARLY_STOP = ["callbacks.early_stopping.stopping_threshold=null"]
LAST_EPOCHS = 3  # epochs at the end of the run to threshold that are reported


class Timer(pl.Callback):
    """The training loop's wall clock, each epoch's, and the final parameters (one instance per run)."""

    instances: list[Timer] = []

    def __init__(self) -> None:
        self.loop = 0.0
        self.epochs: list[float] = []
        self.params: dict[str, torch.Tensor] = {}
        Timer.instances.append(self)

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs.append(time.perf_counter() - self._epoch)

    def on_train_end(self, trainer, pl_module) -> None:
        self.loop = time.perf_counter() - self._start
        self.params = {k: v.detach().clone() for k, v in pl_module.named_parameters()}


CALLS: list[dict] = []  # one entry per call of the hook: epoch, measured, steps, seconds
_hook = GradientDiagnostics.on_before_optimizer_step


def _timed_hook(self, trainer, pl_module, optimizer) -> None:
    measured = self.should_measure(trainer.current_epoch)
    record = getattr(pl_module, "last_step", None)
    start = time.perf_counter()
    _hook(self, trainer, pl_module, optimizer)
    seconds = time.perf_counter() - start
    steps = record.batch.num_steps if record is not None else 0
    CALLS.append({"epoch": trainer.current_epoch, "measured": measured, "steps": steps, "seconds": seconds})


GradientDiagnostics.on_before_optimizer_step = _timed_hook  # this process only


def compose_cfg(out: str, overrides: list[str]) -> DictConfig:
    timer = f"+callbacks.timer._target_={Timer.__module__}.{Timer.__qualname__}"
    return compose("train", overrides=[f"paths.output_dir={out}", *overrides, timer])


def train(overrides: list[str], root: str | None) -> dict:
    """One run; its timer's numbers and the hook's calls."""
    Timer.instances.clear()
    CALLS.clear()
    with tempfile.TemporaryDirectory(dir=root) as out, contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))  # the progress bar
        metrics = run(compose_cfg(out, overrides))
    (timer,) = Timer.instances
    if len(timer.epochs) != int(metrics["epochs"]):
        raise RuntimeError(f"timed {len(timer.epochs)} epochs of {int(metrics['epochs'])}")
    return {
        "loop": timer.loop,
        "epochs": timer.epochs,
        "params": timer.params,
        "calls": list(CALLS),
        "n_epochs": len(timer.epochs),
    }


def same_params(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(v, b[k]) for k, v in a.items())


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument("--every", type=int, default=10, help="callbacks.diagnostics.every_n_epochs (N)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs-to-solve", type=int, default=200, help="cap of the run to the threshold")
    parser.add_argument("--output-root", default=None, help="where the runs' files go (default: a temp dir)")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    common = [f"seed={args.seed}", *extra]
    diagnostics = ["callbacks=diagnostics", f"callbacks.diagnostics.every_n_epochs={args.every}"]
    variants = {
        "without": [*common, *NO_EARLY_STOP, f"trainer.max_epochs={args.epochs}"],
        "with": [*common, *NO_EARLY_STOP, f"trainer.max_epochs={args.epochs}", *diagnostics],
        # to the threshold (early stopping on), the callback in every epoch: the end of training
        "to_threshold": [
            *common,
            f"trainer.max_epochs={args.max_epochs_to_solve}",
            "callbacks=diagnostics",
            "callbacks.diagnostics.every_n_epochs=1",
        ],
    }
    rows: dict[str, list[dict]] = {name: [] for name in variants}
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose_cfg("unused", variants["with"])
        for name in ("without", "with"):  # warm-up: imports, first backward, first checkpoint (not timed)
            warm_up = [o for o in variants[name] if not o.startswith("trainer.max_epochs")]
            train([*warm_up, "trainer.max_epochs=2"], args.output_root)
        for rnd in range(args.rounds):
            for name, overrides in variants.items():
                r = train(overrides, args.output_root)
                rows[name].append(r)
                ms = 1000 * r["loop"] / r["n_epochs"]
                measured = [c for c in r["calls"] if c["measured"]]
                line = f"round {rnd} {name}: {r['n_epochs']} epochs, {ms:.1f} ms/epoch"
                if measured:
                    per_call = statistics.median(1000 * c["seconds"] for c in measured)
                    last = ", ".join(
                        f"e{c['epoch']}: {c['steps']} steps {1000 * c['seconds']:.1f} ms" for c in measured[-4:]
                    )
                    line += f"; callback: {len(measured)} measured calls, median {per_call:.1f} ms ({last})"
                if name == "with":
                    same = same_params(r["params"], rows["without"][rnd]["params"])
                    line += f"; same final parameters as without: {'yes' if same else 'NO'}"
                print(line, flush=True)

    print(f"\n{machine()}")
    print(
        f"{cfg.env.id}, {args.epochs} epochs (threshold off), {cfg.data.episodes_per_epoch} episodes/epoch, "
        f"{cfg.data.num_envs} {cfg.data.vectorization_mode} envs, baseline {cfg.baseline._target_.rsplit('.', 1)[-1]}, "
        f"N = every_n_epochs = {args.every}, seed {args.seed}, overrides {extra or 'none'}; medians of {args.rounds} "
        "interleaved round(s)\n"
    )
    med = statistics.median
    epoch_without = med(1000 * r["loop"] / r["n_epochs"] for r in rows["without"])
    epoch_with = med(1000 * r["loop"] / r["n_epochs"] for r in rows["with"])
    per_call = med(med(1000 * c["seconds"] for c in r["calls"] if c["measured"]) for r in rows["with"])
    max_call = med(max(1000 * c["seconds"] for c in r["calls"] if c["measured"]) for r in rows["with"])
    skipped = med(med(1e6 * c["seconds"] for c in r["calls"] if not c["measured"]) for r in rows["with"])
    per_epoch = med(1000 * sum(c["seconds"] for c in r["calls"]) / r["n_epochs"] for r in rows["with"])
    steps = med(med(c["steps"] for c in r["calls"] if c["measured"]) for r in rows["with"])
    same = all(same_params(w["params"], o["params"]) for w, o in zip(rows["with"], rows["without"], strict=True))
    print("| quantity | median |")
    print("|---|--:|")
    print(f"| epoch, without the callback (ms) | {epoch_without:.1f} |")
    print(f"| epoch, with the callback (ms) | {epoch_with:.1f} |")
    difference = epoch_with - epoch_without
    print(f"| difference of the runs (ms / epoch) | {difference:+.1f} ({100 * difference / epoch_without:+.1f}%) |")
    print(f"| callback, per measured call (ms); batch steps | {per_call:.1f}; {steps:.0f} |")
    print(f"| callback, largest measured call of a run (ms) | {max_call:.1f} |")
    print(f"| callback, per unmeasured call (us) | {skipped:.1f} |")
    print(f"| callback, per epoch at N={args.every} (ms) | {per_epoch:.2f} |")
    ratio = 100 * per_epoch / epoch_without
    print(f"| **ratio: callback per epoch / epoch without it** | **{ratio:.1f}%** (target <= 10% at N=10) |")
    print(f"| same final parameters with and without, every round | {'yes, bit for bit' if same else 'NO'} |")

    # the end of training: the last epochs of the runs to the threshold (N=1)
    print(
        f"\nEnd of training: the default config to its threshold (at most {args.max_epochs_to_solve} epochs), "
        f"the callback in every epoch; the last {LAST_EPOCHS} epochs, medians over rounds:"
    )
    print(
        "| epoch from the end | batch steps | call ms | epoch ms without the call "
        "| ratio at N=10: call / (10 x epoch) |"
    )
    print("|--:|--:|--:|--:|--:|")
    solved = [r["n_epochs"] for r in rows["to_threshold"]]
    for back in range(LAST_EPOCHS, 0, -1):
        s, c, e = [], [], []
        for r in rows["to_threshold"]:
            call = r["calls"][-back]
            s.append(call["steps"])
            c.append(1000 * call["seconds"])
            e.append(1000 * (r["epochs"][-back] - call["seconds"]))
        print(f"| -{back} | {med(s):.0f} | {med(c):.1f} | {med(e):.1f} | {100 * med(c) / (10 * med(e)):.1f}% |")
    all_calls = [c for r in rows["to_threshold"] for c in r["calls"]]
    big = [1000 * c["seconds"] / c["steps"] * 1000 for c in all_calls if c["steps"] >= 4000]
    small = [1000 * c["seconds"] / c["steps"] * 1000 for c in all_calls if c["steps"] < 1000]
    print(
        f"(runs to the threshold: {', '.join(map(str, solved))} epochs; call ms per 1000 batch steps: "
        f"{med(small):.1f} below 1000 steps, {med(big):.1f} from 4000 steps)"
        if big and small
        else f"(runs to the threshold: {', '.join(map(str, solved))} epochs)"
    )


if __name__ == "__main__":
    main()
