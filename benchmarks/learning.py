"""Learning results: shipped env configs over several seeds; the learning table in docs/results.md.

    python benchmarks/learning.py                                   # the default suites, seeds 0 1 2
    python benchmarks/learning.py --suites cartpole_none cartpole_value --seeds 0 1 2 3 4
    python benchmarks/learning.py --suites acrobot -- model.optimizer.lr=1e-3
    python benchmarks/learning.py --suites memory_gru memory_mlp minigrid_empty minigrid_doorkey \
        minigrid_empty_cnn popgym_repeat_gru popgym_repeat_mlp popgym_minesweeper --seeds 0 1 2
    python benchmarks/learning.py --suites pong --seeds 0      # the minigrid, popgym and atari extras

Each run is ``pg_lightning.cli.train.run`` with the suite's overrides (``env=`` or ``experiment=``) (plus anything
after ``--``); it stops at the env's threshold (EarlyStopping) or at ``trainer.max_epochs``. One line
per run as it ends, then one row per suite: seeds solved, median env steps and wall-clock seconds
(of ``trainer.fit``, over all seeds: an unsolved seed counts its whole budget), the median final
100-episode mean return (of the episodes collected, if fewer) and, for scale, the mean return of a
uniformly random policy (``action_space.sample()``) on the same env, wrappers and time limit (100
episodes from seeds 0, 1, ..., or ``RANDOM_EPISODES``; ``--random-episodes`` sets it, 0 skips it).
Suites whose env has no threshold (``solved``: "no threshold") run a fixed budget: the final return
against the random policy's is their result. Not a test: these take minutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root
from benchmarks.common import machine, markdown_capture
from pg_lightning.cli.build import env_factory
from pg_lightning.cli.train import run

CONF = Path(__file__).resolve().parents[1] / "conf"

SUITES: dict[str, list[str]] = {
    "cartpole_none": ["env=cartpole", "baseline=none"],
    "cartpole_mean": ["env=cartpole", "baseline=mean"],
    "cartpole_value": ["env=cartpole", "baseline=value"],
    "acrobot": ["experiment=acrobot"],
    "inverted_pendulum": ["experiment=inverted_pendulum"],
    "pendulum": ["experiment=pendulum"],
    # memory: a GRU solves the cue task; a feedforward policy is at chance (its expected return is exactly 0)
    "memory_gru": ["experiment=cue_memory"],
    "memory_mlp": ["env=cue_memory", "env.return_threshold=null", "trainer.max_epochs=100"],
    # every gymnasium space: a Dict observation (image flattened, direction one-hot, text dropped) ...
    "minigrid_empty": ["experiment=minigrid_empty"],
    "minigrid_doorkey": ["experiment=minigrid_doorkey"],
    # ... the same with the image through the CNN (network.encoder=auto), which stalls: MiniGrid's image is grid codes
    "minigrid_empty_cnn": ["experiment=minigrid_empty", "network.encoder=auto"],
    # ... popgym's memory tasks: GRU against the feedforward MLP on the same budget ...
    "popgym_repeat_gru": ["experiment=popgym_repeat_previous"],
    "popgym_repeat_mlp": ["experiment=popgym_repeat_previous", "network=mlp"],
    # ... a MultiDiscrete action ...
    "popgym_minesweeper": ["experiment=popgym_minesweeper"],
    # ... and pixels: (4, 84, 84) uint8 frames through the Nature CNN; a few epochs, not expected to learn
    "pong": ["experiment=pong"],
}
DEFAULT = [
    "cartpole_none",
    "cartpole_mean",
    "cartpole_value",
    "acrobot",
    "inverted_pendulum",
    "pendulum",
    "memory_gru",
    "memory_mlp",
]
# suite: (the module it imports, the extra that installs it)
NEEDS = {
    "inverted_pendulum": ("mujoco", "mujoco"),
    "minigrid_empty": ("minigrid", "minigrid"),
    "minigrid_doorkey": ("minigrid", "minigrid"),
    "minigrid_empty_cnn": ("minigrid", "minigrid"),
    "popgym_repeat_gru": ("popgym", "popgym"),
    "popgym_repeat_mlp": ("popgym", "popgym"),
    "popgym_minesweeper": ("popgym", "popgym"),
    "pong": ("ale_py", "atari"),
}
# episodes of the random policy (default 100): more where episodes are short and returns spread (standard error
# ~0.01), fewer for Pong (a random game is ~850 steps of 4 frames, its score -20 to -21)
RANDOM_EPISODES = {"memory_gru": 1000, "memory_mlp": 1000, "popgym_minesweeper": 1000, "pong": 5}


def make_cfg(overrides: list[str], seed: int, out: str) -> DictConfig:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(
            "train",
            overrides=[f"seed={seed}", f"paths.output_dir={out}", "callbacks.progress_bar.refresh_rate=0", *overrides],
        )


def run_seed(overrides: list[str], seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        cfg = make_cfg(overrides, seed, out)
        return run(cfg) | {"env": cfg.env.id, "threshold": cfg.env.return_threshold}


def random_return(overrides: list[str], episodes: int) -> float:
    """Mean return of uniformly random actions over ``episodes`` episodes (seeds 0, 1, ...), with the env built
    as the suite's training builds it: imports, kwargs, wrappers and time limit (``data.max_episode_steps``)."""
    with tempfile.TemporaryDirectory() as out:
        cfg = make_cfg(overrides, 0, out)
    env = env_factory(cfg.env, OmegaConf.select(cfg, "data.max_episode_steps"))()
    # one seed for the actions, apart from the episodes' 0, 1, ...: an env that draws its layout from the seed
    # that also drew the actions (popgym's MineSweeper: both a PCG64 from `episode`) would correlate the two
    env.action_space.seed(2**31 - 1)
    returns = []
    try:
        for episode in range(episodes):
            env.reset(seed=episode)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return statistics.fmean(returns)


def solved(rows: list[dict]) -> str:
    if rows[0]["threshold"] is None:
        return "no threshold"
    return f"{sum(bool(r['solved']) for r in rows)}/{len(rows)} (at {rows[0]['threshold']:g})"


def fmt(value: float | None) -> str:
    """A return to 4 significant figures: 485.8, -702.1, 0.9512 (returns of order 1 keep their decimals)."""
    return "-" if value is None else f"{value:.4g}"


def main(argv: list[str] | None = None) -> dict[str, list[dict[str, float]]]:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", nargs="+", default=DEFAULT, choices=list(SUITES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--random-episodes",
        type=int,
        default=None,
        help="episodes of the random policy for every suite (0: skip it); default: RANDOM_EPISODES or 100",
    )
    parser.add_argument("--markdown", type=Path, help="also write the table (with the command) to this file")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)

    results: dict[str, list[dict[str, float]]] = {}
    randoms: dict[str, float | None] = {}
    for suite in args.suites:
        module, extra_name = NEEDS.get(suite, (None, None))
        if module is not None and importlib.util.find_spec(module) is None:
            print(f'{suite}: skipped, needs `pip install -e ".[{extra_name}]"`', flush=True)
            continue
        start = time.perf_counter()
        results[suite] = []
        for seed in args.seeds:
            m = run_seed(SUITES[suite] + extra, seed)
            results[suite].append(m)
            print(
                f"{suite} seed {seed}: solved={bool(m['solved'])} epochs={int(m['epochs'])} "
                f"env_steps={int(m['rollout/env_steps'])} seconds={m['time/train_seconds']:.1f} "
                f"steps/s={m['rollout/env_steps'] / m['time/train_seconds']:.0f} "
                f"(last epoch's collection {m.get('time/collect_fps', float('nan')):.0f}) "
                f"return_mean_100={fmt(m['rollout/return_mean_100'])}",
                flush=True,
            )
        episodes = RANDOM_EPISODES.get(suite, 100) if args.random_episodes is None else args.random_episodes
        randoms[suite] = random_return(SUITES[suite] + extra, episodes) if episodes > 0 else None
        print(
            f"{suite}: random policy {fmt(randoms[suite])} over {episodes} episodes; "
            f"{time.perf_counter() - start:.0f} s wall-clock for the suite",
            flush=True,
        )

    with markdown_capture(args.markdown, "benchmarks/learning.py", argv):
        print(machine())
        print(f"\nseeds {args.seeds}; extra overrides: {' '.join(extra) or 'none'}")
        print(
            "| suite | env | overrides | solved | median env steps | median wall-clock s | median final 100-ep mean "
            "| random policy |"
        )
        print("|---|---|---|:-:|--:|--:|--:|--:|")
        for suite, rows in results.items():

            def median(key, rows=rows):
                return statistics.median(r[key] for r in rows)

            print(
                f"| {suite} | {rows[0]['env']} | `{' '.join(SUITES[suite])}` | "
                f"{solved(rows)} | {median('rollout/env_steps'):.0f} | "
                f"{median('time/train_seconds'):.1f} | {fmt(median('rollout/return_mean_100'))} | {fmt(randoms[suite])} |"
            )
    return results


if __name__ == "__main__":
    main()
