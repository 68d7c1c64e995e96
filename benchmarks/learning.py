"""Learning results: shipped env configs over several seeds; the README's learning table.

    python benchmarks/learning.py                                   # every suite, seeds 0 1 2
    python benchmarks/learning.py --suites cartpole_none cartpole_value --seeds 0 1 2 3 4
    python benchmarks/learning.py --suites acrobot -- model.optimizer.lr=1e-3

Each run is ``pg_lightning.train.run`` with the suite's overrides (``env=`` or ``experiment=``) (plus anything
after ``--``); it stops at the env's threshold (EarlyStopping) or at ``trainer.max_epochs``. One line
per run as it ends, then one row per suite: seeds solved, median env steps and wall-clock seconds
(of ``trainer.fit``, over all seeds: an unsolved seed counts its whole budget) and the median final
100-episode mean return. Not a test: these take minutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from pg_lightning.train import run

CONF = Path(__file__).resolve().parents[1] / "conf"

SUITES: dict[str, list[str]] = {
    "cartpole_none": ["env=cartpole", "baseline=none"],
    "cartpole_mean": ["env=cartpole", "baseline=mean"],
    "cartpole_value": ["env=cartpole", "baseline=value"],
    "acrobot": ["experiment=acrobot"],
    "inverted_pendulum": ["experiment=inverted_pendulum"],
    "pendulum": ["experiment=pendulum"],
}
NEEDS = {"inverted_pendulum": "mujoco"}


def run_seed(overrides: list[str], seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"seed={seed}", f"paths.output_dir={out}", "callbacks.progress_bar.refresh_rate=0", *overrides],
        )
        return run(cfg) | {"env": cfg.env.id, "threshold": cfg.env.return_threshold}


def solved(rows: list[dict]) -> str:
    if rows[0]["threshold"] is None:
        return "no threshold"
    return f"{sum(bool(r['solved']) for r in rows)}/{len(rows)} (at {rows[0]['threshold']:g})"


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, float]]]:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)

    results: dict[str, list[dict[str, float]]] = {}
    for suite in args.suites:
        if suite in NEEDS and importlib.util.find_spec(NEEDS[suite]) is None:
            print(f"{suite}: skipped, needs `pip install -e \".[{NEEDS[suite]}]\"`", flush=True)
            continue
        results[suite] = []
        for seed in args.seeds:
            m = run_seed(SUITES[suite] + extra, seed)
            results[suite].append(m)
            print(
                f"{suite} seed {seed}: solved={bool(m['solved'])} epochs={int(m['epochs'])} "
                f"env_steps={int(m['rollout/env_steps'])} seconds={m['time/train_seconds']:.1f} "
                f"return_mean_100={m['rollout/return_mean_100']:.1f}",
                flush=True,
            )

    print(f"\nseeds {args.seeds}; extra overrides: {' '.join(extra) or 'none'}")
    print("| suite | env | overrides | solved | median env steps | median wall-clock s | median final 100-ep mean |")
    print("|---|---|---|:-:|--:|--:|--:|")
    for suite, rows in results.items():
        median = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
        print(
            f"| {suite} | {rows[0]['env']} | `{' '.join(SUITES[suite])}` | "
            f"{solved(rows)} | {median('rollout/env_steps'):.0f} | "
            f"{median('time/train_seconds'):.1f} | {median('rollout/return_mean_100'):.1f} |"
        )
    return results


if __name__ == "__main__":
    main()
