"""What the project adds on top of its dependencies' import: ``python train.py`` against ``import torch, pytorch_lightning``.

    python benchmarks/process_time.py                 # 5 interleaved rounds, the default CartPole run
    python benchmarks/process_time.py --rounds 3 -- env=acrobot trainer.max_epochs=5

Each round runs, as new processes, one after the other:

- ``import``: ``python -c "import torch, pytorch_lightning"``, what any Lightning program pays before it starts;
- ``train.py``: ``python train.py [overrides]`` (the default run: CartPole-v1 until solved), in a temporary
  directory (its outputs go there), its own ``time/train_seconds`` (``trainer.fit``) read from its summary line.

The medians of the rounds are printed: the whole process, the import alone, what ``train.py`` adds on top of the
import (Hydra, the config checks, env and network building, ``trainer.fit``, teardown), and ``trainer.fit`` within
it. Not a test: timings vary run to run; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root
from benchmarks.common import machine, markdown_capture

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"(\d+) epochs, (\d+) env steps, \d+ episodes, ([\d.]+) s")


def timed(command: list[str], cwd: str) -> tuple[float, str]:
    """Wall-clock seconds of one process, and its stderr (Hydra's log lines)."""
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, proc.stderr + proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the medians are reported")
    parser.add_argument("--markdown", type=Path, help="also write the table (with the command) to this file")
    parser.add_argument("overrides", nargs="*", help="train.py overrides (after --)")
    args = parser.parse_args()
    rows: dict[str, list[float]] = {"import": [], "train.py": [], "fit": []}
    epochs = steps = ""
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as out:
            seconds, _ = timed([sys.executable, "-c", "import torch, pytorch_lightning"], out)
            rows["import"].append(seconds)
            command = [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={out}/run", *args.overrides]
            seconds, log = timed(command, out)
        found = SUMMARY.search(log)
        assert found, f"no summary line in train.py's output:\n{log[-2000:]}"
        epochs, steps, fit = found.group(1), found.group(2), float(found.group(3))
        rows["train.py"].append(seconds)
        rows["fit"].append(fit)
        print(f"round {round_}: import {rows['import'][-1]:.2f} s, train.py {seconds:.2f} s (fit {fit:.2f} s)")
    med = {name: statistics.median(values) for name, values in rows.items()}
    with markdown_capture(args.markdown, "benchmarks/process_time.py", sys.argv[1:]):
        print(f"\n{machine()}")
        print(
            f"train.py {' '.join(args.overrides) or '(default config)'}: {epochs} epochs, {steps} env steps; "
            f"median of {args.rounds} interleaved round(s)\n"
        )
        print("| process | s (median) |")
        print("|---|--:|")
        print(f'| `python -c "import torch, pytorch_lightning"` | {med["import"]:.2f} |')
        print(f"| `python train.py` | {med['train.py']:.2f} |")
        print(f"| what train.py adds on top of the import | {med['train.py'] - med['import']:.2f} |")
        print(f"| of which `trainer.fit` (train.py's own `time/train_seconds`) | {med['fit']:.2f} |")
        print(
            f"| the rest: Hydra, the config checks, building envs and networks, teardown | "
            f"{med['train.py'] - med['import'] - med['fit']:.2f} |"
        )


if __name__ == "__main__":
    main()
