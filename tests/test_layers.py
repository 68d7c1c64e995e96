"""The package's layers import down only, and every module is in the API reference."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_the_layers_import_down_only():
    """core imports neither Lightning nor gymnasium; envs not Lightning; nothing imports the CLI (import-linter)."""
    pytest.importorskip("importlinter")
    # the interpreter's own import-linter (its console script need not be on PATH: `.venv/bin/pytest` unactivated)
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    lint = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]


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
