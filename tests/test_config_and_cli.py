"""Hydra: every config composes and instantiates; run(cfg), the CLI, resume and a sweep work.

Config mistakes fail before training, naming the key; a checkpoint of another env or network is refused; a fresh run
refuses a used directory. The command line as a user meets it: a config error is one line and exit status 2 before
the run folder is made, run folders are unique, piped output stays readable, the progress bar is an option,
``train.py --help`` explains, a multirun runs its jobs and its summary table is rounded.

The command lines run in this process (``tests.helpers.run_main``: ``main()`` with ``sys.argv`` set); the real
``python train.py`` / ``evaluate.py`` processes are in test_non_finite.py (exit status 2), test_faults.py (kill -9),
test_stuck_envs.py and test_preemption.py (SIGTERM) and the DDP tier.
"""

import csv
import functools
import importlib.util
import io
import json
import math
import re
import sys
import time
from pathlib import Path

import gymnasium as gym
import hydra
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from pg_lightning.cli import train
from pg_lightning.cli.build import env_block, env_factory
from pg_lightning.cli.checkpoints import resolve_ckpt_path
from pg_lightning.cli.sweep import JOB_RETURN, SweepSummary
from pg_lightning.cli.train import ConfigError, make_baseline, run, validate
from pg_lightning.core.baselines import Baseline
from pg_lightning.core.tree import map_tree
from tests.conftest import CONF, ROOT
from tests.helpers import missing_extra, run_main

FAST = ["trainer.max_epochs=2", "data.episodes_per_epoch=4", "data.num_envs=2"]


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("env", options("env"))
def test_every_env_config_composes_and_makes_its_env(make_cfg, env):
    cfg = make_cfg(f"env={env}")
    missing = missing_extra(cfg.env)
    if missing:
        pytest.skip(f"{cfg.env.id} needs {missing} (its extra)")
    validate(cfg)
    if env == "lunarlander" and importlib.util.find_spec("Box2D") is None:
        pytest.skip("LunarLander needs the box2d extra")
    if env == "inverted_pendulum" and importlib.util.find_spec("mujoco") is None:
        pytest.skip("InvertedPendulum needs the mujoco extra")
    e = env_factory(cfg.env, None)()  # imports, kwargs, wrappers, text dropped: as training builds it
    policy = hydra.utils.instantiate(cfg.network)(observation_space=e.observation_space, action_space=e.action_space)
    obs = map_tree(lambda x: torch.as_tensor(np.asarray(x))[None], e.reset(seed=0)[0])
    assert isinstance(policy(obs), torch.distributions.Distribution)
    e.close()


@pytest.mark.parametrize("group", ["network", "baseline", "logger", "callbacks"])
def test_every_option_of_each_group_instantiates(make_cfg, group):
    for option in options(group):
        # network=custom is the contract's empty frame: the user names the factory
        extra = (
            ["network._target_=pg_lightning.envs.networks.make_policy"]
            if (group, option) == ("network", "custom")
            else []
        )
        cfg = make_cfg(f"{group}={option}", *extra)
        needs = {"wandb": ["wandb"], "mlflow": ["mlflow", "sqlalchemy"]}.get(option, []) if group == "logger" else []
        if any(importlib.util.find_spec(m) is None for m in needs):
            # an optional extra (pip install -e ".[wandb]" / ".[mlflow]"), not in dev: composed, not built
            assert (
                cfg.logger[option]._target_
                == {
                    "wandb": "pytorch_lightning.loggers.WandbLogger",
                    "mlflow": "pytorch_lightning.loggers.MLFlowLogger",
                }[option]
            )
            continue
        if group == "baseline":
            obj = make_baseline(cfg, gym.spaces.Box(-1, 1, (3,)))
        else:
            obj = hydra.utils.instantiate(cfg[group]) if cfg[group] is not None else None
        if group == "network":
            assert isinstance(obj, functools.partial)
            assert isinstance(
                obj(observation_space=gym.spaces.Discrete(3), action_space=gym.spaces.Discrete(2)), torch.nn.Module
            )
        elif group == "baseline":
            assert isinstance(obj, Baseline)
        elif obj is not None:  # logger / callbacks: a dict of Lightning objects
            kind = pl.loggers.Logger if group == "logger" else pl.Callback
            assert all(v is not None for v in obj.values())
            assert all(isinstance(v, kind) for v in obj.values()), (option, obj)
            assert obj or option == "none", option  # only `none` may be empty


@pytest.mark.parametrize("trainer", options("trainer"))
def test_every_trainer_config_composes(make_cfg, trainer):
    cfg = make_cfg(f"trainer={trainer}")
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    if cfg.trainer.accelerator == "cpu" or torch.cuda.is_available():
        hydra.utils.instantiate(cfg.trainer, logger=False)
    else:
        assert cfg.trainer.accelerator == "gpu"  # needs a GPU to instantiate; composed and checked here


def test_data_and_model_instantiate(make_cfg):
    cfg = make_cfg()
    data = hydra.utils.instantiate(cfg.data, env_block(cfg.env))  # the env positionally: it is no config node
    assert data.env.env_id == "CartPole-v1" and data.episodes_per_epoch == cfg.data.episodes_per_epoch
    assert hydra.utils.instantiate(cfg.data, env="CartPole-v1").env == data.env  # a Python user's plain id
    loss = hydra.utils.instantiate(cfg.model.loss)
    assert loss.gamma == cfg.model.loss.gamma and loss.return_type == "reward_to_go"


def test_run_trains_and_writes_metrics_and_checkpoint(make_cfg, tmp_path):
    metrics = run(make_cfg(*FAST))
    assert metrics["rollout/episodes"] == 8 and metrics["epochs"] == 2
    assert next(iter(metrics)) == "rollout/return_mean_100"  # the optimized metric comes first
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    assert len(rows) == 2 and float(rows[-1]["rollout/episodes"]) == 8
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["hyper_parameters"]["config"]["env"]["id"] == "CartPole-v1"


def epoch_rows(path):
    return {int(r["epoch"]): r for r in csv.DictReader(open(path / "csv" / "metrics.csv"))}


def test_checkpoint_every_epoch_and_exact_resume(make_cfg, tmp_path):
    """A run stopped after 3 epochs and resumed to 5 matches an uninterrupted 5-epoch run exactly."""
    straight = run(make_cfg(*FAST, "trainer.max_epochs=5", output_dir=tmp_path / "straight"))
    run(make_cfg(*FAST, "trainer.max_epochs=3", output_dir=tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 2  # written at the end of epoch index 2
    resumed = run(make_cfg(*FAST, "trainer.max_epochs=5", f"ckpt_path={last}", output_dir=tmp_path / "b"))
    assert resumed["epochs"] == 5
    for key in ("rollout/episodes", "rollout/env_steps", "rollout/return_mean_100", "rollout/return_mean"):
        assert resumed[key] == straight[key], key  # totals, window and data stream all restored
    a, b = epoch_rows(tmp_path / "straight"), epoch_rows(tmp_path / "b")
    assert sorted(b) == [3, 4]
    for epoch in (3, 4):
        for key in ("rollout/return_mean", "rollout/length_mean", "train/loss"):
            assert float(a[epoch][key]) == pytest.approx(float(b[epoch][key]), rel=1e-6), (epoch, key)


def test_checkpoint_written_every_epoch(make_cfg, tmp_path):
    run(make_cfg(*FAST, "trainer.max_epochs=4"))
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 3 and ckpt["RolloutDataModule"] == {"epoch": 4}
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.loss.gamma=1.5", "model.loss.gamma"),
        ("env.id=CartPol-v1", "did you mean CartPole-v1"),
        ("data.num_envs=0", "data.num_envs"),
        ("data.episodes_per_epoch=-3", "data.episodes_per_epoch"),
        ("data.episodes_per_epoch=2.5", "data.episodes_per_epoch must be an integer"),
        ("model.loss.gamma=true", "model.loss.gamma"),
        ("model.optimizer.lr=0", "model.optimizer.lr"),
        ("model.loss.entropy_coef=-1", "model.loss.entropy_coef"),
        ("trainer.max_epochs=0", "trainer.max_epochs"),
        ("ckpt_path=/nonexistent.ckpt", "ckpt_path"),
    ],
)
def test_validation_names_the_key(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_cfg(override))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("baseline=value", None),  # valid: the baseline's own keys pass
        ("baseline=value baseline.loss_coef=-1", "baseline.loss_coef"),
        ("baseline=value baseline.lr=0", "baseline.lr"),
        ("data.max_episode_steps=0", "data.max_episode_steps"),
    ],
)
def test_baseline_and_cap_keys_are_validated(make_cfg, override, message):
    cfg = make_cfg(*override.split())
    if message is None:
        validate(cfg)
    else:
        with pytest.raises(ConfigError, match=message):
            validate(cfg)


@pytest.mark.parametrize("override", ["baseline=foo", "network=foo"])
def test_an_unknown_option_of_a_group_lists_the_available_ones(make_cfg, override):
    from hydra.errors import MissingConfigException

    group = override.split("=")[0]
    with pytest.raises(MissingConfigException) as info:
        make_cfg(override)
    assert f"Could not find '{group}/foo'" in str(info.value)
    assert "Available options" in str(info.value) and ("value" in str(info.value) or "mlp" in str(info.value))
    available = sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))
    assert f"Available options in '{group}':\n\t" + "\n\t".join(available) in str(info.value)


# --- checkpoints and run directories: a foreign checkpoint, ckpt_path=last, a used directory ---------------------

QUIET = ["data.episodes_per_epoch=4", "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0"]


def test_a_checkpoint_from_another_env_or_network_is_refused(make_cfg, tmp_path):
    run(make_cfg(*QUIET, "trainer.max_epochs=1", output_dir=tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    validate(make_cfg(f"ckpt_path={last}"))  # same env and network: fine
    with pytest.raises(ConfigError, match=r"ckpt_path: .* was trained with env.id='CartPole-v1'.*Acrobot-v1"):
        validate(make_cfg("env=acrobot", f"ckpt_path={last}"))
    with pytest.raises(ConfigError, match=r"ckpt_path: .* network="):  # checked once the model is built
        run(make_cfg(*QUIET, "network.hidden_sizes=[32]", f"ckpt_path={last}", "trainer.max_epochs=2"))
    run(make_cfg(*QUIET, "env=pendulum", "trainer.max_epochs=1", output_dir=tmp_path / "p"))
    pendulum = tmp_path / "p" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"ckpt_path: .* does not fit .*missing: policy.high, policy.low"):
        run(
            make_cfg(
                *QUIET, "env=pendulum", "network.action_bounds=tanh", f"ckpt_path={pendulum}", "trainer.max_epochs=2"
            )
        )
    with pytest.raises(ConfigError, match=r"ckpt_path: .* does not fit .*baseline="):
        run(make_cfg(*QUIET, "baseline=value", f"ckpt_path={last}", "trainer.max_epochs=2"))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="ckpt_path: .* is not a readable checkpoint"):
        validate(make_cfg(f"ckpt_path={junk}"))
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(ConfigError, match="not a pg_lightning checkpoint"):
        validate(make_cfg(f"ckpt_path={tmp_path / 'foreign.ckpt'}"))


def test_ckpt_path_last_finds_the_newest_earlier_run(make_cfg, tmp_path):
    runs = tmp_path / "outputs" / "2026-11-22"
    with pytest.raises(ConfigError, match="ckpt_path=last: no"):
        validate(make_cfg("ckpt_path=last", output_dir=runs / "10-00-00"))
    run(make_cfg(*QUIET, "trainer.max_epochs=1", output_dir=runs / "09-00-00"))
    cfg = make_cfg("ckpt_path=last", output_dir=runs / "10-00-00")
    assert resolve_ckpt_path(cfg) == str(runs / "09-00-00" / "checkpoints" / "last.ckpt")


def test_a_fresh_run_refuses_a_directory_with_checkpoints(make_cfg, tmp_path):
    run(make_cfg(*QUIET, "trainer.max_epochs=1"))
    with pytest.raises(ConfigError, match=r"callbacks.last_checkpoint.dirpath: .* already holds checkpoints"):
        validate(make_cfg(*QUIET))
    validate(make_cfg(*QUIET, output_dir=tmp_path / "elsewhere"))


# --- the command line, in this process ---------------------------------------------------------------------------


def test_cli_trains_prints_summary_and_writes_outputs(tmp_path, capsys):
    code = run_main(train.main, *FAST, f"hydra.run.dir={tmp_path}")
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    out = captured.out + captured.err
    assert "CartPole-v1: 2 epochs" in out and "100-episode mean return" in out and "checkpoints: " in out
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "csv" / "metrics.csv").is_file()
    assert (tmp_path / ".hydra" / "config.yaml").is_file()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # all three caught by validate(), from the constructors' signatures
        ("model.loss.gamma=1.5", "model.loss.gamma must be a number in [0, 1], got 1.5"),
        (
            "model.loss.return_type=monte_carlo",
            "model.loss.return_type must be reward_to_go | total, got 'monte_carlo'",
        ),
        (
            "data.vectorization_mode=threads",
            "data.vectorization_mode must be sync | async | vector_entry_point, got 'threads'",
        ),
    ],
)
def test_cli_config_error_is_one_message_not_a_traceback(tmp_path, override, message, capsys):
    code = run_main(train.main, override, f"hydra.run.dir={tmp_path}")
    stderr = capsys.readouterr().err
    assert code == 2, stderr[-2000:]
    assert f"Config error: {message}" in stderr
    assert "Traceback" not in stderr


def test_cli_multirun_sweep(tmp_path, capsys):
    code = run_main(
        train.main,
        "-m",
        "seed=0,1",
        "baseline=none,mean",
        *FAST[1:],
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert code == 0, capsys.readouterr().err[-3000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    assert all((p / "csv" / "metrics.csv").is_file() for p in jobs)


def test_cli_multirun_config_error_fails_that_job_only(tmp_path, capsys):
    code = run_main(
        train.main, "-m", "model.loss.gamma=1.5,0.99", *FAST[1:], "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path}"
    )
    stderr = capsys.readouterr().err
    assert code != 0  # Hydra reports the failed job at the end of the sweep
    assert "model.loss.gamma must be a number in [0, 1], got 1.5" in stderr
    assert not (tmp_path / "0" / "csv" / "metrics.csv").exists()
    assert (tmp_path / "1" / "csv" / "metrics.csv").is_file()  # the good job still ran


def test_ckpt_path_last_is_refused_in_a_multirun(tmp_path, capsys):
    code = run_main(train.main, "-m", "ckpt_path=last", "seed=0", f"hydra.sweep.dir={tmp_path}")
    assert code != 0 and "ckpt_path=last is ambiguous in a multirun" in capsys.readouterr().err


def compose_hydra(config: str, *overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(config, overrides=list(overrides), return_hydra_config=True)


# A config error leaves no run folder.


def test_a_config_error_exits_2_before_the_run_folder_is_made(tmp_path, capsys):
    assert run_main(train.main, "model.loss.gamma=2", cwd=tmp_path) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.strip()] == [
        "Config error: model.loss.gamma must be a number in [0, 1], got 2"
    ]
    assert list(tmp_path.iterdir()) == []  # no outputs/<date>/<time>/


def test_a_refused_run_folder_is_left_as_it_was(tmp_path, capsys):
    """A run into a used hydra.run.dir is refused before Hydra rewrites its .hydra/config.yaml."""
    used = tmp_path / "used"
    (used / "checkpoints").mkdir(parents=True)
    (used / "checkpoints" / "last.ckpt").write_bytes(b"")
    (used / ".hydra").mkdir()
    (used / ".hydra" / "config.yaml").write_text("seed: 1\n")
    assert run_main(train.main, f"hydra.run.dir={used}", "seed=2", cwd=tmp_path) == 2
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


def test_evaluate_config_error_exits_2_before_the_run_folder_is_made(tmp_path, capsys):
    from pg_lightning.cli.evaluation import main

    assert run_main(main, "ckpt_path=missing.ckpt", cwd=tmp_path) == 2
    assert capsys.readouterr().err.strip() == "Config error: ckpt_path: no checkpoint file at 'missing.ckpt'"
    assert list(tmp_path.iterdir()) == []


# Two runs started in the same second get two folders.


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


# Piped output stays readable.


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


# Another progress bar just works: progress_bar=tqdm | rich | none.


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


# train.py --help says what the app does and shows the groups.


def test_train_help_says_what_it_does_and_lists_the_groups(tmp_path, capsys):
    assert run_main(train.main, "--help", cwd=tmp_path) in (0, None)
    out = capsys.readouterr().out
    assert out.startswith("train.py: train a policy with REINFORCE")
    assert "python train.py experiment=acrobot" in out and "ckpt_path=last" in out
    for group in ("env", "experiment", "baseline", "network", "trainer", "logger", "callbacks"):
        assert re.search(rf"^{group}: \w", out, re.MULTILINE), group
    assert "progress_bar: none, rich, tqdm" in out
    assert "Hydra" in out  # --hydra-help


# The sweep summary rounds the floats it prints (the CSV keeps them exact).


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


@pytest.mark.parametrize("env", ["pendulum", "mountaincar_continuous", "acrobot"])
def test_run_on_other_envs(make_cfg, env):
    metrics = run(make_cfg(f"env={env}", "trainer.max_epochs=1", "data.episodes_per_epoch=2", "data.num_envs=2"))
    assert metrics["rollout/episodes"] == 2 and math.isfinite(metrics["train/loss"])


def test_exact_return_callback_refuses_a_non_tabular_env():
    from pg_lightning.lightning.callbacks import ExactReturn

    with pytest.raises(ConfigError, match="callbacks.exact_return: 'CartPole-v1' is not a tabular env"):
        ExactReturn("CartPole-v1")


def test_exact_return_callback_logs_the_exact_objective_of_the_trained_policy(make_cfg):
    from pg_lightning.core.tabular import chain, policy_table, solve

    cfg = make_cfg(
        "env=chain", "trainer.max_epochs=2", "data.episodes_per_epoch=4", "callbacks.progress_bar.refresh_rate=0"
    )
    metrics = run(cfg)
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    policy = hydra.utils.instantiate(cfg.network)(
        observation_space=gym.spaces.Discrete(6), action_space=gym.spaces.Discrete(2)
    )
    policy.load_state_dict(
        {k.removeprefix("policy."): v for k, v in ckpt["state_dict"].items() if k.startswith("policy.")}
    )
    J = float(solve(chain(**cfg.env.kwargs), policy_table(policy, chain(**cfg.env.kwargs))).J)
    assert metrics["exact/return"] == pytest.approx(J, rel=1e-5)
