"""Collector: complete episodes, no short-episode bias, flags and seeds as gymnasium reports them."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import tests.envs  # noqa: F401  (registers the test envs)
from pg_lightning.envs.collector import EpisodeCollector, direct_envs, make_vector_env
from pg_lightning.envs.networks import make_policy
from tests.helpers import same_batch

MAX_LEN = 40
TRUE_MEAN = (MAX_LEN + 1) / 2
TRUE_STD = math.sqrt((MAX_LEN**2 - 1) / 12)


def collector_and_policy(env_id="RandomLength-v0", num_envs=8, seed=0, rank=0, mode="sync", **env_kwargs):
    envs = make_vector_env(env_id, num_envs, mode, env_kwargs)
    torch.manual_seed(0)
    policy = make_policy(envs.single_observation_space, envs.single_action_space, hidden_sizes=[8])
    return EpisodeCollector(envs, seed=seed, rank=rank), policy


def naive_first_finished_lengths(num_envs, num_episodes, epochs, seed):
    """The biased scheme: run all envs, keep the first `num_episodes` episodes that finish."""
    envs = make_vector_env("RandomLength-v0", num_envs)
    lengths = []
    envs.reset(seed=seed)
    for _ in range(epochs):
        envs.reset()
        t_in = np.zeros(num_envs, int)
        got = 0
        while got < num_episodes:
            _, _, term, trunc, _ = envs.step(np.zeros(num_envs, int))
            t_in += 1
            for i in np.flatnonzero(term | trunc):
                if got < num_episodes:
                    lengths.append(t_in[i])
                    got += 1
                t_in[i] = 0
    envs.close()
    return np.array(lengths)


@pytest.mark.statistical
def test_episode_lengths_are_unbiased():
    """Mean collected length matches the true mean within 4 standard errors."""
    collector, policy = collector_and_policy(num_envs=8)
    lengths = torch.cat([collector.collect(policy, 12).episode_lengths() for _ in range(80)]).double()
    assert len(lengths) == 960
    se = TRUE_STD / math.sqrt(len(lengths))
    assert abs(lengths.mean().item() - TRUE_MEAN) < 4 * se, (lengths.mean().item(), TRUE_MEAN, se)
    # The same statistic detects the bias of "first N finished": the test has power.
    biased = naive_first_finished_lengths(num_envs=8, num_episodes=12, epochs=80, seed=0)
    assert biased.mean() < TRUE_MEAN - 4 * se, (biased.mean(), TRUE_MEAN, se)


@pytest.mark.parametrize("num_episodes", [1, 3, 8, 21])
def test_exactly_the_requested_complete_episodes(num_episodes):
    collector, policy = collector_and_policy(num_envs=8)
    batch = collector.collect(policy, num_episodes)
    assert batch.num_episodes == num_episodes == int(batch.dones.sum())
    assert bool(batch.dones[-1])
    # observations restart at 0 in every episode and count up by one: episodes are contiguous and whole
    assert torch.equal(batch.obs[:, 0].long(), batch.step_in_episode())
    assert torch.equal(batch.final_obs[:, 0].long(), batch.episode_lengths())
    assert batch.obs.shape == (batch.num_steps, 1) and batch.actions.shape == (batch.num_steps,)
    assert batch.rewards.dtype == torch.float32 and batch.terminated.dtype == torch.bool


def test_terminated_and_truncated_are_kept_apart():
    collector, policy = collector_and_policy()
    batch = collector.collect(policy, 30)
    lengths = batch.episode_lengths()
    last = torch.cumsum(lengths, 0) - 1
    assert torch.equal(batch.terminated[last], lengths % 2 == 0)
    assert torch.equal(batch.truncated[last], lengths % 2 == 1)
    assert not (batch.terminated & batch.truncated).any()
    assert int((batch.terminated | batch.truncated).sum()) == 30


def test_time_limit_truncates_cartpole():
    collector, policy = collector_and_policy("CartPole-v1", num_envs=4, max_episode_steps=15)
    batch = collector.collect(policy, 40)
    lengths = batch.episode_lengths()
    last = torch.cumsum(lengths, 0) - 1
    cut, ended = lengths == 15, lengths < 15
    assert lengths.max() <= 15 and cut.any() and ended.any()
    assert batch.truncated[last][cut].all()  # the time limit (a pole may also fall on that step)
    assert batch.terminated[last][ended].all() and not batch.truncated[last][ended].any()
    assert not (batch.terminated | batch.truncated)[~torch.isin(torch.arange(len(batch.rewards)), last)].any()


def test_reproducible_from_seed_and_distinct_across_seeds_and_ranks():
    def first_batches(seed, rank):
        collector, policy = collector_and_policy("CartPole-v1", num_envs=4, seed=seed, rank=rank)
        return [collector.collect(policy, 6) for _ in range(2)]

    a, b = first_batches(0, 0), first_batches(0, 0)
    assert all(same_batch(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0].obs, a[1].obs)  # the stream goes on between epochs
    assert not torch.equal(a[0].obs[:20], first_batches(1, 0)[0].obs[:20])
    assert not torch.equal(a[0].obs[:20], first_batches(0, 1)[0].obs[:20])


def test_a_restored_epoch_counter_replays_the_stream():
    collector, policy = collector_and_policy("CartPole-v1", num_envs=4)
    collector.collect(policy, 6)
    second = collector.collect(policy, 6)
    restored, _ = collector_and_policy("CartPole-v1", num_envs=4)
    restored.load_state_dict(collector.state_dict() | {"epoch": 1})
    assert same_batch(second, restored.collect(policy, 6))
    assert collector.state_dict() == {"epoch": 2}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_policy_on_gpu_collects_the_same_as_on_cpu():
    cpu_collector, policy = collector_and_policy("CartPole-v1", num_envs=2)
    gpu_collector, _ = collector_and_policy("CartPole-v1", num_envs=2)
    on_cpu = cpu_collector.collect(policy, 4)
    on_gpu = gpu_collector.collect(policy.cuda(), 4)
    assert torch.equal(on_cpu.actions, on_gpu.actions) and on_gpu.obs.device.type == "cpu"


def test_async_matches_sync():
    sync_collector, policy = collector_and_policy("CartPole-v1", num_envs=2, mode="sync")
    async_collector, _ = collector_and_policy("CartPole-v1", num_envs=2, mode="async")
    try:
        assert same_batch(sync_collector.collect(policy, 4), async_collector.collect(policy, 4))
    finally:
        async_collector.close()


@pytest.mark.parametrize(
    "env_id, bounds",
    [("RandomLength-v0", "clip"), ("ClipEcho-v0", "clip"), ("ClipEcho-v0", "tanh"), ("Chain-v0", "clip")],
)
def test_stepping_only_the_active_copies_gives_the_batch_of_the_whole_vector_env(env_id, bounds):
    """The sync fast path (single envs stepped one by one) against SyncVectorEnv.step, the reference."""
    env_id = {"Chain-v0": "pg_lightning/Chain-v0"}.get(env_id, env_id)
    env = gym.make(env_id)
    torch.manual_seed(0)
    policy = make_policy(
        env.observation_space, env.action_space, hidden_sizes=[8], log_std_init=1.0, action_bounds=bounds
    )
    direct = EpisodeCollector(make_vector_env(env_id, 3), seed=5)
    # any vector wrapper makes the collector step the vector env as a whole
    whole = EpisodeCollector(gym.vector.VectorWrapper(make_vector_env(env_id, 3)), seed=5)
    assert direct_envs(direct.envs)[0] is not None and direct_envs(whole.envs)[0] is None
    for _ in range(3):  # 7 episodes on 3 copies: copies restart, go idle, and end at different times
        a, b = direct.collect(policy, 7), whole.collect(policy, 7)
        assert a.num_episodes == 7
        assert same_batch(a, b)


def test_box_actions_are_clipped_for_the_env_only():
    envs = make_vector_env("ClipEcho-v0", 4)
    policy = make_policy(envs.single_observation_space, envs.single_action_space, log_std_init=math.log(3.0))
    batch = EpisodeCollector(envs).collect(policy, 20)
    assert (batch.actions.abs() > 1).any()  # the batch keeps the policy's own sample
    assert torch.equal(batch.rewards, batch.actions[:, 0].clamp(-1, 1))  # the env got it clipped


def test_tanh_actions_are_squashed_for_the_env_and_kept_unsquashed_in_the_batch():
    envs = make_vector_env("ClipEcho-v0", 4)
    env = gym.make("ClipEcho-v0")  # the env's own bounds (ClipAction widens the vector env's space)
    policy = make_policy(env.observation_space, env.action_space, log_std_init=math.log(3.0), action_bounds="tanh")
    batch = EpisodeCollector(envs).collect(policy, 20)
    assert (batch.actions.abs() > 1).any()  # the pre-squash sample u
    torch.testing.assert_close(batch.rewards, torch.tanh(batch.actions[:, 0]))  # the env got tanh(u) in [-1, 1]


def test_collection_does_not_track_gradients_but_batch_is_usable():
    collector, policy = collector_and_policy("CartPole-v1", num_envs=2)
    batch = collector.collect(policy, 2)
    assert not batch.obs.requires_grad and not batch.obs.is_inference()
    policy(batch.obs).log_prob(batch.actions).sum().backward()  # autograd accepts the batch


def test_bad_arguments():
    with pytest.raises(ValueError, match="data.num_envs"):
        make_vector_env("CartPole-v1", 0)
    with pytest.raises(ValueError, match="data.vectorization_mode"):
        make_vector_env("CartPole-v1", 2, "threads")
    collector, policy = collector_and_policy("CartPole-v1", num_envs=2)
    with pytest.raises(ValueError, match="data.episodes_per_epoch"):
        collector.collect(policy, 0)
