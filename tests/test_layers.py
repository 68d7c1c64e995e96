"""The package's layers: old (0.1) module paths still work, with a DeprecationWarning; the layers import down only."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from pg_lightning._compat import MOVED, SPLIT
from tests.conftest import ROOT

# Every public name each module of 0.1 defined or listed in its __all__ (read from the last 0.1 tree, commit
# 1044abd^, with ast).
NAMES_01: dict[str, list[str]] = {
    "pg_lightning.baselines": [
        "Baseline",
        "ConstantBaseline",
        "EMABaseline",
        "LeaveOneOutBaseline",
        "MeanBaseline",
        "NoBaseline",
        "ValueBaseline",
    ],
    "pg_lightning.batch": ["EpisodeBatch"],
    "pg_lightning.callbacks": ["BestCheckpoint", "ExactReturn", "ExceptionCheckpoint", "GradientDiagnostics"],
    "pg_lightning.collector": ["EPISODE_CAP", "EpisodeCollector", "REWARD_LIMIT", "episode_limit", "make_vector_env"],
    "pg_lightning.data": ["EpisodeDataset", "RolloutDataModule"],
    "pg_lightning.diagnostics": [
        "ESTIMATORS",
        "GradientStats",
        "estimator_weights",
        "gradient_stats",
        "per_episode_gradients",
    ],
    "pg_lightning.distributions": [
        "DiscreteCategorical",
        "MultiBernoulli",
        "MultiCategorical",
        "TanhNormal",
        "bernoulli_sample",
        "categorical_sample",
        "draw",
        "greedy_action",
        "normal_sample",
        "padded_logits",
        "sample",
    ],
    "pg_lightning.encoders": ["FlattenFloat", "ImageEncoder", "MultiOneHot", "OBS_LIMIT", "OneHot", "TreeEncoder"],
    "pg_lightning.env_factory": [
        "EPISODE_CAP",
        "EnvFactory",
        "Wrapper",
        "env_spec",
        "episode_limit",
        "import_modules",
        "reward_threshold",
    ],
    "pg_lightning.envs": ["TabularEnv", "make_bandit", "make_chain"],
    "pg_lightning.errors": ["ConfigError", "EnvError", "MissingExtraError", "NonFiniteError", "config_error_in"],
    "pg_lightning.evaluation": [
        "EvalCallback",
        "POLICY_FACTORY",
        "SUMMARY_FILE",
        "TRUSTED_TARGETS",
        "evaluate",
        "format_summary",
        "greedy_action",
        "load_checkpoint",
        "load_policy",
        "main",
        "make_eval_env",
        "run_episodes",
    ],
    "pg_lightning.factory": [
        "PROBE_BATCH",
        "PROBE_DONES",
        "UnsupportedSpaceError",
        "ValueNetwork",
        "build_policy",
        "build_value_network",
        "check_policy",
        "check_value_network",
        "make_policy",
        "make_value_network",
    ],
    "pg_lightning.loss": ["LossTerms", "RETURN_TYPES", "ReinforceLoss"],
    "pg_lightning.memory_env": ["CueMemoryEnv", "ENV_ID", "register"],
    "pg_lightning.metrics": ["WindowMean"],
    "pg_lightning.module": ["OptimizerFactory", "ReinforceModule", "SchedulerFactory", "StepRecord"],
    "pg_lightning.plots": [
        "Curve",
        "METRICS",
        "SEED_KEYS",
        "SPREADS",
        "aggregate",
        "draw_curves",
        "find_runs",
        "learning_curves",
        "main",
        "plot_runs",
        "read_metrics",
        "run_overrides",
    ],
    "pg_lightning.policies": [
        "ACTION_BOUNDS",
        "ACTIVATIONS",
        "BernoulliPolicy",
        "CategoricalPolicy",
        "GaussianPolicy",
        "MLP",
        "MultiCategoricalPolicy",
        "OneHot",
        "Policy",
        "TanhNormal",
        "distribution",
        "draw",
        "greedy_action",
        "is_recurrent",
        "sample",
        "snapshot",
    ],
    "pg_lightning.recurrent": ["CORES", "RecurrentCore", "State", "is_recurrent", "reset_state"],
    "pg_lightning.returns": [
        "discounted_returns",
        "episode_index",
        "episode_returns",
        "episode_start_mask",
        "step_in_episode",
        "total_returns",
    ],
    "pg_lightning.spaces": [
        "DropText",
        "ENCODERS",
        "UnsupportedSpaceError",
        "channels_last",
        "is_image",
        "is_text",
        "leaves",
        "make_encoder",
        "sample_batch",
        "text_paths",
    ],
    "pg_lightning.sweep": ["JOB_RETURN", "SweepSummary", "read_job_returns"],
    "pg_lightning.tabular": [
        "DTYPE",
        "ExactSolution",
        "OptimalValues",
        "StateValueBaseline",
        "TabularMDP",
        "chain",
        "exact_gradient",
        "expected_estimator",
        "gradient_estimates",
        "gradient_variance",
        "optimal_values",
        "policy_table",
        "sample_episodes",
        "score_jacobian",
        "solve",
        "two_armed_bandit",
        "undiscounted_visits",
        "z_scores",
    ],
    "pg_lightning.train": ["ConfigError", "instantiate", "main", "make_baseline", "run", "validate"],
    "pg_lightning.tree": ["Obs", "as_tensors", "flatten", "index", "leaves", "map_tree", "map_trees", "unflatten"],
    "pg_lightning.validation": [
        "ACTIVATION",
        "ARGUMENT_RULES",
        "BOOL",
        "DEVICES",
        "EVALUATE_RULES",
        "FRACTION",
        "INT",
        "LAST_CHECKPOINTS",
        "NUMBER",
        "ONE_OF",
        "Rule",
        "SEED",
        "STATEFUL_ATTRIBUTES",
        "STR",
        "TOP_LEVEL_RULES",
        "VERSION",
        "WIDTHS",
        "as_wrappers",
        "check_checkpoint",
        "check_env_config",
        "check_evaluate_config",
        "check_fits",
        "check_keys",
        "env_factory",
        "instantiate_wrappers",
        "load_checkpoint",
        "probe_env",
        "resolve_ckpt_path",
        "to_plain",
        "validate",
        "warn_stateful_wrappers",
        "wrapper_specs",
    ],
    "pg_lightning.vector_envs": [
        "AUTORESET_MODES",
        "VECTORIZATION_MODES",
        "autoreset_mode",
        "check_vector_env",
        "make_vector_env",
    ],
}


def test_every_old_module_is_mapped():
    # pg_lightning.envs was a module and is now the package of the gymnasium layer, under the same name
    assert set(NAMES_01) - {"pg_lightning.envs"} == set(MOVED)
    assert set(SPLIT) <= set(MOVED)
    import pg_lightning.envs

    assert all(hasattr(pg_lightning.envs, name) for name in NAMES_01["pg_lightning.envs"])


@pytest.mark.subprocess
@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_still_works_and_warns(old):
    """Each name the 0.1 module defined is there under the old path, and is the object its new home holds."""
    homes = [MOVED[old], *SPLIT.get(old, ())]
    code = (
        "import warnings, importlib, sys\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        f"    old = importlib.import_module({old!r})\n"
        f"homes = [importlib.import_module(m) for m in {homes!r}]\n"
        f"for name in {NAMES_01[old]!r}:\n"
        "    new = [getattr(h, name) for h in homes if hasattr(h, name)]\n"
        "    assert new, f'{name}: in none of the new modules'\n"
        "    assert getattr(old, name) is new[0], f'{name}: not the same object'\n"
        f"assert any(issubclass(w.category, DeprecationWarning) and {MOVED[old]!r} in str(w.message) for w in caught), "
        "[str(w.message) for w in caught]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.subprocess
def test_a_split_old_module_forwards_reads_and_writes_to_the_new_homes():
    code = """
import importlib, warnings
from unittest import mock
warnings.simplefilter("ignore")
import pg_lightning.tabular as old
import pg_lightning.core.monte_carlo as mc, pg_lightning.core.tabular as tab
assert old.solve is tab.solve and old.z_scores is mc.z_scores
assert "sample_episodes" in dir(old) and "solve" in dir(old)
assert {"solve", "z_scores"} <= set(old.__all__)  # from pg_lightning.tabular import * gets every home's names
try:
    old.no_such_name
except AttributeError as err:
    assert "pg_lightning.tabular" in str(err)
else:
    raise AssertionError("no AttributeError")

# mock.patch through an old path: the code that uses the name sees the patch, and the undo restores it
import pg_lightning.evaluation as old_eval
import pg_lightning.envs.evaluation as envs_eval, pg_lightning.lightning.evaluation as light_eval
real = envs_eval.run_episodes
with mock.patch("pg_lightning.evaluation.run_episodes") as fake:
    assert light_eval.run_episodes is fake and envs_eval.run_episodes is fake  # EvalCallback's lookup is patched
assert light_eval.run_episodes is real and envs_eval.run_episodes is real and old_eval.run_episodes is real

import pg_lightning.module as old_module
import pg_lightning.lightning.module as module
with mock.patch("pg_lightning.module.scheduler_horizon", return_value={}):
    pass
assert module.scheduler_horizon is importlib.import_module("pg_lightning.lightning.optim").scheduler_horizon

# importlib.reload of the old name leaves the new module's identity alone
importlib.reload(old_module)
assert module.__name__ == "pg_lightning.lightning.module" and module.__spec__.name == module.__name__
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_hydra_targets_of_old_checkpoints_resolve():
    from hydra.utils import get_class

    from pg_lightning.lightning.module import ReinforceModule

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert get_class("pg_lightning.module.ReinforceModule") is ReinforceModule


def test_the_layers_import_down_only():
    """core imports neither Lightning nor gymnasium; envs not Lightning; nothing imports the CLI (import-linter)."""
    pytest.importorskip("importlinter")
    # the interpreter's own import-linter (its console script need not be on PATH: `.venv/bin/pytest` unactivated)
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    lint = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]


@pytest.mark.subprocess
def test_an_old_name_is_the_module_itself_and_runs_with_python_m():
    code = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "import pg_lightning.envs.collector as new\n"
        "import pg_lightning.collector as old\n"
        "assert old is new\n"
        "old.REWARD_LIMIT = 1.0\n"
        "assert new.REWARD_LIMIT == 1.0  # monkeypatching through the old name reaches the real module\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-W", "always::DeprecationWarning", "-m", "pg_lightning.train", "--help"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0 and "Hydra" in proc.stdout, proc.stderr[-2000:]
    assert "pg_lightning.train is deprecated" in proc.stderr


def test_every_module_is_in_the_api_reference():
    """docs/api/*.md render each module (and the docs build fails on a missing docstring only for those)."""
    import pkgutil
    from pathlib import Path

    import pg_lightning

    root = Path(__file__).resolve().parents[1]
    listed = {
        line.removeprefix("::: ").strip()
        for page in (root / "docs" / "api").glob("*.md")
        for line in page.read_text().splitlines()
        if line.startswith("::: ")
    }
    modules = {
        m.name
        for m in pkgutil.walk_packages(pg_lightning.__path__, "pg_lightning.")
        if not m.ispkg and not m.name.rsplit(".", 1)[-1].startswith("_")
    }
    assert modules - listed == set(), "add them to docs/api/<layer>.md"
    assert listed - modules == set(), "docs/api lists modules that do not exist"
