"""Every key a user can set, its valid values, and the one line an invalid value gives (docs/config_keys.md).

``KEYS`` is the table: one row per key of every config group and of ``conf/evaluate.yaml``. Each
invalid override runs through what ``run(cfg)`` (``evaluate(...)``) does before training, up to
``Trainer.fit`` (not run), and must fail with a ConfigError whose message starts with the key
(``expect``). Rows without an invalid value say why. ``docs/config_keys.md`` is generated from
the table and the messages: regenerate it with ``python -m tests.test_config_keys``.
"""

from __future__ import annotations

import functools
import html
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from pg_lightning.core.errors import ConfigError, config_error_in
from tests.conftest import CONF, ROOT

DOC = ROOT / "docs" / "config_keys.md"


class Key(NamedTuple):
    key: str  # as a user writes it; evaluate.yaml's keys as "evaluate:<key>"
    valid: str  # the valid values
    bad: tuple[str, ...] = ()  # overrides with an invalid value (empty: see why)
    expect: str = ""  # what the error's message starts with (default: the key)
    why: str = ""  # no invalid value (or none tested): why
    extra: tuple[str, ...] = ()  # overrides that select the option declaring the key (env=chain, ...)


PLUGIN = "passed to the plugin as is (optional extra; validated by it when it starts)"
HYDRA = "Hydra's own setting (hydra.*): Hydra checks it"

KEYS: list[Key] = [
    # --- conf/train.yaml, top level
    Key("seed", "an integer in [0, 2**32 - 1]", ("seed=-1",)),
    Key("ckpt_path", "null, last, or the path of a train.py checkpoint", ("ckpt_path=/nonexistent.ckpt",)),
    Key("optimized_metric", "a metric name (a string)", ("optimized_metric=[1]",)),
    Key(
        "torch_num_threads",
        "an integer from 1 to 4 x os.cpu_count() (this machine's CPUs), or null (torch's default)",
        ("torch_num_threads=0",),
    ),
    Key("paths.output_dir", "any directory path", why="any path is valid (created when needed)"),
    # --- env
    Key("env.id", "a registered gymnasium id, or module:EnvId", ("env.id=CartPol-v1",)),
    Key("env.kwargs", "a mapping of the env constructor's keyword arguments", ("+env.kwargs.foo=1",), "env.kwargs.foo"),
    Key(
        "env.kwargs.max_episode_steps", "an integer >= 1 (gymnasium's time limit)", ("+env.kwargs.max_episode_steps=0",)
    ),
    Key("env.imports", "a list of importable module names", ("env.imports=[no_such_module_xyz]",), "env.imports[0]"),
    Key("env.wrappers", "a list of {_target_: wrapper, args}", ("env.wrappers=[{flatten:true}]",), "env.wrappers[0]"),
    Key(
        "env.return_threshold",
        "a finite number, null, or spec (the env's registered threshold)",
        ("env.return_threshold=high", "env.return_threshold=nan"),
    ),
    Key(
        "env.kwargs.length", "env=chain: an integer >= 1", ("env.kwargs.length=0",), "env.kwargs", extra=("env=chain",)
    ),
    Key("env.kwargs.slip", "env=chain: a number in [0, 1)", ("env.kwargs.slip=2",), "env.kwargs", extra=("env=chain",)),
    Key(
        "env.kwargs.step_reward",
        "env=chain: a number",
        ("env.kwargs.step_reward=abc",),
        "env.kwargs",
        extra=("env=chain",),
    ),
    Key(
        "env.kwargs.goal_reward",
        "env=chain: a number",
        ("env.kwargs.goal_reward=abc",),
        "env.kwargs",
        extra=("env=chain",),
    ),
    Key(
        "env.kwargs.gamma",
        "env=chain|bandit: a number in [0, 1] (also model.loss.gamma)",
        ("env.kwargs.gamma=2",),
        "model.loss.gamma",
        extra=("env=chain",),
    ),
    Key(
        "env.kwargs.win_probs",
        "env=bandit: two probabilities",
        ("env.kwargs.win_probs=[2,0]",),
        "env.kwargs",
        extra=("env=bandit",),
    ),
    Key(
        "env.kwargs.win_reward",
        "env=bandit: a number",
        ("env.kwargs.win_reward=abc",),
        "env.kwargs",
        extra=("env=bandit",),
    ),
    Key(
        "env.kwargs.lose_reward",
        "env=bandit: a number",
        ("env.kwargs.lose_reward=abc",),
        "env.kwargs",
        extra=("env=bandit",),
    ),
    # --- data
    Key("data.episodes_per_epoch", "an integer >= 1", ("data.episodes_per_epoch=0",)),
    Key("data.num_envs", "an integer >= 1", ("data.num_envs=0",)),
    Key(
        "data.vectorization_mode",
        "sync | async | vector_entry_point (envs that register one, e.g. CartPole-v1)",
        ("data.vectorization_mode=thread", "env=acrobot data.vectorization_mode=vector_entry_point"),
    ),
    Key(
        "data.vector_env",
        "null, or a gymnasium.vector.VectorEnv (_target_ and its arguments) whose single spaces are env.id's",
        ("+data.vector_env._target_=tests.vector_envs.RandomLengthVectorEnv",),
    ),
    Key("data.seed", "an integer in [0, 2**32 - 1] (default ${seed})", ("data.seed=-1",)),
    Key("data.max_episode_steps", "an integer >= 1, or null", ("data.max_episode_steps=0",)),
    Key(
        "data.step_timeout",
        "a number of seconds in (0, 1e6] that an env step may take, or null (no limit)",
        ("data.step_timeout=0", "data.step_timeout=inf"),
    ),
    Key("data.env_id", "${env.id}: set env.id", ("data.env_id=Acrobot-v1",)),
    Key("data.env_kwargs", "${env.kwargs}: set env.kwargs", ("data.env_kwargs={length:3}",)),
    Key("data.env_imports", "${env.imports}: set env.imports", ("data.env_imports=[os]",)),
    Key(
        "data.env_wrappers",
        "${env.wrappers}: set env.wrappers",
        ("data.env_wrappers=[gymnasium.wrappers.FlattenObservation]",),
    ),
    # --- model
    Key("model.return_window", "an integer >= 1", ("model.return_window=0",)),
    Key("model.loss.gamma", "a number in [0, 1]", ("model.loss.gamma=1.5",)),
    Key("model.loss.return_type", "reward_to_go | total", ("model.loss.return_type=foo",)),
    Key(
        "model.loss.discount_weight",
        "true or false (true needs return_type=reward_to_go)",
        ("model.loss.discount_weight=maybe", "model.loss.discount_weight=true model.loss.return_type=total"),
    ),
    Key("model.loss.normalize_advantages", "true or false", ("model.loss.normalize_advantages=maybe",)),
    Key(
        "model.loss.entropy_coef", "a finite number >= 0", ("model.loss.entropy_coef=-1", "model.loss.entropy_coef=inf")
    ),
    Key(
        "model.optimizer._target_",
        "a torch.optim optimizer class",
        ("model.optimizer._target_=torch.optim.Foo",),
        "model.optimizer",
    ),
    Key(
        "model.optimizer.lr",
        "a number in (0, 1000] (a larger step only overflows the weights)",
        ("model.optimizer.lr=-1", "model.optimizer.lr=1e308"),
    ),
    Key(
        "model.optimizer.<arg>",
        "the optimizer's own arguments (+model.optimizer.betas=...), finite numbers",
        (
            "+model.optimizer.foo=1",
            "model.optimizer._target_=torch.optim.SGD +model.optimizer.momentum=-1",
            "+model.optimizer.weight_decay=inf",
        ),
        "model.optimizer.",
    ),
    Key(
        "model.scheduler",
        "null, or a torch.optim.lr_scheduler partial (scheduler=linear|cosine)",
        ("scheduler=linear +model.scheduler.bogus=1",),
    ),
    # --- scheduler
    Key(
        "model.scheduler.start_factor",
        "scheduler=linear: a number in (0, 1]",
        ("model.scheduler.start_factor=0",),
        extra=("scheduler=linear",),
    ),
    Key(
        "model.scheduler.end_factor",
        "scheduler=linear: a number in [0, 1]",
        ("model.scheduler.end_factor=2",),
        extra=("scheduler=linear",),
    ),
    Key(
        "model.scheduler.total_iters",
        "scheduler=linear: an integer >= 1 (default ${trainer.max_epochs})",
        ("model.scheduler.total_iters=0", "trainer.max_epochs=-1"),
        extra=("scheduler=linear",),
    ),
    Key(
        "model.scheduler.T_max",
        "scheduler=cosine: an integer >= 1 (default ${trainer.max_epochs})",
        ("model.scheduler.T_max=0",),
        extra=("scheduler=cosine",),
    ),
    Key(
        "model.scheduler.eta_min",
        "scheduler=cosine: a number in [0, 1000]",
        ("model.scheduler.eta_min=-1",),
        extra=("scheduler=cosine",),
    ),
    # --- network
    Key(
        "network.hidden_sizes",
        "a list of integers >= 1 ([] : a linear policy)",
        (
            "network.hidden_sizes=[-4]",
            "network.hidden_sizes=[0]",
            "network.hidden_sizes=[1.5]",
            "network.hidden_sizes=8",
        ),
    ),
    Key("network.activation", "tanh | relu | elu | gelu | silu", ("network.activation=swish",)),
    Key(
        "network.log_std_init",
        "a number in [-5, 2] (the Gaussian's log-std bounds)",
        ("network.log_std_init=abc", "network.log_std_init=nan"),
    ),
    Key("network.state_dependent_std", "true or false", ("network.state_dependent_std=maybe",)),
    Key("network.action_bounds", "clip | tanh", ("network.action_bounds=squash",)),
    Key(
        "network.output_init_scale",
        "a number in (0, 100], or null (PyTorch's initialisation)",
        ("network.output_init_scale=abc", "network.output_init_scale=nan"),
    ),
    Key(
        "network.encoder",
        "auto | flatten | onehot | cnn, or {leaf path: one of those} (Dict/Tuple spaces)",
        ("network.encoder=conv", "network.encoder={img:cnn}", "network.encoder=onehot"),
    ),
    Key("network.core", "null (feedforward) | gru | lstm", ("network.core=rnn",)),
    Key("network.core_size", "network=gru|lstm: an integer >= 1", ("network.core_size=0",), extra=("network=gru",)),
    Key(
        "network._target_",
        "network=custom: your factory (observation_space, action_space, **kwargs) -> nn.Module",
        ("network=custom",),
    ),
    Key(
        "network.<arg>",
        "network=custom: your factory's own arguments (+network.<arg>=...)",
        ("network=custom network._target_=pg_lightning.envs.networks.make_policy +network.width=3",),
        "network",
    ),
    # --- baseline
    Key(
        "baseline.value",
        "baseline=constant: a finite number (float32: |value| <= 3.4e38)",
        ("baseline.value=abc", "baseline.value=nan"),
        extra=("baseline=constant",),
    ),
    Key("baseline.decay", "baseline=ema: a number in [0, 1)", ("baseline.decay=1.5",), extra=("baseline=ema",)),
    Key("baseline.mode", "baseline=rloo: step | episode", ("baseline.mode=foo",), extra=("baseline=rloo",)),
    Key(
        "baseline.value_net.hidden_sizes",
        "baseline=value: a list of integers >= 1",
        ("baseline.value_net.hidden_sizes=[-1]",),
        extra=("baseline=value",),
    ),
    Key(
        "baseline.value_net.activation",
        "baseline=value: tanh | relu | elu | gelu | silu",
        ("baseline.value_net.activation=foo",),
        extra=("baseline=value",),
    ),
    Key(
        "baseline.value_net.encoder",
        "baseline=value: as network.encoder",
        ("baseline.value_net.encoder=conv",),
        extra=("baseline=value",),
    ),
    Key(
        "baseline.value_net.core",
        "baseline=value: gru | lstm (undeclared: +baseline.value_net.core=gru)",
        ("+baseline.value_net.core=rnn",),
        extra=("baseline=value",),
    ),
    Key(
        "baseline.value_net.core_size",
        "baseline=value: an integer >= 1 (undeclared: +baseline.value_net.core_size=32)",
        ("+baseline.value_net.core_size=0",),
        extra=("baseline=value", "+baseline.value_net.core=gru"),
    ),
    Key(
        "baseline.loss_coef",
        "baseline=value: a finite number >= 0",
        ("baseline.loss_coef=-1",),
        extra=("baseline=value",),
    ),
    Key(
        "baseline.lr",
        "baseline=value: a number in (0, 1000], or null (model.optimizer's lr)",
        ("baseline.lr=0",),
        extra=("baseline=value",),
    ),
    Key(
        "baseline.bootstrap_truncated",
        "baseline=value: true or false",
        ("baseline.bootstrap_truncated=maybe",),
        extra=("baseline=value",),
    ),
    Key(
        "baseline.normalize_targets",
        "baseline=value: true or false",
        ("baseline.normalize_targets=maybe",),
        extra=("baseline=value",),
    ),
    Key(
        "baseline.stats_decay",
        "baseline=value: a number in [0, 1)",
        ("baseline.stats_decay=1",),
        extra=("baseline=value",),
    ),
    Key("baseline (mean, none)", "baseline=mean | none: no keys", why="these options declare no keys"),
    # --- trainer
    Key(
        "trainer.accelerator",
        "cpu | gpu | cuda | mps | tpu | hpu | auto (available here)",
        ("trainer.accelerator=foo",),
    ),
    Key(
        "trainer.devices",
        "an integer >= 1, -1 (all), auto, or device indices",
        ("trainer.devices=0", "trainer.devices=abc", "trainer.devices=[0,1]"),
    ),
    Key("trainer.max_epochs", "an integer >= 1, -1 or null (no limit)", ("trainer.max_epochs=0",)),
    Key("trainer.log_every_n_steps", "an integer >= 1", ("trainer.log_every_n_steps=0",)),
    Key("trainer.enable_model_summary", "true or false", ("trainer.enable_model_summary=maybe",)),
    Key("trainer.num_sanity_val_steps", "an integer >= -1", ("trainer.num_sanity_val_steps=-2",)),
    Key("trainer.default_root_dir", "a path", ("trainer.default_root_dir=[1]",)),
    Key(
        "trainer.num_nodes",
        "trainer=ddp_cpu|multi_gpu: an integer >= 1",
        ("trainer.num_nodes=0",),
        extra=("trainer=ddp_cpu",),
    ),
    Key("trainer.strategy", "a strategy name (auto, ddp, ...) or a _target_ node", ("+trainer.strategy=foo",)),
    Key(
        "trainer.strategy.process_group_backend",
        "trainer=ddp_cpu: gloo | nccl | mpi | ucc",
        ("trainer.strategy.process_group_backend=foo",),
        extra=("trainer=ddp_cpu",),
    ),
    Key(
        "trainer.fast_dev_run",
        "debug=fdr: true, false or an integer >= 0",
        ("trainer.fast_dev_run=-1",),
        extra=("debug=fdr",),
    ),
    Key(
        "trainer.profiler",
        "debug=profiler: null | simple | advanced | pytorch | xla | passthrough",
        ("trainer.profiler=foo",),
        extra=("debug=profiler",),
    ),
    Key(
        "trainer.<arg>",
        "any other argument of pytorch_lightning.Trainer (+trainer.<arg>=...)",
        ("+trainer.foo=1",),
        "trainer.foo",
    ),
    # --- logger
    Key("logger.csv.save_dir", "a path", ("logger.csv.save_dir=null",)),
    Key("logger.csv.name", "a string or null", ("logger.csv.name=[1]",)),
    Key("logger.csv.version", "a string, an integer or null", ("logger.csv.version=[1]",)),
    Key("logger.csv.flush_logs_every_n_steps", "an integer >= 1", ("logger.csv.flush_logs_every_n_steps=0",)),
    Key(
        "logger.tensorboard.save_dir",
        "logger=tensorboard: a path",
        ("logger.tensorboard.save_dir=null",),
        extra=("logger=tensorboard",),
    ),
    Key(
        "logger.tensorboard.name",
        "logger=tensorboard: a string or null",
        ("logger.tensorboard.name=[1]",),
        extra=("logger=tensorboard",),
    ),
    Key(
        "logger.tensorboard.version",
        "logger=tensorboard: a string, an integer or null",
        ("logger.tensorboard.version=[1]",),
        extra=("logger=tensorboard",),
    ),
    *[
        Key(f"logger.mlflow.{k}", "logger=mlflow: see MLFlowLogger", why=PLUGIN)
        for k in ("experiment_name", "tracking_uri", "artifact_location", "log_model")
    ],
    *[
        Key(f"logger.wandb.{k}", "logger=wandb: see WandbLogger", why=PLUGIN)
        for k in ("project", "save_dir", "offline", "log_model")
    ],
    # --- callbacks
    *[
        row
        for name in ("last_checkpoint", "best_checkpoint")
        for row in (
            Key(f"callbacks.{name}.dirpath", "a path or null", (f"callbacks.{name}.dirpath=[1]",)),
            Key(f"callbacks.{name}.filename", "a string or null", (f"callbacks.{name}.filename=[1]",)),
            Key(f"callbacks.{name}.monitor", "a metric name or null", (f"callbacks.{name}.monitor=[1]",)),
            Key(f"callbacks.{name}.save_top_k", "an integer >= -1", (f"callbacks.{name}.save_top_k=-2",)),
            Key(
                f"callbacks.{name}.every_n_epochs", "an integer >= 0 or null", (f"callbacks.{name}.every_n_epochs=-1",)
            ),
            Key(
                f"callbacks.{name}.enable_version_counter",
                "true or false",
                (f"callbacks.{name}.enable_version_counter=maybe",),
            ),
        )
    ],
    Key("callbacks.best_checkpoint.mode", "min | max", ("callbacks.best_checkpoint.mode=foo",)),
    Key("callbacks.early_stopping.monitor", "a metric name", ("callbacks.early_stopping.monitor=null",)),
    Key("callbacks.early_stopping.mode", "min | max", ("callbacks.early_stopping.mode=foo",)),
    Key(
        "callbacks.early_stopping.stopping_threshold",
        "a finite number or null (default ${env.return_threshold})",
        ("callbacks.early_stopping.stopping_threshold=abc",),
    ),
    Key("callbacks.early_stopping.patience", "an integer >= 0", ("callbacks.early_stopping.patience=-1",)),
    Key("callbacks.early_stopping.check_finite", "true or false", ("callbacks.early_stopping.check_finite=maybe",)),
    Key(
        "callbacks.early_stopping.check_on_train_epoch_end",
        "true, false or null",
        ("callbacks.early_stopping.check_on_train_epoch_end=maybe",),
    ),
    Key(
        "callbacks.progress_bar.refresh_rate",
        "an integer >= 0 (0: no bar)",
        ("callbacks.progress_bar.refresh_rate=-1",),
    ),
    Key(
        "callbacks.progress_bar.piped_every_n_epochs",
        "an integer >= 0 (0: no lines when stdout is not a terminal)",
        ("callbacks.progress_bar.piped_every_n_epochs=-1",),
    ),
    Key(
        "trainer.enable_progress_bar",
        "progress_bar=none: true or false (none sets false)",
        ("trainer.enable_progress_bar=maybe",),
        extra=("progress_bar=none",),
    ),
    Key("callbacks.on_exception.dirpath", "a path", ("callbacks.on_exception.dirpath=null",)),
    Key("callbacks.on_exception.filename", "a string", ("callbacks.on_exception.filename=[1]",)),
    Key(
        "callbacks.diagnostics.every_n_epochs",
        "callbacks=diagnostics: an integer >= 1",
        ("callbacks.diagnostics.every_n_epochs=0",),
        extra=("callbacks=diagnostics",),
    ),
    Key(
        "callbacks.evaluation.episodes",
        "callbacks=eval: an integer >= 1",
        ("callbacks.evaluation.episodes=0",),
        extra=("callbacks=eval",),
    ),
    Key(
        "callbacks.evaluation.every_n_epochs",
        "callbacks=eval: an integer >= 1",
        ("callbacks.evaluation.every_n_epochs=0",),
        extra=("callbacks=eval",),
    ),
    Key(
        "callbacks.evaluation.greedy",
        "callbacks=eval: true or false",
        ("callbacks.evaluation.greedy=maybe",),
        extra=("callbacks=eval",),
    ),
    Key(
        "callbacks.evaluation.seed",
        "callbacks=eval: an integer in [0, 2**32 - 1]",
        ("callbacks.evaluation.seed=-1",),
        extra=("callbacks=eval",),
    ),
    Key(
        "callbacks.evaluation.max_episode_steps",
        "callbacks=eval: an integer >= 1 or null",
        ("callbacks.evaluation.max_episode_steps=0",),
        extra=("callbacks=eval",),
    ),
    Key(
        "callbacks.evaluation.tensorboard_video",
        "callbacks=eval: true or false",
        ("callbacks.evaluation.tensorboard_video=maybe",),
        extra=("callbacks=eval",),
    ),
    Key(
        "callbacks.evaluation.env_id",
        "callbacks=eval: a registered id (default ${env.id})",
        ("callbacks.evaluation.env_id=CartPol-v1",),
        extra=("callbacks=eval",),
    ),
    Key(
        "callbacks.evaluation.imports",
        "callbacks=eval: module names (default ${env.imports})",
        ("callbacks.evaluation.imports=[no_such_module_xyz]",),
        extra=("callbacks=eval",),
    ),
    Key(
        "callbacks.evaluation.wrappers",
        "callbacks=eval: wrapper entries (default ${env.wrappers})",
        ("callbacks.evaluation.wrappers=[{flatten:true}]",),
        extra=("callbacks=eval",),
    ),
    Key(
        "callbacks.evaluation.env_kwargs",
        "callbacks=eval: the env's keyword arguments (default ${env.kwargs})",
        why="not checked before training: the callback builds its env at the first evaluation (see the report)",
    ),
    Key(
        "callbacks.exact_return.env_id",
        "env=chain|bandit: a tabular env id (default ${env.id})",
        ("callbacks.exact_return.env_id=CartPole-v1",),
        "callbacks.exact_return",
        extra=("env=chain",),
    ),
    Key(
        "callbacks.exact_return.env_kwargs",
        "env=chain|bandit: the env's kwargs (default ${env.kwargs})",
        ("callbacks.exact_return.env_kwargs={length:0}",),
        "callbacks.exact_return",
        extra=("env=chain",),
    ),
    # --- hparams_search, hydra
    Key(
        "search.hidden_width",
        "hparams_search=cartpole_optuna: an integer >= 1 (both hidden layers)",
        ("search.hidden_width=0",),
        "network.hidden_sizes",
        extra=("hparams_search=cartpole_optuna",),
    ),
    Key("hydra.sweeper.*", "hparams_search=cartpole_optuna: the Optuna sweeper's settings", why=PLUGIN),
    Key("hydra.launcher.*", "hydra/launcher=slurm|joblib: the launcher's settings", why=PLUGIN),
    Key("hydra.run.dir, hydra.sweep.*, hydra.job.*", "Hydra's settings", why=HYDRA),
    # --- conf/evaluate.yaml (python evaluate.py)
    Key("evaluate:ckpt_path", "the path of a train.py checkpoint", ("ckpt_path=null", "ckpt_path=/nonexistent.ckpt")),
    Key("evaluate:episodes", "an integer >= 1", ("episodes=0",)),
    Key("evaluate:greedy", "true or false", ("greedy=maybe",)),
    Key("evaluate:seed", "an integer in [0, 2**32 - 1]", ("seed=-1",)),
    Key("evaluate:video", "true or false", ("video=maybe",)),
    Key("evaluate:max_episode_steps", "an integer >= 1, or null", ("max_episode_steps=0",)),
    Key("evaluate:trust_checkpoint_code", "true or false", ("trust_checkpoint_code=maybe",)),
    Key("evaluate:output_dir", "a directory path", why="any path is valid (created when needed)"),
    Key("evaluate:torch_num_threads", "an integer from 1 to 4 x os.cpu_count(), or null", ("torch_num_threads=0",)),
]

CASES = [(row, bad) for row in KEYS for bad in row.bad]
OUT = "<output_dir>"


class _ReachedFit(Exception):
    """run() built everything and called Trainer.fit: the value was accepted."""


def _compose(name: str, overrides: list[str], output_dir: str) -> object:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        base = [f"paths.output_dir={output_dir}"] if name == "train" else [f"output_dir={output_dir}"]
        return compose(name, overrides=[*base, *overrides])


@functools.cache
def error_line(key: str, bad: str) -> str:
    """The ConfigError message of the override ``bad`` (with the row's ``extra``), as the CLI prints it after
    ``Config error: ``; the run directory is written ``<output_dir>``. Fails on an accepted value or a raw error."""
    row = next(r for r in KEYS if r.key == key)
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as out:
        try:
            if key.startswith("evaluate:"):
                from pg_lightning.cli.evaluation import evaluate
                from pg_lightning.cli.validation import check_evaluate_config

                cfg = _compose("evaluate", [*row.extra, *bad.split()], out)
                check_evaluate_config(cfg)
                evaluate(
                    cfg.ckpt_path,
                    cfg.episodes,
                    cfg.greedy,
                    cfg.seed,
                    cfg.video,
                    cfg.output_dir,
                    cfg.max_episode_steps,
                    cfg.trust_checkpoint_code,
                )
            else:
                from pg_lightning.cli.train import run

                cfg = _compose("train", [*row.extra, *bad.split()], out)
                with mock.patch.object(pl.Trainer, "fit", side_effect=_ReachedFit):
                    run(cfg)
        except _ReachedFit:
            raise AssertionError(f"{bad}: accepted (run reached Trainer.fit)") from None
        except Exception as err:
            config_error = config_error_in(err)
            if config_error is None:
                raise AssertionError(f"{bad}: raw {type(err).__name__}: {err}") from err
            return str(config_error).replace(out, OUT)
        finally:
            torch.set_num_threads(threads)
    raise AssertionError(f"{bad}: accepted")


@pytest.mark.parametrize("row, bad", CASES, ids=[f"{r.key}:{b}" for r, b in CASES])
def test_an_invalid_value_is_one_line_naming_the_key(row, bad):
    message = error_line(row.key, bad)
    expect = row.expect or row.key.removeprefix("evaluate:")
    assert message.startswith(expect), message
    assert "\n" not in message, message


@pytest.mark.parametrize("row", [r for r in KEYS if not r.bad], ids=lambda r: r.key)
def test_a_key_without_an_invalid_value_says_why(row):
    assert row.why


def test_every_key_of_the_config_files_has_a_row():
    """Each leaf key of every option of every group (and of evaluate.yaml) is in the table."""
    from omegaconf import DictConfig, OmegaConf

    rows = {r.key for r in KEYS}
    covered = lambda k: k in rows or any(k.startswith(r.rstrip("*")) and r.endswith("*") for r in rows)
    overrides = [
        [],
        ["env=chain"],
        ["env=bandit"],
        ["scheduler=linear"],
        ["scheduler=cosine"],
        ["baseline=constant"],
        ["baseline=ema"],
        ["baseline=rloo"],
        ["baseline=value"],
        ["trainer=ddp_cpu"],
        ["debug=fdr"],
        ["debug=profiler"],
        ["logger=many"],
        ["logger=mlflow"],
        ["logger=wandb"],
        ["callbacks=diagnostics"],
        ["callbacks=eval"],
        ["hparams_search=cartpole_optuna"],
        ["progress_bar=rich"],
        ["progress_bar=none"],
    ]
    missing = set()

    def leaves(node, prefix):
        for k in node:
            key = f"{prefix}{k}"
            if isinstance(k, str) and k.startswith("_") and key not in rows:
                continue
            value = node._get_node(k)
            if isinstance(value, DictConfig) and len(value) and k not in ("kwargs",) and key not in rows:
                yield from leaves(value, key + ".")
            else:
                yield key

    with tempfile.TemporaryDirectory() as out:
        for extra in overrides:
            cfg = _compose("train", extra, out)
            for key in leaves(cfg, ""):
                if not covered(key) and not key.startswith("hydra"):
                    missing.add(key)
        evaluate_cfg = _compose("evaluate", [], out)
        missing |= {f"evaluate:{k}" for k in evaluate_cfg if f"evaluate:{k}" not in rows and k != "hydra"}
    assert not missing, sorted(missing)
    assert OmegaConf is not None


def markdown() -> str:
    """docs/config_keys.md: the table as a reader sees it."""
    lines = [
        "# Config keys",
        "",
        "Every key a user can set in `conf/` (train.py) and `conf/evaluate.yaml` (evaluate.py, written",
        "`evaluate:<key>`), its valid values, and what an invalid value gives: one line, `Config error: ...`,",
        "and exit status 2, before anything is built. A key that an option declares is marked with that",
        "option (e.g. `baseline=ema:`). Generated from the table in `tests/test_config_keys.py`, which runs",
        "every row (`python -m tests.test_config_keys` rewrites this file).",
        "",
        "| key | valid values | invalid value | the one line it gives |",
        "|---|---|---|---|",
    ]

    def esc(text: str) -> str:  # a table cell's text: a pipe would end the cell
        return text.replace("|", "\\|")

    def code(text: str) -> str:
        # inline code as HTML: in a Markdown code span a table's escaped pipe stays "\|" in mkdocs
        return "<code>" + html.escape(text, quote=False).replace("|", "&#124;") + "</code>"

    for row in KEYS:
        if not row.bad:
            lines.append(f"| `{row.key}` | {esc(row.valid)} | no invalid value | {esc(row.why)} |")
        for i, bad in enumerate(row.bad):
            key = f"`{row.key}`" if i == 0 else ""
            valid = esc(row.valid) if i == 0 else ""
            lines.append(f"| {key} | {valid} | {code(bad)} | {code('Config error: ' + error_line(row.key, bad))} |")
    return "\n".join(lines) + "\n"


def test_the_doc_is_the_table():
    assert DOC.read_text() == markdown(), "docs/config_keys.md is stale: python -m tests.test_config_keys"


def _cli(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen(
        [sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


CLI_CASES = [
    ("train.py", "network.hidden_sizes=[-4]", "network.hidden_sizes"),
    ("train.py", "trainer.devices=0", "trainer.devices"),
    ("train.py", "+trainer.foo=1", "trainer.foo"),
    ("train.py", "logger.csv.flush_logs_every_n_steps=0", "logger.csv.flush_logs_every_n_steps"),
    ("train.py", "+model.optimizer.foo=1", "model.optimizer.foo"),
    ("evaluate.py", "episodes=0", "episodes"),
]


@pytest.mark.subprocess
def test_cli_an_invalid_value_is_one_stderr_line_and_exit_2(tmp_path):
    procs = []
    for i, (script, override, key) in enumerate(CLI_CASES):  # all at once: each is mostly imports
        run_dir = tmp_path / str(i)
        procs.append((_cli(str(ROOT / script), override, f"hydra.run.dir={run_dir}", cwd=tmp_path), override, key))
    for proc, override, key in procs:
        _, stderr = proc.communicate(timeout=240)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, (override, stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith(f"Config error: {key}"), (override, stderr[-2000:])


def test_an_accelerator_that_is_not_here_names_the_key(tmp_path):
    import importlib.util

    from pg_lightning.cli.validation import validate

    if importlib.util.find_spec("torch_xla") is not None:
        pytest.skip("torch_xla is installed")
    cfg = _compose("train", ["trainer.accelerator=tpu"], str(tmp_path))
    with pytest.raises(ConfigError, match=r"^trainer\.accelerator=tpu: TPUs need torch_xla"):
        validate(cfg)


if __name__ == "__main__":
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(markdown())
    print(f"wrote {DOC}")
