"""Time to solve: the default config on several seeds, until the 100-episode mean reaches the threshold.

    python benchmarks/time_to_solve.py                      # CartPole-v1, seeds 0-4
    python benchmarks/time_to_solve.py --seeds 0 1 2 -- env=acrobot model.optimizer.lr=3e-3

Everything after ``--`` is a Hydra override applied to every seed. Prints one row per seed and the
median; the env steps and seconds are those of the run that stopped on the threshold (the
EarlyStopping callback of the default config). Not a test: learning runs take minutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from pg_lightning.train import run

CONF = Path(__file__).resolve().parents[1] / "conf"


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    argv = sys.argv[1:] if argv is None else argv
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)

    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as out, initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[f"seed={seed}", f"paths.output_dir={out}", "callbacks.progress_bar.refresh_rate=0", *overrides],
            )
            m = run(cfg)
        rows.append({"seed": seed, **m})
        print(
            f"seed {seed}: solved={bool(m['solved'])} epochs={int(m['epochs'])} "
            f"env_steps={int(m['rollout/env_steps'])} seconds={m['time/train_seconds']:.1f} "
            f"return_mean_100={m['rollout/return_mean_100']:.1f}",
            flush=True,
        )

    print(f"\n{cfg.env.id}, overrides {overrides or 'none'}")
    print("| seed | solved | epochs | env steps | wall-clock s | 100-ep mean |")
    print("|---:|:---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['seed']} | {'yes' if r['solved'] else 'no'} | {int(r['epochs'])} | {int(r['rollout/env_steps'])} "
            f"| {r['time/train_seconds']:.1f} | {r['rollout/return_mean_100']:.1f} |"
        )
    solved = [r for r in rows if r["solved"]]
    print(f"\nsolved {len(solved)}/{len(rows)}", end="")
    if solved:
        print(
            f"; median over solved seeds: {statistics.median(r['rollout/env_steps'] for r in solved):.0f} env steps, "
            f"{statistics.median(r['time/train_seconds'] for r in solved):.1f} s"
        )
    else:
        print()
    return rows


if __name__ == "__main__":
    main()
