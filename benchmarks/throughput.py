"""Collection throughput: our collector against a random-action loop on the very same vector env.

    python benchmarks/throughput.py                              # CartPole-v1 and Acrobot-v1
    python benchmarks/throughput.py --envs CartPole-v1 --num-envs 16 --modes sync

For each env, vectorization mode and number of copies, on one ``make_vector_env`` (same wrappers,
same autoreset), measured back to back in one process:

- ``raw``: ``envs.step(envs.action_space.sample())`` in a loop: the environment's own limit;
- ``collector``: ``EpisodeCollector.collect`` with a fresh ``[64, 64]`` MLP policy (batched
  inference in inference mode, complete episodes), counting the steps that enter the batch
  (``kept``) and all vector steps it took (``stepped``: idle copies are stepped and discarded at
  the end of an epoch, see ``pg_lightning.collector``).

Prints env steps per second and the ratio ``collector kept / raw`` (the issue's target is >= 0.6
at 16 sync envs). torch uses one thread, as in training. Not a test: timings vary run to run.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch

from pg_lightning.collector import EpisodeCollector, make_vector_env
from pg_lightning.factory import make_policy


def raw_rate(envs: gym.vector.VectorEnv, min_steps: int) -> float:
    envs.reset(seed=0)
    envs.action_space.seed(0)
    steps, start = 0, time.perf_counter()
    while steps < min_steps:
        envs.step(envs.action_space.sample())
        steps += envs.num_envs
    return steps / (time.perf_counter() - start)


def collector_rate(envs: gym.vector.VectorEnv, env_id: str, min_steps: int) -> tuple[float, float]:
    probe = gym.make(env_id)
    torch.manual_seed(0)
    policy = make_policy(probe.observation_space, probe.action_space)
    probe.close()
    collector = EpisodeCollector(envs, seed=0)
    episodes = max(16, 2 * envs.num_envs)  # at least two episodes per copy, as in training
    kept = stepped = 0
    start = time.perf_counter()
    while kept < min_steps:
        calls = []
        original = envs.step

        def counting_step(action, _calls=calls, _step=original):
            _calls.append(1)
            return _step(action)

        envs.step = counting_step  # count vector steps, idle copies included
        try:
            batch = collector.collect(policy, episodes)
        finally:
            envs.step = original
        kept += batch.num_steps
        stepped += len(calls) * envs.num_envs
    seconds = time.perf_counter() - start
    return kept / seconds, stepped / seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "Acrobot-v1"])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--modes", nargs="+", default=["sync", "async"], choices=["sync", "async"])
    parser.add_argument("--min-steps", type=int, default=20_000, help="env steps per measurement")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    print("| env | mode | num_envs | raw steps/s | collector kept steps/s | collector stepped steps/s | kept / raw |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for env_id in args.envs:
        for mode in args.modes:
            for n in args.num_envs:
                envs = make_vector_env(env_id, n, mode)
                try:
                    raw_rate(envs, 2_000)  # warm-up (async workers, caches)
                    raw = raw_rate(envs, args.min_steps)
                    kept, stepped = collector_rate(envs, env_id, args.min_steps)
                finally:
                    envs.close()
                print(f"| {env_id} | {mode} | {n} | {raw:,.0f} | {kept:,.0f} | {stepped:,.0f} | {kept / raw:.2f} |", flush=True)


if __name__ == "__main__":
    main()
