"""Time to solve: the default config on several seeds, until the 100-episode mean reaches the threshold.

    python benchmarks/time_to_solve.py                      # CartPole-v1, seeds 0-4, against SB3 PPO
    python benchmarks/time_to_solve.py --seeds 0 --no-peer  # ours only
    python benchmarks/time_to_solve.py --seeds 0 1 2 -- env=acrobot model.optimizer.lr=3e-3

Everything after ``--`` is a Hydra override applied to every seed of ours. Prints one row per seed
and the median; the env steps and seconds are those of the run that stopped on the threshold (the
EarlyStopping callback of the default config; seconds: ``trainer.fit``, a checkpoint every epoch
included). Not a test: learning runs take minutes.

Peer (CartPole-v1 only, when stable-baselines3 is installed: ``pip install -e ".[bench]"``;
``--no-peer`` skips it): SB3 PPO with the rl-baselines3-zoo CartPole-v1 hyperparameters, 8
``DummyVecEnv`` envs (``make_vec_env``, Monitor-wrapped), ``MlpPolicy``, ``n_steps=32``,
``batch_size=256``, ``gae_lambda=0.8``, ``gamma=0.98``, ``n_epochs=20``, ``ent_coef=0.0``, learning
rate linear from 1e-3 to 0 and clip range linear from 0.2 to 0, on the CPU, torch on one thread
as ours. The zoo's budget is ``n_timesteps=1e5`` and the linear schedules run over the budget
passed to ``learn`` (``--ppo-timesteps``, default 1e5, the zoo's): a larger budget also stretches
the schedules, so a run not solved at the zoo's budget is reported as such. Same "solved" criterion
as ours: the mean return of the last 100 completed episodes (SB3's ``ep_info_buffer``,
``stats_window_size=100``; over fewer while fewer have finished, as ours) reaches the env's
threshold, checked at every rollout end. Env steps are ``model.num_timesteps`` at that rollout end;
the clock runs from the call to ``learn`` until PPO stops, right after that rollout's update (ours
stops after the update and checkpoints of the epoch that passed the threshold). Seeds are
interleaved (ours seed 0, PPO seed 0, ours seed 1, ...). Prints a table per method, solved k/n for
each and the ratios of the medians (ours / PPO) of wall-clock and env steps.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root
from benchmarks.common import machine  # noqa: E402
from pg_lightning.train import run

CONF = Path(__file__).resolve().parents[1] / "conf"
PEER_ENV = "CartPole-v1"
INSTALL_PEER = 'pip install -e ".[bench]"'


def run_ours(seed: int, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as out, initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"seed={seed}", f"paths.output_dir={out}", "callbacks.progress_bar.refresh_rate=0", *overrides],
        )
        m = run(cfg)
    return {"seed": seed, "env": cfg.env.id, "threshold": cfg.env.get("return_threshold"), **m}


def run_ppo(seed: int, threshold: float, total_timesteps: int) -> dict:
    """SB3 PPO, rl-baselines3-zoo CartPole-v1 hyperparameters, until the 100-episode mean >= threshold."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class SolvedCallback(BaseCallback):
        """At each rollout end: solved? Then stop at the next step (after that rollout's update)."""

        def __init__(self) -> None:
            super().__init__()
            self.solved_at: int | None = None
            self.stop_time = math.nan
            self.rollouts = 0
            self.mean_100 = math.nan

        def _on_rollout_end(self) -> None:
            self.rollouts += 1
            returns = [ep["r"] for ep in self.model.ep_info_buffer]
            if returns:
                self.mean_100 = sum(returns) / len(returns)
            if self.solved_at is None and returns and self.mean_100 >= threshold:
                self.solved_at = self.model.num_timesteps

        def _on_step(self) -> bool:
            if self.solved_at is not None:
                self.stop_time = time.perf_counter()
                return False
            return True

    torch.set_num_threads(1)
    env = make_vec_env(PEER_ENV, n_envs=8, seed=seed)  # DummyVecEnv, each env Monitor-wrapped
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=lambda progress_remaining: progress_remaining * 1e-3,  # zoo "lin_0.001"
        clip_range=lambda progress_remaining: progress_remaining * 0.2,  # zoo "lin_0.2"
        seed=seed,
        device="cpu",
        verbose=0,
    )
    assert model.ep_info_buffer is None or model.ep_info_buffer.maxlen == 100
    callback = SolvedCallback()
    start = time.perf_counter()
    model.learn(total_timesteps=total_timesteps, callback=callback)
    end = time.perf_counter()
    env.close()
    assert model.ep_info_buffer.maxlen == 100, "SB3's stats_window_size is no longer 100"
    solved = callback.solved_at is not None
    return {
        "seed": seed,
        "solved": solved,
        "rollouts": callback.rollouts,
        "env_steps": callback.solved_at if solved else model.num_timesteps,
        "seconds": (callback.stop_time if solved else end) - start,
        "return_mean_100": callback.mean_100,
    }


def median_str(values: list[float], any_unsolved: bool, fmt: str) -> str:
    """Median over all seeds; an unsolved run counts its whole budget, so then it is a lower bound."""
    return ("≥ " if any_unsolved else "") + format(statistics.median(values), fmt)


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    argv = sys.argv[1:] if argv is None else argv
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--no-peer", action="store_true", help="skip SB3 PPO")
    parser.add_argument(
        "--ppo-timesteps", type=float, default=1e5, help="PPO's budget; its linear schedules run over it (zoo: 1e5)"
    )
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    ppo_budget = int(args.ppo_timesteps)

    peer = not args.no_peer
    if peer and importlib.util.find_spec("stable_baselines3") is None:
        print(f"stable-baselines3 is not installed: running ours only (for the PPO peer: {INSTALL_PEER})", flush=True)
        peer = False

    rows: list[dict] = []
    ppo_rows: list[dict] = []
    for seed in args.seeds:
        m = run_ours(seed, overrides)
        rows.append(m)
        print(
            f"seed {seed}: solved={bool(m['solved'])} epochs={int(m['epochs'])} "
            f"env_steps={int(m['rollout/env_steps'])} seconds={m['time/train_seconds']:.1f} "
            f"return_mean_100={m['rollout/return_mean_100']:.1f}",
            flush=True,
        )
        if peer and m["env"] != PEER_ENV:
            print(f"PPO peer skipped: the zoo hyperparameters are for {PEER_ENV}, this run is {m['env']}", flush=True)
            peer = False
        if peer:
            p = run_ppo(seed, float(m["threshold"]), ppo_budget)
            ppo_rows.append(p)
            print(
                f"PPO seed {seed}: solved={p['solved']} rollouts={p['rollouts']} env_steps={p['env_steps']} "
                f"seconds={p['seconds']:.1f} return_mean_100={p['return_mean_100']:.1f}",
                flush=True,
            )

    print(f"\n{machine()}")
    print(f"\n{rows[0]['env']}, overrides {overrides or 'none'}")
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

    if ppo_rows:
        short = f"{ppo_budget:.0e}".replace("e+0", "e")  # 1e5, as the zoo writes it; exact budgets as they are
        budget = short if float(short) == ppo_budget else str(ppo_budget)
        print(f"\nSB3 PPO (rl-baselines3-zoo CartPole-v1 hyperparameters, budget {budget} env steps)")
        print("| seed | solved | rollouts | env steps | wall-clock s | 100-ep mean |")
        print("|---:|:---:|---:|---:|---:|---:|")
        for p in ppo_rows:
            print(
                f"| {p['seed']} | {'yes' if p['solved'] else f'not solved at {budget}'} | {p['rollouts']} "
                f"| {p['env_steps']} | {p['seconds']:.1f} | {p['return_mean_100']:.1f} |"
            )
        ppo_solved = sum(p["solved"] for p in ppo_rows)
        print(f"\nPPO solved {ppo_solved}/{len(ppo_rows)}")

        ours_unsolved = len(solved) < len(rows)
        ppo_unsolved = ppo_solved < len(ppo_rows)
        ours_steps = statistics.median(r["rollout/env_steps"] for r in rows)
        ours_secs = statistics.median(r["time/train_seconds"] for r in rows)
        ppo_steps = statistics.median(p["env_steps"] for p in ppo_rows)
        ppo_secs = statistics.median(p["seconds"] for p in ppo_rows)
        print("\nMedians over all seeds (an unsolved run counts its whole budget: its median is then a lower bound, ≥)")
        print("| | ours (REINFORCE, default config) | SB3 PPO (zoo) | ours / PPO |")
        print("|---|--:|--:|--:|")
        print(f"| solved | {len(solved)}/{len(rows)} | {ppo_solved}/{len(ppo_rows)} | |")
        caveat = " (a bound is involved)" if ours_unsolved or ppo_unsolved else ""
        print(
            f"| median wall-clock s | {median_str([r['time/train_seconds'] for r in rows], ours_unsolved, '.1f')} "
            f"| {median_str([p['seconds'] for p in ppo_rows], ppo_unsolved, '.1f')} | {ours_secs / ppo_secs:.2f}{caveat} |"
        )
        print(
            f"| median env steps | {median_str([r['rollout/env_steps'] for r in rows], ours_unsolved, '.0f')} "
            f"| {median_str([p['env_steps'] for p in ppo_rows], ppo_unsolved, '.0f')} | {ours_steps / ppo_steps:.2f}{caveat} |"
        )
    return {"ours": rows, "ppo": ppo_rows}


if __name__ == "__main__":
    main()
