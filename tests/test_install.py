"""The package as a user gets it: a wheel, installed without ``-e``, run from outside the repository.

One wheel per module (the ``installed`` fixture): built with pip from a clean copy of the working
tree (no stale ``build/``, nothing written into the repository), installed with
``pip --python VENV/bin/python install --no-deps`` into a fresh virtual environment whose
``deps.pth`` names this environment's site-packages, so that torch, Lightning, Hydra and gymnasium
come from here and nothing is downloaded. A path line in a ``.pth`` file adds the directory
without running that directory's own ``.pth`` files, so the editable install's finder
(``__editable___pg_lightning_*_finder``) is not active there: the repository cannot stand in for
anything the wheel lacks. (``pip install --target DIR`` plus ``PYTHONPATH=DIR`` was measured
too: 0.45 s against 0.65 s, but the editable finder stays on ``sys.meta_path`` behind ``DIR``
and would quietly serve a module missing from the wheel from the repository.) The tests check
that pg_lightning is imported from the venv, and run the venv's own console scripts,
``VENV/bin/pg-*``, with a temporary directory as their working directory.

The user's env module and configs are written into ``tmp_path``, as a researcher's project would
hold them; the last tests run the example project ``examples/corridor`` from a copy, as its
README says.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PACKAGE = ROOT / "pg_lightning"
EXAMPLE = ROOT / "examples" / "corridor"
SCRIPTS = ("pg-train", "pg-evaluate", "pg-plot")
# What a checkout holds that a build must not see (a stale build/lib would leak into the wheel).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
    ".ipynb_checkpoints", "outputs", "multirun", "lightning_logs", ".whl",
)  # fmt: skip

pytestmark = pytest.mark.install  # the install tier (docs/tests.md): pytest -m install

# A user's env module: gymnasium's module:EnvId form (env.id=myenvs:Corridor-v0) imports it.
# It also logs where pg_lightning came from, so that each console script shows which copy it ran.
MYENVS = '''\
"""A user's env module: importing it registers Corridor-v0."""
import logging
import sys

import gymnasium as gym
import numpy as np

logging.getLogger(__name__).info("pg_lightning imported from %s", sys.modules["pg_lightning"].__file__)


class Corridor(gym.Env):
    """Cell 0 to cell length - 1; actions 0 (left) and 1 (right); +1 on arrival, which ends it."""

    def __init__(self, length=4):
        self.length = length
        self.observation_space = gym.spaces.Discrete(length)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return np.int64(self.pos), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if int(action) == 1 else -1))
        arrived = self.pos == self.length - 1
        return np.int64(self.pos), float(arrived), arrived, False, {}


gym.register("Corridor-v0", entry_point="myenvs:Corridor", max_episode_steps=20)
'''

# A user's config directory extending ours: an env file and an experiment file (both _global_,
# as ours are); the experiment picks one of *our* groups (network=linear) and one of the user's.
MY_ENV = """\
# @package _global_
env:
  id: myenvs:Corridor-v0
  kwargs:
    length: 5
  wrappers:
    - _target_: gymnasium.wrappers.ClipReward
      min_reward: -1.0
      max_reward: 1.0
"""
MY_EXP = """\
# @package _global_
defaults:
  - override /network: linear

model:
  optimizer:
    lr: 0.05

trainer:
  max_epochs: 2
"""


def _setuptools_here() -> bool:
    """Can pip build without an isolated environment (no download): is the setuptools that
    pyproject.toml's build-system requires (``setuptools>=N``) installed?"""
    minimum = int(re.search(r'requires = \["setuptools>=(\d+)', (ROOT / "pyproject.toml").read_text()).group(1))
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= minimum
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, args))} exited {proc.returncode} in {cwd}\n"
        f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> SimpleNamespace:
    """Build the wheel from a clean copy of the tree; install it (no -e) into a fresh venv."""
    work = tmp_path_factory.mktemp("install")
    src, dist, venv = work / "src", work / "dist", work / "venv"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE, symlinks=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    offline = ["--no-build-isolation", "--no-index"] if _setuptools_here() else []  # else pip fetches setuptools
    _run([*pip, "wheel", "--no-deps", *offline, "-q", "-w", str(dist), str(src)], cwd=work, env=dict(os.environ))
    (wheel,) = dist.glob("pg_lightning-*.whl")

    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=work, env=dict(os.environ))
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=work,
                   env=dict(os.environ)).stdout.strip()  # fmt: skip
    here = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))  # this env's packages
    (Path(purelib) / "deps.pth").write_text("".join(f"{p}\n" for p in here))
    # pip runs under the venv's python: the scripts' shebangs name it. It sees this env's editable
    # pg-lightning through deps.pth and leaves it alone ("outside environment").
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-compile", "-q", str(wheel)], cwd=work,
         env=dict(os.environ))  # fmt: skip
    return SimpleNamespace(src=src, wheel=wheel, venv=venv, python=python, bin=python.parent, pip=pip, offline=offline)


def _env(installed: SimpleNamespace, *paths: Path) -> dict[str, str]:
    """The subprocesses' environment: the user's own code (if any) on PYTHONPATH, nothing of ours."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    env["PYTHONNOUSERSITE"] = "1"
    env["HYDRA_FULL_ERROR"] = "1"
    return env


def _script(installed: SimpleNamespace, name: str) -> str:
    return str(installed.bin / name)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _epoch_rows(metrics_csv: Path) -> list[dict[str, str]]:
    """One row per epoch: the rows that carry the rollout metrics."""
    return [r for r in _rows(metrics_csv) if r.get("rollout/return_mean")]


def _user_project(tmp_path: Path) -> Path:
    """myenvs.py plus a config dir (env/my_env.yaml, experiment/my_exp.yaml) in tmp_path; the config dir."""
    (tmp_path / "myenvs.py").write_text(MYENVS)
    conf = tmp_path / "myconf"
    (conf / "env").mkdir(parents=True)
    (conf / "experiment").mkdir()
    (conf / "env" / "my_env.yaml").write_text(MY_ENV)
    (conf / "experiment" / "my_exp.yaml").write_text(MY_EXP)
    return conf


def _assert_ran_installed_copy(installed: SimpleNamespace, proc: subprocess.CompletedProcess) -> None:
    """The user's env module logged pg_lightning's location: it must lie in the install."""
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "pg_lightning imported from" in line]
    assert lines, "myenvs was not imported (no log line)"
    where = Path(lines[0].split("pg_lightning imported from ", 1)[1].strip())
    assert where.resolve().is_relative_to(installed.venv.resolve()), f"ran {where}, not the install {installed.venv}"


def test_wheel_holds_every_config_and_only_the_package(installed):
    """Every conf/**/*.yaml ships as pg_lightning/conf/...; nothing else of the checkout ships."""
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    configs = {f"pg_lightning/conf/{p.relative_to(CONF).as_posix()}" for p in CONF.rglob("*.yaml")}
    assert "pg_lightning/conf/train.yaml" in configs and "pg_lightning/conf/env/cartpole.yaml" in configs
    assert configs <= names, f"missing from the wheel: {sorted(configs - names)}"
    assert "pg_lightning/conf/__init__.py" in names
    modules = {f"pg_lightning/{p.relative_to(ROOT / 'pg_lightning').as_posix()}" for p in PACKAGE.rglob("*.py")}
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    assert {p.split("/")[0] for p in names} == {"pg_lightning", installed.wheel.name.split("-py3")[0] + ".dist-info"}
    shipped_yaml = {n for n in names if n.endswith(".yaml")}
    assert shipped_yaml == configs, f"YAML in the wheel but not in conf/: {sorted(shipped_yaml - configs)}"
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(installed.wheel).read(entry_points).decode()
    for script, module in zip(SCRIPTS, ("train", "evaluation", "plots")):
        assert f"{script} = pg_lightning.cli.{module}:main" in text
    for script in SCRIPTS:
        assert os.access(installed.bin / script, os.X_OK), f"{script} not installed as a console script"


def test_sdist_builds_the_same_wheel(installed, tmp_path):
    """The sdist holds the configs, tests and example; a wheel built from it equals the tree's wheel."""
    out = tmp_path / "sdist"
    code = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    if not installed.offline:
        pytest.skip("setuptools>=68 is not installed here: the sdist check builds without isolation")
    src = tmp_path / "src"
    shutil.copytree(installed.src, src, ignore=NOT_SOURCE)
    name = _run([sys.executable, "-c", code, str(out)], cwd=src, env=dict(os.environ)).stdout.split()[-1]
    with tarfile.open(out / name) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuse odd members
            tar.extractall(tmp_path / "unpacked", filter="data")
        else:
            tar.extractall(tmp_path / "unpacked")
    for p in CONF.rglob("*.yaml"):
        assert f"conf/{p.relative_to(CONF).as_posix()}" in members
    for must in ("pyproject.toml", "README.md", "tests/test_install.py", "examples/corridor/corridor_env.py",
                 "examples/corridor/configs/env/corridor.yaml"):  # fmt: skip
        assert must in members, f"{must} missing from the sdist"
    assert not any("__pycache__" in m for m in members)
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    _run([*installed.pip, "wheel", "--no-deps", *installed.offline, "-q", "-w", str(tmp_path / "w"), str(unpacked)],
         cwd=tmp_path, env=dict(os.environ))  # fmt: skip
    (wheel,) = (tmp_path / "w").glob("*.whl")
    assert set(zipfile.ZipFile(wheel).namelist()) == set(zipfile.ZipFile(installed.wheel).namelist())


def test_the_install_is_what_runs(installed, tmp_path):
    """From a directory outside the repository, pg_lightning and its configs come from the install, and
    the editable install's finder is not active there."""
    code = (
        "import importlib.resources as r, sys, pg_lightning.conf as c; "
        "print(c.__file__); print(r.files('pg_lightning.conf').joinpath('env', 'cartpole.yaml').is_file()); "
        "print(any('editable' in repr(f) for f in sys.meta_path))"
    )
    out = _run([str(installed.python), "-c", code], cwd=tmp_path, env=_env(installed)).stdout.split()
    assert Path(out[0]).resolve().is_relative_to(installed.venv.resolve()), out
    assert Path(out[0]).parts[-3:] == ("pg_lightning", "conf", "__init__.py"), out
    assert out[1:] == ["True", "False"], out


def test_console_scripts_train_evaluate_plot_a_user_env(installed, tmp_path):
    """pg-train on the user's env (module:EnvId), pg-evaluate of its last.ckpt, pg-plot of the run."""
    _user_project(tmp_path)
    env = _env(installed, tmp_path)
    run = tmp_path / "run"
    proc = _run(
        [_script(installed, "pg-train"), "env.id=myenvs:Corridor-v0", "trainer.max_epochs=2",
         "data.episodes_per_epoch=4", "data.num_envs=2", f"hydra.run.dir={run}"],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    _assert_ran_installed_copy(installed, proc)
    assert len(_epoch_rows(run / "csv" / "metrics.csv")) == 2
    assert (run / "checkpoints" / "last.ckpt").is_file()
    saved = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert saved["env"]["id"] == "myenvs:Corridor-v0"

    evaluation = tmp_path / "eval"
    proc = _run(
        [_script(installed, "pg-evaluate"), f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "episodes=3",
         f"hydra.run.dir={evaluation}"],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    _assert_ran_installed_copy(installed, proc)
    summary = json.loads((evaluation / "evaluation.json").read_text())
    assert summary["episodes"] == 3 and len(summary["returns"]) == 3
    assert all(r in (0.0, 1.0) for r in summary["returns"])  # +1 on arrival, else 0 within 20 steps

    proc = _run([_script(installed, "pg-plot"), str(run)], cwd=tmp_path, env=env)
    png = run / "learning_curve.png"
    assert proc.stdout.strip().endswith(str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_dir_extends_the_packaged_configs(installed, tmp_path):
    """pg-train --config-dir DIR env=my_env experiment=my_exp: the user's groups beside ours."""
    conf = _user_project(tmp_path)
    run = tmp_path / "run"
    proc = _run(
        [_script(installed, "pg-train"), "--config-dir", str(conf), "env=my_env", "experiment=my_exp",
         f"hydra.run.dir={run}"],
        cwd=tmp_path, env=_env(installed, tmp_path),
    )  # fmt: skip
    _assert_ran_installed_copy(installed, proc)
    saved = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert saved["env"]["id"] == "myenvs:Corridor-v0" and saved["env"]["kwargs"] == {"length": 5}  # the user's env
    assert saved["env"]["wrappers"][0]["_target_"] == "gymnasium.wrappers.ClipReward"
    assert saved["network"]["hidden_sizes"] == []  # our network/linear.yaml, chosen by the user's experiment
    assert saved["model"]["optimizer"]["lr"] == 0.05 and saved["trainer"]["max_epochs"] == 2
    assert saved["data"]["_target_"] == "pg_lightning.lightning.data.RolloutDataModule"  # our train.yaml underneath
    assert len(_epoch_rows(run / "csv" / "metrics.csv")) == 2


def test_hydra_searchpath_extends_the_packaged_configs(installed, tmp_path):
    """hydra.searchpath=[file://DIR] finds the same user groups (composed with --cfg job)."""
    conf = _user_project(tmp_path)
    proc = _run(
        [_script(installed, "pg-train"), f"hydra.searchpath=[file://{conf}]", "env=my_env", "experiment=my_exp",
         "--cfg", "job"],
        cwd=tmp_path, env=_env(installed, tmp_path),
    )  # fmt: skip
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["env"]["id"] == "myenvs:Corridor-v0" and cfg["network"]["hidden_sizes"] == []
    assert cfg["trainer"]["max_epochs"] == 2


@pytest.fixture
def corridor(tmp_path) -> Path:
    """A copy of examples/corridor, as a user's project directory."""
    project = tmp_path / "corridor"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("outputs", "multirun", "__pycache__"))
    return project


def test_example_project_learns_its_env(installed, corridor):
    """examples/corridor as its README runs it: experiment=corridor_fast reaches the env's threshold, and
    pg-evaluate of its checkpoint (the user's env rebuilt from the checkpoint's config) walks to the goal."""
    env = _env(installed, corridor)  # the README: PYTHONPATH=. pg-train ... (or install the project)
    run = corridor / "run"
    proc = _run(
        [_script(installed, "pg-train"), "--config-dir", "configs", "experiment=corridor_fast",
         f"hydra.run.dir={run}"],
        cwd=corridor, env=env,
    )  # fmt: skip
    assert "solved: yes" in proc.stdout
    rows = _epoch_rows(run / "csv" / "metrics.csv")
    first, last = float(rows[0]["rollout/return_mean"]), float(rows[-1]["rollout/return_mean_100"])
    # A random walk seldom reaches cell 11 within 100 steps (return -1.0); always right earns 0.90.
    assert first < 0.5, rows[0]
    assert last >= 0.85, rows[-1]  # Corridor-v0's registered reward_threshold (env.return_threshold: spec)
    assert len(rows) < 50  # EarlyStopping ended it before trainer.max_epochs

    evaluation = corridor / "eval"
    _run(
        [_script(installed, "pg-evaluate"), f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "episodes=5",
         f"hydra.run.dir={evaluation}"],
        cwd=corridor, env=env,
    )  # fmt: skip
    summary = json.loads((evaluation / "evaluation.json").read_text())
    assert summary["env_id"] == "corridor_env:Corridor-v0"
    # Greedy, the learned policy walks straight to the goal: 11 steps, 1.0 - 10 * 0.01.
    assert summary["lengths"] == [11] * 5 and summary["return_mean"] == pytest.approx(0.90), summary


def test_example_project_compose_api(installed, corridor):
    """train_from_python.py: initialize_config_module("pg_lightning.conf"), compose("train") and the project's
    configs (hydra.searchpath), then run(cfg): it reaches the threshold and writes its metrics."""
    env = _env(installed)  # no PYTHONPATH for the project: python puts the script's folder on sys.path
    proc = _run([str(installed.python), "train_from_python.py", "seed=1"], cwd=corridor, env=env)
    *_, out_dir, metrics = proc.stdout.strip().splitlines()
    metrics = json.loads(metrics)
    assert metrics["solved"] == 1.0 and metrics["rollout/return_mean_100"] >= 0.85
    out_dir = Path(out_dir)
    assert out_dir.is_relative_to(corridor / "outputs" / "from_python")
    rows = _epoch_rows(out_dir / "csv" / "metrics.csv")
    assert len(rows) == metrics["epochs"] and float(rows[-1]["rollout/return_mean_100"]) == pytest.approx(
        metrics["rollout/return_mean_100"]
    )


def test_example_project_sweep(installed, corridor):
    """The README's sweep: hparams_search=corridor_lr at one step size, two seeds: two runs, one summary.csv."""
    sweep = corridor / "sweep"
    _run(
        [_script(installed, "pg-train"), "-m", "--config-dir", "configs", "experiment=corridor_fast",
         "hparams_search=corridor_lr", "model.optimizer.lr=0.1", f"hydra.sweep.dir={sweep}"],
        cwd=corridor, env=_env(installed, corridor),
    )  # fmt: skip
    rows = _rows(sweep / "summary.csv")
    assert [(r["job"], r["seed"], r["model.optimizer.lr"], r["status"]) for r in rows] == [
        ("0", "0", "0.1", "completed"),
        ("1", "1", "0.1", "completed"),
    ]
    for job, row in enumerate(rows):
        metrics = _epoch_rows(sweep / str(job) / "csv" / "metrics.csv")
        assert metrics and float(row["rollout/return_mean_100"]) == pytest.approx(
            float(metrics[-1]["rollout/return_mean_100"])
        )
        assert float(row["rollout/return_mean_100"]) >= 0.85
        assert yaml.safe_load((sweep / str(job) / ".hydra" / "config.yaml").read_text())["seed"] == job
