from pathlib import Path

import pg_lightning.conf  # noqa: F401  (stores schema/trainer, the Trainer's signature, in Hydra's ConfigStore)
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# The slow tiers (docs/tests.md). [tool.pytest.ini_options] addopts deselects them, so plain `pytest` is the fast
# tier; `pytest -m ddp` runs one, `pytest -m ""` everything. A test carries at most one of them.
TIERS = ("statistical", "learning", "ddp", "notebooks", "install", "subprocess")


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m deselection
def pytest_collection_modifyitems(items):
    """``slow`` is an alias of the tiers: ``-m slow`` runs all of them, ``-m "not slow"`` is the fast tier."""
    for item in items:
        tiers = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
        if len(tiers) > 1:
            raise pytest.UsageError(f"{item.nodeid}: in more than one tier: {sorted(tiers)}")
        if tiers:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def make_cfg(tmp_path):
    """Compose conf/train.yaml with overrides, writing outputs under tmp_path."""

    def _make(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return compose("train", overrides=[f"paths.output_dir={output_dir or tmp_path}", *overrides])

    return _make


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny networks and the statistical tests run fastest, and most steadily, on one thread."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
