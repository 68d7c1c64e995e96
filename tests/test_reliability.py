"""A run that survives: faults injected on purpose, and what pg_lightning does about each.

- config mistakes fail before training, naming the key (more in test_config_and_cli.py);
- a non-finite loss or gradient stops the run with a diagnosis, before any update;
- extreme observations cannot make the policy's outputs NaN;
- an env that raises (sync or async) surfaces as EnvError naming the env, with no hang and no
  orphan worker; an env that never ends is truncated at a reported cap;
- the same config and seed give the same metrics; kill -9 in the middle of a run, then resume.
"""

import csv
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest
import pytorch_lightning as pl
import torch

import tests.envs  # noqa: F401  (registers Faulty-v0, Endless-v0)
from pg_lightning.cli.train import run
from pg_lightning.cli.validation import validate
from pg_lightning.core.errors import ConfigError, EnvError, NonFiniteError
from pg_lightning.envs import env_factory as env_factory_module
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.networks import make_policy
from tests.conftest import ROOT

FAST = ["data.episodes_per_epoch=4", "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0"]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("baseline=value", None),  # valid: the baseline's own keys pass
        ("baseline=value baseline.loss_coef=-1", "baseline.loss_coef"),
        ("baseline=value baseline.lr=0", "baseline.lr"),
        ("data.max_episode_steps=0", "data.max_episode_steps"),
    ],
)
def test_baseline_and_cap_keys_are_validated(make_cfg, override, message):
    cfg = make_cfg(*override.split())
    if message is None:
        validate(cfg)
    else:
        with pytest.raises(ConfigError, match=message):
            validate(cfg)


def test_a_checkpoint_from_another_env_or_network_is_refused(make_cfg, tmp_path):
    run(make_cfg(*FAST, "trainer.max_epochs=1", output_dir=tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    validate(make_cfg(f"ckpt_path={last}"))  # same env and network: fine
    with pytest.raises(ConfigError, match=r"ckpt_path: .* was trained with env.id='CartPole-v1'.*Acrobot-v1"):
        validate(make_cfg("env=acrobot", f"ckpt_path={last}"))
    with pytest.raises(ConfigError, match=r"ckpt_path: .* network="):  # checked once the model is built
        run(make_cfg(*FAST, "network.hidden_sizes=[32]", f"ckpt_path={last}", "trainer.max_epochs=2"))
    run(make_cfg(*FAST, "env=pendulum", "trainer.max_epochs=1", output_dir=tmp_path / "p"))
    pendulum = tmp_path / "p" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"ckpt_path: .* does not fit .*missing: policy.high, policy.low"):
        run(
            make_cfg(
                *FAST, "env=pendulum", "network.action_bounds=tanh", f"ckpt_path={pendulum}", "trainer.max_epochs=2"
            )
        )
    with pytest.raises(ConfigError, match=r"ckpt_path: .* does not fit .*baseline="):
        run(make_cfg(*FAST, "baseline=value", f"ckpt_path={last}", "trainer.max_epochs=2"))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="ckpt_path: .* is not a readable checkpoint"):
        validate(make_cfg(f"ckpt_path={junk}"))
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ConfigError, match="not a pg_lightning checkpoint"):
        validate(make_cfg(f"ckpt_path={tmp_path / 'foreign.ckpt'}"))


def test_ckpt_path_last_finds_the_newest_earlier_run(make_cfg, tmp_path):
    runs = tmp_path / "outputs" / "2026-11-22"
    with pytest.raises(ConfigError, match="ckpt_path=last: no"):
        validate(make_cfg("ckpt_path=last", output_dir=runs / "10-00-00"))
    run(make_cfg(*FAST, "trainer.max_epochs=1", output_dir=runs / "09-00-00"))
    from pg_lightning.cli.checkpoints import resolve_ckpt_path

    cfg = make_cfg("ckpt_path=last", output_dir=runs / "10-00-00")
    assert resolve_ckpt_path(cfg) == str(runs / "09-00-00" / "checkpoints" / "last.ckpt")


# --- numerical faults --------------------------------------------------------------------------


def test_a_non_finite_loss_stops_the_run_with_a_diagnosis_and_keeps_the_last_good_checkpoint(make_cfg, tmp_path):
    # Faulty-v0 turns to rewards of 3e38 after 60 steps of a copy: their returns overflow float32
    cfg = make_cfg(
        *FAST, "env.id=Faulty-v0", "+env.kwargs.fault=huge_reward", "+env.kwargs.fault_after=60",
        "env.return_threshold=null", "trainer.max_epochs=20", "model.loss.gamma=1.0",
    )  # fmt: skip
    with pytest.raises(NonFiniteError) as info:
        run(cfg)
    message = str(info.value)
    assert "non-finite loss at epoch" in message and "the returns Psi is not finite" in message
    assert "rewards:" in message and "3e+38" in message and "returns Psi: " in message
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["epoch"] >= 1 and f"epoch {saved['epoch'] + 1}" in message  # the failing epoch was not saved
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    # the exception checkpoint (Lightning's OnExceptionCheckpoint) holds the same, finite parameters
    on_exception = torch.load(tmp_path / "checkpoints" / "on_exception.ckpt", weights_only=True)
    assert on_exception["state_dict"].keys() == saved["state_dict"].keys()
    for k, v in saved["state_dict"].items():  # the value baseline's statistics included
        assert torch.isfinite(on_exception["state_dict"][k]).all(), k
        assert torch.equal(on_exception["state_dict"][k], v), k  # the same, last good state


def test_a_non_finite_gradient_stops_before_the_optimizer_step(make_cfg):
    cfg = make_cfg(*FAST, "trainer.max_epochs=1")
    import hydra

    from pg_lightning.cli.train import make_baseline, make_datamodule

    env = gym.make("CartPole-v1")
    policy = hydra.utils.instantiate(cfg.network)(
        observation_space=env.observation_space, action_space=env.action_space
    )
    model = hydra.utils.instantiate(cfg.model, policy=policy, baseline=make_baseline(cfg, env.observation_space))
    weight = policy.net[0].weight
    weight.register_hook(lambda grad: grad * float("inf"))
    before = weight.detach().clone()
    trainer = pl.Trainer(**{k: v for k, v in cfg.trainer.items() if k != "_target_"}, logger=False, callbacks=[])
    with pytest.raises(NonFiniteError, match=r"non-finite gradient at epoch 0 in policy.net.0.weight"):
        trainer.fit(model, datamodule=make_datamodule(cfg))
    assert torch.equal(weight.detach(), before)  # no step was taken


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("action_space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))])
def test_extreme_observations_give_finite_policy_outputs(activation, action_space):
    obs = torch.tensor([[1e30, -1e30, 3e38, 1.0], [float("inf"), -float("inf"), 0.0, -3e38]])
    for state_dependent_std in [False, True] if isinstance(action_space, gym.spaces.Box) else [False]:
        policy = make_policy(
            gym.spaces.Box(-float("inf"), float("inf"), (4,)), action_space, activation=activation,
            state_dependent_std=state_dependent_std,
        )  # fmt: skip
        dist = policy(obs)
        params = [dist.logits] if isinstance(action_space, gym.spaces.Discrete) else [dist.mean, dist.stddev]
        assert all(torch.isfinite(p).all() for p in params)
        assert torch.isfinite(dist.log_prob(dist.sample())).all()


# --- environment faults ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_env_that_raises_is_named_without_hanging_or_orphans(mode):
    envs = make_vector_env("Faulty-v0", 2, mode, {"fault": "raise", "fault_after": 12})
    policy = make_policy(envs.single_observation_space, envs.single_action_space)
    collector = EpisodeCollector(envs)
    if mode == "async":  # the workers exist, so their absence afterwards means something
        assert isinstance(envs, gym.vector.AsyncVectorEnv) and len(multiprocessing.active_children()) == 2
    try:
        with pytest.raises(EnvError, match=r"env.id='Faulty-v0' raised RuntimeError .*deliberate env fault"):
            for _ in range(10):
                collector.collect(policy, 4)
    finally:
        collector.close()
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert multiprocessing.active_children() == []


def test_an_async_env_fault_inside_a_run_stops_it_and_leaves_no_worker(make_cfg, monkeypatch):
    import pg_lightning.lightning.data

    built = []
    monkeypatch.setattr(
        pg_lightning.lightning.data,
        "make_vector_env",
        lambda *a, **k: built.append(make_vector_env(*a, **k)) or built[-1],
    )
    cfg = make_cfg(
        *FAST, "env.id=Faulty-v0", "+env.kwargs.fault_after=12", "data.vectorization_mode=async",
        "env.return_threshold=null", "trainer.max_epochs=10",
    )  # fmt: skip
    with pytest.raises(EnvError, match="Faulty-v0"):
        run(cfg)
    assert len(built) == 1 and isinstance(built[0], gym.vector.AsyncVectorEnv)  # the run did use worker processes
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert multiprocessing.active_children() == []


def test_non_finite_observations_are_an_env_fault():
    envs = make_vector_env("Faulty-v0", 2, "sync", {"fault": "nan_obs", "fault_after": 3})
    policy = make_policy(envs.single_observation_space, envs.single_action_space)
    with pytest.raises(EnvError, match=r"env.id='Faulty-v0' returned non-finite obs"):
        EpisodeCollector(envs).collect(policy, 4)


def test_an_endless_env_is_truncated_at_the_configured_cap():
    envs = make_vector_env("Endless-v0", 2, max_episode_steps=25)
    policy = make_policy(envs.single_observation_space, envs.single_action_space)
    batch = EpisodeCollector(envs).collect(policy, 3)
    assert batch.episode_lengths().tolist() == [25, 25, 25]
    assert batch.truncated.sum() == 3 and not batch.terminated.any()


def test_an_env_without_time_limit_gets_the_default_cap_and_it_is_reported(monkeypatch, caplog):
    monkeypatch.setattr(env_factory_module, "EPISODE_CAP", 30)
    with caplog.at_level(logging.INFO, logger="pg_lightning.envs.vector_envs"):
        envs = make_vector_env("Endless-v0", 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        (
            "Endless-v0: episodes are truncated at 30 steps (the env registers no time limit: pg_lightning's cap; "
            "set data.max_episode_steps)"
        )
    ]
    policy = make_policy(envs.single_observation_space, envs.single_action_space)
    assert EpisodeCollector(envs).collect(policy, 2).episode_lengths().tolist() == [30, 30]
    with caplog.at_level(logging.INFO, logger="pg_lightning.envs.vector_envs"):
        make_vector_env("CartPole-v1", 1)
    assert "CartPole-v1: episodes are truncated at 500 steps (the env's registered time limit)" in caplog.text


# --- reproducibility and crash-safe resume -----------------------------------------------------

VARYING = {"time/collect_fps"}  # wall-clock measurements


def test_same_config_and_seed_give_identical_metrics(make_cfg, tmp_path):
    for name in "ab":
        run(make_cfg(*FAST, "trainer.max_epochs=3", "baseline=value", output_dir=tmp_path / name))
    a, b = (rows(tmp_path / name / "csv" / "metrics.csv") for name in "ab")
    assert len(a) == 3
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k not in VARYING} == {k: v for k, v in y.items() if k not in VARYING}
    c = run(make_cfg(*FAST, "trainer.max_epochs=3", "baseline=value", "seed=1", output_dir=tmp_path / "c"))
    assert c["rollout/env_steps"] != float(a[-1]["rollout/env_steps"])  # another seed, other episodes
    first_c = rows(tmp_path / "c" / "csv" / "metrics.csv")[0]
    assert first_c["rollout/return_mean"] != a[0]["rollout/return_mean"] or first_c["train/loss"] != a[0]["train/loss"]


def test_kill_9_in_the_middle_of_a_run_then_resume(tmp_path):
    """SIGKILL a real training process, resume from its last.ckpt, and compare with what it logged."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    common = [*FAST, "env.return_threshold=null", "baseline=value"]
    first = tmp_path / "first"
    proc = subprocess.Popen(
        [sys.executable, "train.py", *common, "trainer.max_epochs=1000", f"hydra.run.dir={first}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    metrics = first / "csv" / "metrics.csv"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not metrics.exists() or len(rows(metrics)) < 6):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = rows(metrics)
    saved = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)
    epoch = saved["epoch"]  # the last completed epoch that was checkpointed
    # Nothing logged before the checkpoint's epoch is lost. The checkpoint's own epoch row may be: Lightning writes
    # checkpoints in on_train_epoch_end, before its logger connector hands that epoch's metrics to the CSV logger,
    # so a SIGKILL that lands between the two (a window of about a millisecond) loses that one row (a known limit).
    assert len(before) >= epoch
    assert [int(r["epoch"]) for r in before] == list(range(len(before)))
    known = min(len(before), epoch + 1)  # the rows the straight run is compared with below

    second = tmp_path / "second"
    resumed = subprocess.run(
        [sys.executable, "train.py", *common, f"trainer.max_epochs={epoch + 4}", f"ckpt_path={first}/checkpoints/last.ckpt",
         f"hydra.run.dir={second}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = rows(second / "csv" / "metrics.csv")
    assert [int(r["epoch"]) for r in after] == [epoch + 1, epoch + 2, epoch + 3]
    assert float(after[0]["rollout/env_steps"]) > float(before[known - 1]["rollout/env_steps"])  # totals continue
    # the resumed epochs are those of a run never interrupted: counters, the 100-episode window,
    # optimizer, value baseline and RNG state all came back from the checkpoint
    straight = tmp_path / "straight"
    proc = subprocess.run(
        [sys.executable, "train.py", *common, f"trainer.max_epochs={epoch + 4}", f"hydra.run.dir={straight}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = rows(straight / "csv" / "metrics.csv")
    assert [r["rollout/env_steps"] for r in reference[:known]] == [r["rollout/env_steps"] for r in before[:known]]
    for x, y in zip(reference[epoch + 1 :], after, strict=True):
        assert {k: v for k, v in x.items() if k not in VARYING} == {k: v for k, v in y.items() if k not in VARYING}


def test_a_fresh_run_refuses_a_directory_with_checkpoints(make_cfg, tmp_path):
    run(make_cfg(*FAST, "trainer.max_epochs=1"))
    with pytest.raises(ConfigError, match=r"callbacks.last_checkpoint.dirpath: .* already holds checkpoints"):
        validate(make_cfg(*FAST))
    validate(make_cfg(*FAST, output_dir=tmp_path / "elsewhere"))


@pytest.mark.parametrize("override", ["baseline=foo", "network=foo"])
def test_an_unknown_option_of_a_group_lists_the_available_ones(make_cfg, override):
    from hydra.errors import MissingConfigException

    group = override.split("=")[0]
    with pytest.raises(MissingConfigException) as info:
        make_cfg(override)
    assert f"Could not find '{group}/foo'" in str(info.value)
    assert "Available options" in str(info.value) and ("value" in str(info.value) or "mlp" in str(info.value))
    available = sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))
    assert f"Available options in '{group}':\n\t" + "\n\t".join(available) in str(info.value)


def test_a_policy_error_is_not_reported_as_an_env_fault():
    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, obs):
            raise ValueError("a bug in the policy")

    envs = make_vector_env("CartPole-v1", 2)
    with pytest.raises(ValueError, match="a bug in the policy"):
        EpisodeCollector(envs).collect(Broken(), 2)


@pytest.mark.subprocess
def test_ckpt_path_last_is_refused_in_a_multirun(tmp_path):
    from tests.test_config_and_cli import cli

    proc = cli("-m", "ckpt_path=last", "seed=0", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode != 0 and "ckpt_path=last is ambiguous in a multirun" in proc.stderr
