"""Evaluation: checkpoints to policies, greedy and sampled episodes, the CLI, and EvalCallback."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from pg_lightning.cli.evaluation import evaluate, load_policy, main
from pg_lightning.cli.train import run
from pg_lightning.core.distributions import TanhNormal, sample
from pg_lightning.core.errors import ArgumentError, ConfigError
from pg_lightning.envs.collector import EPISODE_CAP
from pg_lightning.envs.evaluation import greedy_action, make_eval_env, run_episodes
from pg_lightning.envs.networks import make_policy
from pg_lightning.lightning.evaluation import EvalCallback
from tests.conftest import CONF
from tests.helpers import run_main

FAST = ["trainer.max_epochs=2", "data.episodes_per_epoch=4", "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0"]


def compose_cfg(output_dir, *overrides):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={output_dir}", *overrides])


def eval_callback(**kwargs):
    """An override that adds an EvalCallback as ``callbacks.evaluation`` (``++``: or sets the keys given, if conf/callbacks has one)."""
    args = {"_target_": "pg_lightning.lightning.evaluation.EvalCallback", **kwargs}  # the env: the training env
    return f"++callbacks.evaluation={{{','.join(f'{k}:{v}' for k, v in args.items())}}}"


@pytest.fixture(scope="module")
def cartpole_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("cartpole")
    run(compose_cfg(out, *FAST))
    return out / "checkpoints" / "last.ckpt"


def hand_policy(ckpt_path, observation_space, action_space, **network):
    """The policy of a checkpoint, built and loaded by hand (not through pg_lightning.cli.evaluation)."""
    state = torch.load(ckpt_path, weights_only=False)["state_dict"]
    policy = make_policy(observation_space, action_space, **network)
    policy.load_state_dict({k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")})
    return policy


def hand_loop(policy, env, episodes, seed, act):
    returns, lengths = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, steps, done = 0.0, 0, False
        while not done:
            with torch.no_grad():
                action = act(policy(torch.as_tensor(obs)[None]))[0].numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
        returns.append(total)
        lengths.append(steps)
    return returns, lengths


def test_evaluate_equals_a_hand_loop_and_writes_the_json(cartpole_ckpt, tmp_path):
    summary = evaluate(cartpole_ckpt, episodes=5, seed=3, output_dir=tmp_path)
    assert json.loads((tmp_path / "evaluation.json").read_text()) == summary
    assert summary["summary_path"] == str((tmp_path / "evaluation.json").resolve())
    assert summary["env_id"] == "CartPole-v1" and summary["checkpoint_epoch"] == 1 and summary["greedy"] is True
    assert summary["max_episode_steps"] == 500  # the env's registered time limit

    env = gym.make("CartPole-v1")
    policy = hand_policy(cartpole_ckpt, env.observation_space, env.action_space, hidden_sizes=[64, 64])
    returns, lengths = hand_loop(policy, env, 5, seed=3, act=lambda dist: dist.probs.argmax(-1))
    assert summary["returns"] == returns and summary["lengths"] == lengths
    assert summary["return_mean"] == pytest.approx(np.mean(returns))
    assert summary["return_std"] == pytest.approx(np.std(returns))
    assert summary["length_mean"] == pytest.approx(np.mean(lengths))

    # sampled actions: the training sampler, from a generator seeded with `seed`
    sampled = evaluate(cartpole_ckpt, episodes=5, seed=3, greedy=False)
    generator = torch.Generator().manual_seed(3)
    returns, _ = hand_loop(policy, env, 5, seed=3, act=lambda dist: sample(dist, generator))
    assert sampled["returns"] == returns and sampled["summary_path"] is None
    assert sampled["returns"] != summary["returns"]  # a 2-epoch policy is far from deterministic


class ActionRecorder(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.actions = []

    def step(self, action):
        self.actions.append(int(action))
        return super().step(action)


def test_greedy_always_takes_the_action_its_logits_favour():
    env = ActionRecorder(gym.make("CartPole-v1"))
    policy = make_policy(env.observation_space, env.action_space, hidden_sizes=[])
    with torch.no_grad():
        policy.net[-1].weight.zero_()
        policy.net[-1].bias.copy_(torch.tensor([0.0, 1.0]))  # pi(right) = 0.73 in every state
    _, lengths = run_episodes(policy, env, episodes=4, greedy=True, seed=0)
    assert env.actions == [1] * sum(lengths) and len(env.actions) > 20
    env.actions.clear()
    run_episodes(policy, env, episodes=4, greedy=False, seed=0)
    assert 0 < env.actions.count(0) < len(env.actions)  # sampling does take the other action


def test_greedy_action_of_each_distribution():
    obs = torch.zeros(3, 2)
    box = gym.spaces.Box(-2.0, 2.0, (1,))
    for bounds in ("clip", "tanh"):
        policy = make_policy(gym.spaces.Box(-1, 1, (2,)), box, hidden_sizes=[], action_bounds=bounds)
        with torch.no_grad():
            policy.net[-1].weight.zero_()
            policy.net[-1].bias.fill_(3.0)
        action = greedy_action(policy(obs))
        if bounds == "clip":  # the Gaussian's mean; the env clips it to the box
            assert torch.equal(action, torch.full((3, 1), 3.0))
        else:  # the squashed mean, inside the box
            assert isinstance(policy(obs), TanhNormal)
            assert torch.allclose(action, torch.full((3, 1), -2.0 + (np.tanh(3.0) + 1) * 2.0))
    logits = torch.tensor([[0.0, 2.0, 1.0], [5.0, 1.0, 5.0]])
    assert greedy_action(torch.distributions.Categorical(logits=logits)).tolist() == [1, 0]  # first on ties


def test_evaluate_a_pendulum_checkpoint_without_retyping_the_env(tmp_path):
    overrides = ["env=pendulum", "network.action_bounds=tanh", "trainer.max_epochs=1", "data.episodes_per_epoch=2"]
    run(compose_cfg(tmp_path, *overrides, "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0"))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    summary = evaluate(ckpt, episodes=2, seed=7)
    assert summary["env_id"] == "Pendulum-v1" and summary["lengths"] == [200, 200]

    env = gym.make("Pendulum-v1")
    policy = hand_policy(ckpt, env.observation_space, env.action_space, action_bounds="tanh")
    returns, _ = hand_loop(policy, env, 2, seed=7, act=lambda dist: dist.env_action(dist.mean))
    assert summary["returns"] == pytest.approx(returns, rel=1e-6)
    loaded, config = load_policy(ckpt)
    assert config["network"]["action_bounds"] == "tanh" and not loaded.training


class NotAllowed:
    """A class that torch.load(weights_only=True) refuses to unpickle."""


@pytest.mark.parametrize("case", ["none", "empty", "missing", "text", "plain_dict", "pickled_object", "no_policy"])
def test_a_bad_ckpt_path_names_the_key(tmp_path, case):
    path = tmp_path / "file.ckpt"
    if case == "text":
        path.write_text("not a checkpoint")
    elif case == "plain_dict":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    elif case == "pickled_object":
        torch.save({"x": NotAllowed()}, path)
    elif case == "no_policy":
        torch.save(
            {
                "hyper_parameters": {"config": {"env": {"id": "CartPole-v1"}, "network": {}}},
                "state_dict": {"w": torch.zeros(1)},
            },
            path,
        )
    ckpt_path = {"none": None, "empty": "", "missing": tmp_path / "nope.ckpt"}.get(case, path)
    with pytest.raises(ConfigError, match=r"^ckpt_path: ") as err:
        evaluate(ckpt_path)
    expected = {
        "none": "missing",
        "empty": "missing",
        "missing": "no checkpoint file",
        "text": "not a pg_lightning checkpoint",
        "plain_dict": "no training config",
        "pickled_object": "weights_only=True.*NotAllowed",
        "no_policy": "no policy",
    }[case]
    assert err.match(expected)


def test_bad_settings_name_the_key(cartpole_ckpt):
    with pytest.raises(ConfigError, match="episodes must be an integer >= 1"):
        evaluate(cartpole_ckpt, episodes=0)
    with pytest.raises(ConfigError, match="video: video=true needs an output_dir"):
        evaluate(cartpole_ckpt, video=True)


def test_cli_prints_the_summary_and_writes_the_json(cartpole_ckpt, tmp_path, capsys):
    """``evaluate.py ckpt_path=... episodes=3 seed=1``, in this process (``main`` with its command line)."""
    code = run_main(main, f"ckpt_path={cartpole_ckpt}", "episodes=3", "seed=1", f"hydra.run.dir={tmp_path}")
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    out = captured.out + captured.err
    expected = evaluate(cartpole_ckpt, episodes=3, seed=1)
    assert "CartPole-v1, checkpoint epoch 1" in out and "3 greedy episodes from seed 1" in out
    assert f"return {expected['return_mean']:.2f} ± {expected['return_std']:.2f}" in out
    assert f"summary: {tmp_path / 'evaluation.json'}" in out
    written = json.loads((tmp_path / "evaluation.json").read_text())
    assert written["returns"] == expected["returns"] and written["episodes"] == 3


def test_main_without_ckpt_path_prints_one_line_naming_it(tmp_path, capsys):
    """The CLI's error path, in-process (``main.__wrapped__`` is the function under ``@hydra.main``)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"output_dir={tmp_path}"])
    with pytest.raises(SystemExit) as exit_info:
        main.__wrapped__(cfg)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "Config error: ckpt_path: missing; pass the checkpoint to evaluate, "
        "e.g. ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt\n"
    )


@pytest.mark.skipif(
    importlib.util.find_spec("moviepy") is None or importlib.util.find_spec("pygame") is None,
    reason="video needs moviepy and pygame (the video extra)",
)
def test_video_records_every_episode_without_changing_them(cartpole_ckpt, tmp_path):
    summary = evaluate(cartpole_ckpt, episodes=2, seed=4, video=True, output_dir=tmp_path)
    videos = [Path(v) for v in summary["videos"]]
    assert [v.name for v in videos] == ["eval-episode-0.mp4", "eval-episode-1.mp4"]
    assert all(v.read_bytes()[4:8] == b"ftyp" for v in videos)  # MP4 files
    assert summary["returns"] == evaluate(cartpole_ckpt, episodes=2, seed=4)["returns"]


def test_video_without_its_packages_is_a_config_error_naming_the_extra(cartpole_ckpt, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "moviepy", None)  # as if the video extra were not installed
    with pytest.raises(ConfigError, match=r'video: .*pip install -e "\.\[video\]"'):
        evaluate(cartpole_ckpt, episodes=1, video=True, output_dir=tmp_path)
    assert not list(tmp_path.rglob("*.mp4"))


def epoch_rows(output_dir):
    with open(output_dir / "csv" / "metrics.csv", newline="") as f:
        return {int(r["epoch"]): r for r in csv.DictReader(f)}


def test_eval_callback_logs_on_its_epochs_only_and_leaves_training_unchanged(tmp_path):
    cfg = compose_cfg(
        tmp_path / "eval", *FAST, "trainer.max_epochs=4", eval_callback(episodes=3, every_n_epochs=2, seed=5)
    )
    metrics = run(cfg)
    rows = epoch_rows(tmp_path / "eval")
    assert [e for e, r in sorted(rows.items()) if r["eval/return_mean"] != ""] == [1, 3]
    assert all(r["eval/return_std"] != "" and r["eval/length_mean"] != "" for e, r in rows.items() if e in (1, 3))
    # the last evaluation saw the parameters that last.ckpt holds
    expected = evaluate(tmp_path / "eval" / "checkpoints" / "last.ckpt", episodes=3, seed=5)
    assert float(rows[3]["eval/return_mean"]) == pytest.approx(expected["return_mean"], rel=1e-6)
    assert float(rows[3]["eval/return_std"]) == pytest.approx(expected["return_std"], rel=1e-5)
    assert metrics["eval/length_mean"] == pytest.approx(expected["length_mean"], rel=1e-6)

    run(compose_cfg(tmp_path / "plain", *FAST[:-1], "trainer.max_epochs=4", "callbacks=none"))  # no evaluation at all
    plain = epoch_rows(tmp_path / "plain")
    for epoch in range(4):  # the same batches: evaluation takes nothing from the training streams
        for key in ("rollout/return_mean", "rollout/env_steps", "train/loss"):
            assert rows[epoch][key] == plain[epoch][key], (epoch, key)


def test_early_stopping_can_monitor_eval_return(tmp_path):
    cfg = compose_cfg(
        tmp_path,
        *FAST,
        "trainer.max_epochs=6",
        eval_callback(episodes=2, every_n_epochs=2),
        "callbacks.early_stopping.monitor=eval/return_mean",
        "callbacks.early_stopping.stopping_threshold=1.0",  # any CartPole episode returns more
        "++callbacks.early_stopping.strict=false",  # no eval/return_mean in epoch 0
    )
    metrics = run(cfg)
    assert metrics["epochs"] == 2  # stopped at the end of epoch 1, the first evaluation
    assert metrics["eval/return_mean"] > 1.0


def test_eval_callback_arguments_name_their_key():
    with pytest.raises(ArgumentError, match=r"^episodes must be an integer >= 1, got 0$") as err:
        EvalCallback("CartPole-v1", episodes=0)
    assert err.value.argument == "episodes"
    with pytest.raises(ArgumentError, match=r"^every_n_epochs must be an integer >= 1, got 0$") as err:
        EvalCallback("CartPole-v1", every_n_epochs=0)
    assert err.value.argument == "every_n_epochs"
    with pytest.raises(ArgumentError, match=r"^env: unknown gymnasium environment 'CartPol-v1'") as err:
        EvalCallback("CartPol-v1")
    assert err.value.argument == "env" and "\n" not in str(err.value)
    assert [EvalCallback("CartPole-v1", every_n_epochs=3).should_evaluate(e) for e in range(6)] == [
        False,
        False,
        True,
        False,
        False,
        True,
    ]


@pytest.mark.skipif(
    importlib.util.find_spec("pygame") is None or importlib.util.find_spec("tensorboard") is None,
    reason="needs pygame (CartPole frames) and tensorboard",
)
def test_eval_callback_logs_a_gif_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = compose_cfg(
        tmp_path,
        *FAST,
        "trainer.max_epochs=1",
        "logger=tensorboard",
        eval_callback(episodes=1, tensorboard_video="true"),
    )
    run(cfg)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    (image,) = events.Images("eval/video")
    assert image.encoded_image_string[:6] == b"GIF89a" and (image.width, image.height) == (300, 200)


def test_make_eval_env_clips_box_actions_only():
    assert isinstance(make_eval_env("Pendulum-v1"), gym.wrappers.ClipAction)
    assert not isinstance(make_eval_env("CartPole-v1"), gym.wrappers.ClipAction)
    assert make_eval_env("CartPole-v1", max_episode_steps=7).spec.max_episode_steps == 7
    assert make_eval_env("pg_lightning/Chain-v0").spec.max_episode_steps == EPISODE_CAP  # no limit of its own
    # the env's own max_episode_steps kwarg, as in training (make_vector_env)
    assert make_eval_env("pg_lightning/Chain-v0", {"max_episode_steps": 10}).spec.max_episode_steps == 10


# --- the time limit: max_episode_steps against the checkpoint's env.kwargs.max_episode_steps ------------------


@pytest.fixture(scope="module")
def kwargs_limit_ckpt(tmp_path_factory):
    """A CartPole checkpoint trained with env.kwargs.max_episode_steps=20 (gymnasium's own make() argument)."""
    out = tmp_path_factory.mktemp("kwargs_limit")
    quick = ["data.episodes_per_epoch=4", "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0"]
    run(compose_cfg(out, *quick, "trainer.max_epochs=1", "+env.kwargs.max_episode_steps=20"))
    return out / "checkpoints" / "last.ckpt"


def test_evaluate_max_episode_steps_overrides_the_checkpoints_env_kwargs(kwargs_limit_ckpt):
    default = evaluate(kwargs_limit_ckpt, episodes=3)
    assert default["max_episode_steps"] == 20  # the training run's limit
    assert default["env_kwargs"] == {"max_episode_steps": 20}
    # was: ConfigError "env.kwargs.max_episode_steps=20 and data.max_episode_steps=5 disagree"
    summary = evaluate(kwargs_limit_ckpt, episodes=3, max_episode_steps=5)
    assert summary["max_episode_steps"] == 5
    assert max(summary["lengths"]) <= 5
    longer = evaluate(kwargs_limit_ckpt, episodes=3, max_episode_steps=50)
    assert longer["max_episode_steps"] == 50
    with pytest.raises(ConfigError, match=r"^max_episode_steps must be an integer >= 1"):
        evaluate(kwargs_limit_ckpt, episodes=1, max_episode_steps=0)


def test_make_eval_env_max_episode_steps_replaces_the_kwarg():
    kwargs = {"max_episode_steps": 10}
    assert make_eval_env("pg_lightning/Chain-v0", kwargs, max_episode_steps=3).spec.max_episode_steps == 3
    assert make_eval_env("pg_lightning/Chain-v0", kwargs).spec.max_episode_steps == 10
    assert kwargs == {"max_episode_steps": 10}  # the caller's dict is left alone
