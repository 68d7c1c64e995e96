"""Learning, not only running: CartPole's 100-episode mean rises well above random in a small budget."""

import pytest

from pg_lightning.cli.train import run


@pytest.mark.learning
def test_cartpole_learns_well_above_random(make_cfg):
    # random policy: ~22. Budget: 25 epochs of 16 episodes (about 10-20 s on 2 cores).
    metrics = run(make_cfg("seed=0", "trainer.max_epochs=25", "callbacks.progress_bar.refresh_rate=0"))
    assert metrics["rollout/return_mean_100"] > 150, metrics


@pytest.mark.learning
def test_chain_tabular_softmax_reaches_five_percent_of_the_optimum(make_cfg, caplog):
    """python train.py experiment=chain (about 10 s)."""
    with caplog.at_level("INFO", logger="pg_lightning.cli.train"):
        metrics = run(make_cfg("experiment=chain", "callbacks.progress_bar.refresh_rate=0"))
    assert metrics["exact/return_optimal"] == pytest.approx(-7.7783, abs=1e-4)  # value iteration, slip 0.2
    assert metrics["exact/gap"] <= 0.05, metrics
    assert "exact J of the final policy" in caplog.text and "optimal J*" in caplog.text
