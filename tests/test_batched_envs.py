"""Batched vector envs: ``data.vectorization_mode=vector_entry_point`` and ``data.vector_env``.

The collector steps them as a whole, in either autoreset mode, with numpy or torch tensors, and
still collects exactly the requested complete episodes without bias toward short ones.
"""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch
from gymnasium.vector import AutoresetMode

import tests.envs  # noqa: F401  (registers RandomLength-v0)
from pg_lightning.cli.train import run
from pg_lightning.core.errors import ConfigError
from pg_lightning.core.policies import distribution
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.networks import make_policy
from pg_lightning.envs.vector_envs import check_vector_env
from tests.helpers import same_batch
from tests.test_action_spaces import late_reset
from tests.test_collector import TRUE_MEAN, TRUE_STD, naive_first_finished_lengths
from tests.vector_envs import RandomLengthVectorEnv

BATCHED = "tests.vector_envs:RandomLengthBatched-v0"
QUIET = ["callbacks.progress_bar.refresh_rate=0"]


def batched(kind: str, num_envs: int = 8):
    """The batched RandomLength env: NEXT_STEP (its vector entry point), SAME_STEP, or NEXT_STEP behind NumpyToTorch."""
    if kind == "vector_entry_point":
        return make_vector_env(BATCHED, num_envs, "vector_entry_point")
    envs = RandomLengthVectorEnv(num_envs, autoreset_mode="SameStep" if kind == "same_step" else "NextStep")
    return gym.wrappers.vector.NumpyToTorch(envs) if kind == "torch" else envs


def policy_for(envs, core=None):
    torch.manual_seed(0)
    return make_policy(envs.single_observation_space, envs.single_action_space, hidden_sizes=[8], core=core)


KINDS = ["vector_entry_point", "same_step", "torch"]


@pytest.mark.statistical
@pytest.mark.parametrize("kind", KINDS)
def test_episode_lengths_are_unbiased(kind):
    envs = batched(kind)
    collector, policy = EpisodeCollector(envs, seed=0), policy_for(envs)
    lengths = torch.cat([collector.collect(policy, 12).episode_lengths() for _ in range(80)]).double()
    assert len(lengths) == 960
    se = TRUE_STD / math.sqrt(len(lengths))
    assert abs(lengths.mean().item() - TRUE_MEAN) < 4 * se, (lengths.mean().item(), TRUE_MEAN, se)
    biased = naive_first_finished_lengths(num_envs=8, num_episodes=12, epochs=80, seed=0)
    assert biased.mean() < TRUE_MEAN - 4 * se  # the statistic has power


@pytest.mark.parametrize("kind", KINDS)
def test_batches_hold_every_step_of_complete_episodes(kind):
    envs = batched(kind, num_envs=5)
    collector, policy = EpisodeCollector(envs, seed=3), policy_for(envs)
    for episodes in (3, 5, 13):
        batch = collector.collect(policy, episodes)
        assert batch.num_episodes == episodes and bool(batch.dones[-1])
        lengths = batch.episode_lengths()
        # observations count 0..L-1 inside each episode; the final observation is [L]; L even: terminated
        assert torch.equal(batch.obs[:, 0], batch.step_in_episode().float())
        assert torch.equal(batch.final_obs[:, 0], lengths.float())
        ends = batch.dones
        assert torch.equal(batch.terminated[ends], lengths % 2 == 0) and torch.equal(
            batch.truncated[ends], lengths % 2 == 1
        )
        assert not (batch.terminated & batch.truncated).any() and bool((batch.rewards == 1).all())
        assert int(batch.stepped) >= batch.num_steps  # idle copies (and NEXT_STEP resets) are stepped too


def test_a_batched_env_is_reproducible_from_the_seed():
    def batches(seed):
        envs = batched("vector_entry_point")
        collector, policy = EpisodeCollector(envs, seed=seed), policy_for(envs)
        return [collector.collect(policy, 10) for _ in range(2)]

    a, b, c = batches(0), batches(0), batches(1)
    assert all(same_batch(x, y) for x, y in zip(a, b, strict=True))
    assert not same_batch(a[0], c[0]) and not same_batch(a[0], a[1])


@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_states_restart_with_each_episode_in_either_autoreset_mode(kind):
    envs = batched(kind, num_envs=4)
    policy = policy_for(envs, core="gru")
    batch = EpisodeCollector(envs, seed=0).collect(policy, 9, record_log_probs=True)
    with torch.no_grad():
        recomputed = distribution(policy, batch.obs, batch.dones).log_prob(batch.actions)
    assert float((recomputed - batch.log_probs).abs().max()) < 1e-5
    broken = late_reset(policy_for(envs, core="gru"))
    batch = EpisodeCollector(batched(kind, num_envs=4), seed=0).collect(broken, 9, record_log_probs=True)
    with torch.no_grad():
        recomputed = distribution(broken, batch.obs, batch.dones).log_prob(batch.actions)
    assert float((recomputed - batch.log_probs).abs().max()) > 1e-4


def test_cartpole_vector_entry_point_ends_episodes_where_the_pole_falls():
    envs = make_vector_env("CartPole-v1", 16, "vector_entry_point")
    collector, policy = EpisodeCollector(envs, seed=0), policy_for(envs)
    batch = collector.collect(policy, 40)
    assert batch.num_episodes == 40 and collector.autoreset == AutoresetMode.NEXT_STEP
    fell = (batch.final_obs[:, 0].abs() > 2.4) | (batch.final_obs[:, 2].abs() > 12 * 2 * math.pi / 360)
    assert torch.equal(fell, batch.terminated[batch.dones])
    assert batch.num_steps < int(batch.stepped) and int(batch.stepped) % 16 == 0


def test_bad_batched_envs_are_one_line_naming_the_key():
    with pytest.raises(ConfigError, match=r"^data.vectorization_mode=vector_entry_point: Acrobot-v1 registers no vector "
                       r"entry point .* use data.vectorization_mode=sync or async"):  # fmt: skip
        make_vector_env("Acrobot-v1", 4, "vector_entry_point")
    with pytest.raises(ConfigError, match="^env.wrappers: single-env wrappers cannot wrap"):
        make_vector_env("CartPole-v1", 4, "vector_entry_point", wrappers=[gym.wrappers.TimeAwareObservation])
    with pytest.raises(
        ConfigError, match=r"^data.vector_env: its single_observation_space .* is not env.id=CartPole-v1's"
    ):
        check_vector_env(RandomLengthVectorEnv(4), "CartPole-v1")
    with pytest.raises(ConfigError, match="^data.vector_env: autoreset mode .*DISABLED.* is not supported"):
        check_vector_env(RandomLengthVectorEnv(4, autoreset_mode="Disabled"), "RandomLength-v0")
    with pytest.raises(
        ConfigError, match="^data.vector_env: instantiating it gave a CartPoleEnv, not a gymnasium.vector"
    ):
        check_vector_env(gym.make("CartPole-v1").unwrapped, "CartPole-v1")


def rows(path):
    import csv

    with open(path / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_train_with_vector_entry_point_and_with_your_own_vector_env(make_cfg, tmp_path):
    run(make_cfg("data.vectorization_mode=vector_entry_point", "data.num_envs=32", "data.episodes_per_epoch=32",
                 "trainer.max_epochs=3", *QUIET, output_dir=tmp_path / "a"))  # fmt: skip
    kept = [float(r["rollout/kept_fraction"]) for r in rows(tmp_path / "a")]
    assert len(kept) == 3 and all(0 < k < 1 for k in kept)
    own = ["env.id=RandomLength-v0", "+data.vector_env._target_=tests.vector_envs.RandomLengthVectorEnv",
           "+data.vector_env.num_envs=6", "+data.vector_env.autoreset_mode=SameStep", "trainer.max_epochs=2"]  # fmt: skip
    metrics = run(make_cfg(*own, "+env.imports=[tests.vector_envs]", *QUIET, output_dir=tmp_path / "b"))
    assert metrics["rollout/episodes"] == 32
    bad = make_cfg("env.id=CartPole-v1", *own[1:], *QUIET, output_dir=tmp_path / "c")
    with pytest.raises(ConfigError, match="^data.vector_env: its single_observation_space"):
        run(bad)
    assert not (tmp_path / "c" / "checkpoints").exists()


def test_env_wrappers_with_your_own_vector_env_are_refused(make_cfg, tmp_path):
    own = ["env.id=RandomLength-v0", "+data.vector_env._target_=tests.vector_envs.RandomLengthVectorEnv",
           "+env.wrappers=[gymnasium.wrappers.TimeAwareObservation]", "trainer.max_epochs=1"]  # fmt: skip
    with pytest.raises(ConfigError, match="^env.wrappers: single-env wrappers cannot wrap data.vector_env"):
        run(make_cfg(*own, "+env.imports=[tests.vector_envs]", *QUIET))


@pytest.mark.ddp
def test_ddp_ranks_that_waste_steps_in_different_epochs_stay_in_step(tmp_path):
    """kept_fraction is decided from all ranks' counts: a rank that wasted no step in an epoch where the other did
    logs it too (else the ranks' collectives would pair up wrongly and gloo abort)."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for key in ("LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "MASTER_ADDR", "NODE_RANK"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "trainer=ddp_cpu", "trainer.devices=2", "env.id=" + BATCHED,
         "+env.kwargs.max_len=2", "env.return_threshold=null", "data.vectorization_mode=vector_entry_point",
         "data.num_envs=2", "data.episodes_per_epoch=2", "trainer.max_epochs=12", *QUIET, "hydra.run.dir=run"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert len(rows(tmp_path / "run")) == 12
