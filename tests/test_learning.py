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


@pytest.mark.learning
def test_the_readme_python_snippet_solves_cartpole(tmp_path):
    """The README's "From Python" block, run as written in a fresh interpreter: solved (about 50 epochs, 9 s)."""
    import re
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert block is not None, "the README has no python block"
    code = (
        block.group(1)
        + '\nprint("RESULT", trainer.current_epoch, float(trainer.callback_metrics["rollout/return_mean_100"]))\n'
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    _, epochs, mean = done.stdout.strip().splitlines()[-1].split()
    assert float(mean) >= 475 and int(epochs) < 500, done.stdout[-2000:]
    print(f"README example: solved in {epochs} epochs (100-episode mean {float(mean):.1f}), {seconds:.1f} s in all")
