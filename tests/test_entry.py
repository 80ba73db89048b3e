"""The `digest` entry point: the CLI runs with the cycle collector back on, and from either name."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

import digest.cli
from digest import entry


def test_the_command_runs_with_the_collector_on_and_start_up_objects_frozen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, object] = {}

    def command(prog_name: str) -> None:
        seen.update(prog_name=prog_name, enabled=gc.isenabled(), frozen=gc.get_freeze_count())

    monkeypatch.setattr(digest.cli, "main", command)
    try:
        entry.main()
    finally:
        gc.unfreeze()
    assert seen["prog_name"] == "digest"
    assert seen["enabled"] is True
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 0


def test_an_import_that_fails_leaves_the_collector_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "digest.cli", None)
    try:
        with pytest.raises(ImportError):
            entry.main()
    finally:
        gc.unfreeze()
    assert gc.isenabled()


def test_python_dash_m_and_the_installed_script_run_the_same_command() -> None:
    script = Path(sys.executable).with_name("digest")
    for command in ([sys.executable, "-m", "digest", "--help"], [str(script), "--help"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Usage: digest [OPTIONS] COMMAND")
