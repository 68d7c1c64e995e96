"""A checkpoint never runs code it names, and a damaged one is refused (pg_lightning.cli.checkpoints, cli.checkpoints).

Crafted checkpoints put targets that reach ``os``, ``shutil``, ``pathlib`` and ``importlib`` through attributes of
the project's modules and of gymnasium's (and a module that writes a file when imported) in every place a saved
config can hold one: ``network._target_``, a nested ``_target_`` in a network argument, ``_args_``,
``env.wrappers[i]`` (an entry, a bare class path, a nested keyword argument). ``evaluate`` and a resume
(``run`` with ``ckpt_path``, and each CLI once) refuse each in one line, and no file or directory appears.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import uuid
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir

from pg_lightning.cli import evaluation
from pg_lightning.cli.checkpoints import is_allowed, resolve_target
from pg_lightning.cli.evaluation import evaluate
from pg_lightning.cli.train import run, validate
from pg_lightning.core.errors import ConfigError
from tests.conftest import CONF, ROOT

TINY = [
    "trainer.max_epochs=1",
    "data.episodes_per_epoch=2",
    "data.num_envs=1",
    "callbacks.progress_bar.refresh_rate=0",
    "network.hidden_sizes=[4]",
]
WRITE_TEXT = "pg_lightning.cli.evaluation.Path.write_text"  # pathlib.Path.write_text
MAKEDIRS = "gymnasium.os.makedirs"  # os.makedirs
COPYTREE = "pg_lightning.cli.evaluation.torch.serialization.shutil.copytree"  # shutil.copytree
IMPORT_MODULE = "pg_lightning.envs.registry.importlib.import_module"  # importlib.import_module


def compose_cfg(output_dir: Path, *overrides: str) -> Any:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={output_dir}", *overrides])


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real train.py checkpoint: CartPole, one epoch of two episodes, a 4-unit MLP."""
    out = tmp_path_factory.mktemp("tiny")
    run(compose_cfg(out, *TINY))
    return out / "checkpoints" / "last.ckpt"


def craft(src: Path, dest: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of checkpoint ``src`` at ``dest`` whose saved config (``hyper_parameters.config``) ``edit`` changed."""
    checkpoint = copy.deepcopy(torch.load(src, weights_only=True))
    edit(checkpoint["hyper_parameters"]["config"])
    torch.save(checkpoint, dest)
    return dest


def write_text(path: Path) -> dict[str, Any]:
    """``pathlib.Path(path).write_text("import os")``, through an attribute of pg_lightning.cli.evaluation."""
    return {"_target_": WRITE_TEXT, "_args_": [{"_target_": "pg_lightning.cli.evaluation.Path", "_args_": [str(path)]}, "import os"]}  # fmt: skip


def payloads(sandbox: Path, source: Path, module: str) -> dict[str, tuple[Callable[[dict], None], str, str]]:
    """Edits of a saved config, by case: (edit, the config path the refusal names, what it names)."""

    def network(**changes: Any) -> Callable[[dict], None]:
        return lambda config: config["network"].update(changes)

    def wrappers(*entries: Any) -> Callable[[dict], None]:
        return lambda config: config["env"].__setitem__("wrappers", list(entries))

    return {
        "network._target_": (
            lambda config: config.__setitem__(
                "network", {"_target_": MAKEDIRS, "_partial_": True, "name": str(sandbox / "network")}
            ),
            "network._target_",
            "os.makedirs",
        ),
        "network.hidden_sizes": (
            network(hidden_sizes={"_target_": MAKEDIRS, "_args_": [str(sandbox / "hidden")]}),
            "network.hidden_sizes._target_",
            "os.makedirs",
        ),
        "network._args_": (
            network(_args_=[{"_target_": COPYTREE, "_args_": [str(source), str(sandbox / "copy")]}]),
            "network._args_[0]._target_",
            "shutil.copytree",
        ),
        "network.activation": (
            network(activation=write_text(sandbox / "evil.pth")),
            "network.activation._target_",
            "pathlib.Path.write_text",
        ),
        "network.hidden_sizes interpolation": (
            network(hidden_sizes="${oc.decode:'{_target_: " + MAKEDIRS + ", _args_: [" + str(sandbox / "i") + "]}'}"),
            "network.hidden_sizes=${oc.decode:",
            "is an interpolation",
        ),
        "env.wrappers[0]": (
            wrappers({"_target_": MAKEDIRS, "_args_": [str(sandbox / "wrapper" / "sub")]}),
            "env.wrappers[0]._target_",
            "os.makedirs",
        ),
        "env.wrappers[0] bare path": (wrappers(IMPORT_MODULE), "env.wrappers[0]._target_", "importlib.import_module"),
        "env.wrappers[0].func": (
            wrappers({"_target_": "gymnasium.wrappers.TransformObservation", "func": write_text(sandbox / "w.pth")}),
            "env.wrappers[0].func._target_",
            "pathlib.Path.write_text",
        ),
        "env.wrappers[1].func": (
            wrappers(
                {"_target_": "gymnasium.wrappers.TimeAwareObservation"},
                {
                    "_target_": "gymnasium.wrappers.TransformReward",
                    "func": {"_target_": "gymnasium.wrappers.rendering.os.makedirs", "_args_": [str(sandbox / "r")]},
                },
            ),
            "env.wrappers[1].func._target_",
            "os.makedirs",
        ),
        "env.wrappers[0] import": (
            wrappers({"_target_": f"{module}.Wrapper"}),
            "env.wrappers[0]._target_",
            "is outside pg_lightning, gymnasium, torch.optim",
        ),
    }


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An empty directory that the payloads would write into; a module that writes there when imported."""
    box, source, modules = tmp_path / "sandbox", tmp_path / "source", tmp_path / "modules"
    for d in (box, source, modules):
        d.mkdir()
    (source / "data.txt").write_text("x")
    module = f"evil_{uuid.uuid4().hex[:8]}"
    (modules / f"{module}.py").write_text(
        f"from pathlib import Path\nPath({str(box / 'imported')!r}).write_text('ran')\nWrapper = None\n"
    )
    monkeypatch.syspath_prepend(str(modules))
    return {"box": box, "source": source, "modules": modules, "module": module}


CASES = list(payloads(Path("s"), Path("t"), "m"))


@pytest.mark.parametrize("case", CASES)
def test_evaluate_refuses_code_a_checkpoint_names_and_nothing_is_written(tiny_ckpt, tmp_path, sandbox, case):
    edit, path, named = payloads(sandbox["box"], sandbox["source"], sandbox["module"])[case]
    ckpt = craft(tiny_ckpt, tmp_path / "crafted.ckpt", edit)
    with pytest.raises(ConfigError) as excinfo:
        evaluate(ckpt, episodes=1)
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"trust_checkpoint_code: {str(ckpt)!r}: {path}"), message
    assert named in message and "pass trust_checkpoint_code=true if you trust this checkpoint" in message
    assert list(sandbox["box"].iterdir()) == []
    assert sandbox["module"] not in sys.modules


@pytest.mark.parametrize("case", CASES)
def test_a_resume_refuses_code_a_checkpoint_names_and_nothing_is_written(tiny_ckpt, tmp_path, sandbox, case):
    """A resume builds everything from the run's own config; a checkpoint naming other code is refused."""
    edit, path, _ = payloads(sandbox["box"], sandbox["source"], sandbox["module"])[case]
    ckpt = craft(tiny_ckpt, tmp_path / "crafted.ckpt", edit)
    with pytest.raises(ConfigError) as excinfo:
        run(compose_cfg(tmp_path / "resume", *TINY, f"ckpt_path={ckpt}"))
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith("ckpt_path: ")
    if path.startswith("network"):
        assert f"{str(ckpt)!r}: {path}" in message and "this run's config does not name it there" in message, message
    else:  # the wrappers differ from this run's: compared as data, nothing looked up
        assert "was trained with env.wrappers=" in message, message
    assert list(sandbox["box"].iterdir()) == []
    assert sandbox["module"] not in sys.modules
    assert not (tmp_path / "resume" / "checkpoints").exists()


def test_a_resume_accepts_targets_the_run_itself_names(tiny_ckpt, tmp_path):
    """A user's own network and wrapper in the checkpoint are fine when this run's config names the same."""
    custom = ["network=custom", "network._target_=tests.user_networks.TinyCategorical", "+network.width=8"]
    wrapper = "env.wrappers=[{_target_:gymnasium.wrappers.TimeAwareObservation}]"

    def edit(config: dict[str, Any]) -> None:
        config["network"] = {"_target_": "tests.user_networks.TinyCategorical", "_partial_": True, "width": 8}
        config["env"]["wrappers"] = [{"_target_": "gymnasium.wrappers.TimeAwareObservation", "_partial_": True}]

    ckpt = craft(tiny_ckpt, tmp_path / "user.ckpt", edit)
    validate(compose_cfg(tmp_path / "a", *TINY[:-1], *custom, wrapper, f"ckpt_path={ckpt}"))  # TINY[-1]: mlp's
    with pytest.raises(ConfigError, match=r"^ckpt_path: .*network._target_=tests.user_networks.TinyCategorical"):
        validate(compose_cfg(tmp_path / "b", *TINY, wrapper, f"ckpt_path={ckpt}"))  # this run: make_policy


def test_trust_checkpoint_code_calls_what_the_checkpoint_names(tiny_ckpt, tmp_path):
    """A user's own wrapper: refused without trust, evaluated with it (as before)."""
    user = {"_target_": "tests.user_envs.Tag", "_partial_": True, "name": "mine"}
    ckpt = craft(tiny_ckpt, tmp_path / "t.ckpt", lambda c: c["env"].__setitem__("wrappers", [user]))
    with pytest.raises(ConfigError, match=r"env.wrappers\[0\]._target_=tests.user_envs.Tag is outside"):
        evaluate(ckpt, episodes=1)
    assert evaluate(ckpt, episodes=1, trust_checkpoint_code=True)["episodes"] == 1


def cli(script: str, *args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    path = os.pathsep.join(str(p) for p in (ROOT, pythonpath) if p is not None)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )


def config_error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("Config error: ")]


def test_cli_evaluate_refuses_a_crafted_checkpoint_in_one_line(tiny_ckpt, tmp_path, sandbox):
    edit, _, _ = payloads(sandbox["box"], sandbox["source"], sandbox["module"])["network.hidden_sizes"]
    ckpt = craft(tiny_ckpt, tmp_path / "crafted.ckpt", edit)
    proc = cli("evaluate.py", f"ckpt_path={ckpt}", "episodes=1", f"hydra.run.dir={tmp_path / 'eval'}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = config_error_lines(proc)
    assert line.startswith(
        f"Config error: trust_checkpoint_code: {str(ckpt)!r}: network.hidden_sizes._target_={MAKEDIRS}"
    )
    assert (
        line.endswith("pass trust_checkpoint_code=true if you trust this checkpoint") and "Traceback" not in proc.stderr
    )
    assert list(sandbox["box"].iterdir()) == []


@pytest.mark.subprocess
def test_cli_train_resume_imports_and_calls_nothing_a_crafted_checkpoint_names(tiny_ckpt, tmp_path, sandbox):
    found = payloads(sandbox["box"], sandbox["source"], sandbox["module"])
    ckpt = craft(
        tiny_ckpt,
        tmp_path / "crafted.ckpt",
        lambda c: (found["network.hidden_sizes"][0](c), found["env.wrappers[0] import"][0](c)),
    )
    proc = cli(
        "train.py", *TINY, f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'run'}", pythonpath=sandbox["modules"]
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = config_error_lines(proc)
    assert (
        line.startswith(f"Config error: ckpt_path: {str(ckpt)!r} was trained with env.wrappers=")
        and "Traceback" not in proc.stderr
    )
    assert list(sandbox["box"].iterdir()) == []  # neither the module's import nor makedirs ran


# --- the allowlist --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        WRITE_TEXT,
        MAKEDIRS,
        COPYTREE,
        IMPORT_MODULE,
        "pg_lightning.cli.evaluation.torch.serialization.shutil.rmtree",
        "pg_lightning.cli.evaluation.Path",
        "pg_lightning.cli.evaluation.hydra.utils.instantiate",
        "pg_lightning.cli.checkpoints.torch.load",
        "gymnasium.make",
        "gymnasium.Wrapper",
        "gymnasium.wrappers.RecordVideo",  # writes files where its arguments say
        "gymnasium.wrappers.TimeLimit.__init__",
        "gymnasium.wrappers.TimeLimit.__class__",
        "torch.optim.Adam.step",
        "torch.nn.Linear",
        "pg_lightning.cli.build.build_policy",
        "pg_lightning.cli.train.run",
    ],
)
def test_objects_outside_the_allowlist_are_refused(target):
    assert not is_allowed(resolve_target(target))


@pytest.mark.parametrize(
    "target",
    [
        "pg_lightning.envs.networks.make_policy",
        "pg_lightning.make_policy",
        "pg_lightning.envs.networks.make_value_network",
        "pg_lightning.envs.spaces.DropText",
        "gymnasium.wrappers.TimeAwareObservation",
        "gymnasium.wrappers.common.TimeLimit",
        "torch.optim.Adam",
        "torch.optim.lr_scheduler.LinearLR",
    ],
)
def test_the_allowlist(target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert is_allowed(resolve_target(target))


def test_resolving_imports_nothing_outside_the_trusted_packages(sandbox):
    with pytest.raises(ValueError, match="outside"):
        resolve_target(f"{sandbox['module']}.Wrapper")
    with pytest.raises(ValueError, match="outside"):
        resolve_target("os.makedirs")
    assert sandbox["module"] not in sys.modules and list(sandbox["box"].iterdir()) == []


def conf_targets() -> list[tuple[str, str, str]]:
    """(overrides, config path, target) of every _target_ in the blocks that evaluation (or a resume) may meet."""
    options = [f"network={p.stem}" for p in (CONF / "network").glob("*.yaml") if p.stem != "custom"]
    options += [f"experiment={p.stem}" for p in (CONF / "experiment").glob("*.yaml")]
    options += ["baseline=value", "scheduler=linear", "scheduler=cosine"]
    found = []
    with initialize_config_dir(str(CONF), version_base="1.3"):
        for option in sorted(options):
            cfg = compose("train", overrides=["paths.output_dir=.", option])
            for key in ("network", "env.wrappers", "baseline.value_net", "model.optimizer", "model.scheduler"):
                node = cfg
                for part in key.split("."):
                    node = node.get(part) if node is not None else None
                stack = [(key, node)]
                while stack:
                    where, item = stack.pop()
                    if hasattr(item, "items"):
                        stack += [(f"{where}.{k}", v) for k, v in item.items() if k != "_target_"]
                        if "_target_" in item:
                            found.append((option, f"{where}._target_", item["_target_"]))
                    elif isinstance(item, (list, tuple)) or type(item).__name__ == "ListConfig":
                        stack += [(f"{where}[{i}]", v) for i, v in enumerate(item)]
                        found += [(option, f"{where}[{i}]", v) for i, v in enumerate(item) if isinstance(v, str)]
    return found


def test_every_target_of_conf_that_evaluation_may_call_is_allowed():
    """The allowlist cannot drift from conf/: each network, wrapper, value network, optimizer and scheduler there."""
    found = conf_targets()
    assert {t for _, _, t in found} >= {"pg_lightning.envs.networks.make_policy", "torch.optim.Adam"}
    refused = [(o, k, t) for o, k, t in found if not is_allowed(resolve_target(t))]
    assert refused == []


# --- damaged checkpoints, mismatched configs, output_dir ------------------------------------------


def test_a_checkpoint_whose_archive_fails_its_crc_is_refused(tiny_ckpt, tmp_path):
    """Bytes overwritten inside one tensor (a policy weight): torch.load would read wrong, finite weights."""
    ckpt = tmp_path / "damaged.ckpt"
    ckpt.write_bytes(tiny_ckpt.read_bytes())
    weight = torch.load(ckpt, weights_only=True)["state_dict"]["policy.net.0.weight"]
    with zipfile.ZipFile(ckpt) as archive:
        (info,) = [
            i for i in archive.infolist() if "/data/" in i.filename and archive.read(i) == weight.numpy().tobytes()
        ]
    with open(ckpt, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_length, extra_length = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        f.seek(info.header_offset + 30 + name_length + extra_length)
        f.write(torch.full((4,), 1.0).numpy().tobytes())  # the first row of the weight becomes 1.0s
    with pytest.raises(ConfigError) as excinfo:
        evaluate(ckpt, episodes=1)
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith(f"ckpt_path: {str(ckpt)!r} is corrupted: {info.filename}")
    with pytest.raises(ConfigError, match="is corrupted"):  # and a resume from it
        validate(compose_cfg(tmp_path / "resume", *TINY, f"ckpt_path={ckpt}"))


def test_a_checkpoint_with_non_finite_weights_is_refused(tiny_ckpt, tmp_path):
    checkpoint = torch.load(tiny_ckpt, weights_only=True)
    checkpoint["state_dict"]["policy.net.2.bias"][1] = float("nan")
    ckpt = tmp_path / "nan.ckpt"
    torch.save(checkpoint, ckpt)
    with pytest.raises(ConfigError) as excinfo:
        evaluate(ckpt, episodes=1)
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith(f"ckpt_path: {str(ckpt)!r} holds non-finite weights")
    assert "policy.net.2.bias" in message


def test_a_saved_config_that_no_longer_fits_its_weights_is_one_line(tiny_ckpt, tmp_path):
    ckpt = craft(tiny_ckpt, tmp_path / "wider.ckpt", lambda c: c["network"].__setitem__("hidden_sizes", [8]))
    with pytest.raises(ConfigError) as excinfo:
        evaluate(ckpt, episodes=1)
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith(f"ckpt_path: {str(ckpt)!r}: its policy weights do not fit"), (
        message
    )
    assert "net.0.weight (4, 4) vs (8, 4)" in message


@pytest.mark.parametrize("below", [False, True])
def test_an_output_dir_that_is_a_file_is_refused_before_any_episode(tiny_ckpt, tmp_path, monkeypatch, below):
    def no_episodes(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an episode ran")

    monkeypatch.setattr(evaluation, "run_episodes", no_episodes)
    file = tmp_path / "summary.json"
    file.write_text("{}")
    output_dir = file / "eval" if below else file
    with pytest.raises(ConfigError) as excinfo:
        evaluate(tiny_ckpt, episodes=1, output_dir=output_dir)
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith(f"output_dir: {str(output_dir)!r}")
    assert file.read_text() == "{}"
