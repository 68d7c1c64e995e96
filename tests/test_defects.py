"""Defects found in review (issue 15, section 6), each pinned by a test that failed before its fix:

- 0-d Box observations: accepted, then an ``IndexError`` at the first forward;
- ``evaluate(max_episode_steps=...)`` of a checkpoint trained with ``env.kwargs.max_episode_steps``:
  an error naming ``data.max_episode_steps``, which is not an evaluate key;
- a second ``fit()`` with the same ``RolloutDataModule`` restarted the data stream at epoch 0;
- a failing step (non-finite loss or gradient) had already moved the baseline's state (the EMA
  average, PopArt's statistics and the value net's rescaled output layer).
"""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from pg_lightning.cli.evaluation import evaluate
from pg_lightning.cli.train import run
from pg_lightning.core.baselines import EMABaseline, ValueBaseline
from pg_lightning.core.errors import ConfigError, NonFiniteError
from pg_lightning.envs.checks import check_policy, check_value_network
from pg_lightning.envs.env_factory import episode_limit
from pg_lightning.envs.evaluation import make_eval_env
from pg_lightning.envs.networks import make_policy, make_value_network
from pg_lightning.lightning.data import RolloutDataModule
from pg_lightning.lightning.module import ReinforceModule
from tests.helpers import make_batch

FAST = ["data.episodes_per_epoch=4", "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0"]


def quiet_trainer(max_epochs: int, callbacks=()) -> pl.Trainer:
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    return pl.Trainer(
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


# --- 0-d Box observations -------------------------------------------------------------------


class ScalarObsEnv(gym.Env):
    """Observations are one number, a 0-d Box: the position on a line; reach +3 (action 1 steps right)."""

    observation_space = gym.spaces.Box(-10.0, 10.0, shape=(), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.integers(-2, 2))
        return np.array(self.x, dtype=np.float32), {}

    def step(self, action):
        self.x += 1.0 if int(action) == 1 else -1.0
        terminated = abs(self.x) >= 3
        return np.array(self.x, dtype=np.float32), float(self.x >= 3), terminated, False, {}


gym.register("pg_lightning_tests/ScalarObs-v0", entry_point=ScalarObsEnv, max_episode_steps=20)


@pytest.mark.parametrize("space", [gym.spaces.Box(-1.0, 1.0, shape=()), gym.spaces.MultiBinary(())])
def test_a_0d_observation_space_is_one_feature(space):
    obs = torch.as_tensor(np.stack([space.sample() for _ in range(5)]))  # (5,) or (5, 1), as the collector stacks
    for action_space in (gym.spaces.Discrete(3), gym.spaces.Box(-1.0, 1.0, (2,))):
        policy = make_policy(space, action_space)
        assert policy.net[0].in_features == 1
        check_policy(policy, space, action_space)  # the contract check agrees with the factory
        dist = policy(obs)
        assert tuple(dist.batch_shape) == (5,) and dist.log_prob(dist.sample()).shape == (5,)
    value_net = make_value_network(space)
    check_value_network(value_net, space)
    assert value_net(obs).shape == (5,)


def test_a_0d_observation_is_the_feature_a_1_element_one_is():
    scalar = make_policy(gym.spaces.Box(-1.0, 1.0, ()), gym.spaces.Discrete(3))
    vector = make_policy(gym.spaces.Box(-1.0, 1.0, (1,)), gym.spaces.Discrete(3))
    vector.load_state_dict(scalar.state_dict())
    x = torch.tensor([0.5, -0.25])
    assert torch.equal(scalar(x).logits, vector(x[:, None]).logits)


def test_training_on_an_env_with_0d_box_observations(make_cfg, tmp_path):
    cfg = make_cfg(
        *FAST, "env.id=pg_lightning_tests/ScalarObs-v0", "env.return_threshold=null", "trainer.max_epochs=2",
        "baseline=value", "data.vectorization_mode=sync",
    )  # fmt: skip
    run(cfg)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 1
    summary = evaluate(tmp_path / "checkpoints" / "last.ckpt", episodes=2)
    assert len(summary["lengths"]) == 2


# --- evaluate and the time limit ------------------------------------------------------------


@pytest.fixture(scope="module")
def kwargs_limit_ckpt(tmp_path_factory):
    """A CartPole checkpoint trained with env.kwargs.max_episode_steps=20 (gymnasium's own make() argument)."""
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF

    out = tmp_path_factory.mktemp("kwargs_limit")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"paths.output_dir={out}", *FAST, "trainer.max_epochs=1", "+env.kwargs.max_episode_steps=20"],
        )
    run(cfg)
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


def test_episode_limit_names_the_callers_key():
    with pytest.raises(ConfigError, match=r"^env.kwargs.max_episode_steps=20 and data.max_episode_steps=5 disagree"):
        episode_limit("CartPole-v1", {"max_episode_steps": 20}, 5)  # training's key, by default
    with pytest.raises(ConfigError, match=r"^env.kwargs.max_episode_steps=20 and max_episode_steps=5 disagree"):
        episode_limit("CartPole-v1", {"max_episode_steps": 20}, 5, key="max_episode_steps")
    with pytest.raises(ConfigError, match=r"^max_episode_steps must be a positive integer or null, got 0"):
        episode_limit("CartPole-v1", {}, 0, key="max_episode_steps")
    with pytest.raises(ConfigError, match=r"^env.kwargs.max_episode_steps must be a positive integer or null, got 0"):
        episode_limit("CartPole-v1", {"max_episode_steps": 0}, None)  # the bad value is the kwarg's


# --- a reused datamodule --------------------------------------------------------------------


class FirstBatches(pl.Callback):
    """Every training batch's observations and actions, as the module receives them."""

    def __init__(self) -> None:
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append((batch.obs.clone(), batch.actions.clone()))


def cartpole_model(seed: int = 0) -> ReinforceModule:
    env = gym.make("CartPole-v1")
    torch.manual_seed(seed)
    return ReinforceModule(make_policy(env.observation_space, env.action_space))


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_second_fit_with_the_same_datamodule_continues_its_data_stream():
    # the uninterrupted run: 3 epochs
    whole = FirstBatches()
    quiet_trainer(3, [whole]).fit(cartpole_model(), datamodule=RolloutDataModule("CartPole-v1", 2, num_envs=2))
    # the same, as 2 epochs then a second fit() of 1 epoch with the same model and datamodule
    model, dm = cartpole_model(), RolloutDataModule("CartPole-v1", 2, num_envs=2)
    first, second = FirstBatches(), FirstBatches()
    quiet_trainer(2, [first]).fit(model, datamodule=dm)
    assert dm.state_dict() == {"epoch": 2}  # kept after teardown (was {})
    quiet_trainer(1, [second]).fit(model, datamodule=dm)
    assert same(first.batches[0], whole.batches[0]) and same(first.batches[1], whole.batches[1])
    assert not torch.equal(second.batches[0][0][0], first.batches[0][0][0])  # not epoch 0's env seeds again
    # epoch 2 of the uninterrupted run: the same seeds and the same parameters (the optimizer is new,
    # but the batch is collected before the second fit's first update)
    assert same(second.batches[0], whole.batches[2])
    assert dm.state_dict() == {"epoch": 3}


def test_a_checkpoint_still_sets_a_reused_datamodules_position(tmp_path):
    model, dm = cartpole_model(), RolloutDataModule("CartPole-v1", 2, num_envs=2)
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "one.ckpt")  # epoch 1 of the stream
    quiet_trainer(3).fit(model, datamodule=dm)  # 3 more epochs: the stream moves on to epoch 4
    assert dm.state_dict() == {"epoch": 4}
    resumed = FirstBatches()
    quiet_trainer(2, [resumed]).fit(model, datamodule=dm, ckpt_path=tmp_path / "one.ckpt")
    assert len(resumed.batches) == 1 and dm.state_dict() == {"epoch": 2}  # the checkpoint's position won


# --- a failing step leaves the baseline as it was -------------------------------------------


def module_with(baseline: str) -> ReinforceModule:
    env = gym.make("CartPole-v1")
    torch.manual_seed(0)
    if baseline == "ema":
        b = EMABaseline(decay=0.9)
    else:
        b = ValueBaseline(make_value_network(env.observation_space), normalize_targets=True)
    return ReinforceModule(make_policy(env.observation_space, env.action_space), baseline=b)


def baseline_state(model: ReinforceModule) -> dict[str, torch.Tensor]:
    """The baseline's buffers and parameters (EMA average and count; PopArt statistics and the value net)."""
    return {k: v.detach().clone() for k, v in model.baseline.state_dict().items()}


def assert_unchanged(model: ReinforceModule, before: dict[str, torch.Tensor]) -> None:
    after = model.baseline.state_dict()
    assert after.keys() == before.keys()
    moved = [k for k, v in after.items() if not torch.equal(v, before[k])]
    assert not moved, f"the failing step moved {moved}"


@pytest.mark.parametrize("baseline", ["ema", "value"])
def test_a_non_finite_loss_leaves_the_baseline_as_it_was(baseline):
    model = module_with(baseline)
    good = make_batch([[0.1] * 4, [0.2] * 4, [0.3] * 4], [0, 1, 0], [1.0, 2.0, 3.0], [True, True, True])
    model.training_step(good, 0)  # a first, good step: the baseline has state to lose
    before = baseline_state(model)
    # finite returns (one-step episodes of rewards up to 3e38) whose loss overflows float32
    bad = make_batch([[0.1] * 4, [0.2] * 4, [0.3] * 4], [0, 1, 0], [3e38, 1e38, 2e38], [True, True, True])
    with pytest.raises(NonFiniteError, match="non-finite loss"):
        model.training_step(bad, 1)
    assert_unchanged(model, before)
    # and an infinite reward (returns not finite) too
    inf = make_batch([[0.1] * 4, [0.2] * 4], [0, 1], [float("inf"), 1.0], [True, True])
    with pytest.raises(NonFiniteError, match="the returns Psi is not finite"):
        model.training_step(inf, 2)
    assert_unchanged(model, before)
    # the next good step is the step a run without the failures would have taken
    twin = module_with(baseline)
    twin.training_step(good, 0)
    assert torch.equal(model.training_step(good, 3), twin.training_step(good, 1))
    assert_unchanged(twin, baseline_state(model))


@pytest.mark.parametrize("baseline", ["ema", "value"])
def test_a_non_finite_gradient_leaves_the_baseline_as_it_was(baseline):
    model = module_with(baseline)
    quiet_trainer(1).fit(model, datamodule=RolloutDataModule("CartPole-v1", 2, num_envs=2))  # one good update
    before = baseline_state(model)
    policy_before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.policy.net[0].weight.register_hook(lambda grad: grad * float("inf"))
    with pytest.raises(NonFiniteError, match="non-finite gradient at epoch 0 in policy.net.0.weight"):
        quiet_trainer(1).fit(model, datamodule=RolloutDataModule("CartPole-v1", 2, num_envs=2, seed=1))
    assert_unchanged(model, before)
    assert all(torch.equal(v, policy_before[k]) for k, v in model.policy.state_dict().items())


def test_the_tanh_entropy_sample_is_a_function_of_seed_rank_and_epoch(monkeypatch):
    """tanh policies under DDP: each rank draws its entropy sample from a stream seeded by (seed, rank, epoch),
    not from the global RNG (a checkpoint saves one rank's), so a resume replays every rank's draws."""
    import gymnasium as gym

    from pg_lightning.envs.networks import make_policy
    from pg_lightning.lightning.module import ReinforceModule

    torch.manual_seed(0)
    module = ReinforceModule(
        make_policy(gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Box(-2.0, 2.0, (1,)), action_bounds="tanh")
    )
    module._stream_seed = 7  # what on_fit_start records: the run's seed
    dist = module.policy(torch.zeros(4, 3))
    where = {"rank": 0, "epoch": 0}
    monkeypatch.setattr(ReinforceModule, "global_rank", property(lambda self: where["rank"]))
    monkeypatch.setattr(ReinforceModule, "current_epoch", property(lambda self: where["epoch"]))

    def entropy(rank: int, epoch: int, global_seed: int) -> torch.Tensor:
        where.update(rank=rank, epoch=epoch)
        torch.manual_seed(global_seed)  # whatever the global RNG holds
        before = torch.get_rng_state()
        value = module._entropy(dist)
        assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left alone
        return value

    assert torch.equal(entropy(0, 3, global_seed=1), entropy(0, 3, global_seed=2))
    assert not torch.equal(entropy(0, 3, 1), entropy(1, 3, 1))  # another rank, another stream
    assert not torch.equal(entropy(0, 3, 1), entropy(0, 4, 1))  # another epoch, another draw


@pytest.mark.ddp
def test_a_ddp_resume_of_a_tanh_policy_with_an_entropy_bonus_is_exact(tmp_path):
    """2 gloo ranks, a squashed Gaussian with an entropy bonus (its gradient uses the entropy sample) on an env
    whose episodes have random lengths (so the ranks draw different numbers of samples): 2 epochs, then a
    resume to 3, end with the parameters of 3 straight epochs."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    common = [
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "env.id=tests.user_envs:BoxRandomLength-v0",
        "network.action_bounds=tanh",
        "model.loss.entropy_coef=0.01",
        "data.episodes_per_epoch=2",
        "data.num_envs=1",
        "callbacks.progress_bar.refresh_rate=0",
        "env.return_threshold=null",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)

    def train(*args):
        proc = subprocess.run(
            [sys.executable, "train.py", *common, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

    train("trainer.max_epochs=3", f"hydra.run.dir={tmp_path / 'straight'}")
    train("trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'first'}")
    train(
        "trainer.max_epochs=3",
        f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
    )
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
