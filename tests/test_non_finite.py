"""No NaN saved as good: non-finite numbers in the config, and non-finite parameters in a run.

- every number a config takes is finite and in a sane range, or it is one ConfigError line naming the key
  (``model.optimizer.lr=inf``, ``network.log_std_init=nan``, ``torch_num_threads=100000``, ...);
- an optimizer step that makes a parameter non-finite (from a finite loss and gradient: ``lr=1e308``)
  stops the run with one line, before the epoch's checkpoints, and no checkpoint of non-finite
  parameters is written (``on_exception.ckpt`` included): every ``.ckpt`` left on disk is finite;
- non-finite parameters before the first update (a NaN initial value) stop the run before it collects
  anything, naming the parameters rather than blaming the env;
- the message of a non-finite loss says what is true of the parameters and the checkpoints;
- a non-finite loss or gradient stops the run with a diagnosis, before any update, keeping the last good
  checkpoint; the failing step leaves the baseline as it was (the EMA average, PopArt's statistics and the
  value net's rescaled output layer: it used to have moved them).
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import pytorch_lightning as pl
import torch

from pg_lightning.cli.preflight import check_evaluate_config, validate
from pg_lightning.cli.train import run
from pg_lightning.core.baselines import ConstantBaseline, EMABaseline, ValueBaseline
from pg_lightning.core.errors import ArgumentError, ConfigError, NonFiniteError
from pg_lightning.envs.networks import make_policy, make_value_network
from pg_lightning.lightning.callbacks import ExceptionCheckpoint
from pg_lightning.lightning.data import RolloutDataModule
from pg_lightning.lightning.module import ReinforceModule
from tests.conftest import CONF, ROOT
from tests.helpers import make_batch, quiet_trainer

FAST = [
    "data.episodes_per_epoch=4",
    "data.num_envs=2",
    "callbacks.progress_bar.refresh_rate=0",
    "env.return_threshold=null",
]
# last.ckpt and best.ckpt at the end of every epoch (TimedCheckpoint's every_n_seconds=0): "the last good checkpoint"
# is then the previous epoch's
EVERY_EPOCH = ["callbacks.last_checkpoint.every_n_seconds=0", "callbacks.best_checkpoint.every_n_seconds=0"]


class OverflowAdam(torch.optim.Adam):
    """Adam whose learning rate becomes 1e308 at its update number ``at`` (0-based): a finite loss and
    gradient, and an update that overflows the weights (what ``model.optimizer.lr=1e308`` did)."""

    def __init__(self, params: Iterable[Any], lr: float = 0.01, at: int = 2) -> None:
        super().__init__(params, lr=lr)
        self.at, self.updates = at, 0

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        if self.updates == self.at:
            for group in self.param_groups:
                group["lr"] = 1e308
        self.updates += 1
        return super().step(closure)


def ckpt_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.ckpt"))


def assert_finite_checkpoint(path: Path) -> None:
    saved = torch.load(path, weights_only=False, map_location="cpu")
    bad = [k for k, v in saved["state_dict"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    # (the action bounds of a Box may be +-inf buffers: parameters only)
    params = {k for k in saved["state_dict"] if not k.endswith((".low", ".high"))}
    assert not [k for k in bad if k in params], (path.name, bad)
    for state in saved.get("optimizer_states", []):
        for per_param in state["state"].values():
            for v in per_param.values():
                assert not isinstance(v, torch.Tensor) or torch.isfinite(v).all(), (path.name, "optimizer state")


# --- the config: every number finite and in range, one line naming the key -------------------------------


BAD_VALUES = [
    ("model.optimizer.lr=inf", "model.optimizer.lr"),
    ("model.optimizer.lr=1e308", "model.optimizer.lr"),
    ("model.optimizer.lr=nan", "model.optimizer.lr"),
    ("model.loss.entropy_coef=inf", "model.loss.entropy_coef"),
    ("model.loss.entropy_coef=nan", "model.loss.entropy_coef"),
    ("network.output_init_scale=nan", "network.output_init_scale"),
    ("network.output_init_scale=inf", "network.output_init_scale"),
    ("network.output_init_scale=0", "network.output_init_scale"),
    ("baseline=constant baseline.value=nan", "baseline.value"),
    ("baseline=constant baseline.value=inf", "baseline.value"),
    ("baseline=constant baseline.value=1e39", "baseline.value"),
    ("env=pendulum network.log_std_init=nan", "network.log_std_init"),
    ("env=pendulum network.log_std_init=inf", "network.log_std_init"),
    ("env=pendulum network.log_std_init=50", "network.log_std_init"),
    ("torch_num_threads=100000", "torch_num_threads"),
    ("baseline=value baseline.lr=inf", "baseline.lr"),
    ("baseline=value baseline.loss_coef=inf", "baseline.loss_coef"),
    ("env.return_threshold=nan", "env.return_threshold"),
    ("env.return_threshold=inf", "env.return_threshold"),
    ("scheduler=cosine model.scheduler.eta_min=inf", "model.scheduler.eta_min"),
    ("callbacks.early_stopping.stopping_threshold=nan", "callbacks.early_stopping.stopping_threshold"),
    ("+trainer.gradient_clip_val=inf", "trainer.gradient_clip_val"),
    ("+model.optimizer.weight_decay=inf", "model.optimizer.weight_decay"),
    ("+model.optimizer.betas=[0.9,nan]", "model.optimizer.betas[1]"),
    ("env=chain env.kwargs.step_reward=nan", "env.kwargs.step_reward"),
    ("++data.step_timeout=0", "data.step_timeout"),
    ("++data.step_timeout=-1", "data.step_timeout"),
    ("++data.step_timeout=inf", "data.step_timeout"),
    ("++data.step_timeout=nan", "data.step_timeout"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_a_non_finite_or_absurd_number_is_one_line_naming_the_key(make_cfg, overrides, key):
    with pytest.raises(ConfigError) as info:
        validate(make_cfg(*overrides.split()))
    message = str(info.value)
    assert message.startswith(f"{key} must be "), message
    assert "\n" not in message, message


GOOD_VALUES = [
    "model.optimizer.lr=1000",
    "model.optimizer.lr=1e-6",
    "env=pendulum network.log_std_init=-5",
    "env=pendulum network.log_std_init=2",
    "network.output_init_scale=null",
    "network.output_init_scale=100",
    "baseline=constant baseline.value=-200",
    "torch_num_threads=null",
    f"torch_num_threads={os.cpu_count()}",
    "++data.step_timeout=null",
    "++data.step_timeout=0.5",
    "env=chain env.kwargs.step_reward=-1",
    "experiment=acrobot",
]


@pytest.mark.parametrize("overrides", GOOD_VALUES)
def test_sane_values_still_pass(make_cfg, overrides):
    validate(make_cfg(*overrides.split()))


def test_evaluate_torch_num_threads_is_bounded_by_the_machine(tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"output_dir={tmp_path}", "torch_num_threads=100000"])
    with pytest.raises(ConfigError, match=r"^torch_num_threads must be an integer from 1 to 4 x os.cpu_count\(\)"):
        check_evaluate_config(cfg)


def test_cli_a_non_finite_value_is_one_stderr_line_and_exit_2(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    cases = [
        ("train.py", "model.optimizer.lr=inf", "model.optimizer.lr"),
        ("evaluate.py", "torch_num_threads=100000", "torch_num_threads"),
    ]
    procs = [
        (
            subprocess.Popen(
                [sys.executable, str(ROOT / script), override, f"hydra.run.dir={tmp_path / str(i)}"],
                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ),
            override,
            key,
        )
        for i, (script, override, key) in enumerate(cases)
    ]  # fmt: skip
    for proc, override, key in procs:
        _, stderr = proc.communicate(timeout=240)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, (override, stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith(f"Config error: {key} must be "), (override, stderr[-2000:])


def test_the_core_refuses_non_finite_initial_values_naming_the_argument():
    box = gym.spaces.Box(-1, 1, (3,))
    with pytest.raises(ArgumentError, match=r"^log_std_init must be a number in \[-5, 2\], got nan$") as err:
        make_policy(box, gym.spaces.Box(-1, 1, (2,)), log_std_init=math.nan)
    assert err.value.argument == "log_std_init"
    with pytest.raises(
        ArgumentError, match=r"^output_init_scale must be a number in \(0, 100\] or null, got inf$"
    ) as err:
        make_policy(box, gym.spaces.Discrete(2), output_init_scale=math.inf)
    assert err.value.argument == "output_init_scale"
    with pytest.raises(ArgumentError, match=r"^value must be a number in \[\S+, \S+\], got nan$") as err:
        ConstantBaseline(math.nan)
    assert err.value.argument == "value"


# --- a run: non-finite parameters stop it with one line, and no checkpoint of them is written --------------


def test_an_update_that_overflows_the_weights_stops_the_run_and_keeps_the_last_good_checkpoint(
    make_cfg, tmp_path, caplog
):
    cfg = make_cfg(
        *FAST, *EVERY_EPOCH, "trainer.max_epochs=6",
        "model.optimizer._target_=tests.test_non_finite.OverflowAdam", "+model.optimizer.at=2",
    )  # fmt: skip
    with caplog.at_level(logging.WARNING), pytest.raises(NonFiniteError) as info:
        run(cfg)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("non-finite parameters after the optimizer step of epoch 2: policy."), message
    assert "at lr 1e+308" in message and "lower model.optimizer.lr" in message, message
    checkpoints = tmp_path / "checkpoints"
    assert str(checkpoints / "last.ckpt") in message and str(checkpoints / "best.ckpt") in message, message
    # the last good checkpoint is kept: the end of epoch 1, finite; nothing of epoch 2 was written
    assert {p.name for p in ckpt_files(tmp_path)} == {"last.ckpt", "best.ckpt"}
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["epoch"] == 1
    for path in ckpt_files(tmp_path):
        assert_finite_checkpoint(path)
    assert any("on_exception.ckpt not written: the run stopped with non-finite parameters" in r.message
               for r in caplog.records), [r.message for r in caplog.records]  # fmt: skip


def test_lr_1e308_stops_at_the_first_update_with_no_checkpoint_written(make_cfg, tmp_path, monkeypatch):
    """``model.optimizer.lr=1e308`` as it was before the config refused it: the first update overflows."""
    monkeypatch.setattr("pg_lightning.cli.train.validate", lambda cfg: None)  # (validate refuses lr > 1e3)
    with pytest.raises(NonFiniteError) as info:
        run(make_cfg(*FAST, "trainer.max_epochs=3", "model.optimizer.lr=1e308"))
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("non-finite parameters after the optimizer step of epoch 0:"), message
    assert message.endswith("no checkpoint was written before it"), message
    assert ckpt_files(tmp_path) == []


@pytest.mark.filterwarnings("ignore:.*ckpt_path")  # (Lightning's, for OnExceptionCheckpoint without ckpt_path)
def test_non_finite_initial_parameters_stop_the_run_before_it_collects(tmp_path):
    env = gym.make("CartPole-v1")
    module = ReinforceModule(make_policy(env.observation_space, env.action_space))
    with torch.no_grad():
        module.policy.net[0].weight[0, 0] = math.nan
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ExceptionCheckpoint(dirpath=str(tmp_path), filename="on_exception")],
    )  # fmt: skip
    data = RolloutDataModule("CartPole-v1", 2, num_envs=2)
    with pytest.raises(NonFiniteError) as info:
        trainer.fit(module, datamodule=data)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("non-finite parameters before the first update: policy.net.0.weight, from the "), message
    assert "network.log_std_init" in message and "nothing was trained or saved" in message
    assert data.collector is None or data.collector.epoch == 0  # nothing was collected
    assert ckpt_files(tmp_path) == []


def test_a_non_finite_loss_says_what_is_true_of_the_parameters():
    env = gym.make("CartPole-v1")
    module = ReinforceModule(make_policy(env.observation_space, env.action_space))
    batch = make_batch([[0.1] * 4, [0.2] * 4], [0, 1], [math.inf, 1.0], [True, True])
    with pytest.raises(NonFiniteError) as info:  # finite parameters, an infinite reward
        module.training_step(batch, 0)
    assert "nothing was updated: the parameters are still finite" in str(info.value)
    assert "non-finite parameters" not in str(info.value)
    with torch.no_grad():
        module.policy.net[0].bias[0] = math.nan
    with pytest.raises(NonFiniteError) as info:  # parameters that were already NaN: no "good" checkpoint claimed
        module.training_step(batch, 0)
    message = str(info.value)
    assert "non-finite parameters: policy.net.0.bias: they were not finite when this step began" in message
    assert "still finite" not in message and "good parameters" not in message, message


def test_all_finite_is_one_check_of_every_entry():
    from pg_lightning.lightning.module import all_finite

    big = torch.full((4,), 3e38)  # finite, though its 2-norm overflows
    assert all_finite([big, torch.zeros(0), torch.ones(2, dtype=torch.float64), torch.arange(3)])
    assert not all_finite([torch.ones(3), torch.tensor([1.0, math.nan])])
    assert not all_finite([torch.tensor([-math.inf]), torch.ones(2, dtype=torch.float64)])
    assert all_finite([])


# --- a non-finite loss or gradient: the run stops before any update, and the baseline is left as it was ---------


def test_a_non_finite_loss_stops_the_run_with_a_diagnosis_and_keeps_the_last_good_checkpoint(make_cfg, tmp_path):
    # Faulty-v0 turns to rewards of 3e38 after 60 steps of a copy: their returns overflow float32
    import tests.envs  # noqa: F401  (registers Faulty-v0)

    cfg = make_cfg(
        *FAST, *EVERY_EPOCH, "env.id=Faulty-v0", "+env.kwargs.fault=huge_reward", "+env.kwargs.fault_after=60",
        "trainer.max_epochs=20", "model.loss.gamma=1.0",
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
    import hydra

    from pg_lightning.cli.train import make_baseline, make_datamodule

    cfg = make_cfg(*FAST, "trainer.max_epochs=1")
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
