"""A blocking env cannot hang a run: SIGTERM stops it within 30 s (one process, async workers, DDP), and
``data.step_timeout`` turns a blocked env call into an error naming the env copy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pg_lightning.cli.checkpoints import load_checkpoint
from pg_lightning.cli.train import run
from pg_lightning.core.errors import EnvError
from tests.conftest import ROOT

ENV = "env.id=tests.blocking_envs:Blocking-v0"
FAST = ["data.episodes_per_epoch=4", "data.num_envs=2", "env.return_threshold=null", "trainer.max_epochs=1000"]
QUIET = ["callbacks.progress_bar.refresh_rate=0"]


def _kwargs(flags: Path, epoch: int = 2, copy: int = 1, rank: int = 0) -> str:
    return f"+env.kwargs={{block_epoch:{epoch},block_copy:{copy},block_rank:{rank},flag_dir:'{flags}'}}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")  # a zombie is gone


def _env_pids(flags: Path) -> list[int]:
    return [
        int(p.name.removeprefix("pid-")) for p in flags.glob("pid-*") if int(p.name.removeprefix("pid-")) != os.getpid()
    ]


def _start(tmp_path: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen(
        [sys.executable, "train.py", ENV, *FAST, *QUIET, *overrides, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before its env blocked: {proc.stderr.read()[-3000:] if proc.stderr else ''}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _stop_and_wait(proc: subprocess.Popen, tmp_path: Path, send) -> tuple[float, str]:
    """``send(proc)``, then the seconds until the process ended and its stderr (a run still alive after 60 s is
    killed, with everything it started, and the test fails)."""
    start = time.monotonic()
    send(proc)
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        subprocess.run(["pkill", "-9", "-f", str(tmp_path)], check=False)
        pytest.fail("the run did not stop within 60 s of SIGTERM")
    return time.monotonic() - start, stderr


@pytest.mark.subprocess
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sigterm_stops_a_run_whose_env_blocks_in_step(tmp_path, mode):
    """One process: the SIGTERM handler runs while the env sleeps (the signal interrupts the sleep, or the async
    parent's wait on the worker's pipe) and stops the collection at once, naming the stuck copy. Exit 143, the
    last completed epoch's checkpoint on disk, no worker left behind."""
    flags = tmp_path / "flags"
    every_epoch = "callbacks.last_checkpoint.every_n_seconds=0"  # last.ckpt at each epoch's end (default: by time)
    proc = _start(tmp_path, _kwargs(flags), f"data.vectorization_mode={mode}", every_epoch)
    _wait_for(flags / "blocked", proc)
    seconds, stderr = _stop_and_wait(proc, tmp_path, lambda p: p.send_signal(signal.SIGTERM))
    assert proc.returncode == 143, stderr[-3000:]
    assert seconds < 30, seconds
    (line,) = [line for line in stderr.splitlines() if line.startswith("Stopped by SIGTERM")]
    assert "env copy 1 of 2 of 'Blocking-v0' (" in line, line
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["epoch"] == 1  # epochs 0 and 1 completed
    time.sleep(1)
    assert not [pid for pid in _env_pids(flags) if _alive(pid)]  # the async workers are gone too


@pytest.mark.ddp
def test_sigterm_stops_a_ddp_run_whose_env_blocks_on_one_rank(tmp_path):
    """Rank 1's env blocks; rank 0 waits for it in a collective, where no Python signal handler can run. Rank 0's
    monitor thread (woken through the signal's wakeup fd) forwards SIGTERM to rank 1, whose monitor sees its main
    thread still in the same env step 3 s later: it prints the stuck copy and exits; rank 0 follows, exit 143."""
    flags = tmp_path / "flags"
    proc = _start(
        tmp_path, _kwargs(flags, copy=0, rank=1), "trainer=ddp_cpu", "trainer.devices=2", "data.num_envs=1",
        "data.episodes_per_epoch=2",
    )  # fmt: skip
    _wait_for(flags / "blocked", proc)
    seconds, stderr = _stop_and_wait(proc, tmp_path, lambda p: p.send_signal(signal.SIGTERM))
    assert proc.returncode == 143, stderr[-3000:]
    assert seconds < 30, (seconds, stderr[-3000:])
    assert "rank 1: env copy 0 of 1 of 'Blocking-v0' (step) did not return" in stderr, stderr[-3000:]
    time.sleep(1)
    assert not [pid for pid in _env_pids(flags) if _alive(pid)]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_step_timeout_stops_a_blocked_env_naming_the_copy(make_cfg, tmp_path, mode):
    """``data.step_timeout``: a step that has not returned after 1 s raises an EnvError naming the copy, in the
    main thread (SIGALRM interrupts the sleep, or the wait on the worker's pipe); the stuck worker is stopped."""
    flags = tmp_path / "flags"
    cfg = make_cfg(ENV, *FAST, *QUIET, _kwargs(flags, epoch=1), "data.step_timeout=1",
                   f"data.vectorization_mode={mode}", output_dir=tmp_path / "run")  # fmt: skip
    start = time.monotonic()
    with pytest.raises(EnvError, match=r"env copy 1 of 2 of 'Blocking-v0' \(.*\) did not "
                       r"return within data.step_timeout=1 s"):  # fmt: skip
        run(cfg)
    assert time.monotonic() - start < 30
    time.sleep(1)
    assert not [pid for pid in _env_pids(flags) if _alive(pid)]


@pytest.mark.ddp
def test_step_timeout_under_ddp_stops_every_rank(tmp_path):
    """Under DDP the watchdog stops its rank at once (an exception would meet the other rank in another
    collective); the other rank fails on the lost peer. Both end within seconds, with the line naming the copy."""
    flags = tmp_path / "flags"
    proc = _start(
        tmp_path, _kwargs(flags, epoch=1, copy=0, rank=1), "trainer=ddp_cpu", "trainer.devices=2",
        "data.num_envs=1", "data.episodes_per_epoch=2", "data.step_timeout=2",
    )  # fmt: skip
    _wait_for(flags / "blocked", proc)
    seconds, stderr = _stop_and_wait(proc, tmp_path, lambda p: None)
    assert proc.returncode not in (0, None), stderr[-3000:]
    assert seconds < 30, (seconds, stderr[-3000:])
    assert "rank 1: env copy 0 of 1 of 'Blocking-v0' (step) did not return within data.step_timeout=2 s" in stderr, (
        stderr[-3000:]
    )


def test_a_fit_leaves_no_signal_machinery_behind(make_cfg, tmp_path):
    """run() adds DeferredSignals for the fit only: afterwards the SIGTERM handler and the wakeup fd are what they
    were, and the monitor thread is gone (a notebook or a Hydra multirun runs many fits in one process)."""
    import signal
    import threading

    before = signal.getsignal(signal.SIGTERM)
    for i in range(2):
        run(make_cfg(*FAST, *QUIET, "trainer.max_epochs=1", output_dir=tmp_path / str(i)))
    time.sleep(0.2)
    assert not [t for t in threading.enumerate() if t.name == "pg_lightning-sigterm-monitor"]
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.set_wakeup_fd(-1) == -1
