"""The `digest` entry point: the installed script and `python -m digest` run the same command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_python_dash_m_and_the_installed_script_run_the_same_command() -> None:
    script = Path(sys.executable).with_name("digest")
    for command in ([sys.executable, "-m", "digest", "--help"], [str(script), "--help"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Usage: digest [OPTIONS] COMMAND")
