"""Learning, not only running: CartPole's 100-episode mean rises well above random in a small budget."""

import pytest

from pg_lightning.train import run


@pytest.mark.slow
def test_cartpole_learns_well_above_random(make_cfg):
    # random policy: ~22. Budget: 25 epochs of 16 episodes (about 10-20 s on 2 cores).
    metrics = run(make_cfg("seed=0", "trainer.max_epochs=25", "callbacks.progress_bar.refresh_rate=0"))
    assert metrics["rollout/return_mean_100"] > 150, metrics
