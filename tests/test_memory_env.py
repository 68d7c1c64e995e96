"""pg_lightning.envs.memory: CueMemoryEnv, the "remember the cue" task, and its registration."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from pg_lightning.envs.memory import ENV_ID, CueMemoryEnv, register  # importing it registers ENV_ID


def run_episode(env, seed, policy):
    """Play one episode; policy(observations so far) -> action. Returns (observations, rewards, cue)."""
    obs, _ = env.reset(seed=seed)
    cue = env.unwrapped._cue
    observations, rewards = [obs], []
    while True:
        obs, reward, terminated, truncated, _info = env.step(policy(observations))
        rewards.append(reward)
        assert not truncated
        if terminated:
            return observations, rewards, cue
        observations.append(obs)


def first_cue(observations):
    """The optimal policy with memory: answer the cue shown at t = 0."""
    return int(observations[0][0] > 0)


@pytest.mark.parametrize("delay", [0, 1, 4])
def test_gymnasium_env_checker_passes_without_warnings(delay):
    for render_mode in (None, "ansi"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(gym.make(ENV_ID, delay=delay, render_mode=render_mode).unwrapped, skip_render_check=False)
        assert [str(w.message) for w in caught] == []


def test_spaces():
    env = CueMemoryEnv()
    assert env.observation_space == gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    assert env.action_space == gym.spaces.Discrete(2)


@pytest.mark.parametrize("delay", [0, 1, 2, 4, 10])
def test_every_episode_lasts_exactly_delay_plus_two_steps(delay):
    env = CueMemoryEnv(delay=delay)
    rng = np.random.default_rng(delay)
    for seed in range(10):
        observations, rewards, _ = run_episode(env, seed, lambda obs: int(rng.integers(2)))
        assert len(rewards) == delay + 2 == env.episode_length
        assert rewards[:-1] == [0.0] * (delay + 1)  # actions before the decision step pay nothing
        # cue step, corridor, decision step: the flags say which
        assert [o[1:].tolist() for o in observations] == [[0, 0]] + [[1, 0]] * delay + [[0, 1]]
        assert all(o.dtype == np.float32 and env.observation_space.contains(o) for o in observations)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


@pytest.mark.parametrize("delay", [0, 3])
def test_the_right_answer_pays_one_and_the_wrong_one_pays_wrong_reward(delay):
    for wrong_reward in (-1.0, -0.25):
        env = CueMemoryEnv(delay=delay, wrong_reward=wrong_reward)
        seen = set()
        for seed in range(20):
            _, rewards, cue = run_episode(env, seed, first_cue)
            assert rewards[-1] == 1.0
            _, rewards, cue_again = run_episode(env, seed, lambda obs: 1 - first_cue(obs))
            assert cue_again == cue and rewards[-1] == wrong_reward
            seen.add(cue)
        assert seen == {0, 1}


def test_the_decision_step_ends_with_info_and_a_neutral_observation():
    env = CueMemoryEnv(delay=1)
    obs, _ = env.reset(seed=0)
    cue = int(obs[0] > 0)
    env.step(0)
    env.step(1)
    final, reward, terminated, truncated, info = env.step(cue)
    assert (reward, terminated, truncated, info) == (1.0, True, False, {"correct": True})
    assert final.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("delay", [0, 1, 5])
def test_after_the_cue_step_the_observations_do_not_depend_on_the_cue(delay):
    env = CueMemoryEnv(delay=delay)
    by_cue = {}
    for seed in range(40):
        observations, _, cue = run_episode(env, seed, lambda obs: 0)
        assert observations[0].tolist() == [1.0 if cue else -1.0, 0.0, 0.0]
        by_cue.setdefault(cue, set()).add(tuple(map(tuple, np.asarray(observations[1:]).tolist())))
    assert set(by_cue) == {0, 1}
    # one observation sequence after t = 0, the same for both cues: the decision step shows nothing of the cue
    assert by_cue[0] == by_cue[1] and len(by_cue[0]) == 1


def test_memory_gets_one_and_a_memoryless_answer_gets_chance():
    env = CueMemoryEnv(delay=4)
    n = 200
    memory = [sum(run_episode(env, seed, first_cue)[1]) for seed in range(n)]
    assert memory == [1.0] * n  # the optimal return, every episode
    for fixed in (0, 1):  # a fixed answer: the decision observation is all a memoryless policy sees
        returns = np.array([sum(run_episode(env, seed, lambda obs, fixed=fixed: fixed)[1]) for seed in range(n)])
        stderr = returns.std(ddof=1) / np.sqrt(n)
        assert abs(returns.mean()) < 4 * stderr, (fixed, returns.mean(), stderr)


def test_reset_is_seeded():
    env = CueMemoryEnv()
    cues = [run_episode(env, seed, lambda obs: 0)[2] for seed in range(30)]
    assert cues == [run_episode(env, seed, lambda obs: 0)[2] for seed in range(30)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": -1}, r"delay must be >= 0 \(the number of corridor steps\), got -1"),
        ({"delay": 2.5}, r"delay must be an int >= 0 .*got 2.5"),
        ({"delay": "4"}, r"delay must be an int >= 0 .*got '4'"),
        ({"delay": True}, r"delay must be an int >= 0 .*got True"),
        ({"wrong_reward": float("nan")}, r"wrong_reward must be a finite number, got nan"),
        ({"wrong_reward": "bad"}, r"wrong_reward must be a finite number, got 'bad'"),
        ({"wrong_reward": 1.0}, r"wrong_reward must be < 1, the reward for the right answer .*got 1.0"),
        ({"render_mode": "human"}, r"render_mode must be one of \['ansi'\] or None, got 'human'"),
    ],
)
def test_bad_kwargs_are_refused_with_clear_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CueMemoryEnv(**kwargs)


def test_numpy_ints_are_accepted_and_bad_actions_refused():
    env = CueMemoryEnv(delay=np.int64(2), wrong_reward=np.float32(-0.5))
    assert (env.delay, env.wrong_reward) == (2, -0.5)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action 2 is not in Discrete"):
        env.step(2)


def test_ansi_render():
    env = CueMemoryEnv(delay=1, render_mode="ansi")
    assert env.render() == "not reset"
    obs, _ = env.reset(seed=0)
    cue = int(obs[0] > 0)
    assert env.render() == f"t=0 of 3: cue {cue}"
    env.step(0)
    assert env.render() == "t=1 of 3: corridor 1/1"
    env.step(0)
    assert env.render() == "t=2 of 3: decision"
    env.step(1 - cue)
    assert env.render() == f"done: cue {cue}, answered {1 - cue}, reward -1"
    assert CueMemoryEnv().render() is None


def test_registered_without_a_time_limit_and_made_with_kwargs():
    spec = gym.spec(ENV_ID)
    assert spec.max_episode_steps is None and spec.reward_threshold == 0.9
    assert spec.entry_point == "pg_lightning.envs.memory:CueMemoryEnv"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register()  # idempotent: registering again neither raises nor warns
    assert gym.spec(ENV_ID) is spec
    env = gym.make(ENV_ID, delay=2)
    assert env.unwrapped.delay == 2 and env.spec.max_episode_steps is None
    _observations, rewards, _ = run_episode(env, 0, first_cue)
    assert len(rewards) == 4 and sum(rewards) == 1.0
    env.close()
