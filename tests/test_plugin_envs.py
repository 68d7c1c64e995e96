"""Users' own envs: gymnasium's module:EnvId ids, env.imports, env.wrappers, generic defaults, experiments,
missing extras and a quiet console; in training, validation, async workers, DDP ranks and evaluation. An unknown id
of an env package that was not imported names the package (and how to install and load it); a wrapper path with a
typo gets a did-you-mean; ``experiment=frozenlake`` solves FrozenLake-v1.

The command lines run in this process (``tests.helpers.run_main``) but for the console check and the DDP run."""

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

from pg_lightning.cli import evaluation, train
from pg_lightning.cli.build import wrapper_specs
from pg_lightning.cli.evaluation import evaluate
from pg_lightning.cli.train import run, validate
from pg_lightning.core.errors import ConfigError
from pg_lightning.envs import registry
from pg_lightning.envs.contract import EnvFactory
from pg_lightning.envs.registry import env_spec, reward_threshold
from tests.conftest import CONF, ROOT
from tests.helpers import missing_extra, run_main

FAST = ["trainer.max_epochs=2", "data.episodes_per_epoch=4", "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0"]
CORRIDOR = "env.id=tests.user_envs:Corridor-v0"
TIME_AWARE = "env.wrappers=[{_target_:gymnasium.wrappers.TimeAwareObservation}]"  # CartPole: 4 -> 5 features


def cli(script, *args, cwd=ROOT, timeout=240):
    """``python <script> *args`` in a new interpreter (the console check and the DDP run)."""
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


# --- an env of a package that was not imported names the package --------------------------------------------------

# One id for each form in registry.ENV_PACKAGES, and how to install the package that registers it.
PACKAGE_IDS = [
    ("ALE/Pong-v5", "ale_py", 'pip install "pg-lightning[atari]"'),
    ("PongNoFrameskip-v4", "ale_py", 'pip install "pg-lightning[atari]"'),
    ("MiniGrid-Empty-5x5-v0", "minigrid", 'pip install "pg-lightning[minigrid]"'),
    ("BabyAI-GoToRedBall-v0", "minigrid", 'pip install "pg-lightning[minigrid]"'),
    ("popgym-MineSweeperEasy-v0", "popgym", 'pip install "pg-lightning[popgym]"'),
    ("highway-v0", "highway_env", "pip install highway-env"),
    ("merge-v0", "highway_env", "pip install highway-env"),
    ("roundabout-v0", "highway_env", "pip install highway-env"),
    ("parking-v0", "highway_env", "pip install highway-env"),
    ("intersection-v0", "highway_env", "pip install highway-env"),
    ("racetrack-v0", "highway_env", "pip install highway-env"),
    ("Meta-World/MT1", "metaworld", "pip install metaworld"),
]


def unknown_id_error(env_id: str, imports: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as raised:
        env_spec(env_id, imports or [])
    message = str(raised.value)
    assert "\n" not in message and message.startswith("env.id: unknown gymnasium environment"), message
    return message


@pytest.mark.parametrize(("env_id", "module", "install"), PACKAGE_IDS)
def test_an_id_of_a_package_not_imported_names_the_package_and_how_to_load_it(env_id, module, install):
    """`env.id=ALE/Pong-v5` alone said only "unknown gymnasium environment": now it names ale_py, how to load it
    (env.imports or the module:EnvId form) and, when ale_py is not installed, the extra that installs it."""
    if module in sys.modules:
        pytest.skip(f"{module} is imported in this process: {env_id} is known or a plain typo")
    message = unknown_id_error(env_id)
    assert f"the package {module} registers it" in message, message
    assert f"env.imports=[{module}] or env.id={module}:{env_id}" in message, message
    if importlib.util.find_spec(module) is None:
        assert f"is not installed: {install}, then load it" in message, message
    else:
        assert "(installed, not imported)" in message and "pip install" not in message, message


def test_an_installed_package_not_imported_is_named_without_an_install_step(monkeypatch):
    """The other branch, on a package every Python has (tabnanny: installed, and nothing here imports it)."""
    assert "tabnanny" not in sys.modules
    monkeypatch.setattr(registry, "ENV_PACKAGES", ((r"Tabby-", "tabnanny"),))
    message = unknown_id_error("Tabby-Cat-v0")
    assert message.endswith(
        "; the package tabnanny registers it (installed, not imported): "
        "load it with env.imports=[tabnanny] or env.id=tabnanny:Tabby-Cat-v0"
    ), message
    assert "tabnanny" not in sys.modules  # named, never imported


def test_an_imported_package_gives_the_did_you_mean_alone(monkeypatch):
    """Once the package is imported, an unknown id of its form is a typo: the close ids, no package hint."""
    monkeypatch.setattr(registry, "ENV_PACKAGES", ((r"FrozenLake", "json"),))  # json: imported
    message = unknown_id_error("FrozenLake-v9")
    assert message.endswith("; did you mean FrozenLake-v1, FrozenLake8x8-v1?") and "package" not in message, message


def test_other_unknown_ids_keep_their_message():
    assert unknown_id_error("CartPol-v1").endswith("; did you mean CartPole-v1, CartPole-v0, phys2d/CartPole-v1?")
    assert unknown_id_error("NoSuchThingAtAll-v0") == "env.id: unknown gymnasium environment 'NoSuchThingAtAll-v0'"


def test_a_missing_env_package_in_env_imports_says_how_to_install_it():
    if importlib.util.find_spec("highway_env") is not None:
        pytest.skip("highway_env is installed")
    with pytest.raises(ConfigError, match=r"env.imports\[0\]: cannot import 'highway_env'.*; pip install highway-env"):
        env_spec("highway-v0", ["highway_env"])


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


def wrapper_error(target: str) -> str:
    with pytest.raises(ConfigError) as raised:
        wrapper_specs([{"_target_": target}])
    message = str(raised.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("target", "meant"),
    [
        ("gymnasium.wrappers.FlattenObservaton", "gymnasium.wrappers.FlattenObservation"),  # the class
        ("gymnasium.wrappers.flattenobservation", "gymnasium.wrappers.FlattenObservation"),  # its case
        ("gymnasium.wraper.FlattenObservation", "gymnasium.wrappers.FlattenObservation"),  # a module
        ("gymnasum.wrappers.TimeLimit", "gymnasium.wrappers.TimeLimit"),  # the top-level package
        ("gymnasium.wrappers.vector.NormalizeObservaton", "gymnasium.wrappers.vector.NormalizeObservation"),
        ("FlattenObservation", "gymnasium.wrappers.FlattenObservation"),  # a bare class name
    ],
)
def test_a_wrapper_path_with_a_typo_gets_a_did_you_mean(target, meant, caplog):
    with caplog.at_level(logging.ERROR):
        message = wrapper_error(target)
    prefix = f"env.wrappers[0]._target_: cannot find {target!r}; did you mean {meant}"
    assert message.startswith(prefix), message  # the closest first
    assert not any("Error getting object" in r.getMessage() for r in caplog.records)  # Hydra's 3-line log, dropped


def test_a_wrapper_path_with_nothing_close_keeps_the_lookup_error():
    message = wrapper_error("gymnasium.wrappers.Zzzzzzzz")
    assert "did you mean" not in message and "Are you sure that 'Zzzzzzzz' is importable" in message, message


def test_the_did_you_mean_imports_nothing_beyond_what_the_path_names():
    """The candidates beside a wrong module name are listed from the package's directory, not imported."""
    if "json.tool" in sys.modules:
        pytest.skip("json.tool is imported in this process")
    assert wrapper_error("json.tooll.main").endswith("did you mean json.tool.main?")
    assert "json.tool" not in sys.modules


# --- the CLI: a user's env end to end ---------------------------------------------------------


def forget(monkeypatch, module: str, env_id: str) -> None:
    """As in a new interpreter: ``module`` not imported, ``env_id`` not registered (both put back after the test)."""
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.delitem(gym.registry, env_id, raising=False)


def test_cli_user_env_by_import_async_workers_then_evaluate_with_nothing_retyped(tmp_path, monkeypatch, capsys):
    """env.imports registers the id in this process and in every async worker; the checkpoint remembers
    imports and wrappers, so evaluate.py rebuilds the env from ckpt_path alone. (Both commands in this process,
    each started with the id unknown and its module not imported, as in a new interpreter.)"""
    forget(monkeypatch, "tests.user_envs_imports", "ImportedCorridor-v0")
    code = run_main(
        train.main,
        *FAST,
        "env.imports=[tests.user_envs_imports]",
        "env.id=ImportedCorridor-v0",
        "data.vectorization_mode=async",
        "env.wrappers=[{_target_:gymnasium.wrappers.TimeAwareObservation}]",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    assert "ImportedCorridor-v0: 2 epochs" in out.out + out.err
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert first_layer_inputs(ckpt) == 2
    forget(monkeypatch, "tests.user_envs_imports", "ImportedCorridor-v0")
    code = run_main(evaluation.main, f"ckpt_path={ckpt}", "episodes=3", f"hydra.run.dir={tmp_path / 'eval'}")
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    assert "ImportedCorridor-v0, checkpoint epoch 1" in out.out + out.err
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
def test_cli_bad_env_input_is_one_line_exit_2_and_writes_nothing(tmp_path, override, key, capsys):
    extra = ["scheduler=linear"] if override.startswith("model.scheduler") else []
    code = run_main(train.main, *FAST, *extra, override, f"hydra.run.dir={tmp_path}")
    stderr = capsys.readouterr().err
    assert code == 2, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Config error: ") and key in lines[0], stderr
    # no checkpoint, no metrics (an error that validate() finds leaves no run folder at all: hydra_callbacks)
    assert {p.name for p in tmp_path.iterdir()} <= {".hydra", "train.log"}


@pytest.mark.subprocess
def test_cli_console_is_quiet(tmp_path):
    """A new interpreter: what it prints from the first import on (pytest would hold back warnings here)."""
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


def test_experiment_frozenlake_is_the_slippery_lake_at_its_registered_threshold(make_cfg):
    cfg = make_cfg("experiment=frozenlake")
    assert cfg.env.id == "FrozenLake-v1" and "is_slippery" not in cfg.env.kwargs  # gymnasium's default: slippery
    assert cfg.env.return_threshold == "spec" and env_spec("FrozenLake-v1").reward_threshold == pytest.approx(0.7)


@pytest.mark.learning
def test_experiment_frozenlake_solves_frozenlake(make_cfg):
    """python train.py experiment=frozenlake: solved (100-episode mean >= 0.70) in 237 updates on seed 0, about 10 s."""
    metrics = run(make_cfg("experiment=frozenlake", "seed=0", "callbacks.progress_bar.refresh_rate=0"))
    assert metrics["solved"] == 1.0 and metrics["rollout/return_mean_100"] >= 0.70, metrics
    assert metrics["epochs"] < 600, metrics


# --- optional extras: one line naming the extra -----------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("Box2D") is not None, reason="Box2D is installed here")
def test_an_env_of_a_missing_extra_names_the_extra(tmp_path, capsys):
    code = run_main(train.main, *FAST, "env=lunarlander", f"hydra.run.dir={tmp_path}")
    stderr = capsys.readouterr().err
    assert code == 2, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Config error: env.id: LunarLander-v3 needs a package")
    assert 'pip install "pg-lightning[box2d]"' in lines[0]


def test_plots_without_matplotlib_name_the_extra(tmp_path, monkeypatch, capsys):
    from pg_lightning.cli.plots import main

    for name in [m for m in sys.modules if m.startswith("matplotlib.")]:  # imported by an earlier test
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path)])
    assert exit_.value.code == 2
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and 'install the plots extra: pip install "pg-lightning[plots]"' in lines[0], stderr


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


def test_a_scheduler_error_writes_nothing(tmp_path, capsys):
    code = run_main(train.main, *FAST, "scheduler=linear", "+model.scheduler.bogus=1", f"hydra.run.dir={tmp_path}")
    stderr = capsys.readouterr().err
    assert code == 2, stderr[-2000:]
    assert "Config error: model.scheduler.bogus: not an argument of LinearLR" in stderr, stderr[-2000:]
    assert list(tmp_path.iterdir()) == []  # refused before Hydra wrote .hydra/ or train.log into the run dir
