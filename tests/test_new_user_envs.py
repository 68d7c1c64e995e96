"""The command line as a new user meets it: an env of a package that was not imported names the package (and how to
install and load it), a wrapper path with a typo gets a did-you-mean, the shipped configs start without a false
warning about the episode cap, and ``experiment=frozenlake`` solves FrozenLake-v1."""

from __future__ import annotations

import importlib.util
import logging
import sys

import pytest
from omegaconf import OmegaConf

from pg_lightning.cli.build import wrapper_specs
from pg_lightning.core.errors import ConfigError
from pg_lightning.envs import env_factory
from pg_lightning.envs.env_factory import env_spec, episode_limit
from tests.conftest import CONF
from tests.helpers import missing_extra

# --- an env of a package that was not imported names the package --------------------------------------------------

# One id for each form in env_factory.ENV_PACKAGES, and how to install the package that registers it.
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
    monkeypatch.setattr(env_factory, "ENV_PACKAGES", ((r"Tabby-", "tabnanny"),))
    message = unknown_id_error("Tabby-Cat-v0")
    assert message.endswith(
        "; the package tabnanny registers it (installed, not imported): "
        "load it with env.imports=[tabnanny] or env.id=tabnanny:Tabby-Cat-v0"
    ), message
    assert "tabnanny" not in sys.modules  # named, never imported


def test_an_imported_package_gives_the_did_you_mean_alone(monkeypatch):
    """Once the package is imported, an unknown id of its form is a typo: the close ids, no package hint."""
    monkeypatch.setattr(env_factory, "ENV_PACKAGES", ((r"FrozenLake", "json"),))  # json: imported
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


# --- a wrapper path with a typo gets a did-you-mean ---------------------------------------------------------------


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


# --- no false warning about the episode cap on the shipped configs ------------------------------------------------

SHIPPED = [f"experiment={p.stem}" for p in sorted((CONF / "experiment").glob("*.yaml"))] + [
    f"env={p.stem}" for p in sorted((CONF / "env").glob("*.yaml"))
]
# pg_lightning/Chain-v0 ends only at the goal (a policy that walks away never ends): no limit applies but the cap, and
# the warning says so, truly. The other envs that end their own episodes set that end as their limit.
NO_LIMIT = {"experiment=chain", "env=chain"}


def explicit_limit(cfg) -> int | None:
    """The limit a composed config sets itself: data.max_episode_steps, else env.kwargs.max_episode_steps."""
    if cfg.data.max_episode_steps is not None:
        return cfg.data.max_episode_steps
    return cfg.env.kwargs.get("max_episode_steps")


@pytest.mark.parametrize("override", SHIPPED)
def test_no_shipped_config_starts_with_a_false_episode_cap_warning(make_cfg, override):
    """`experiment=minigrid_empty`, `pong` and the popgym experiments warned "truncated at 100000 steps ... set
    data.max_episode_steps", although those envs end their own episodes: each of their env files now sets the env's
    own end as env.kwargs.max_episode_steps, so the limit in force is that one and the start-up does not warn
    (make_vector_env warns when episode_limit's source is the cap)."""
    cfg = make_cfg(override)
    kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    missing = missing_extra(cfg.env)
    if missing is not None:  # its env cannot be looked up here: the limit must come from the config itself
        assert explicit_limit(cfg) is not None, f"{override} sets no limit, and {cfg.env.id} registers none"
        return
    _, steps, source = episode_limit(cfg.env.id, kwargs, cfg.data.max_episode_steps, list(cfg.env.imports))
    capped = source.startswith("the env registers no time limit")
    assert capped == (override in NO_LIMIT), f"{override}: {steps} ({source})"


@pytest.mark.parametrize("env", ["minigrid_empty", "minigrid_doorkey", "popgym_minesweeper", "popgym_repeat_previous"])
def test_a_shipped_limit_never_cuts_an_episode_the_env_would_end_itself(make_cfg, env):
    """The limit these env files set is the env's own end (MiniGrid's max_steps, popgym's max_episode_length): the
    TimeLimit never fires before the env ends the episode."""
    cfg = make_cfg(f"env={env}")
    if missing_extra(cfg.env) is not None:
        pytest.skip(f"needs {missing_extra(cfg.env)}")
    made = env_spec(cfg.env.id, list(cfg.env.imports)).make()
    own = getattr(made.unwrapped, "max_steps", None) or made.unwrapped.max_episode_length
    made.close()
    assert explicit_limit(cfg) >= own


def test_a_data_limit_beside_the_env_files_own_says_how_to_change_it(make_cfg):
    """env=cue_memory sets env.kwargs.max_episode_steps; data.max_episode_steps=50 beside it names both ways out."""
    cfg = make_cfg("env=cue_memory", "data.max_episode_steps=50")
    kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
    with pytest.raises(ConfigError) as raised:
        episode_limit(cfg.env.id, kwargs, cfg.data.max_episode_steps)
    assert str(raised.value) == (
        "env.kwargs.max_episode_steps=1000 and data.max_episode_steps=50 disagree; set one: "
        "env.kwargs.max_episode_steps=50, or ~env.kwargs.max_episode_steps"
    )
    assert episode_limit(cfg.env.id, {**kwargs, "max_episode_steps": 50}, None)[1:] == (
        50,
        "env.kwargs.max_episode_steps",
    )


def test_pong_limit_is_ales_own_end_in_frames(make_cfg):
    """The TimeLimit of env=pong counts raw frames (frameskip=1 inside AtariPreprocessing): ALE's own end."""
    cfg = make_cfg("env=pong")
    assert cfg.env.kwargs.frameskip == 1
    if importlib.util.find_spec("ale_py") is None:
        pytest.skip("needs ale_py")
    spec = env_spec(cfg.env.id, list(cfg.env.imports))
    assert explicit_limit(cfg) >= spec.kwargs["max_num_frames_per_episode"]


# --- experiment=frozenlake solves FrozenLake-v1 -------------------------------------------------------------------


def test_experiment_frozenlake_is_the_slippery_lake_at_its_registered_threshold(make_cfg):
    cfg = make_cfg("experiment=frozenlake")
    assert cfg.env.id == "FrozenLake-v1" and "is_slippery" not in cfg.env.kwargs  # gymnasium's default: slippery
    assert cfg.env.return_threshold == "spec" and env_spec("FrozenLake-v1").reward_threshold == pytest.approx(0.7)


@pytest.mark.learning
def test_experiment_frozenlake_solves_frozenlake(make_cfg):
    """python train.py experiment=frozenlake: solved (100-episode mean >= 0.70) in 237 updates on seed 0, about 10 s."""
    from pg_lightning.cli.train import run

    metrics = run(make_cfg("experiment=frozenlake", "seed=0", "callbacks.progress_bar.refresh_rate=0"))
    assert metrics["solved"] == 1.0 and metrics["rollout/return_mean_100"] >= 0.70, metrics
    assert metrics["epochs"] < 600, metrics
