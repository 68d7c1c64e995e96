from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


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
