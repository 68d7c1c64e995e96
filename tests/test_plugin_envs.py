"""Users' own envs: gymnasium's module:EnvId ids, env.imports, env.wrappers, generic defaults, experiments,
missing extras and a quiet console; in training, validation, async workers, DDP ranks and evaluation."""

import csv
import functools
import importlib.util
import logging
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from omegaconf import OmegaConf

from pg_lightning.cli.evaluation import evaluate
from pg_lightning.cli.train import run, validate
from pg_lightning.core.errors import ConfigError
from pg_lightning.envs.env_factory import EnvFactory, env_spec, reward_threshold
from tests.conftest import CONF, ROOT
from tests.helpers import missing_extra

FAST = ["trainer.max_epochs=2", "data.episodes_per_epoch=4", "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0"]
CORRIDOR = "env.id=tests.user_envs:Corridor-v0"
TIME_AWARE = "env.wrappers=[{_target_:gymnasium.wrappers.TimeAwareObservation}]"  # CartPole: 4 -> 5 features


def cli(script, *args, cwd=ROOT, timeout=240):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def rows(run_dir):
    with open(Path(run_dir) / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def first_layer_inputs(ckpt):
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    return state["policy.net.0.weight"].shape[1]


# --- module:EnvId and env.imports -------------------------------------------------------------


def test_a_module_env_id_trains_and_takes_its_registered_threshold(make_cfg, tmp_path):
    cfg = make_cfg(*FAST, CORRIDOR)
    metrics = run(cfg)
    assert cfg.env.return_threshold == 0.5  # env.return_threshold=spec: the id's registered reward_threshold
    assert metrics["rollout/episodes"] == 8 and metrics["rollout/env_steps"] >= 8 * 4
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["hyper_parameters"]["config"]["env"]["id"] == "tests.user_envs:Corridor-v0"
    assert first_layer_inputs(tmp_path / "checkpoints" / "last.ckpt") == 1  # Corridor's 1-d observation


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "env.id=tests.user_envs:Coridor-v0",
            (
                r"env.id: unknown gymnasium environment 'tests.user_envs:Coridor-v0' "
                r"\(importing 'tests.user_envs' registered no such id\); did you mean tests.user_envs:Corridor-v0"
            ),
        ),
        ("env.id=no_such_module_xyz:Corridor-v0", r"env.id: cannot import the module 'no_such_module_xyz'.*PYTHONPATH"),
        ("env.imports=[no_such_module_xyz]", r"env.imports\[0\]: cannot import 'no_such_module_xyz'"),
        ("env.imports=tests.user_envs", r"env.imports must be a list of strings, got 'tests.user_envs'$"),
        ("env.id=CartPol-v1", r"env.id: unknown gymnasium environment 'CartPol-v1'; did you mean CartPole-v1"),
        ("env.wrappers=[{_target_:gymnasium.wrappers.NoSuchWrapper}]", r"env.wrappers\[0\]._target_: cannot find"),
        ("env.wrappers=[{flatten:true}]", r"env.wrappers\[0\] must be a mapping with a _target_"),
        ("env.return_threshold=high", r"env.return_threshold must be a finite number or spec or null, got 'high'$"),
    ],
)
def test_env_keys_are_validated_before_anything_is_built(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_cfg(override))


def test_env_imports_run_in_each_worker_whatever_the_start_method():
    """Async workers started by spawn (or forkserver, Python 3.14's default) import nothing of the parent:
    the factory imports env.imports itself, so an id registered on import is known there."""
    factory = EnvFactory(
        "ImportedCorridor-v0",
        imports=("tests.user_envs_imports",),
        wrappers=(functools.partial(gym.wrappers.TimeAwareObservation),),
    )
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        shape, registered_before = pool.apply(_spawned_child_builds, (factory,))
    assert registered_before is False  # the child did not know the id before the factory ran
    assert shape == (2,)  # Corridor's (1,) observation plus the time from the wrapper


def _spawned_child_builds(factory):
    registered_before = "ImportedCorridor-v0" in gym.registry
    env = factory()
    try:
        return env.observation_space.shape, registered_before
    finally:
        env.close()


# --- env.wrappers -----------------------------------------------------------------------------


def test_wrappers_apply_in_order_to_every_env():
    from tests.user_envs import Tag

    wrappers = (functools.partial(Tag, name="first"), functools.partial(Tag, name="second"))
    env = EnvFactory("tests.user_envs:Corridor-v0", wrappers=wrappers)()
    assert env.tags == ["first", "second"] and isinstance(env, Tag) and env.env.tags == ["first"]
    assert env.spec.max_episode_steps == 30  # the registered time limit still applies, inside the wrappers


def test_wrappers_shape_training_evaluation_and_the_eval_callback(make_cfg, tmp_path):
    cfg = make_cfg(
        *FAST, TIME_AWARE, "callbacks=eval", "callbacks.evaluation.every_n_epochs=1", "callbacks.evaluation.episodes=2"
    )
    run(cfg)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert first_layer_inputs(ckpt) == 5  # trained on CartPole's 4 features plus the wrapper's time
    assert [r["eval/return_mean"] != "" for r in rows(tmp_path)] == [True, True]  # the callback's env has it too
    summary = evaluate(ckpt, episodes=2)  # without the wrapper, the 5-input policy could not run
    assert summary["env_id"] == "CartPole-v1" and len(summary["returns"]) == 2


def test_a_wrapper_that_cannot_be_built_names_its_index(make_cfg):
    cfg = make_cfg(
        *FAST,
        "env.wrappers=[{_target_:gymnasium.wrappers.TimeAwareObservation},"
        "{_target_:gymnasium.wrappers.TimeAwareObservation,no_such_arg:1}]",
    )
    with pytest.raises(
        ConfigError,
        match=r"^env.wrappers\[1\]: TimeAwareObservation could not wrap CartPole-v1: "
        r"TypeError: .*no_such_arg",
    ):
        run(cfg)


def test_a_wrapper_with_running_statistics_is_named_in_a_warning(make_cfg, caplog):
    with caplog.at_level(logging.WARNING):
        run(make_cfg(*FAST, "trainer.max_epochs=1", "env.wrappers=[gymnasium.wrappers.NormalizeObservation]"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "NormalizeObservation keeps running statistics (obs_rms)" in w and "not saved in checkpoints" in w
        for w in warnings
    ), warnings


def test_a_resume_with_other_wrappers_is_refused(make_cfg, tmp_path):
    run(make_cfg(*FAST, "trainer.max_epochs=1", TIME_AWARE, output_dir=tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    validate(make_cfg(TIME_AWARE, f"ckpt_path={last}", output_dir=tmp_path / "b"))  # the same wrappers: fine
    with pytest.raises(ConfigError, match=r"ckpt_path: .* was trained with env.wrappers="):
        validate(make_cfg(f"ckpt_path={last}", output_dir=tmp_path / "c"))


# --- the CLI: a user's env end to end, in fresh processes -------------------------------------


@pytest.mark.subprocess
def test_cli_user_env_by_import_async_workers_then_evaluate_with_nothing_retyped(tmp_path):
    """env.imports registers the id in this process and in every async worker; the checkpoint remembers
    imports and wrappers, so evaluate.py rebuilds the env from ckpt_path alone."""
    train = cli(
        "train.py",
        *FAST,
        "env.imports=[tests.user_envs_imports]",
        "env.id=ImportedCorridor-v0",
        "data.vectorization_mode=async",
        "env.wrappers=[{_target_:gymnasium.wrappers.TimeAwareObservation}]",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert "ImportedCorridor-v0: 2 epochs" in train.stdout + train.stderr
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert first_layer_inputs(ckpt) == 2
    evaluation = cli("evaluate.py", f"ckpt_path={ckpt}", "episodes=3", f"hydra.run.dir={tmp_path / 'eval'}")
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert "ImportedCorridor-v0, checkpoint epoch 1" in evaluation.stdout + evaluation.stderr
    assert (tmp_path / "eval" / "evaluation.json").is_file()


@pytest.mark.ddp
def test_cli_ddp_ranks_build_the_user_env(tmp_path):
    """Rank 1 is a fresh process: it imports env.imports and applies the wrappers as rank 0 does."""
    proc = cli(
        "train.py",
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        "data.episodes_per_epoch=2",
        "data.num_envs=1",
        "callbacks.progress_bar.refresh_rate=0",
        "env.imports=[tests.user_envs_imports]",
        "env.id=ImportedCorridor-v0",
        TIME_AWARE,
        f"hydra.run.dir={tmp_path}",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["rollout/episodes"] for r in rows(tmp_path)] == ["4.0"]  # 2 episodes on each of the 2 ranks


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "override, key",
    [
        ("env.imports=[no_such_module_xyz]", "env.imports[0]: cannot import 'no_such_module_xyz'"),
        ("env.id=no_such_module_xyz:Corridor-v0", "env.id: cannot import the module 'no_such_module_xyz'"),
        ("env.id=tests.user_envs:Nope-v0", "env.id: unknown gymnasium environment 'tests.user_envs:Nope-v0'"),
        ("env.wrappers=[{_target_:gymnasium.wrappers.TimeAwareObservation,bad:1}]", "env.wrappers[0]: "),
        ("+env.kwargs.no_such_kwarg=1", "env.kwargs.no_such_kwarg: CartPole-v1's constructor takes no argument"),
        ("model.scheduler._target_=torch.optim.lr_scheduler.NoSuchLR", "model.scheduler"),
    ],
)
def test_cli_bad_env_input_is_one_line_exit_2_and_writes_nothing(tmp_path, override, key):
    extra = ["scheduler=linear"] if override.startswith("model.scheduler") else []
    proc = cli("train.py", *FAST, *extra, override, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Config error: ") and key in lines[0], proc.stderr
    # no checkpoint, no metrics (an error that validate() finds leaves no run folder at all: hydra_callbacks)
    assert {p.name for p in tmp_path.iterdir()} <= {".hydra", "train.log"}


@pytest.mark.subprocess
def test_cli_console_is_quiet(tmp_path):
    proc = cli("train.py", *FAST, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "litlogger" not in out and "LeafSpec" not in out and "Warning" not in out, out


# --- generic defaults for an env given by id; experiments --------------------------------------


def test_an_env_given_by_id_alone_gets_the_generic_defaults(make_cfg):
    generic = make_cfg()  # env=cartpole, no experiment
    frozen = make_cfg("env.id=FrozenLake-v1")
    run_cfg = make_cfg(*FAST, "env.id=FrozenLake-v1", "trainer.max_epochs=1")
    run(run_cfg)
    assert run_cfg.env.return_threshold == pytest.approx(0.7)  # FrozenLake-v1's registered reward_threshold
    assert frozen.baseline._target_ == generic.baseline._target_ == "pg_lightning.core.baselines.MeanBaseline"
    assert frozen.model.optimizer.lr == 0.01 and frozen.trainer.max_epochs == 2000
    assert reward_threshold("Pendulum-v1") is None  # no registered threshold: EarlyStopping never stops early


def _without_env(cfg):
    tree = OmegaConf.to_container(cfg, resolve=False)
    tree.pop("env")
    return tree


@pytest.mark.parametrize("env", sorted(p.stem for p in (CONF / "env").glob("*.yaml")))
def test_env_files_hold_what_is_true_of_the_env_and_no_tuning(make_cfg, env):
    """Each env file sets the env block; only the tabular MDPs also tie the loss's gamma to the MDP's and
    add the exact-return callback. Baseline, learning rate, network and budget are experiment=... files."""
    ours, generic = _without_env(make_cfg(f"env={env}")), _without_env(make_cfg())
    if env in ("chain", "bandit"):
        assert ours["model"]["loss"].pop("gamma") == "${env.kwargs.gamma}"
        generic["model"]["loss"].pop("gamma")
        assert ours["callbacks"].pop("exact_return")["_target_"] == "pg_lightning.lightning.callbacks.ExactReturn"
    assert ours == generic


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_validates(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}")
    expected = {"cartpole": "CartPole-v1", "acrobot": "Acrobot-v1", "pendulum": "Pendulum-v1",
                "inverted_pendulum": "InvertedPendulum-v5", "chain": "pg_lightning/Chain-v0",
                "bandit": "pg_lightning/TwoArmedBandit-v0", "cartpole_batched": "CartPole-v1",
                "cue_memory": "pg_lightning/CueMemory-v0"}  # fmt: skip
    assert cfg.env.id == expected.get(experiment, cfg.env.id)
    missing = missing_extra(cfg.env)
    if missing:  # minigrid, popgym, ale_py: the extras
        pytest.skip(f"experiment={experiment} needs {missing}")
    validate(cfg)
    if experiment in ("acrobot", "pendulum", "inverted_pendulum"):
        assert cfg.baseline._target_ == "pg_lightning.core.baselines.ValueBaseline"
    if experiment == "cartpole":  # the default run, pinned
        assert OmegaConf.to_container(cfg, resolve=False) == OmegaConf.to_container(make_cfg(), resolve=False)


# --- optional extras: one line naming the extra -----------------------------------------------


@pytest.mark.subprocess
@pytest.mark.skipif(importlib.util.find_spec("Box2D") is not None, reason="Box2D is installed here")
def test_an_env_of_a_missing_extra_names_the_extra(tmp_path):
    proc = cli("train.py", *FAST, "env=lunarlander", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Config error: env.id: LunarLander-v3 needs a package")
    assert 'pip install "pg-lightning[box2d]"' in lines[0]


def test_plots_without_matplotlib_name_the_extra(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None; from pg_lightning.cli.plots import main; "
        f"main([{str(tmp_path)!r}])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'install the plots extra: pip install "pg-lightning[plots]"' in lines[0], proc.stderr


def test_env_spec_is_what_gymnasium_make_finds():
    assert env_spec("tests.user_envs:Corridor-v0") is gym.registry["Corridor-v0"]
    assert env_spec("CartPole-v1").reward_threshold == 475.0


# --- review fixes ------------------------------------------------------------------------------


def test_the_probe_env_has_trainings_time_limit(make_cfg, tmp_path):
    """A wrapper that needs a TimeLimit works on an env registered without one, given data.max_episode_steps,
    in training (the probe and every copy) and in evaluate.py from the checkpoint."""
    cfg = make_cfg(
        *FAST,
        "trainer.max_epochs=1",
        "env.id=Endless-v0",
        "data.max_episode_steps=7",
        "env.wrappers=[gymnasium.wrappers.TimeAwareObservation]",
    )
    import tests.envs  # noqa: F401  (registers Endless-v0)

    run(cfg)
    summary = evaluate(tmp_path / "checkpoints" / "last.ckpt", episodes=2)
    assert summary["lengths"] == [7, 7]


@pytest.mark.parametrize("entry", ["tests.user_envs.Tag", {"_target_": "tests.user_envs.Tag", "name": "x"}])
def test_evaluate_refuses_a_foreign_wrapper_without_trust(make_cfg, tmp_path, entry):
    """A bare class path is a target too: it cannot slip past trust_checkpoint_code."""
    run(make_cfg(*FAST, "trainer.max_epochs=1"))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["hyper_parameters"]["config"]["env"]["wrappers"] = [entry]
    torch.save(checkpoint, ckpt)
    with pytest.raises(ConfigError, match=r"trust_checkpoint_code: .*env.wrappers\[0\]._target_=tests.user_envs.Tag"):
        evaluate(ckpt, episodes=1)


@pytest.mark.parametrize(
    "wrappers", ["[gymnasium.wrappers.TimeAwareObservation]", "[{_target_:gymnasium.wrappers.TimeAwareObservation}]"]
)
def test_composed_configs_instantiate_without_run(make_cfg, wrappers):
    """hydra.compose users build the env once (the env block's EnvFactory, wrapper entries built) and pass it to the
    datamodule and the EvalCallback, as run() does: instantiate(cfg.data, env=...)."""
    import hydra

    from pg_lightning.cli.build import env_block

    cfg = make_cfg(f"env.wrappers={wrappers}", "callbacks=eval")
    env = env_block(cfg.env)
    datamodule = hydra.utils.instantiate(cfg.data, env=env)
    assert len(datamodule.env.wrappers) == 1 and callable(datamodule.env.wrappers[0])
    callback = hydra.utils.instantiate(cfg.callbacks.evaluation, env=env)
    assert callback._env().observation_space.shape == (5,)  # CartPole's 4 features and the time


@pytest.mark.subprocess
def test_a_scheduler_error_writes_nothing(tmp_path):
    proc = cli("train.py", *FAST, "scheduler=linear", "+model.scheduler.bogus=1", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Config error: model.scheduler.bogus: not an argument of LinearLR" in proc.stderr, proc.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []  # refused before Hydra wrote .hydra/ or train.log into the run dir
