"""ReinforceModule under a real Trainer: on-policy updates, metrics, and the plain-torch math core."""

import itertools
import subprocess
import sys

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
