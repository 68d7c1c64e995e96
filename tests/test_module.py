"""ReinforceModule under a real Trainer: on-policy updates, metrics, and the plain-torch math core."""

import itertools
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch

from pg_lightning.core.metrics import WindowMean
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from pg_lightning.envs.networks import make_policy
from pg_lightning.lightning.data import RolloutDataModule
from pg_lightning.lightning.module import ReinforceModule


def small_module_and_data(episodes=4):
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    torch.manual_seed(0)
    policy = make_policy(env.observation_space, env.action_space, hidden_sizes=[16])
    return ReinforceModule(policy), RolloutDataModule("CartPole-v1", episodes_per_epoch=episodes, num_envs=2)


def quiet_trainer(**kwargs):
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def test_every_update_is_on_policy(monkeypatch):
    """Each epoch collects with exactly the parameters left by the previous optimizer step."""
    module, data = small_module_and_data()
    seen_at_collection, seen_at_step = [], []
    collect = EpisodeCollector.collect

    def spy_collect(self, policy, n):
        seen_at_collection.append([p.detach().clone() for p in policy.parameters()])
        return collect(self, policy, n)

    def spy_step(batch, batch_idx):
        seen_at_step.append([p.detach().clone() for p in module.policy.parameters()])
        return ReinforceModule.training_step(module, batch, batch_idx)

    monkeypatch.setattr(EpisodeCollector, "collect", spy_collect)
    monkeypatch.setattr(module, "training_step", spy_step)
    quiet_trainer(max_epochs=4).fit(module, datamodule=data)
    assert len(seen_at_collection) == len(seen_at_step) == 4  # one batch, one step per epoch
    for at_collection, at_step in zip(seen_at_collection, seen_at_step, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(at_collection, at_step, strict=True))
    for before, after in itertools.pairwise(seen_at_collection):
        assert not all(torch.equal(a, b) for a, b in zip(before, after, strict=True))  # parameters moved


class LastBatch(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batch, self.loss = batch, outputs["loss"].detach()


def test_metrics_are_logged_under_stable_names_with_the_batch_values():
    module, data = small_module_and_data(episodes=5)
    spy = LastBatch()
    trainer = quiet_trainer(max_epochs=3, callbacks=[spy])
    trainer.fit(module, datamodule=data)
    m = trainer.callback_metrics
    expected = {
        "rollout/return_mean": spy.batch.episode_returns().mean(),
        "rollout/length_mean": spy.batch.episode_lengths().float().mean(),
        "rollout/episodes": torch.tensor(15.0),
        "rollout/env_steps": module.return_window.values[:15].sum(),  # CartPole: return = length
        "train/loss": spy.loss,
        "train/psi_sq": module.loss_fn.returns(spy.batch.rewards, spy.batch.dones).pow(2).mean(),
    }
    for key, value in expected.items():
        torch.testing.assert_close(m[key].double(), value.double(), msg=key)
    for key in (
        "rollout/return_mean_100",
        "time/collect_fps",
        "train/policy_loss",
        "train/entropy_loss",
        "train/grad_norm",
    ):
        assert torch.isfinite(m[key]), key
    # no baseline here: the advantage is Psi itself
    torch.testing.assert_close(m["train/advantage_sq"], m["train/psi_sq"])
    assert 0 < m["train/entropy"] <= torch.log(torch.tensor(2.0)) + 1e-6
    torch.testing.assert_close(m["rollout/return_mean_100"], module.return_window.values[:15].mean())


def test_training_step_by_hand_after_fit():
    module, data = small_module_and_data()
    quiet_trainer(max_epochs=1).fit(module, datamodule=data)
    collector = EpisodeCollector(make_vector_env("CartPole-v1", 2))
    module.training_step(collector.collect(module.policy, 2), 0).backward()  # no logging outside the loop


def test_training_step_outside_a_trainer():
    module, _ = small_module_and_data()
    collector = EpisodeCollector(make_vector_env("CartPole-v1", 2))
    loss = module.training_step(collector.collect(module.policy, 3), 0)
    assert loss.shape == () and loss.requires_grad
    loss.backward()
    assert all(p.grad is not None for p in module.policy.parameters())


def test_window_mean_keeps_the_last_values_and_survives_state_dict():
    m = WindowMean(window=4)
    m.update(torch.arange(3.0))
    assert m.compute() == 1.0
    m.update(torch.tensor([10.0, 20.0, 30.0]))  # window now 2, 10, 20, 30
    assert m.compute() == 15.5
    restored = WindowMean(window=4)
    restored.load_state_dict(m.state_dict())
    restored.update(torch.tensor([40.0]))  # drops 2
    assert restored.compute() == 25.0


def test_math_modules_import_neither_lightning_nor_gymnasium():
    code = (
        "import sys; import pg_lightning, pg_lightning.core.returns, pg_lightning.core.loss, pg_lightning.core.baselines, "
        "pg_lightning.core.policies, pg_lightning.core.batch, pg_lightning.core.tabular, pg_lightning.core.distributions, "
        "pg_lightning.core.recurrent, pg_lightning.core.encoders, pg_lightning.core.tree, pg_lightning.core.diagnostics; "
        "bad = [m for m in ('pytorch_lightning', 'lightning', 'gymnasium') if m in sys.modules]; "
        "assert not bad, bad; print(pg_lightning.discounted_returns)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


# --- Lightning's verbs on a train.py checkpoint: load_from_checkpoint


def _trained(make_cfg, tmp_path, *overrides):
    from pg_lightning.cli.train import run

    run(make_cfg(*FAST_RUN, *overrides, output_dir=tmp_path))
    return tmp_path / "checkpoints" / "last.ckpt"


FAST_RUN = ["data.episodes_per_epoch=4", "data.num_envs=2", "trainer.max_epochs=3", "env.return_threshold=null"]


def test_load_from_checkpoint_rebuilds_a_train_py_module_from_its_saved_config(make_cfg, tmp_path):
    """ReinforceModule.load_from_checkpoint(path) alone: the module of the run, every weight and metric."""
    ckpt = _trained(make_cfg, tmp_path, "baseline=value", "model.loss.gamma=0.9", "model.optimizer.lr=0.003")
    module = ReinforceModule.load_from_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)
    assert module.state_dict().keys() == saved["state_dict"].keys()
    for key, value in saved["state_dict"].items():
        torch.testing.assert_close(module.state_dict()[key], value, rtol=0, atol=0, msg=key)
    assert module.loss_fn.gamma == 0.9 and type(module.baseline).__name__ == "ValueBaseline"
    assert module.optimizer_factory.keywords["lr"] == 0.003
    assert module.hparams["config"] == saved["hyper_parameters"]["config"]  # saved again as train.py saved it
    assert float(module.episodes.compute()) == 12.0  # the running totals too (3 epochs of 4 episodes)
    # and it trains on in a Trainer of one's own
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(module, datamodule=RolloutDataModule("CartPole-v1", episodes_per_epoch=2, num_envs=2))
    assert float(module.episodes.compute()) == 14.0


def test_load_from_checkpoint_keeps_evaluates_trust_rule(make_cfg, tmp_path):
    """A saved config that names code outside the allowlist is refused before it is called, unless trusted."""
    from pg_lightning.core.errors import ConfigError

    custom = ["network=custom", "network._target_=tests.user_networks.TinyCategorical", "+network.width=8"]
    ckpt = _trained(make_cfg, tmp_path, *custom)
    with pytest.raises(ConfigError, match=r"network._target_=tests.user_networks.TinyCategorical .*trust_checkpoint"):
        ReinforceModule.load_from_checkpoint(ckpt)
    module = ReinforceModule.load_from_checkpoint(ckpt, trust_checkpoint_code=True)
    assert type(module.policy).__name__ == "TinyCategorical"


def test_load_from_checkpoint_of_a_module_built_by_hand_says_what_to_pass(tmp_path):
    """No train.py config in the checkpoint: Lightning's own load with policy=..., or a message naming it."""
    module, data = small_module_and_data(episodes=2)
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(tmp_path / "own.ckpt")
    with pytest.raises(TypeError, match=r"holds no train.py config .*pass what the module was built with: .*policy="):
        ReinforceModule.load_from_checkpoint(tmp_path / "own.ckpt")
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    policy = make_policy(env.observation_space, env.action_space, hidden_sizes=[16])
    loaded = ReinforceModule.load_from_checkpoint(tmp_path / "own.ckpt", policy=policy)
    for key, value in module.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)


# --- Lightning's verbs: trainer.validate and trainer.test run greedy evaluation episodes


def test_trainer_validate_and_test_run_greedy_episodes_and_log_eval_metrics():
    """The same episodes as evaluate's: run_episodes on an env as training builds it, greedy, seeds seed + i."""

    from pg_lightning.envs.evaluation import episode_stats, make_eval_env, run_episodes

    module, _ = small_module_and_data()
    data = RolloutDataModule("CartPole-v1", episodes_per_epoch=2, num_envs=2, seed=3, eval_episodes=4)
    trainer = quiet_trainer(max_epochs=1)
    (validated,) = trainer.validate(module, datamodule=data, verbose=False)
    (tested,) = trainer.test(module, datamodule=data, verbose=False)
    env = make_eval_env("CartPole-v1")
    expected = episode_stats(*run_episodes(module.policy, env, 4, greedy=True, seed=3))
    env.close()
    for metrics in (validated, tested):
        assert set(metrics) == {"eval/return_mean", "eval/return_std", "eval/length_mean"}
        for name in ("return_mean", "return_std", "length_mean"):
            assert metrics[f"eval/{name}"] == pytest.approx(expected[name]), name
    assert data.collector is None and data._eval_env is None  # no vector env built; the eval env closed


class _Validations(pl.Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        self.epochs.append(trainer.current_epoch)


@pytest.mark.parametrize(
    ("trainer_args", "epochs"),
    [
        ({"check_val_every_n_epoch": 2, "num_sanity_val_steps": 0}, [1, 3]),  # Lightning's knob
        ({"limit_val_batches": 0}, []),  # conf/trainer/cpu.yaml: run() does not validate
    ],
)
def test_fit_validates_as_lightning_does(trainer_args, epochs):
    """In a Trainer's fit, the same greedy episodes every check_val_every_n_epoch epochs; none with
    limit_val_batches=0 (run()'s default: EvalCallback evaluates during training there)."""
    module, data = small_module_and_data(episodes=2)
    spy = _Validations()
    trainer = quiet_trainer(max_epochs=4, callbacks=[spy], **trainer_args)
    trainer.fit(module, datamodule=data)
    assert spy.epochs == epochs
    assert any(k.startswith("eval/") for k in trainer.callback_metrics) == bool(epochs)


def test_run_does_not_validate(make_cfg, tmp_path):
    """The default config's fit: no eval/* in its metrics.csv or its final metrics."""
    import csv

    from pg_lightning.cli.train import run

    metrics = run(make_cfg(*FAST_RUN))
    assert not any(k.startswith("eval/") for k in metrics)
    header = next(csv.reader(open(tmp_path / "csv" / "metrics.csv")))
    assert "rollout/return_mean_100" in header and not any(k.startswith("eval/") for k in header)


class _SelfLogModule(ReinforceModule):
    """The reference: every scalar through Lightning's own ``self.log(on_epoch=True)``, as before `log_scalars`."""

    def log_scalars(self, values, prog_bar=(), mean=False) -> None:
        if self._trainer is None:
            return
        for name, value in values.items():
            self.log(
                name, torch.as_tensor(value), on_step=False, on_epoch=True, batch_size=1, prog_bar=name in prog_bar
            )

    def on_train_epoch_end(self) -> None:
        pass


def test_log_scalars_writes_the_rows_self_log_writes(tmp_path):
    """The same metrics.csv as Lightning's self.log path: the same columns and rows (epoch, step and every value but
    the timing), one row per epoch; and the same callback_metrics."""
    import csv

    import gymnasium as gym

    rows, metrics = {}, {}
    for cls in (ReinforceModule, _SelfLogModule):
        env = gym.make("CartPole-v1")
        torch.manual_seed(0)
        policy = make_policy(env.observation_space, env.action_space, hidden_sizes=[16])
        module = cls(policy)
        logger = pl.loggers.CSVLogger(tmp_path, name=cls.__name__, version=0)
        trainer = pl.Trainer(
            max_epochs=4, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, log_every_n_steps=1, limit_val_batches=0,
        )  # fmt: skip
        trainer.fit(module, datamodule=RolloutDataModule("CartPole-v1", episodes_per_epoch=3, num_envs=2, seed=1))
        rows[cls] = list(csv.DictReader(open(tmp_path / cls.__name__ / "version_0" / "metrics.csv")))
        metrics[cls] = dict(trainer.callback_metrics)
    ours, reference = rows[ReinforceModule], rows[_SelfLogModule]
    assert len(ours) == len(reference) == 4
    assert list(ours[0]) == list(reference[0])  # the same columns, in the same order
    for mine, theirs in zip(ours, reference, strict=True):
        assert {k: v for k, v in mine.items() if k != "time/collect_fps"} == {
            k: v for k, v in theirs.items() if k != "time/collect_fps"
        }
    assert metrics[ReinforceModule].keys() == metrics[_SelfLogModule].keys()
    for key, value in metrics[_SelfLogModule].items():
        if key != "time/collect_fps":
            torch.testing.assert_close(metrics[ReinforceModule][key], value, msg=key)
