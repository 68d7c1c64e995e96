"""Collection throughput: our collector against the minimal loop on the very same vector env and policy.

    python benchmarks/throughput.py                                        # every table below
    python benchmarks/throughput.py --envs CartPole-v1 --num-envs 16 --modes sync
    python benchmarks/throughput.py --envs CartPole-v1 --modes vector_entry_point --num-envs 64 256 1024

For each env, vectorization mode and number of copies, on one ``make_vector_env`` (same wrappers,
same autoreset), measured in one process, interleaved for ``--rounds`` rounds (medians printed):

- ``raw``: ``envs.step(envs.action_space.sample())`` in a loop: the environment's own limit;
- ``minimal``: the limit of on-policy collection without overlap: the same policy's actor draws the
  actions of every copy, the env steps them, nothing is stored (env steps/s counts every copy-step);
- ``collector``: ``EpisodeCollector.collect`` with the same fresh ``[64, 64]`` MLP policy (batched
  inference in inference mode, complete episodes, ``--episodes-per-copy`` per copy per collect,
  at least 16), counting the steps that enter the batch (``kept``). With sync envs the collector steps
  only the copies whose episodes are still running (``pg_lightning.envs.collector.collect_direct``); async and
  batched envs are stepped as a whole, idle copies (and ``NEXT_STEP`` reset steps) included: the
  ``kept`` column is the fraction of the copy-steps that entered the batch.

Prints env steps per second, the median over rounds of ``collector / minimal`` and of
``collector / raw``, then (``--breakdown N``) what one env step and one draw of the policy for N
copies cost. torch uses one thread, as in training. Not a test: timings vary run to run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root
from benchmarks.common import machine
from pg_lightning.core.torso import snapshot
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.networks import make_policy


def raw_rate(envs: gym.vector.VectorEnv, min_steps: int) -> float:
    envs.reset(seed=0)
    envs.action_space.seed(0)
    steps, start = 0, time.perf_counter()
    while steps < min_steps:
        envs.step(envs.action_space.sample())
        steps += envs.num_envs
    return steps / (time.perf_counter() - start)


def minimal_rate(envs: gym.vector.VectorEnv, policy: torch.nn.Module, min_steps: int) -> float:
    """Env steps per second of the minimal on-policy loop: draw (the same actor), step, nothing stored."""
    obs, _ = envs.reset(seed=0)
    act = policy.actor(torch.Generator().manual_seed(0))
    steps, start = 0, time.perf_counter()
    with torch.inference_mode():  # once for the whole loop, as the collector does
        while steps < min_steps:
            _, env_action = act(torch.as_tensor(obs))
            obs, _, _, _, _ = envs.step(env_action.numpy())
            steps += envs.num_envs
    return steps / (time.perf_counter() - start)


def collector_rate(
    collector: EpisodeCollector, policy: torch.nn.Module, min_steps: int, per_copy: int
) -> tuple[float, float]:
    """Env steps per second that enter the batch (complete episodes, current policy), and the kept fraction."""
    episodes = max(16, per_copy * collector.num_envs)
    kept = stepped = 0
    start = time.perf_counter()
    while kept < min_steps:
        batch = collector.collect(policy, episodes)
        kept, stepped = kept + batch.num_steps, stepped + int(batch.stepped)
    return kept / (time.perf_counter() - start), kept / stepped


def microseconds(fn, calls: int = 3000) -> float:
    """Median over 5 rounds of the mean time of ``fn()``, in microseconds."""
    fn()
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(rounds)


def breakdown(env_id: str, policy: torch.nn.Module, n: int) -> None:
    """Where one vector step of ``n`` copies goes: the policy (three ways) against one env step."""
    env = gym.make(env_id)
    env.reset(seed=0)
    action = env.action_space.sample()

    def env_step() -> None:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()

    obs = np.stack([env.observation_space.sample() for _ in range(n)]).astype(np.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        actor = policy.actor(generator)
        x = torch.as_tensor(obs)
        logits = snapshot(torch.nn.Sequential(policy.encoder, policy.net))
        costs = {
            "one env step": microseconds(env_step),
            f"policy modules on {n} obs (nn.Module calls)": microseconds(lambda: policy.net(policy.encoder(x))),
            f"policy snapshot on {n} obs (what the collector runs)": microseconds(lambda: logits(x)),
            f"collector's whole draw on {n} obs (as_tensor, snapshot, sample, to NumPy)": microseconds(
                lambda: [a.numpy() for a in actor(torch.as_tensor(obs))]
            ),
        }
    env.close()
    print(f"\n{env_id}, per call, median of 5 rounds:")
    print("| what | us |")
    print("|---|--:|")
    for what, us in costs.items():
        print(f"| {what} | {us:.1f} |")


def row(env_id: str, mode: str, n: int, per_copy: int, policy: torch.nn.Module, args: argparse.Namespace, out) -> None:
    """One table row: raw, minimal and collector rates on one vector env, interleaved over ``args.rounds``."""
    min_steps = args.min_steps * max(1, n // 64)
    envs = make_vector_env(env_id, n, mode)
    try:
        collector = EpisodeCollector(envs, seed=0)
        raw_rate(envs, 2_000)  # warm-up (async workers, caches)
        minimal_rate(envs, policy, 2_000)
        collector_rate(collector, policy, 2_000, per_copy)
        raws, minimals, ours, kept = [], [], [], []
        for _ in range(args.rounds):  # interleaved, so a slow moment hits all three
            raws.append(raw_rate(envs, min_steps))
            minimals.append(minimal_rate(envs, policy, min_steps))
            rate, fraction = collector_rate(collector, policy, min_steps, per_copy)
            ours.append(rate)
            kept.append(fraction)
    finally:
        envs.close()
    to_minimal = statistics.median(o / m for o, m in zip(ours, minimals, strict=True))
    to_raw = statistics.median(o / r for o, r in zip(ours, raws, strict=True))
    out(
        f"| {env_id} | {mode} | {n} | {per_copy} | {statistics.median(raws):,.0f} | {statistics.median(minimals):,.0f} "
        f"| {statistics.median(ours):,.0f} | {statistics.median(kept):.2f} | {to_minimal:.2f} | {to_raw:.2f} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1"])
    parser.add_argument(
        "--num-envs",
        type=int,
        nargs="+",
        default=None,
        help="copies (default: 1 8 16 32 for sync/async, 64 256 1024 for vector_entry_point)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["sync", "async", "vector_entry_point"],
        choices=["sync", "async", "vector_entry_point"],
    )
    parser.add_argument(
        "--min-steps", type=int, default=20_000, help="env steps per measurement (x num_envs / 64 for batched)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved raw/minimal/collector rounds; medians are printed"
    )
    parser.add_argument(
        "--episodes-per-copy",
        type=int,
        nargs="+",
        default=[2],
        help="episodes per copy in each collect (several: one row each)",
    )
    parser.add_argument(
        "--breakdown", type=int, default=16, help="after the table: per-call costs at this num_envs (0: skip)"
    )
    parser.add_argument(
        "--markdown", type=Path, help="also write the table (with the command and the machine) to this file"
    )
    args = parser.parse_args(argv)  # fmt: skip
    torch.set_num_threads(1)
    lines: list[str] = []

    def out(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    out(f"`python benchmarks/throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}`".replace(" `", "`"))
    out("")
    out(machine())
    out("")
    out(f"rounds {args.rounds} (interleaved; medians); torch 1 thread")
    out("")
    out(
        "| env | mode | num_envs | episodes / copy | raw steps/s | minimal loop steps/s | collector kept steps/s "
        "| kept / stepped | collector / minimal | collector / raw |"
    )
    out("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for env_id in args.envs:
        probe = gym.make(env_id)
        torch.manual_seed(0)
        policy = make_policy(probe.observation_space, probe.action_space)
        batched = gym.spec(env_id).vector_entry_point is not None
        probe.close()
        for mode in args.modes:
            if mode == "vector_entry_point" and not batched:
                continue
            for n in args.num_envs or ([64, 256, 1024] if mode == "vector_entry_point" else [1, 8, 16, 32]):
                for per_copy in args.episodes_per_copy:
                    row(env_id, mode, n, per_copy, policy, args, out)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(lines) + "\n")
    for env_id in args.envs if args.breakdown else []:
        probe = gym.make(env_id)
        torch.manual_seed(0)
        breakdown(env_id, make_policy(probe.observation_space, probe.action_space), args.breakdown)
        probe.close()


if __name__ == "__main__":
    main()
