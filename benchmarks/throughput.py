"""Collection throughput: our collector against a random-action loop on the very same vector env.

    python benchmarks/throughput.py                              # CartPole-v1 and Acrobot-v1
    python benchmarks/throughput.py --envs CartPole-v1 --num-envs 16 --modes sync

For each env, vectorization mode and number of copies, on one ``make_vector_env`` (same wrappers,
same autoreset), measured in one process, interleaved for ``--rounds`` rounds (medians printed):

- ``raw``: ``envs.step(envs.action_space.sample())`` in a loop: the environment's own limit;
- ``collector``: ``EpisodeCollector.collect`` with a fresh ``[64, 64]`` MLP policy (batched
  inference in inference mode, complete episodes, ``2 * num_envs`` (at least 16) per collect),
  counting the steps that enter the batch. With sync envs the collector steps only the copies
  whose episodes are still running (see ``EpisodeCollector._step_active``); async envs are
  stepped as a whole, idle copies included.

Prints env steps per second and the median over rounds of ``collector / raw`` (the issue's target
is >= 0.6 at 16 sync envs), then (``--breakdown N``) what one env step and one draw of the
policy for N copies cost. torch uses one thread, as in training. Not a test: timings vary run
to run.
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
from benchmarks.common import machine  # noqa: E402
from pg_lightning.collector import EpisodeCollector, make_vector_env
from pg_lightning.factory import make_policy
from pg_lightning.policies import snapshot


def raw_rate(envs: gym.vector.VectorEnv, min_steps: int) -> float:
    envs.reset(seed=0)
    envs.action_space.seed(0)
    steps, start = 0, time.perf_counter()
    while steps < min_steps:
        envs.step(envs.action_space.sample())
        steps += envs.num_envs
    return steps / (time.perf_counter() - start)


def collector_rate(collector: EpisodeCollector, policy: torch.nn.Module, min_steps: int) -> float:
    """Env steps per second that enter the batch (complete episodes, current policy)."""
    episodes = max(16, 2 * collector.num_envs)  # at least two episodes per copy, as in training
    kept, start = 0, time.perf_counter()
    while kept < min_steps:
        kept += collector.collect(policy, episodes).num_steps
    return kept / (time.perf_counter() - start)


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1"])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--modes", nargs="+", default=["sync", "async"], choices=["sync", "async"])
    parser.add_argument("--min-steps", type=int, default=10_000, help="env steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved raw/collector rounds; medians are printed")
    parser.add_argument("--breakdown", type=int, default=16, help="after the table: per-call costs at this num_envs (0: skip)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(machine())

    print("| env | mode | num_envs | raw steps/s | collector steps/s | collector / raw |")
    print("|---|---|--:|--:|--:|--:|")
    for env_id in args.envs:
        probe = gym.make(env_id)
        torch.manual_seed(0)
        policy = make_policy(probe.observation_space, probe.action_space)
        probe.close()
        for mode in args.modes:
            for n in args.num_envs:
                envs = make_vector_env(env_id, n, mode)
                try:
                    collector = EpisodeCollector(envs, seed=0)
                    raw_rate(envs, 2_000)  # warm-up (async workers, caches)
                    collector_rate(collector, policy, 2_000)
                    raws, ours = [], []
                    for _ in range(args.rounds):  # interleaved, so a slow moment hits both
                        raws.append(raw_rate(envs, args.min_steps))
                        ours.append(collector_rate(collector, policy, args.min_steps))
                finally:
                    envs.close()
                ratio = statistics.median(o / r for o, r in zip(ours, raws, strict=True))
                print(
                    f"| {env_id} | {mode} | {n} | {statistics.median(raws):,.0f} | {statistics.median(ours):,.0f} "
                    f"| {ratio:.2f} |",
                    flush=True,
                )
    for env_id in args.envs if args.breakdown else []:
        probe = gym.make(env_id)
        torch.manual_seed(0)
        breakdown(env_id, make_policy(probe.observation_space, probe.action_space), args.breakdown)
        probe.close()


if __name__ == "__main__":
    main()
