"""The config against the constructors' signatures (pg_lightning.cli.schema): every invalid value is one line naming
the key, before anything is built; every Trainer argument can be set without ``+``; docs/config_keys.md is generated
from the signatures.

``BAD`` is the list of invalid overrides, each with the start of the one line it must give: it was the table of the
old per-key rules (``cli/rules.py``), kept whole when the signatures replaced them.
"""

from __future__ import annotations

import functools
import inspect
import tempfile
from typing import Annotated, Literal
from unittest import mock

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from pg_lightning.core.arguments import Interval, check_arguments, conforms, describe
from pg_lightning.core.errors import ArgumentError, ConfigError, config_error_in
from tests.conftest import CONF, ROOT
from tests.helpers import run_main

DOC = ROOT / "docs" / "config_keys.md"

BAD: list[tuple[str, str]] = [
    ("seed=-1", "seed"),
    ("ckpt_path=/nonexistent.ckpt", "ckpt_path"),
    ("optimized_metric=[1]", "optimized_metric"),
    ("torch_num_threads=0", "torch_num_threads"),
    ("env.id=CartPol-v1", "env.id"),
    ("+env.kwargs.foo=1", "env.kwargs.foo"),
    ("+env.kwargs.max_episode_steps=0", "env.kwargs.max_episode_steps"),
    ("env.imports=[no_such_module_xyz]", "env.imports[0]"),
    ("env.wrappers=[{flatten:true}]", "env.wrappers[0]"),
    ("env.return_threshold=high", "env.return_threshold"),
    ("env.return_threshold=nan", "env.return_threshold"),
    ("env=chain env.kwargs.length=0", "env.kwargs"),
    ("env=chain env.kwargs.slip=2", "env.kwargs"),
    ("env=chain env.kwargs.step_reward=abc", "env.kwargs"),
    ("env=chain env.kwargs.goal_reward=abc", "env.kwargs"),
    ("env=chain env.kwargs.gamma=2", "model.loss.gamma"),
    ("env=bandit env.kwargs.win_probs=[2,0]", "env.kwargs"),
    ("env=bandit env.kwargs.win_reward=abc", "env.kwargs"),
    ("env=bandit env.kwargs.lose_reward=abc", "env.kwargs"),
    ("data.episodes_per_epoch=0", "data.episodes_per_epoch"),
    ("data.num_envs=0", "data.num_envs"),
    ("data.vectorization_mode=thread", "data.vectorization_mode"),
    ("env=acrobot data.vectorization_mode=vector_entry_point", "data.vectorization_mode"),
    ("+data.vector_env._target_=tests.vector_envs.RandomLengthVectorEnv", "data.vector_env"),
    ("data.seed=-1", "data.seed"),
    ("data.max_episode_steps=0", "data.max_episode_steps"),
    ("data.step_timeout=0", "data.step_timeout"),
    ("data.step_timeout=inf", "data.step_timeout"),
    ("+data.env_id=Acrobot-v1", "data.env_id"),
    ("+data.env_kwargs={length:3}", "data.env_kwargs"),
    ("+data.env_imports=[os]", "data.env_imports"),
    ("+data.env_wrappers=[gymnasium.wrappers.FlattenObservation]", "data.env_wrappers"),
    ("model.return_window=0", "model.return_window"),
    ("model.loss.gamma=1.5", "model.loss.gamma"),
    ("model.loss.return_type=foo", "model.loss.return_type"),
    ("model.loss.discount_weight=maybe", "model.loss.discount_weight"),
    ("model.loss.discount_weight=true model.loss.return_type=total", "model.loss.discount_weight"),
    ("model.loss.normalize_advantages=maybe", "model.loss.normalize_advantages"),
    ("model.loss.entropy_coef=-1", "model.loss.entropy_coef"),
    ("model.loss.entropy_coef=inf", "model.loss.entropy_coef"),
    ("model.optimizer._target_=torch.optim.Foo", "model.optimizer"),
    ("model.optimizer.lr=-1", "model.optimizer.lr"),
    ("model.optimizer.lr=1e308", "model.optimizer.lr"),
    ("+model.optimizer.foo=1", "model.optimizer."),
    ("model.optimizer._target_=torch.optim.SGD +model.optimizer.momentum=-1", "model.optimizer."),
    ("+model.optimizer.weight_decay=inf", "model.optimizer."),
    ("scheduler=linear +model.scheduler.bogus=1", "model.scheduler"),
    ("scheduler=linear model.scheduler.start_factor=0", "model.scheduler.start_factor"),
    ("scheduler=linear model.scheduler.end_factor=2", "model.scheduler.end_factor"),
    ("scheduler=linear model.scheduler.total_iters=0", "model.scheduler.total_iters"),
    ("scheduler=linear trainer.max_epochs=-1", "model.scheduler.total_iters"),
    ("scheduler=cosine model.scheduler.T_max=0", "model.scheduler.T_max"),
    ("scheduler=cosine model.scheduler.eta_min=-1", "model.scheduler.eta_min"),
    ("network.hidden_sizes=[-4]", "network.hidden_sizes"),
    ("network.hidden_sizes=[0]", "network.hidden_sizes"),
    ("network.hidden_sizes=[1.5]", "network.hidden_sizes"),
    ("network.hidden_sizes=8", "network.hidden_sizes"),
    ("network.activation=swish", "network.activation"),
    ("network.log_std_init=abc", "network.log_std_init"),
    ("network.log_std_init=nan", "network.log_std_init"),
    ("network.state_dependent_std=maybe", "network.state_dependent_std"),
    ("network.action_bounds=squash", "network.action_bounds"),
    ("network.output_init_scale=abc", "network.output_init_scale"),
    ("network.output_init_scale=nan", "network.output_init_scale"),
    ("network.encoder=conv", "network.encoder"),
    ("network.encoder={img:cnn}", "network.encoder"),
    ("network.encoder=onehot", "network.encoder"),
    ("network.core=rnn", "network.core"),
    ("network=gru network.core_size=0", "network.core_size"),
    ("network=custom", "network._target_"),
    ("network=custom network._target_=pg_lightning.envs.networks.make_policy +network.width=3", "network"),
    ("baseline=constant baseline.value=abc", "baseline.value"),
    ("baseline=constant baseline.value=nan", "baseline.value"),
    ("baseline=ema baseline.decay=1.5", "baseline.decay"),
    ("baseline=rloo baseline.mode=foo", "baseline.mode"),
    ("baseline=value baseline.value_net.hidden_sizes=[-1]", "baseline.value_net.hidden_sizes"),
    ("baseline=value baseline.value_net.activation=foo", "baseline.value_net.activation"),
    ("baseline=value baseline.value_net.encoder=conv", "baseline.value_net.encoder"),
    ("baseline=value +baseline.value_net.core=rnn", "baseline.value_net.core"),
    ("baseline=value +baseline.value_net.core=gru +baseline.value_net.core_size=0", "baseline.value_net.core_size"),
    ("baseline=value baseline.loss_coef=-1", "baseline.loss_coef"),
    ("baseline=value baseline.lr=0", "baseline.lr"),
    ("baseline=value baseline.bootstrap_truncated=maybe", "baseline.bootstrap_truncated"),
    ("baseline=value baseline.normalize_targets=maybe", "baseline.normalize_targets"),
    ("baseline=value baseline.stats_decay=1", "baseline.stats_decay"),
    ("trainer.accelerator=foo", "trainer.accelerator"),
    ("trainer.devices=0", "trainer.devices"),
    ("trainer.devices=abc", "trainer.devices"),
    ("trainer.devices=[0,1]", "trainer.devices"),
    ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps"),
    ("trainer.enable_model_summary=maybe", "trainer.enable_model_summary"),
    ("trainer.num_sanity_val_steps=-2", "trainer.num_sanity_val_steps"),
    ("trainer.default_root_dir=[1]", "trainer.default_root_dir"),
    ("trainer=ddp_cpu trainer.num_nodes=0", "trainer.num_nodes"),
    ("trainer.strategy=foo", "trainer.strategy"),
    ("trainer=ddp_cpu trainer.strategy.process_group_backend=foo", "trainer.strategy.process_group_backend"),
    ("debug=fdr trainer.fast_dev_run=-1", "trainer.fast_dev_run"),
    ("debug=profiler trainer.profiler=foo", "trainer.profiler"),
    ("+trainer.foo=1", "trainer.foo"),
    ("logger.csv.save_dir=null", "logger.csv.save_dir"),
    ("logger.csv.name=[1]", "logger.csv.name"),
    ("logger.csv.version=[1]", "logger.csv.version"),
    ("logger.csv.flush_logs_every_n_steps=0", "logger.csv.flush_logs_every_n_steps"),
    ("logger=tensorboard logger.tensorboard.save_dir=null", "logger.tensorboard.save_dir"),
    ("logger=tensorboard logger.tensorboard.name=[1]", "logger.tensorboard.name"),
    ("logger=tensorboard logger.tensorboard.version=[1]", "logger.tensorboard.version"),
    ("callbacks.last_checkpoint.dirpath=[1]", "callbacks.last_checkpoint.dirpath"),
    ("callbacks.last_checkpoint.filename=[1]", "callbacks.last_checkpoint.filename"),
    ("callbacks.last_checkpoint.monitor=[1]", "callbacks.last_checkpoint.monitor"),
    ("callbacks.last_checkpoint.save_top_k=-2", "callbacks.last_checkpoint.save_top_k"),
    ("+callbacks.last_checkpoint.every_n_epochs=-1", "callbacks.last_checkpoint.every_n_epochs"),  # not in the yaml
    ("callbacks.last_checkpoint.enable_version_counter=maybe", "callbacks.last_checkpoint.enable_version_counter"),
    ("callbacks.best_checkpoint.dirpath=[1]", "callbacks.best_checkpoint.dirpath"),
    ("callbacks.best_checkpoint.filename=[1]", "callbacks.best_checkpoint.filename"),
    ("callbacks.best_checkpoint.monitor=[1]", "callbacks.best_checkpoint.monitor"),
    ("callbacks.best_checkpoint.save_top_k=-2", "callbacks.best_checkpoint.save_top_k"),
    ("+callbacks.best_checkpoint.every_n_epochs=-1", "callbacks.best_checkpoint.every_n_epochs"),  # not in the yaml
    ("callbacks.best_checkpoint.enable_version_counter=maybe", "callbacks.best_checkpoint.enable_version_counter"),
    ("callbacks.best_checkpoint.mode=foo", "callbacks.best_checkpoint.mode"),
    ("callbacks.early_stopping.monitor=null", "callbacks.early_stopping.monitor"),
    ("callbacks.early_stopping.mode=foo", "callbacks.early_stopping.mode"),
    ("callbacks.early_stopping.stopping_threshold=abc", "callbacks.early_stopping.stopping_threshold"),
    ("callbacks.early_stopping.patience=-1", "callbacks.early_stopping.patience"),
    ("callbacks.early_stopping.check_finite=maybe", "callbacks.early_stopping.check_finite"),
    ("callbacks.early_stopping.check_on_train_epoch_end=maybe", "callbacks.early_stopping.check_on_train_epoch_end"),
    ("callbacks.progress_bar.refresh_rate=-1", "callbacks.progress_bar.refresh_rate"),
    ("callbacks.progress_bar.piped_every_n_epochs=-1", "callbacks.progress_bar.piped_every_n_epochs"),
    ("progress_bar=none trainer.enable_progress_bar=maybe", "trainer.enable_progress_bar"),
    ("callbacks.on_exception.dirpath=null", "callbacks.on_exception.dirpath"),
    ("callbacks.on_exception.filename=[1]", "callbacks.on_exception.filename"),
    ("callbacks=diagnostics callbacks.diagnostics.every_n_epochs=0", "callbacks.diagnostics.every_n_epochs"),
    ("callbacks=eval callbacks.evaluation.episodes=0", "callbacks.evaluation.episodes"),
    ("callbacks=eval callbacks.evaluation.every_n_epochs=0", "callbacks.evaluation.every_n_epochs"),
    ("callbacks=eval callbacks.evaluation.greedy=maybe", "callbacks.evaluation.greedy"),
    ("callbacks=eval callbacks.evaluation.seed=-1", "callbacks.evaluation.seed"),
    ("callbacks=eval callbacks.evaluation.max_episode_steps=0", "callbacks.evaluation.max_episode_steps"),
    ("callbacks=eval callbacks.evaluation.tensorboard_video=maybe", "callbacks.evaluation.tensorboard_video"),
    ("callbacks=eval callbacks.evaluation.env=CartPol-v1", "callbacks.evaluation.env"),
    ("callbacks=eval +callbacks.evaluation.imports=[no_such_module_xyz]", "callbacks.evaluation.imports"),
    ("callbacks=eval +callbacks.evaluation.wrappers=[{flatten:true}]", "callbacks.evaluation.wrappers"),
    ("env=chain callbacks.exact_return.env_id=CartPole-v1", "callbacks.exact_return"),
    ("env=chain callbacks.exact_return.env_kwargs={length:0}", "callbacks.exact_return"),
    ("hparams_search=cartpole_optuna search.hidden_width=0", "network.hidden_sizes"),
    # keys that now come from Trainer's signature, and values only Lightning judges
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val"),
    ("trainer.precision=bogus", "trainer.precision"),
    ("trainer.deterministic=maybe", "trainer.deterministic"),
    ("+model.loss.gama=0.9", "model.loss.gama"),
    ("model.loss.advantage_clip=0", "model.loss.advantage_clip"),
]

EVALUATE_BAD: list[tuple[str, str]] = [
    ("ckpt_path=null", "ckpt_path"),
    ("ckpt_path=/nonexistent.ckpt", "ckpt_path"),
    ("episodes=0", "episodes"),
    ("greedy=maybe", "greedy"),
    ("seed=-1", "seed"),
    ("video=maybe", "video"),
    ("max_episode_steps=0", "max_episode_steps"),
    ("trust_checkpoint_code=maybe", "trust_checkpoint_code"),
    ("torch_num_threads=0", "torch_num_threads"),
]

GOOD = [  # Trainer arguments that needed + before the trainer node came from the signature
    "trainer.plugins=[{_target_:pytorch_lightning.plugins.io.AsyncCheckpointIO}]",  # a list of _target_ nodes
    "trainer.precision=bf16-mixed",
    "trainer.gradient_clip_val=0.5",
    "trainer.profiler=simple",
    "trainer.accumulate_grad_batches=2",
    "trainer.deterministic=warn",
]


class _ReachedFit(Exception):
    """run() built everything and called Trainer.fit: the value was accepted."""


def _compose(name: str, overrides: list[str], output_dir: str) -> object:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        base = [f"paths.output_dir={output_dir}"] if name == "train" else [f"output_dir={output_dir}"]
        return compose(name, overrides=[*base, *overrides])


@functools.cache
def error_line(overrides: str, script: str = "train") -> str:
    """The ConfigError message the overrides give, as the CLI prints it after ``Config error: ``. Fails on an
    accepted value (run() reached Trainer.fit) or on any other error."""
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as out:
        try:
            cfg = _compose(script, overrides.split(), out)
            if script == "evaluate":
                from pg_lightning.cli.evaluation import evaluate
                from pg_lightning.cli.preflight import check_evaluate_config

                check_evaluate_config(cfg)
                keys = ("ckpt_path", "episodes", "greedy", "seed", "video", "output_dir", "max_episode_steps")
                evaluate(*(cfg[k] for k in keys), cfg.trust_checkpoint_code)
            else:
                from pg_lightning.cli.train import run

                with mock.patch.object(pl.Trainer, "fit", side_effect=_ReachedFit):
                    run(cfg)
        except _ReachedFit:
            raise AssertionError(f"{overrides}: accepted (run reached Trainer.fit)") from None
        except Exception as err:
            config_error = config_error_in(err)
            if config_error is None:
                raise AssertionError(f"{overrides}: raw {type(err).__name__}: {err}") from err
            return str(config_error).replace(out, "<output_dir>")
        finally:
            torch.set_num_threads(threads)
    raise AssertionError(f"{overrides}: accepted")


@pytest.mark.parametrize("overrides, key", BAD, ids=[b for b, _ in BAD])
def test_an_invalid_value_is_one_line_naming_the_key(overrides, key):
    message = error_line(overrides)
    assert message.startswith(key), message
    assert "\n" not in message, message


@pytest.mark.parametrize("overrides, key", EVALUATE_BAD, ids=[b for b, _ in EVALUATE_BAD])
def test_an_invalid_evaluate_value_is_one_line_naming_the_key(overrides, key):
    message = error_line(overrides, "evaluate")
    assert message.startswith(key), message
    assert "\n" not in message, message


@pytest.mark.parametrize("override", GOOD)
def test_every_trainer_argument_is_set_without_plus(override, tmp_path):
    from pg_lightning.cli.preflight import validate
    from pg_lightning.cli.schema import instantiate

    cfg = _compose("train", [override], str(tmp_path))
    validate(cfg)
    trainer = instantiate(cfg.trainer, "trainer", logger=False, callbacks=[])
    key, value = override.removeprefix("trainer.").split("=")
    if key == "plugins":
        from pytorch_lightning.plugins.io import AsyncCheckpointIO

        assert isinstance(trainer.strategy.checkpoint_io, AsyncCheckpointIO)
    else:
        assert str(cfg.trainer[key]) == value


def test_a_new_option_is_its_constructor_argument_and_one_yaml_line(tmp_path):
    """model.loss.advantage_clip was added by annotating ReinforceLoss's argument and one line of conf/train.yaml:
    the value reaches the object, a bad one is refused with the key (BAD), and the docs table has its row."""
    from pg_lightning.cli.schema import instantiate, markdown

    cfg = _compose("train", ["model.loss.advantage_clip=2.5"], str(tmp_path))
    assert instantiate(cfg.model.loss, "model.loss").advantage_clip == 2.5
    assert "| `model.loss.advantage_clip` | a number > 0 or null | `null` |" in markdown()


def test_the_trainer_node_is_the_trainers_signature(tmp_path):
    """Every argument of the installed Lightning's Trainer is a key of trainer (a new release's too), but the two
    that run() builds from the logger and callbacks groups."""
    cfg = _compose("train", [], str(tmp_path))
    expected = set(inspect.signature(pl.Trainer).parameters) - {"logger", "callbacks"}
    assert set(cfg.trainer) - {"_target_"} == expected


def test_an_error_a_constructor_raises_is_named_by_its_argument_not_its_message(tmp_path):
    """Lightning's message for accelerator=tpu never says 'accelerator': the key comes from rebuilding without it."""
    message = error_line("trainer.accelerator=tpu")
    assert message.startswith("trainer.accelerator: Trainer refuses accelerator='tpu'"), message


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_two_arguments_that_fail_together_name_the_one_the_error_is_about():
    """trainer=multi_gpu on a CPU: without accelerator=gpu the Trainer still fails (devices=-1 on the CPU), but
    otherwise; without devices it fails the same. The error is about the accelerator."""
    assert error_line("trainer=multi_gpu").startswith("trainer.accelerator: Trainer refuses accelerator='gpu'")


def test_a_target_with_a_typo_gets_a_did_you_mean():
    message = error_line("model.optimizer._target_=torch.optim.Adamm")
    assert message.startswith("model.optimizer._target_: cannot import 'torch.optim.Adamm' (did you mean"), message
    assert "torch.optim.Adam," in message or "torch.optim.Adam?" in message or "torch.optim.Adam)" in message, message


def test_a_config_error_leaves_nothing_built(tmp_path):
    """The checks run before the datamodule, the policy or the Trainer that fits are built."""
    from pg_lightning.cli import train

    cfg = _compose("train", ["model.loss.gamma=2"], str(tmp_path))
    with mock.patch.object(train, "probe_env") as probe, pytest.raises(ConfigError, match=r"^model\.loss\.gamma"):
        train.run(cfg)
    probe.assert_not_called()


# --- the annotations (pg_lightning.core.arguments): analytic cases, and a broken checker that the cases catch

GAMMA = Annotated[float, Interval(ge=0, le=1)]
CASES = [
    (GAMMA, 0.0, True),
    (GAMMA, 1, True),
    (GAMMA, 1.5, False),
    (GAMMA, float("nan"), False),
    (GAMMA, True, False),
    (GAMMA, "0.5", False),
    (Annotated[int, Interval(ge=1)] | None, None, True),
    (Annotated[int, Interval(ge=1)] | None, 0, False),
    (Annotated[int, Interval(ge=1)], 1.0, False),
    (Literal["a", "b"], "a", True),
    (Literal["a", "b"], "c", False),
    (Literal[-1] | Annotated[int, Interval(ge=1)], -1, True),
    (Literal[-1] | Annotated[int, Interval(ge=1)], 0, False),
    (list[Annotated[int, Interval(ge=1)]], [1, 2], True),
    (list[Annotated[int, Interval(ge=1)]], [1, 0], False),
    (list[int], 8, False),
    (bool, "maybe", False),
    (float, float("inf"), False),
    (Annotated[float, Interval(gt=0, lt=1)], 0.0, False),
    (Annotated[float, Interval(gt=0, lt=1)], 1.0, False),
    (dict[str, Literal["a", "b"]], {"x": "a"}, True),
    (dict[str, Literal["a", "b"]], {"x": "c"}, False),
]


@pytest.mark.parametrize("annotation, value, ok", CASES)
def test_conforms(annotation, value, ok):
    assert conforms(value, annotation) is ok


def test_a_checker_that_ignores_the_constraints_is_caught():
    from pg_lightning.core import arguments

    def broken(value, annotation):  # the base type only: Annotated's constraints dropped
        from typing import get_args, get_origin

        return original(value, get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation)

    original = arguments.conforms
    failures = [c for c in CASES if broken(c[1], c[0]) is not c[2]]
    assert failures, "the cases do not tell a checker without constraints from the real one"


@pytest.mark.parametrize(
    "annotation, text",
    [
        (GAMMA, "a number in [0, 1]"),
        (Annotated[int, Interval(ge=1)] | None, "an integer >= 1 or null"),
        (Literal["reward_to_go", "total"], "reward_to_go | total"),
        (Annotated[float, Interval(gt=0, le=1000)], "a number in (0, 1000]"),
        (Annotated[float, Interval(ge=0, lt=1)], "a number in [0, 1)"),
    ],
)
def test_describe(annotation, text):
    assert describe(annotation) == text


def test_core_errors_name_the_argument_and_the_cli_adds_the_key():
    from pg_lightning.core.loss import ReinforceLoss

    with pytest.raises(ArgumentError, match=r"^gamma must be a number in \[0, 1\], got 2") as info:
        ReinforceLoss(gamma=2)
    assert info.value.argument == "gamma"
    with pytest.raises(ArgumentError):
        check_arguments(ReinforceLoss, {"return_type": "foo"})


def test_every_key_of_the_shipped_configs_has_its_valid_values():
    """No key of the project's own nodes falls back to 'any value' or 'passed as is': each is annotated."""
    from pg_lightning.cli.schema import markdown

    rows = [line for line in markdown().splitlines() if line.startswith("| `")]
    unannotated = [r for r in rows if "passed to " in r or "| any value" in r]
    ours = [r for r in unannotated if not r.startswith(("| `hydra", "| `data.vector_env", "| `model.scheduler`"))]
    assert not ours, "\n".join(ours)


def test_the_doc_is_generated_from_the_schema():
    from pg_lightning.cli.schema import markdown

    assert DOC.read_text() == markdown(), (
        "docs/config_keys.md is stale: python -m pg_lightning.cli.schema > docs/config_keys.md"
    )


CLI_CASES = [
    ("train.py", "network.hidden_sizes=[-4]", "network.hidden_sizes"),
    ("train.py", "trainer.devices=0", "trainer.devices"),
    ("train.py", "+trainer.foo=1", "trainer.foo"),
    ("train.py", "logger.csv.flush_logs_every_n_steps=0", "logger.csv.flush_logs_every_n_steps"),
    ("train.py", "+model.optimizer.foo=1", "model.optimizer.foo"),
    ("evaluate.py", "episodes=0", "episodes"),
]


def test_cli_an_invalid_value_is_one_stderr_line_and_exit_2(tmp_path, capsys):
    """Each command line in this process (``main()`` with ``sys.argv`` set): its exit status and all it printed."""
    from pg_lightning.cli import evaluation, train

    mains = {"train.py": train.main, "evaluate.py": evaluation.main}
    for i, (script, override, key) in enumerate(CLI_CASES):
        code = run_main(mains[script], override, f"hydra.run.dir={tmp_path / str(i)}", cwd=tmp_path)
        stderr = capsys.readouterr().err
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2, (override, stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith(f"Config error: {key}"), (override, stderr[-2000:])
