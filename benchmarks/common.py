"""What every benchmark prints about the machine it ran on."""

from __future__ import annotations

import contextlib
import os
import platform

import pytorch_lightning as pl
import torch


def machine() -> str:
    """One line: CPU model, cores, torch version and threads, load average."""
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    load = ""
    with contextlib.suppress(OSError), open("/proc/loadavg") as f:
        load = f", load average {' '.join(f.read().split()[:3])}"
    return (
        f"machine: {model}, {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} torch "
        f"thread(s); pytorch-lightning {pl.__version__}; python {platform.python_version()}{load}"
    )


class _Tee:
    def __init__(self, stream) -> None:
        self.stream, self.parts = stream, []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def markdown_capture(path, script: str, argv: list[str]):
    """Print as usual and, with a ``path``, also write what is printed inside to that file, under the command."""
    import sys
    from pathlib import Path

    if path is None:
        yield
        return
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(f"`python {script} {' '.join(argv)}`\n\n" + "".join(tee.parts).strip() + "\n")
