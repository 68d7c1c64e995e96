"""Your own network: the contract (check_policy / check_value_network), the `network=custom` override,
training from Python and the CLI, resume, EvalCallback, DDP and evaluation of a user network.

The user networks live outside the package, in tests/user_networks.py (importable in-process from the
repository root; the DDP run's processes get the root on PYTHONPATH). The command lines run in this process
(``tests.helpers.run_main``) but for the DDP run.
"""

import csv
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.distributions import Categorical

from pg_lightning.cli import train
from pg_lightning.cli.build import build_policy, build_value_network
from pg_lightning.cli.evaluation import evaluate
from pg_lightning.cli.train import run
from pg_lightning.core.errors import ConfigError, config_error_in
from pg_lightning.envs.checks import PROBE_BATCH, check_policy, check_value_network
from pg_lightning.envs.networks import make_policy, make_value_network
from tests import user_networks as user
from tests.conftest import CONF, ROOT
from tests.helpers import run_main

NET = "tests.user_networks"
CUSTOM = ["network=custom", f"network._target_={NET}.TinyCategorical", "+network.width=8"]
FAST = ["data.episodes_per_epoch=2", "data.num_envs=2", "trainer.max_epochs=2", "callbacks.progress_bar.refresh_rate=0"]
CARTPOLE = gym.make("CartPole-v1")
BOX_OBS, BOX2 = gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Box(-2, 2, (2,), np.float32)


def compose_cfg(output_dir, *overrides):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={output_dir}", *overrides])


def one_line_error(excinfo, key="network"):
    """The ConfigError behind the exception (Hydra wraps one raised by a constructor), one line starting with key."""
    error = config_error_in(excinfo.value)
    assert error is not None, repr(excinfo.value)
    message = str(error)
    assert "\n" not in message and message.startswith(f"{key}"), message
    return message


def policy_weights(ckpt):
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("policy.")}


# --- the contract, in-process ------------------------------------------------------------------


OBS_SPACES = [
    BOX_OBS,
    gym.spaces.Discrete(5, start=2),
    gym.spaces.MultiBinary(3),
    gym.spaces.Box(0, 255, (3, 4), np.uint8),
]
OPTIONS = [
    ({}, gym.spaces.Discrete(2)),
    ({}, BOX2),
    ({"action_bounds": "tanh"}, BOX2),
    ({"state_dependent_std": True}, BOX2),
]


@pytest.mark.parametrize("observation_space", OBS_SPACES, ids=lambda s: type(s).__name__ + str(s.shape))
def test_our_networks_keep_the_contract_for_every_supported_space(observation_space):
    for options, action_space in OPTIONS:
        check_policy(make_policy(observation_space, action_space, **options), observation_space, action_space)
    check_value_network(make_value_network(observation_space), observation_space)


def test_user_networks_keep_the_contract():
    check_policy(user.TinyCategorical(BOX_OBS, gym.spaces.Discrete(3)), BOX_OBS, gym.spaces.Discrete(3))
    check_policy(user.TinyGaussian(BOX_OBS, BOX2), BOX_OBS, BOX2)
    check_value_network(user.make_value(BOX_OBS), BOX_OBS)
    assert not hasattr(user.TinyCategorical, "actor")  # the fast path is optional


class Unbatched(torch.nn.Module):
    """One Categorical for the whole batch."""

    def __init__(self):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(2))

    def forward(self, obs):
        return Categorical(logits=self.logits)


class BadActor(user.TinyCategorical):
    def actor(self, generator):
        return lambda obs: obs  # not (batch actions, env actions)


@pytest.mark.parametrize(
    ("policy", "action_space", "message"),
    [
        (user.ReturnsLogits(BOX_OBS, gym.spaces.Discrete(2)), gym.spaces.Discrete(2),
         (f"network: {NET}.ReturnsLogits.forward returned a torch.Tensor of shape ({PROBE_BATCH}, 2), "
         "not a torch.distributions.Distribution")),
        (user.UnbatchedNormal(BOX_OBS, BOX2), BOX2,
         (f"log_prob(sample()) has shape ({PROBE_BATCH}, 2) for {PROBE_BATCH} observations, expected ({PROBE_BATCH},): "
         "put the action dimensions in the event shape, e.g. Independent(Normal(mean, std), 1)")),
        (user.RaisesInForward(BOX_OBS, gym.spaces.Discrete(2)), gym.spaces.Discrete(2),
         (f"network: {NET}.RaisesInForward.forward raised RuntimeError on a batch of {PROBE_BATCH} observations "
         f"({PROBE_BATCH}, 4) float32: deliberate bug in forward")),
        (user.NoParameters(BOX_OBS, gym.spaces.Discrete(2)), gym.spaces.Discrete(2),
         f"network: {NET}.NoParameters has no parameters: the optimizer needs some"),
        (Unbatched(), gym.spaces.Discrete(2), "returned a Categorical with batch_shape () for a batch of"),
        (user.TinyGaussian(BOX_OBS, gym.spaces.Box(-1, 1, (3,))), BOX2,
         f"samples (what the env receives) have shape ({PROBE_BATCH}, 3) for {PROBE_BATCH} observations"),
        ("a string", gym.spaces.Discrete(2), "network: the network factory returned a str, not a torch.nn.Module"),
        (BadActor(BOX_OBS, gym.spaces.Discrete(2)), gym.spaces.Discrete(2),
         "actor(generator)(obs) must return (batch actions, env actions)"),
    ],
    ids=["tensor", "normal-without-independent", "raises", "no-parameters", "unbatched", "action-shape", "not-a-module",
         "bad-actor"],
)  # fmt: skip
def test_check_policy_refuses_a_broken_network_in_one_line_naming_network(policy, action_space, message):
    with pytest.raises(ConfigError) as excinfo:
        check_policy(policy, BOX_OBS, action_space)
    assert message in one_line_error(excinfo)


def test_check_value_network_refuses_wrong_outputs_in_one_line():
    with pytest.raises(ConfigError) as excinfo:
        check_value_network(user.ValueColumn(BOX_OBS), BOX_OBS)
    assert f"returned shape ({PROBE_BATCH}, 1)" in one_line_error(excinfo, "baseline.value_net")
    assert ".squeeze(-1)" in str(excinfo.value)
    with pytest.raises(ConfigError) as excinfo:
        check_value_network(user.TinyCategorical(BOX_OBS, gym.spaces.Discrete(2)), BOX_OBS)
    assert "returned a torch.distributions.categorical.Categorical" in one_line_error(excinfo, "baseline.value_net")


def test_checks_leave_the_rng_the_mode_and_batchnorm_statistics_alone():
    class WithBatchNorm(user.TinyCategorical):
        def __init__(self, *args):
            super().__init__(*args)
            self.norm = torch.nn.BatchNorm1d(4)

        def forward(self, obs):
            return super().forward(self.norm(obs))

    policy, value_net = WithBatchNorm(BOX_OBS, gym.spaces.Discrete(2)), user.make_value(BOX_OBS)
    stats = policy.norm.running_mean.clone()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    check_policy(policy, BOX_OBS, gym.spaces.Discrete(2))  # samples from the distribution
    check_value_network(value_net, BOX_OBS)
    assert torch.equal(torch.get_rng_state(), state)  # the run's random numbers are those of a run without checks
    assert policy.training and torch.equal(policy.norm.running_mean, stats)


# --- building from the config: one line naming the key -------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([f"network._target_={NET}.TinyCategorical"],
         (f"network: {NET}.TinyCategorical does not take hidden_sizes, activation, log_std_init, state_dependent_std, "
         f"action_bounds, output_init_scale, encoder, core, core_size (keys of pg_lightning's own network config, which a network._target_ "
         f"override keeps): replace the whole group with network=custom network._target_={NET}.TinyCategorical")),
        ([*CUSTOM, "+network.depth=2"], "network.depth: not an argument of TinyCategorical (did you mean width?)"),
        (["network=custom"],
         "network._target_: missing; name your network's factory, e.g. network=custom network._target_="),
        (["network=custom", f"network._target_={NET}.Missing"],
         f"network._target_: cannot import '{NET}.Missing' (a typo, or a module that is not installed?)"),
    ],
    ids=["mlp-keys-inherited", "unknown-kwarg", "missing-target", "unimportable"],
)  # fmt: skip
def test_build_policy_errors_name_network(tmp_path, overrides, message):
    cfg = compose_cfg(tmp_path, *overrides)
    with pytest.raises(ConfigError) as excinfo:
        build_policy(cfg.network, CARTPOLE.observation_space, CARTPOLE.action_space)
    assert message in one_line_error(excinfo)


def test_custom_group_declares_nothing_but_the_target():
    cfg = compose_cfg("/tmp", "network=custom", f"network._target_={NET}.TinyCategorical")
    assert dict(cfg.network) == {"_target_": f"{NET}.TinyCategorical", "_partial_": True}
    policy = build_policy(cfg.network, CARTPOLE.observation_space, CARTPOLE.action_space)
    assert isinstance(policy, user.TinyCategorical) and policy.logits.in_features == 16  # the class's own default
    with pytest.raises(Exception, match=r"\+network.width=8"):  # Hydra: a key this file lacks needs `+`
        compose_cfg("/tmp", "network=custom", f"network._target_={NET}.TinyCategorical", "network.width=8")


# --- training from Python --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """TinyCategorical (width 8) on CartPole, 2 epochs, from run(cfg)."""
    out = tmp_path_factory.mktemp("user_cartpole")
    metrics = run(compose_cfg(out, *CUSTOM, *FAST))
    return out, metrics


def test_user_categorical_trains_from_python(trained):
    out, metrics = trained
    assert metrics["epochs"] == 2 and metrics["rollout/episodes"] == 4
    weights = policy_weights(out / "checkpoints" / "last.ckpt")
    assert weights["policy.torso.layer.weight"].shape == (8, 4)  # the user's network, with +network.width=8
    assert weights.keys() == {f"policy.{k}" for k in user.TinyCategorical(BOX_OBS, gym.spaces.Discrete(2)).state_dict()}


def test_user_gaussian_trains_on_a_box_action_env(tmp_path):
    metrics = run(compose_cfg(tmp_path, "env=pendulum", "network=custom", f"network._target_={NET}.TinyGaussian",
                              *FAST, "trainer.max_epochs=1"))  # fmt: skip
    assert metrics["epochs"] == 1 and metrics["rollout/env_steps"] == 2 * 200
    assert "policy.log_std" in policy_weights(tmp_path / "checkpoints" / "last.ckpt")


VALUE = ["baseline=value", *(f"~baseline.value_net.{k}" for k in ("hidden_sizes", "activation", "encoder"))]


@pytest.mark.parametrize(
    "overrides",
    [
        [
            f"baseline.value_net._target_={NET}.make_value",
            "+baseline.value_net.width=8",
            "baseline.normalize_targets=false",
        ],
        [f"baseline.value_net._target_={NET}.TinyPopArtValue", "+baseline.value_net.width=8"],  # PopArt: rescale_output
    ],
    ids=["factory-function", "popart"],
)
def test_user_value_network_trains_with_baseline_value(tmp_path, overrides):
    metrics = run(compose_cfg(tmp_path, *CUSTOM, *VALUE, *overrides, *FAST))
    assert metrics["epochs"] == 2 and np.isfinite(metrics["train/value_loss"])
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state["baseline.value_net.torso.layer.weight"].shape == (8, 4)


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        (["baseline=value", f"baseline.value_net._target_={NET}.make_value"], "baseline.value_net",
         (f"baseline.value_net: {NET}.make_value does not take hidden_sizes, activation, encoder (keys of pg_lightning's "
         "own baseline.value_net config, which a baseline.value_net._target_ override keeps): drop them with "
         "~baseline.value_net.hidden_sizes ~baseline.value_net.activation ~baseline.value_net.encoder")),
        ([*VALUE, f"baseline.value_net._target_={NET}.ValueColumn"], "baseline.value_net",
         (f"ValueColumn.forward returned shape ({PROBE_BATCH}, 1) for a batch of {PROBE_BATCH} observations "
         f"({PROBE_BATCH}, 4) float32, expected ({PROBE_BATCH},)")),
        ([*VALUE, f"baseline.value_net._target_={NET}.make_value"], "baseline.normalize_targets",
         "needs a value_net with rescale_output(scale, shift) (PopArt), which TinyValue has not: give it one"),
    ],
    ids=["inherited-keys", "column", "no-rescale-output"],
)  # fmt: skip
def test_user_value_network_errors_are_one_line(tmp_path, overrides, key, message):
    with pytest.raises(Exception) as excinfo:
        run(compose_cfg(tmp_path, *CUSTOM, *overrides, *FAST))
    assert message in one_line_error(excinfo, key)
    assert not (tmp_path / "checkpoints").exists()  # before training


def test_build_value_network_is_what_make_baseline_uses(tmp_path):
    cfg = compose_cfg(tmp_path, *VALUE, f"baseline.value_net._target_={NET}.make_value")
    assert isinstance(build_value_network(cfg.baseline.value_net, BOX_OBS), user.TinyValue)


def test_resume_with_a_user_network_continues_exactly(trained, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(compose_cfg(straight, *CUSTOM, *FAST, "trainer.max_epochs=3"))
    ckpt = trained[0] / "checkpoints" / "last.ckpt"
    metrics = run(compose_cfg(resumed, *CUSTOM, *FAST, "trainer.max_epochs=3", f"ckpt_path='{ckpt}'"))
    assert metrics["epochs"] == 3
    epochs = [int(r["epoch"]) for r in csv.DictReader(open(next(resumed.rglob("metrics.csv"))))]
    assert sorted(set(epochs)) == [2]  # only the third epoch ran
    expected = policy_weights(straight / "checkpoints" / "last.ckpt")
    got = policy_weights(resumed / "checkpoints" / "last.ckpt")
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert not torch.equal(got["policy.logits.weight"], policy_weights(ckpt)["policy.logits.weight"])  # it did train


def test_eval_callback_evaluates_a_user_network(tmp_path):
    evaluation = ["callbacks=eval", "callbacks.evaluation.every_n_epochs=1", "callbacks.evaluation.episodes=2"]
    metrics = run(compose_cfg(tmp_path, *CUSTOM, *FAST, *evaluation))
    assert np.isfinite(metrics["eval/return_mean"]) and metrics["eval/return_mean"] >= 1
    logged = [r for r in csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))) if r.get("eval/return_mean")]
    assert len(logged) == 2  # after each of the 2 epochs


# --- the CLI ---------------------------------------------------------------------------------


def train_cli(*args, cwd, timeout=240):
    """``python train.py *args hydra.run.dir=run`` in a new interpreter, in ``cwd`` (the DDP run)."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    for key in ("HYDRA_FULL_ERROR", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "MASTER_ADDR", "NODE_RANK"):
        env.pop(key, None)
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args, "hydra.run.dir=run"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_cli_trains_a_user_network(tmp_path, capsys):
    code = run_main(train.main, *CUSTOM, *FAST, "hydra.run.dir=run", cwd=tmp_path)
    out = capsys.readouterr()
    assert code == 0, out.out[-2000:] + out.err[-3000:]
    assert "CartPole-v1: 2 epochs" in out.out + out.err
    assert policy_weights(tmp_path / "run" / "checkpoints" / "last.ckpt")["policy.torso.layer.weight"].shape == (8, 4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["network=custom", f"network._target_={NET}.ReturnsLogits"], "ReturnsLogits.forward returned a torch.Tensor"),
        (["env=pendulum", "network=custom", f"network._target_={NET}.UnbatchedNormal"],
         "Independent(Normal(mean, std), 1)"),
        ([f"network._target_={NET}.TinyCategorical"], f"network=custom network._target_={NET}.TinyCategorical"),
    ],
    ids=["tensor", "normal-without-independent", "without-network-custom"],
)  # fmt: skip
def test_cli_broken_network_exits_2_with_one_line_naming_network(tmp_path, overrides, message, capsys):
    code = run_main(train.main, *overrides, *FAST, "hydra.run.dir=run", cwd=tmp_path)
    out = capsys.readouterr()
    assert code == 2, out.out[-2000:] + out.err[-3000:]
    assert out.err.count("\n") == 1 and out.err.startswith("Config error: network"), out.err
    assert message in out.err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.ddp
def test_ddp_two_gloo_ranks_train_a_user_network_in_sync(tmp_path):
    rank_dump = "+callbacks.rank_dump._target_=tests.scaling_helpers.RankDump"
    proc = train_cli("trainer=ddp_cpu", "trainer.devices=2", "baseline=mean", *CUSTOM, *FAST, rank_dump, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "run"
    assert (run_dir / "train_ddp_process_1.log").is_file()  # the second rank rebuilt the user network
    d0, d1 = (torch.load(run_dir / "ranks" / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert d0["world_size"] == 2 and not torch.equal(d0["batches"][0].obs[:3], d1["batches"][0].obs[:3])
    keys = [k for k in d0["final"] if k.startswith("policy.")]
    assert "policy.torso.layer.weight" in keys and d0["final"]["policy.torso.layer.weight"].shape == (8, 4)
    assert all(torch.equal(d0["final"][k], d1["final"][k]) for k in keys)  # DDP kept the ranks' copies equal
    assert any(not torch.equal(d0["initial"][k], d0["final"][k]) for k in keys)


# --- evaluation from a checkpoint: trust_checkpoint_code ------------------------------------------


def test_evaluate_refuses_a_user_network_without_trust_checkpoint_code(trained):
    with pytest.raises(ConfigError) as excinfo:
        evaluate(trained[0] / "checkpoints" / "last.ckpt", episodes=2)
    message = str(excinfo.value)
    assert "\n" not in message and "trust_checkpoint_code" in message and f"{NET}.TinyCategorical" in message


def test_evaluate_rebuilds_a_user_network_with_trust_checkpoint_code(trained):
    ckpt = trained[0] / "checkpoints" / "last.ckpt"
    summary = evaluate(ckpt, episodes=3, seed=4, trust_checkpoint_code=True)

    env = gym.make("CartPole-v1")  # by hand: the user's class, the checkpoint's weights, greedy actions
    policy = user.TinyCategorical(env.observation_space, env.action_space, width=8)
    policy.load_state_dict({k.removeprefix("policy."): v for k, v in policy_weights(ckpt).items()})
    returns = []
    for i in range(3):
        obs, _ = env.reset(seed=4 + i)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                action = int(policy(torch.as_tensor(obs)[None]).logits.argmax(-1)[0])
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    assert summary["returns"] == returns and summary["episodes"] == 3
