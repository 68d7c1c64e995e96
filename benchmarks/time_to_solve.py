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
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root
from benchmarks.common import machine

ROOT = Path(__file__).resolve().parents[1]
PEER_ENV = "CartPole-v1"
INSTALL_PEER = 'pip install -e ".[bench]"'


def run_ours(seed: int, overrides: list[str]) -> dict:
    """``python train.py seed=S ...`` as a whole process (imports included), timed from start to exit.

    The run's own numbers come from its last lines (``<env>: E epochs, N env steps, ..., F s`` is
    ``trainer.fit``'s wall-clock; ``... solved: yes|no``) and its config (``.hydra/config.yaml``).
    """
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, str(ROOT / "train.py"), f"seed={seed}", f"hydra.run.dir={out}",
                   "callbacks.progress_bar.refresh_rate=0", *overrides]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        process_seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
        text = proc.stdout + proc.stderr
        done = re.search(r"(\S+): (\d+) epochs, (\d+) env steps, \d+ episodes, ([\d.]+) s", text)
        mean = re.search(r"100-episode mean return ([-\d.]+) \(threshold (\S+), solved: (\w+)", text)
    return {
        "seed": seed,
        "env": done.group(1),
        "threshold": None if mean.group(2) == "None" else float(mean.group(2)),
        "epochs": int(done.group(2)),
        "rollout/env_steps": int(done.group(3)),
        "time/train_seconds": float(done.group(4)),
        "process_seconds": process_seconds,
        "rollout/return_mean_100": float(mean.group(1)),
        "solved": mean.group(3) == "yes",
    }


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
    parser.add_argument(
        "--markdown", type=Path, help="also write the tables (with the command and the machine) to this file"
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
            f"env_steps={int(m['rollout/env_steps'])} fit_seconds={m['time/train_seconds']:.2f} "
            f"process_seconds={m['process_seconds']:.2f} "
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

    lines: list[str] = []

    def out(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    out(f"`python benchmarks/time_to_solve.py {' '.join(argv)}`")
    out()
    out(machine())
    out()
    out(
        f"{rows[0]['env']}, overrides: {' '.join(overrides) or 'none'}; `python train.py` as a whole process (imports "
        "included) and its `trainer.fit`"
    )
    out()
    out("| seed | solved | epochs | env steps | process s | fit s | 100-ep mean |")
    out("|---:|:---:|---:|---:|---:|---:|---:|")
    for r in rows:
        out(
            f"| {r['seed']} | {'yes' if r['solved'] else 'no'} | {int(r['epochs'])} | {int(r['rollout/env_steps'])} "
            f"| {r['process_seconds']:.2f} | {r['time/train_seconds']:.2f} | {r['rollout/return_mean_100']:.1f} |"
        )
    solved = [r for r in rows if r["solved"]]
    unsolved = len(solved) < len(rows)
    out()
    out(
        f"solved {len(solved)}/{len(rows)}; medians over all seeds (an unsolved run counts its whole budget): "
        f"{median_str([r['rollout/env_steps'] for r in rows], unsolved, '.0f')} env steps, process "
        f"{median_str([r['process_seconds'] for r in rows], unsolved, '.2f')} s, fit "
        f"{median_str([r['time/train_seconds'] for r in rows], unsolved, '.2f')} s"
    )

    if ppo_rows:
        short = f"{ppo_budget:.0e}".replace("e+0", "e")  # 1e5, as the zoo writes it; exact budgets as they are
        budget = short if float(short) == ppo_budget else str(ppo_budget)
        out()
        out(f"SB3 PPO (rl-baselines3-zoo CartPole-v1 hyperparameters, budget {budget} env steps; `learn` only)")
        out()
        out("| seed | solved | rollouts | env steps | learn s | 100-ep mean |")
        out("|---:|:---:|---:|---:|---:|---:|")
        for p in ppo_rows:
            out(
                f"| {p['seed']} | {'yes' if p['solved'] else f'not solved at {budget}'} | {p['rollouts']} "
                f"| {p['env_steps']} | {p['seconds']:.1f} | {p['return_mean_100']:.1f} |"
            )
        ppo_solved = sum(p["solved"] for p in ppo_rows)
        ppo_unsolved = ppo_solved < len(ppo_rows)
        caveat = " (a bound is involved)" if unsolved or ppo_unsolved else ""
        ppo_secs = statistics.median(p["seconds"] for p in ppo_rows)
        out()
        out("| | ours | SB3 PPO (zoo) | ours / PPO |")
        out("|---|--:|--:|--:|")
        out(f"| solved | {len(solved)}/{len(rows)} | {ppo_solved}/{len(ppo_rows)} | |")
        out(
            f"| median s: our whole process / PPO's learn | {median_str([r['process_seconds'] for r in rows], unsolved, '.2f')} "
            f"| {median_str([p['seconds'] for p in ppo_rows], ppo_unsolved, '.1f')} "
            f"| {statistics.median(r['process_seconds'] for r in rows) / ppo_secs:.2f}{caveat} |"
        )
        out(
            f"| median s: our trainer.fit / PPO's learn | {median_str([r['time/train_seconds'] for r in rows], unsolved, '.2f')} "
            f"| {median_str([p['seconds'] for p in ppo_rows], ppo_unsolved, '.1f')} "
            f"| {statistics.median(r['time/train_seconds'] for r in rows) / ppo_secs:.2f}{caveat} |"
        )
        out(
            f"| median env steps | {median_str([r['rollout/env_steps'] for r in rows], unsolved, '.0f')} "
            f"| {median_str([p['env_steps'] for p in ppo_rows], ppo_unsolved, '.0f')} "
            f"| {statistics.median(r['rollout/env_steps'] for r in rows) / statistics.median(p['env_steps'] for p in ppo_rows):.2f}{caveat} |"
        )
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(lines) + "\n")
    return {"ours": rows, "ppo": ppo_rows}


if __name__ == "__main__":
    main()
