"""Preemption and launchers: SIGTERM writes a checkpoint, ckpt_path=last finds the newest of every kind,
a torchrun rank 0 refuses a used run directory, and seeds outside numpy's range name `seed`."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from pg_lightning.cli.checkpoints import resolve_ckpt_path
from pg_lightning.cli.train import run, validate
from pg_lightning.core.errors import ConfigError
from tests.conftest import ROOT

FAST = ["data.episodes_per_epoch=4", "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0"]


def test_sigterm_writes_a_loadable_checkpoint_and_ckpt_path_last_resumes_from_it(tmp_path):
    """SLURM and Kubernetes stop a job with SIGTERM: Lightning's signal handling ends fit with an exception,
    OnExceptionCheckpoint writes on_exception.ckpt, and ckpt_path=last picks it (the newest checkpoint)."""
    runs = tmp_path / "outputs" / "2026-12-01"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen(
        [sys.executable, "train.py", *FAST, "env.return_threshold=null", "trainer.max_epochs=100000",
         f"hydra.run.dir={runs / '09-00-00'}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    last = runs / "09-00-00" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not last.exists():
        time.sleep(0.05)
    time.sleep(0.5)  # a few more epochs
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-3000:]  # 128 + SIGTERM: a scheduler sees a stopped job, not a finished one
    assert "Stopped by SIGTERM" in stderr and "resume with ckpt_path=last" in stderr
    on_exception = runs / "09-00-00" / "checkpoints" / "on_exception.ckpt"
    assert on_exception.is_file(), stderr[-3000:]
    saved = torch.load(on_exception, weights_only=True)
    assert saved["epoch"] >= torch.load(last, weights_only=True)["epoch"]
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF

    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={runs / '10-00-00'}", "ckpt_path=last", *FAST])
    assert resolve_ckpt_path(cfg) == str(on_exception)  # written after last.ckpt: the newest


@pytest.mark.parametrize("name", ["last.ckpt", "on_exception.ckpt", "hpc_ckpt_3.ckpt"])
def test_ckpt_path_last_takes_the_newest_of_every_kind(make_cfg, tmp_path, name):
    runs = tmp_path / "outputs" / "2026-12-01"
    run(make_cfg(*FAST, "trainer.max_epochs=1", output_dir=runs / "09-00-00"))
    source = runs / "09-00-00" / "checkpoints" / "last.ckpt"
    newer = (
        runs / "09-30-00" / ("" if name.startswith("hpc") else "checkpoints") / name
    )  # Lightning's hpc folder: the run dir
    newer.parent.mkdir(parents=True)
    newer.write_bytes(source.read_bytes())
    os.utime(newer, (time.time() + 10, time.time() + 10))
    assert resolve_ckpt_path(make_cfg("ckpt_path=last", output_dir=runs / "10-00-00")) == str(newer)


@pytest.mark.parametrize(
    "variables",
    [
        {},  # a single process
        {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"},  # torchrun's rank 0 (it sets LOCAL_RANK on rank 0 too)
        {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"},  # torchrun's rank 1: every rank fails alike
        {"LOCAL_RANK": "1", "NODE_RANK": "0"},  # a rank Lightning's launcher started
        {"SLURM_PROCID": "1", "SLURM_NTASKS": "2"},  # srun's task 1 (srun does not stop the others)
    ],
)
def test_a_used_run_directory_is_refused_on_every_rank_whoever_launched_it(make_cfg, monkeypatch, variables):
    """No checkpoint can exist in a fresh run's directory before all its ranks joined, so every rank checks:
    a rank that skipped the check would wait in the rendezvous for a rank 0 that stopped."""
    run(make_cfg(*FAST, "trainer.max_epochs=1"))
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=r"already holds checkpoints of another run"):
        validate(make_cfg(*FAST))


@pytest.mark.parametrize("seed", ["-1", "4294967296", "1.5", "true"])
def test_a_seed_outside_numpys_range_names_seed(make_cfg, seed):
    got = {"true": "True"}.get(seed, seed)  # the value as Python prints it
    with pytest.raises(ConfigError, match=rf"^seed must be an integer in \[0, 4294967295\], got {got}$"):
        validate(make_cfg(f"seed={seed}"))
    validate(make_cfg("seed=4294967295"))


@pytest.mark.subprocess
def test_slurm_auto_requeue_writes_an_hpc_checkpoint_that_ckpt_path_last_resumes(tmp_path):
    """A simulated SLURM job (its variables set by hand, a stand-in scontrol on PATH): SIGUSR1 makes
    Lightning's SLURMEnvironment write hpc_ckpt_1.ckpt and requeue the job; SIGTERM then stops it (143).
    The requeued run resumes with ckpt_path=last from the newest checkpoint."""
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "scontrol_calls.txt"
    (fake / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (fake / "scontrol").chmod(0o755)
    runs = tmp_path / "outputs" / "2026-12-01"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{fake}:{os.environ['PATH']}",
        "SLURM_NTASKS": "1",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "train",
        "SLURM_NODELIST": "localhost",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }
    env.pop("HYDRA_FULL_ERROR", None)
    first = runs / "09-00-00"
    proc = subprocess.Popen(
        [sys.executable, "train.py", *FAST, "env.return_threshold=null", "trainer.max_epochs=100000",
         f"hydra.run.dir={first}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (first / "checkpoints" / "last.ckpt").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    while time.monotonic() < deadline and not (first / "hpc_ckpt_1.ckpt").exists():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-3000:]
    assert (first / "hpc_ckpt_1.ckpt").is_file() and calls.read_text().split() == ["requeue", "4242"], stderr[-3000:]
    hpc = torch.load(first / "hpc_ckpt_1.ckpt", weights_only=True)
    assert hpc["hyper_parameters"]["config"]["env"]["id"] == "CartPole-v1"
    resumed = subprocess.run(
        [sys.executable, "train.py", *FAST, "env.return_threshold=null", "ckpt_path=last",
         f"trainer.max_epochs={torch.load(first / 'checkpoints' / 'on_exception.ckpt', weights_only=True)['epoch'] + 2}",
         f"hydra.run.dir={runs / '10-00-00'}"],
        cwd=ROOT, env={k: v for k, v in env.items() if not k.startswith("SLURM")}, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "ckpt_path=last: resuming from" in resumed.stderr + resumed.stdout


KILL_MID_WRITE = r"""
import os, signal, sys
import fsspec.implementations.local as local

writes = {"n": 0}
original = local.LocalFileOpener.write

def write(self, data):  # the third checkpoint write dies half way: kill -9 while a checkpoint is written
    if str(self.path).endswith("last.ckpt"):
        writes["n"] += 1
        if writes["n"] == 3:
            original(self, data[: len(data) // 2])
            self.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    return original(self, data)

local.LocalFileOpener.write = write
sys.argv = ["train.py", *sys.argv[1:]]
from pg_lightning.cli.train import main
main()
"""


@pytest.mark.subprocess
def test_kill_9_while_a_checkpoint_is_written_leaves_the_previous_one_loadable(tmp_path):
    """Lightning writes checkpoints through an fsspec transaction (a temporary file, then a rename):
    a process killed in the middle of the write leaves the previous last.ckpt whole."""
    from pg_lightning.cli.checkpoints import load_checkpoint

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_MID_WRITE, *FAST, "env.return_threshold=null", "trainer.max_epochs=10",
         "~callbacks.best_checkpoint", "callbacks.last_checkpoint.every_n_seconds=0", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint["epoch"] == 1  # the second write, whole; the third died half written
    assert not (tmp_path / "checkpoints" / "on_exception.ckpt").exists()  # kill -9: no handler ran


def _best_state(ckpt):
    callbacks = torch.load(ckpt, weights_only=True)["callbacks"]
    (state,) = [
        v
        for k, v in callbacks.items()
        if k.startswith("BestCheckpoint") and "'monitor': 'rollout/return_mean_100'" in k
    ]
    return state


def test_best_ckpt_after_a_resume_is_the_best_of_the_whole_run(make_cfg, tmp_path):
    """Resumed into a new run directory, best.ckpt is written only by an epoch that beats every earlier one."""
    import csv

    from pg_lightning.lightning.callbacks import BestCheckpoint

    every_epoch = ["callbacks.last_checkpoint.every_n_seconds=0", "callbacks.best_checkpoint.every_n_seconds=0"]
    run(make_cfg(*FAST, *every_epoch, "env.return_threshold=null", "trainer.max_epochs=6", output_dir=tmp_path / "a"))
    # the resumed part with a step size that wrecks the policy: its epochs do worse than the earlier best
    run(
        make_cfg(
            *FAST,
            *every_epoch,
            "env.return_threshold=null",
            "trainer.max_epochs=9",
            "model.optimizer.lr=1.0",
            f"ckpt_path={tmp_path / 'a' / 'checkpoints' / 'last.ckpt'}",
            output_dir=tmp_path / "b",
        )
    )
    scores = [
        float(r["rollout/return_mean_100"])
        for d in "ab"
        for r in csv.DictReader(open(tmp_path / d / "csv" / "metrics.csv"))
    ]
    state = _best_state(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert float(state["best_model_score"]) == pytest.approx(max(scores), rel=1e-6)
    assert max(scores[6:]) < max(scores[:6])  # (so Lightning's ModelCheckpoint would write a worse best.ckpt)
    assert not (tmp_path / "b" / "checkpoints" / "best.ckpt").exists()
    assert state["best_model_path"] == str(tmp_path / "a" / "checkpoints" / "best.ckpt")
    # and the rule itself, on both sides of the restored score
    callback = BestCheckpoint(dirpath=str(tmp_path / "c"), monitor="m", mode="max", save_top_k=1)
    callback.load_state_dict(
        {"dirpath": str(tmp_path / "a"), "best_model_score": torch.tensor(100.0), "best_model_path": "a/best.ckpt"}
    )

    class Strategy:
        reduce_boolean_decision = staticmethod(lambda decision: decision)

    trainer = type("T", (), {"strategy": Strategy()})()
    assert not callback.check_monitor_top_k(trainer, torch.tensor(50.0))
    assert callback.check_monitor_top_k(trainer, torch.tensor(150.0))


def _ddp_run_stopped_by_sigterm(tmp_path: Path, send_sigterm) -> None:
    """A 2-rank gloo run; once its first last.ckpt exists, ``send_sigterm(rank 0's Popen)``. It must exit 143 with
    on_exception.ckpt within 60 s (a hang of the ranks is killed)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen(
        [sys.executable, "train.py", "trainer=ddp_cpu", "trainer.devices=2", "data.episodes_per_epoch=2",
         "data.num_envs=1", "callbacks.progress_bar.refresh_rate=0", "env.return_threshold=null",
         "trainer.max_epochs=100000", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    last = tmp_path / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not last.exists():
        time.sleep(0.02)
    try:
        send_sigterm(proc)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            subprocess.run(["pkill", "-9", "-f", str(tmp_path)], check=False)
    assert proc.returncode == 143, stderr[-3000:]
    assert (tmp_path / "checkpoints" / "on_exception.ckpt").is_file()


@pytest.mark.ddp
@pytest.mark.parametrize("delay", [0.0, 0.37, 0.81])
def test_sigterm_under_ddp_stops_every_rank_with_a_checkpoint(tmp_path, delay):
    """2 gloo ranks, SIGTERM to rank 0 at some moment of an epoch (Lightning's own handler broadcast
    from inside the signal handler and could meet another collective: both ranks hung)."""

    def to_rank_0(proc: subprocess.Popen) -> None:
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)

    _ddp_run_stopped_by_sigterm(tmp_path, to_rank_0)


@pytest.mark.ddp
def test_sigterm_to_one_rank_only_stops_every_rank_together(tmp_path):
    """SIGTERM to rank 1 alone (a scheduler signalling every process, one of them first): Lightning checks
    ``received_sigterm`` locally at the end of each batch and epoch, so a rank that stops there alone leaves
    the other in the next collective and both hang. The ranks agree on the signal at each epoch start."""

    def to_rank_1_alone(proc: subprocess.Popen) -> None:
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 1, children  # rank 1, launched by rank 0
        os.kill(int(children[0]), signal.SIGTERM)

    _ddp_run_stopped_by_sigterm(tmp_path, to_rank_1_alone)


def test_best_checkpoint_restores_the_state_lightnings_modelcheckpoint_saved(tmp_path):
    """Checkpoints written while best_checkpoint was Lightning's ModelCheckpoint keep their state key."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from pg_lightning.lightning.callbacks import BestCheckpoint

    kwargs = {"dirpath": str(tmp_path), "filename": "best", "monitor": "rollout/return_mean_100", "mode": "max"}
    assert BestCheckpoint(**kwargs)._legacy_state_key == ModelCheckpoint(**kwargs).state_key
    assert BestCheckpoint(**kwargs).state_key != ModelCheckpoint(**kwargs).state_key


def test_a_precision_that_casts_the_weights_names_the_key(make_cfg):
    """The collector feeds float32 observations: 64 or 16-true would fail at the first collection."""
    for value in ("64", "16-true", "bf16-true"):
        with pytest.raises(ConfigError, match=rf"^trainer.precision={value}: Lightning casts the weights to torch"):
            validate(make_cfg(f"trainer.precision={value}"))
    validate(make_cfg("trainer.precision=bf16-mixed"))


def test_slurm_sigusr1_is_acted_on_at_the_next_epoch_start_not_inside_the_handler():
    """Lightning's requeue handler writes a checkpoint; run from the signal handler it could nest in a
    checkpoint write in progress (fsspec's one transaction: the run crashed). It now runs at the epoch start."""
    from pg_lightning.lightning.signals import DeferredSignals

    calls = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
    previous_sigterm = signal.getsignal(signal.SIGTERM)
    signals = None
    try:
        trainer = type("T", (), {"_signal_connector": type("C", (), {"received_sigterm": False})()})()
        signals = DeferredSignals(ddp=False)
        signals.install(trainer)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        assert calls == [] and signals.pending_sigusr1  # recorded, not acted on
        signals.at_epoch_start(trainer)
        assert calls == [signal.SIGUSR1] and not signals.pending_sigusr1
        assert not trainer._signal_connector.received_sigterm
        signals.at_epoch_start(trainer)
        assert calls == [signal.SIGUSR1]  # once per signal
    finally:
        if signals is not None:
            signals.uninstall()
        signal.signal(signal.SIGUSR1, previous)
        signal.signal(signal.SIGTERM, previous_sigterm)


class _Clock:
    """``time.monotonic`` of the checkpoint callbacks: 10 s per epoch (`_EpochClock` moves it)."""

    now = 0.0

    def __call__(self) -> float:
        return self.now


class _EpochClock(pl.Callback):
    """Each epoch takes 10 s on ``clock``; records which epochs' ends wrote last.ckpt (checkpoint callbacks run
    after this one: their write of epoch e is seen at the start of epoch e + 1, or at the end of the fit)."""

    def __init__(self, clock: _Clock, checkpoint) -> None:
        self.clock, self.checkpoint, self.written, self.seen = clock, checkpoint, [], 0  # 0: nothing saved yet

    def _record(self, trainer) -> None:
        if self.checkpoint._last_global_step_saved != self.seen:
            self.seen = self.checkpoint._last_global_step_saved
            self.written.append(self.seen - 1)  # one update per epoch: the step saved is epoch + 1

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._record(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.clock.now += 10.0

    def on_train_end(self, trainer, pl_module) -> None:
        self._record(trainer)


@pytest.mark.parametrize(
    ("every_n_seconds", "max_epochs", "early_stop_at", "written"),
    [
        (25.0, 11, None, [0, 3, 6, 9, 10]),  # the first, then the first epoch end >= 25 s after a write, the last
        (0.0, 4, None, [0, 1, 2, 3]),  # 0: every epoch
        (1000.0, 6, None, [0, 5]),  # the first and the last
        (25.0, 11, 4, [0, 3, 4]),  # a stop (EarlyStopping, a signal) writes the epoch it stops after
    ],
)
def test_timed_checkpoint_writes_the_first_epoch_then_by_time_and_the_last(
    tmp_path, monkeypatch, every_n_seconds, max_epochs, early_stop_at, written
):
    """Epochs of 10 s (a fake clock): which epochs' ends write last.ckpt. So a kill -9 loses at most
    every_n_seconds plus one epoch (the write of epoch 3 above comes 30 s after that of epoch 0)."""
    from pg_lightning.lightning import callbacks
    from pg_lightning.lightning.callbacks import TimedCheckpoint
    from tests.test_module import small_module_and_data

    clock = _Clock()
    monkeypatch.setattr(callbacks.time, "monotonic", clock)
    checkpoint = TimedCheckpoint(dirpath=tmp_path, filename="last", every_n_seconds=every_n_seconds)
    spy = _EpochClock(clock, checkpoint)

    class StopAt(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if trainer.current_epoch == early_stop_at:
                trainer.should_stop = True

    module, data = small_module_and_data(episodes=2)
    trainer = pl.Trainer(
        max_epochs=max_epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[spy, StopAt(), checkpoint],
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    assert spy.written == written
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == written[-1]


@pytest.mark.subprocess
def test_kill_9_loses_at_most_every_n_seconds_plus_an_epoch(tmp_path):
    """The guarantee, on a real run killed with SIGKILL: last.ckpt is never older than every_n_seconds plus one
    epoch (here 1 s and epochs of a few ms; 1 s of slack for a loaded machine's scheduling)."""
    every = 1.0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "train.py", *FAST, "env.return_threshold=null", "trainer.max_epochs=100000",
         f"callbacks.last_checkpoint.every_n_seconds={every}", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    last = tmp_path / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 120
        while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert last.exists(), "no last.ckpt after the first epoch"
        first = last.stat().st_mtime
        time.sleep(3.3)  # several intervals: a later write must have replaced the first one
        proc.kill()
        killed_at = time.time()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    age = killed_at - last.stat().st_mtime
    assert last.stat().st_mtime > first, "last.ckpt was not written again after the first epoch"
    assert age <= every + 1.0, f"last.ckpt was {age:.2f} s old when the run was killed"
