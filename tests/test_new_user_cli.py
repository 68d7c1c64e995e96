"""The command line as a new user meets it: config errors leave no run folder, run folders are unique, piped
output stays readable, the progress bar is an option, ``train.py --help`` explains, the sweep table is rounded.

The CLIs run in this process (``main()`` with ``sys.argv`` set, in ``tmp_path``); the fixture restores what
Hydra sets globally (``HydraConfig``, the root logger it configures).
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from pg_lightning.cli.checkpoints import resolve_ckpt_path
from pg_lightning.cli.sweep import JOB_RETURN, SweepSummary

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture
def cli(monkeypatch, tmp_path):
    """``cli(main, *args)``: run a ``@hydra.main`` in ``tmp_path`` as ``prog *args``; returns its exit status."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, HydraConfig.instance().cfg)

    def run(main, *args: str) -> int | str | None:
        monkeypatch.setattr(sys, "argv", ["prog", *args])
        with pytest.raises(SystemExit) as exit_:
            main()
        return exit_.value.code

    yield run
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    HydraConfig.instance().cfg = saved[2]


def compose_hydra(config: str, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(config, overrides=list(overrides), return_hydra_config=True)


# 1. A config error leaves no run folder.


def test_a_config_error_exits_2_before_the_run_folder_is_made(cli, tmp_path, capsys):
    from pg_lightning.cli.train import main

    assert cli(main, "model.loss.gamma=2") == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.strip()] == [
        "Config error: model.loss.gamma must be a number in [0, 1], got 2"
    ]
    assert list(tmp_path.iterdir()) == []  # no outputs/<date>/<time>/


def test_a_refused_run_folder_is_left_as_it_was(cli, tmp_path, capsys):
    """A run into a used hydra.run.dir is refused before Hydra rewrites its .hydra/config.yaml."""
    from pg_lightning.cli.train import main

    used = tmp_path / "used"
    (used / "checkpoints").mkdir(parents=True)
    (used / "checkpoints" / "last.ckpt").write_bytes(b"")
    (used / ".hydra").mkdir()
    (used / ".hydra" / "config.yaml").write_text("seed: 1\n")
    assert cli(main, f"hydra.run.dir={used}", "seed=2") == 2
    assert capsys.readouterr().err.strip().startswith("Config error: callbacks.last_checkpoint.dirpath: ")
    assert (used / ".hydra" / "config.yaml").read_text() == "seed: 1\n"
    assert sorted(p.name for p in used.iterdir()) == [".hydra", "checkpoints"]  # no train.log either


def test_the_check_sees_the_run_folder_hydra_is_about_to_make(tmp_path, capsys):
    """paths.output_dir is the run dir to be (ckpt_path=last looks beside it), and run_job makes that very dir."""
    cfg = compose_hydra("train", "ckpt_path=last")
    callback = hydra.utils.instantiate(cfg.hydra.callbacks.validate)
    with pytest.raises(SystemExit) as exit_:
        callback.on_run_start(config=cfg)
    assert exit_.value.code == 2
    run_dir = Path(OmegaConf.select(cfg, "hydra.run.dir")).resolve()
    assert f"under {run_dir.parent.parent}; give the checkpoint's path" in capsys.readouterr().err
    time.sleep(0.01)
    assert Path(OmegaConf.select(cfg, "hydra.run.dir")).resolve() == run_dir  # ${now:...} cached on Hydra's config
    assert not HydraConfig.initialized() or HydraConfig.get().runtime.output_dir != str(run_dir)  # restored


def test_evaluate_config_error_exits_2_before_the_run_folder_is_made(cli, tmp_path, capsys):
    from pg_lightning.cli.evaluation import main

    assert cli(main, "ckpt_path=missing.ckpt") == 2
    assert capsys.readouterr().err.strip() == "Config error: ckpt_path: no checkpoint file at 'missing.ckpt'"
    assert list(tmp_path.iterdir()) == []


# 2. Two runs started in the same second get two folders.


def test_two_runs_in_the_same_second_get_two_folders_and_ckpt_path_last_finds_the_first(tmp_path):
    first, second = compose_hydra("train"), compose_hydra("train")  # milliseconds apart
    dirs = [OmegaConf.select(c, "hydra.run.dir") for c in (first, second)]
    assert dirs[0] != dirs[1]
    assert all(re.fullmatch(r"outputs/\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}-\d{6}", d) for d in dirs), dirs
    sweeps = [OmegaConf.select(c, "hydra.sweep.dir") for c in (first, second)]
    assert sweeps[0] != sweeps[1]
    # ckpt_path=last still finds the checkpoints of the runs beside this one: outputs/*/*/checkpoints/last.ckpt
    ckpt = tmp_path / dirs[0] / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    resumed = OmegaConf.create({"ckpt_path": "last", "paths": {"output_dir": str(tmp_path / dirs[1])}})
    assert resolve_ckpt_path(resumed) == str(ckpt)


# 3. Piped output stays readable.


class _Tiny(pl.LightningModule):
    """One batch per epoch, one metric on the bar, as ReinforceModule."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        loss = (self.w - 1).pow(2).sum()
        self.log("rollout/return_mean_100", 51.474998474121094, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(1, 1), batch_size=1)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fit_with_default_bar(monkeypatch, stdout: io.StringIO, *overrides: str, epochs: int = 20) -> str:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["paths.output_dir=.", *overrides])
    monkeypatch.setattr(sys, "stdout", stdout)
    bar = hydra.utils.instantiate(cfg.callbacks.progress_bar)
    trainer = pl.Trainer(
        max_epochs=epochs, callbacks=[bar], logger=False, enable_checkpointing=False, enable_model_summary=False
    )
    trainer.fit(_Tiny())
    monkeypatch.undo()
    return stdout.getvalue()


def test_piped_output_is_one_line_every_ten_epochs(monkeypatch):
    out = _fit_with_default_bar(monkeypatch, io.StringIO())
    assert "\r" not in out
    lines = out.splitlines()
    assert [line.split(" [")[0] for line in lines] == [
        "Epoch 9: rollout/return_mean_100=51.47",
        "Epoch 19: rollout/return_mean_100=51.47",
    ]
    assert all(re.search(r" \[\d+\.\d s\]$", line) for line in lines)


def test_on_a_terminal_the_bar_is_drawn_and_refresh_rate_0_is_silent(monkeypatch):
    assert "\r" in _fit_with_default_bar(monkeypatch, _Terminal(), epochs=2)
    assert _fit_with_default_bar(monkeypatch, io.StringIO(), "callbacks.progress_bar.refresh_rate=0") == ""
    assert _fit_with_default_bar(monkeypatch, _Terminal(), "callbacks.progress_bar.refresh_rate=0", epochs=2) == ""


# 4. Another progress bar just works: progress_bar=tqdm | rich | none.


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("tqdm", "pg_lightning.lightning.callbacks.PipeAwareProgressBar"),
        ("rich", "pytorch_lightning.callbacks.progress.rich_progress.RichProgressBar"),
        ("none", None),
    ],
)
def test_progress_bar_is_an_option(tmp_path, option, expected):
    if option == "rich":
        pytest.importorskip("rich")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={tmp_path}", f"progress_bar={option}"])
    # as run() builds the trainer: every callback of the config, then the trainer
    callbacks = [hydra.utils.instantiate(c) for c in cfg.callbacks.values()]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=False)
    bar = trainer.progress_bar_callback
    assert (None if bar is None else f"{type(bar).__module__}.{type(bar).__qualname__}") == expected
    if option != "none":
        with initialize_config_dir(str(CONF), version_base="1.3"):
            quiet = compose("train", overrides=[f"progress_bar={option}", "callbacks.progress_bar.refresh_rate=0"])
        assert hydra.utils.instantiate(quiet.callbacks.progress_bar).is_disabled


# 5. train.py --help says what the app does and shows the groups.


def test_train_help_says_what_it_does_and_lists_the_groups(cli, capsys):
    from pg_lightning.cli.train import main

    assert cli(main, "--help") in (0, None)
    out = capsys.readouterr().out
    assert out.startswith("train.py: train a policy with REINFORCE")
    assert "python train.py experiment=acrobot" in out and "ckpt_path=last" in out
    for group in ("env", "experiment", "baseline", "network", "trainer", "logger", "callbacks"):
        assert re.search(rf"^{group}: \w", out, re.MULTILINE), group
    assert "progress_bar: none, rich, tqdm" in out
    assert "Hydra" in out  # --hydra-help


# 6. The sweep summary rounds the floats it prints (the CSV keeps them exact).


def test_sweep_summary_prints_rounded_floats(tmp_path, capsys):
    for job, (lr, value) in enumerate([("0.0032958204917485", 51.474998474121094), ("0.01", 487.5)]):
        record = {"job": job, "overrides": [f"model.optimizer.lr={lr}", "seed=123456789012"], "status": "completed",
                  "value": value, "error": "", "dir": str(tmp_path / str(job))}  # fmt: skip
        (tmp_path / str(job) / ".hydra").mkdir(parents=True)
        (tmp_path / str(job) / ".hydra" / JOB_RETURN).write_text(json.dumps(record))
    SweepSummary(metric="rollout/return_mean_100").on_multirun_end(
        OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    )
    printed = capsys.readouterr().out
    rows = [line.split() for line in printed.strip().splitlines()[-2:]]
    assert rows == [["0", "0.00329582", "51.475", "completed"], ["1", "0.01", "487.5", "completed"]]
    csv_text = (tmp_path / "summary.csv").read_text()
    assert "51.474998474121094" in csv_text and "0.0032958204917485" in csv_text  # exact: it reads back as returned
