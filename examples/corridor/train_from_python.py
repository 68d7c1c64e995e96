"""Train from Python instead of the command line: Hydra's compose API on pg_lightning's installed
configs (the package pg_lightning.conf) plus this project's configs/ folder.

    python train_from_python.py [override ...]       e.g.  python train_from_python.py seed=1 model.optimizer.lr=0.03

Python puts this script's folder on sys.path, so corridor_env imports without PYTHONPATH. Ends by
printing the run's directory, then its final metrics as JSON.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from hydra import compose, initialize_config_module

from pg_lightning.cli.train import run

HERE = Path(__file__).resolve().parent


def main(overrides: list[str]) -> dict[str, float]:
    output_dir = HERE / "outputs" / "from_python" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    with initialize_config_module("pg_lightning.conf", version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"hydra.searchpath=[file://{HERE / 'configs'}]",  # this project's env/, experiment/, ...
                "experiment=corridor_fast",
                f"paths.output_dir={output_dir}",  # no @hydra.main, so no hydra.run.dir: say where to write
                *overrides,
            ],
        )
    metrics = {name: float(value) for name, value in run(cfg).items()}
    print(output_dir)
    print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
