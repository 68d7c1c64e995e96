"""Scaling: DDP on the CPU (2 processes, gloo) from the CLI, DDP jobs of a Hydra multirun through the
joblib launcher, resume under DDP, the multirun summary, an Optuna search, launcher configs.

The runs are subprocesses of ``train.py`` (Lightning's DDP launcher re-runs the script), each in a
temporary working directory, so that any stray Hydra output directory would show.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import hydra
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from pg_lightning.cli.sweep import SweepSummary
from pg_lightning.cli.train import make_baseline
from pg_lightning.core.errors import ConfigError
from pg_lightning.envs.collector import EpisodeCollector, make_vector_env
from tests.conftest import CONF, ROOT

EPISODES, EPOCHS = 4, 3  # per rank and epoch; epochs of the straight run
TINY = [f"data.episodes_per_epoch={EPISODES}", "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0"]
# baseline=mean: each rank's loss depends on its own batch only (the value baseline shares statistics
# across ranks), so the gradient test can recompute each rank's gradient alone.
DDP = ["trainer=ddp_cpu", "trainer.devices=2", "baseline=mean", *TINY]
RANK_DUMP = "+callbacks.rank_dump._target_=tests.scaling_helpers.RankDump"
EVERY_EPOCH = [  # keep the checkpoint of every epoch (epoch=0.ckpt, ...), to resume from the middle of a run
    "callbacks.last_checkpoint.filename='{epoch}'",
    "callbacks.last_checkpoint.save_top_k=-1",
    "callbacks.last_checkpoint.every_n_seconds=0",  # every epoch's end (default: by time)
]
COMPARED = ("rollout/return_mean", "rollout/length_mean", "train/loss", "rollout/episodes", "rollout/env_steps",
            "rollout/return_mean_100")  # fmt: skip


def train(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("HYDRA_FULL_ERROR", None)
    for key in ("LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "MASTER_ADDR", "NODE_RANK"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def rows(run_dir: Path) -> dict[int, dict[str, str]]:
    return {int(r["epoch"]): r for r in csv.DictReader(open(run_dir / "csv" / "metrics.csv"))}


def dumps(run_dir: Path) -> list[dict]:
    return [torch.load(run_dir / "ranks" / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def policy_state(ckpt: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in torch.load(ckpt, weights_only=False)["state_dict"].items() if k.startswith("policy.")}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One DDP run from the CLI (not a multirun): 2 ranks, EPOCHS epochs, each rank dumps what it saw."""
    cwd = tmp_path_factory.mktemp("straight")
    proc = train(*DDP, f"trainer.max_epochs={EPOCHS}", RANK_DUMP, *EVERY_EPOCH, "hydra.run.dir=run", cwd=cwd)
    return cwd, cwd / "run", proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def resumed_sweep(straight, tmp_path_factory):
    """A multirun of 3 DDP jobs in 2 joblib workers (so one worker runs two jobs, one after the other),
    each resumed from the straight run's checkpoint after 2 epochs, to EPOCHS, EPOCHS + 1, EPOCHS + 2."""
    cwd = tmp_path_factory.mktemp("sweep")
    ckpt = straight[1] / "checkpoints" / "epoch=1.ckpt"
    budgets = ",".join(str(EPOCHS + i) for i in range(3))
    args = ["-m", *DDP, f"ckpt_path='{ckpt}'", f"trainer.max_epochs={budgets}", RANK_DUMP,
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweep.dir=sweep"]  # fmt: skip
    proc = train(*args, cwd=cwd)
    return cwd, cwd / "sweep", proc.stdout + proc.stderr


@pytest.mark.ddp
def test_ddp_cli_run_writes_one_run_directory(straight):
    cwd, run, out = straight
    assert sorted(p.name for p in cwd.iterdir()) == ["run"]  # no second Hydra output dir (outputs/...)
    assert "Starting with 2 processes" in out and f"CartPole-v1: {EPOCHS} epochs" in out
    assert out.count("100-episode mean return") == 1  # the summary is printed by rank 0 only
    assert len(list(run.rglob("metrics.csv"))) == 1 and len(rows(run)) == EPOCHS  # logged once per epoch
    assert len(list(run.rglob("config.yaml"))) == 1  # the rank-1 process saved no Hydra config of its own
    assert (run / "train.log").is_file() and (run / "train_ddp_process_1.log").is_file()  # both ranks ran here
    assert [Path(d["hydra_output_dir"]) for d in dumps(run)] == [run.resolve()] * 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt"] + [
        f"epoch={e}.ckpt" for e in range(EPOCHS)
    ]


@pytest.mark.ddp
def test_ddp_ranks_collect_different_episodes_from_rank_seeds_and_end_with_the_same_parameters(straight):
    run = straight[1]
    d0, d1 = dumps(run)
    assert d0["world_size"] == d1["world_size"] == 2 and (d0["rank"], d1["rank"]) == (0, 1)
    for d in (d0, d1):  # exactly one batch of exactly EPISODES episodes per rank and epoch
        assert [b.num_episodes for b in d["batches"]] == [EPISODES] * EPOCHS
    assert not torch.equal(d0["batches"][0].obs[:5], d1["batches"][0].obs[:5])  # different envs, different episodes
    for key in d0["initial"]:
        if key.startswith("policy."):
            assert torch.equal(d0["initial"][key], d1["initial"][key]), key  # the same init (seed)
            assert torch.equal(d0["final"][key], d1["final"][key]), key  # identical after DDP's steps
    assert any(not torch.equal(d0["initial"][k], d0["final"][k]) for k in d0["initial"] if k.startswith("policy."))
    ckpt = policy_state(run / "checkpoints" / f"epoch={EPOCHS - 1}.ckpt")
    assert ckpt.keys() == {k for k in d0["final"] if k.startswith("policy.")}
    assert all(torch.equal(v, d0["final"][k]) for k, v in ckpt.items())

    # Each rank's first batch is what a collector seeded with (seed, that rank) collects with the initial policy.
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    model = build_module(cfg, d0["initial"])
    for rank, d in enumerate((d0, d1)):
        collector = EpisodeCollector(make_vector_env(cfg.env.id, cfg.data.num_envs), seed=cfg.seed, rank=rank)
        expected = collector.collect(model.policy, EPISODES)
        collector.close()
        assert torch.equal(expected.obs, d["batches"][0].obs) and torch.equal(expected.actions, d["batches"][0].actions)


def build_module(cfg, state):
    probe = gym.make(cfg.env.id)
    policy = hydra.utils.instantiate(cfg.network)(
        observation_space=probe.observation_space, action_space=probe.action_space
    )
    model = hydra.utils.instantiate(cfg.model, policy=policy, baseline=make_baseline(cfg, probe.observation_space))
    model.load_state_dict(state)
    return model


@pytest.mark.ddp
def test_ddp_gradient_is_the_mean_of_the_ranks_gradients(straight):
    """DDP's step uses (g_0 + g_1) / 2, each g_r the estimator on rank r's episodes: the mean over all episodes."""
    run = straight[1]
    d0, d1 = dumps(run)
    model = build_module(OmegaConf.load(run / ".hydra" / "config.yaml"), d0["initial"])
    grads = []
    for d in (d0, d1):
        model.zero_grad()
        model.training_step(d["batches"][0], 0).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert d0["grads"][0].keys() == grads[0].keys() and grads[0]
    for name, logged in d0["grads"][0].items():
        assert torch.equal(logged, d1["grads"][0][name]), name  # the same all-reduced gradient on both ranks
        assert not torch.allclose(grads[0][name], grads[1][name]), name  # and the ranks' own gradients differ
        torch.testing.assert_close(logged, (grads[0][name] + grads[1][name]) / 2, rtol=1e-5, atol=1e-7)


@pytest.mark.ddp
def test_ddp_episode_metrics_are_over_all_ranks_and_the_same_on_every_rank(straight):
    run = straight[1]
    d0, d1 = dumps(run)
    logged = rows(run)
    returns, steps = [], 0
    for epoch in range(EPOCHS):
        batches = [d["batches"][epoch] for d in (d0, d1)]
        returns += [float(r) for b in batches for r in b.episode_returns()]
        steps += sum(b.num_steps for b in batches)
        row = logged[epoch]
        epoch_returns = torch.cat([b.episode_returns() for b in batches])
        assert float(row["rollout/episodes"]) == 2 * EPISODES * (epoch + 1)
        assert float(row["rollout/env_steps"]) == steps
        assert float(row["rollout/return_mean"]) == pytest.approx(float(epoch_returns.mean()), rel=1e-6)
        assert float(row["rollout/return_mean_100"]) == pytest.approx(
            sum(returns) / len(returns), rel=1e-6
        )  # < 100 so far
    for key in ("rollout/return_mean_100", "rollout/episodes", "rollout/env_steps"):  # what EarlyStopping reads
        assert d0["metrics"][key] == d1["metrics"][key], key


@pytest.mark.ddp
def test_ddp_multirun_through_joblib_one_directory_per_job_and_summary(resumed_sweep):
    cwd, sweep, out = resumed_sweep
    jobs = [str(j) for j in range(3)]
    assert "Joblib.Parallel(n_jobs=2" in out
    assert sorted(p.name for p in cwd.iterdir()) == ["sweep"]  # the ranks' processes started no sweep of their own
    assert sorted(p.name for p in sweep.iterdir()) == [*jobs, "multirun.yaml", "summary.csv"]
    for job in jobs:
        epochs = EPOCHS + int(job)
        assert len(list((sweep / job).rglob("metrics.csv"))) == 1
        assert sorted(rows(sweep / job)) == list(range(2, epochs))  # resumed after epoch index 1
        assert len(list((sweep / job).rglob("config.yaml"))) == 1
        assert (sweep / job / "train_ddp_process_1.log").is_file()
        # Rank 1 ran this job alone, as a single run in the job's directory (not a sweep of its own).
        d0, d1 = dumps(sweep / job)
        assert (d0["hydra_mode"], d1["hydra_mode"]) == ("MULTIRUN", "RUN")
        assert Path(d0["hydra_output_dir"]) == Path(d1["hydra_output_dir"]) == (sweep / job).resolve()
        assert d0["world_size"] == d1["world_size"] == 2
    assert [out.count(f"#{job} : ") for job in jobs] == [1, 1, 1]  # each job launched once
    summary = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [(r["job"], r["trainer.max_epochs"], r["status"]) for r in summary] == [
        (job, str(EPOCHS + int(job)), "completed") for job in jobs
    ]
    for r in summary:
        last = rows(sweep / r["job"])[int(r["trainer.max_epochs"]) - 1]
        assert float(r["rollout/return_mean_100"]) == pytest.approx(float(last["rollout/return_mean_100"]))
    assert "Sweep summary (3 jobs" in out
    # The same checkpoint, the same third epoch: nothing leaks from one job to the next in a worker.
    third = [rows(sweep / job)[2] for job in jobs]
    for key in COMPARED:
        assert third[0][key] == third[1][key] == third[2][key], key


@pytest.mark.ddp
def test_ddp_resume_continues_the_straight_run_exactly(straight, resumed_sweep):
    """Resumed after 2 epochs to 3: the third epoch is the straight run's third epoch, parameters included."""
    a, b = rows(straight[1]), rows(resumed_sweep[1] / "0")
    for key in COMPARED:
        assert float(b[EPOCHS - 1][key]) == pytest.approx(float(a[EPOCHS - 1][key]), rel=1e-6), key
    straight_final, resumed = dumps(straight[1])[0]["final"], dumps(resumed_sweep[1] / "0")
    for d in resumed:
        policy_keys = [key for key in d["final"] if key.startswith("policy.")]
        assert policy_keys
        for key in policy_keys:
            assert torch.equal(d["final"][key], straight_final[key]), key


@pytest.mark.subprocess
def test_optuna_search(tmp_path):
    """hparams_search=cartpole_optuna with 2 trials: the search space reaches each trial's config."""
    args = ["-m", "hparams_search=cartpole_optuna", "hydra.sweeper.n_trials=2", "trainer.max_epochs=2",
            "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0", "hydra.sweep.dir=sweep"]  # fmt: skip
    train(*args, cwd=tmp_path)
    sweep = tmp_path / "sweep"
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "optimization_results.yaml", "summary.csv"]
    best = yaml.safe_load(open(sweep / "optimization_results.yaml"))
    params = {"model.optimizer.lr", "data.episodes_per_epoch", "search.hidden_width", "baseline"}
    assert set(best["best_params"]) == params
    summary = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [r["job"] for r in summary] == ["0", "1"] and all(r["status"] == "completed" for r in summary)
    assert params <= set(summary[0])
    for r in summary:
        cfg = OmegaConf.load(sweep / r["job"] / ".hydra" / "config.yaml")
        width = int(r["search.hidden_width"])
        assert width in (32, 64, 128) and list(cfg.network.hidden_sizes) == [width, width]
        assert 1e-3 <= float(r["model.optimizer.lr"]) <= 5e-2 and r["baseline"] in ("mean", "rloo", "value")
        assert cfg.trainer.max_epochs == 2 and cfg.data.episodes_per_epoch == int(r["data.episodes_per_epoch"])
        assert int(r["data.episodes_per_epoch"]) in (8, 16, 32)
        last = rows(sweep / r["job"])[1]
        assert float(r["rollout/return_mean_100"]) == pytest.approx(float(last["rollout/return_mean_100"]))
        assert json.loads((sweep / r["job"] / ".hydra" / "job_return.json").read_text())["value"] == float(
            r["rollout/return_mean_100"]
        )
    assert best["best_value"] == max(float(r["rollout/return_mean_100"]) for r in summary)


def test_sweep_summary_records_every_job_also_when_one_fails(tmp_path, capsys):
    """Each job's record and the CSV are written at the job's end (a failed sweep skips on_multirun_end)."""
    summary = SweepSummary(metric="rollout/return_mean_100")

    def end_job(num, overrides, status, value):
        cfg = OmegaConf.create({"hydra": {
            "mode": RunMode.MULTIRUN, "job": {"num": num}, "output_subdir": ".hydra", "sweep": {"dir": str(tmp_path)},
            "runtime": {"output_dir": str(tmp_path / str(num))},
        }})  # fmt: skip
        summary.on_job_end(cfg, JobReturn(overrides=overrides, status=status, _return_value=value))
        return cfg

    end_job(1, ["seed=0", "model.loss.gamma=0.99"], JobStatus.COMPLETED, torch.tensor(21.5))
    end_job(0, ["seed=0", "model.loss.gamma=1.5"], JobStatus.FAILED, ConfigError("model.loss.gamma must be in [0, 1]"))
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert [(r["job"], r["model.loss.gamma"], r["rollout/return_mean_100"], r["status"]) for r in rows] == [
        ("0", "1.5", "", "failed"), ("1", "0.99", "21.5", "completed")
    ]  # fmt: skip
    assert rows[0]["error"] == "ConfigError: model.loss.gamma must be in [0, 1]" and rows[1]["error"] == ""
    assert (tmp_path / "0" / ".hydra" / "job_return.json").is_file()
    summary.on_multirun_end(end_job(2, ["seed=1"], JobStatus.COMPLETED, 3.0))
    printed = capsys.readouterr().out
    assert "Sweep summary (3 jobs" in printed and "seed" in printed and "model.loss.gamma" in printed
    assert len(list(csv.DictReader(open(tmp_path / "summary.csv")))) == 3


def compose_with_hydra(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_launcher_and_search_configs_compose():
    cfg = compose_with_hydra("hydra/launcher=slurm", "trainer=multi_gpu", "trainer.devices=4", "trainer.num_nodes=2")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher["tasks_per_node"], launcher["gpus_per_node"], launcher["nodes"]) == (4, 4, 2)
    assert cfg.trainer.num_nodes == 2 and cfg.trainer.strategy == "ddp"
    cfg = compose_with_hydra("trainer=ddp_cpu")
    strategy = hydra.utils.instantiate(cfg.trainer.strategy)
    assert strategy.process_group_backend == "gloo" and cfg.trainer.devices == 2 and cfg.trainer.accelerator == "cpu"
    cfg = compose_with_hydra("hparams_search=cartpole_optuna", "search.hidden_width=32")
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.direction == "maximize"
    assert list(cfg.network.hidden_sizes) == [32, 32] and cfg.trainer.max_epochs == 30
    assert compose_with_hydra().hydra.callbacks.sweep_summary.metric == "rollout/return_mean_100"


@pytest.mark.subprocess
@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a CUDA GPU")
def test_gpu_run(tmp_path):
    train("trainer=gpu", "trainer.max_epochs=2", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert len(rows(tmp_path / "run")) == 2


@pytest.mark.ddp
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_multi_gpu_ddp_run(tmp_path):
    proc = train(
        "trainer=multi_gpu", "trainer.devices=2", "trainer.max_epochs=2", *TINY, "hydra.run.dir=run", cwd=tmp_path
    )
    assert "Starting with 2 processes" in proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and len(rows(tmp_path / "run")) == 2
