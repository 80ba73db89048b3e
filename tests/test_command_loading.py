"""Each command loads only the code it needs: `digest history` reads the state, so it must not
pay for loading the fetching, rendering and sending code that `preview` and `send` use."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import Project

LIST_LOADED = """
import os, sys
from digest.cli.main import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    wanted = os.environ["WATCHED_MODULES"].split(",")
    print("loaded:", ",".join(sorted(name for name in wanted if name in sys.modules)))
"""
FETCHING_RENDERING_SENDING = (
    "httpx",
    "feedparser",
    "premailer",
    "jinja2",
    "digest.feeds.collect",
    "digest.mail.smtp",
    "digest.run.preview",
    "digest.cli.issue",
)


def loaded_by(project: Project, *arguments: str) -> tuple[str, list[str]]:
    """Run `digest ARGUMENTS` in a fresh interpreter; which of the watched modules it loaded."""
    ran = subprocess.run(
        [sys.executable, "-c", LIST_LOADED, "--config", str(project.config), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "WATCHED_MODULES": ",".join(FETCHING_RENDERING_SENDING)},
    )
    last = (ran.stdout.strip().splitlines() or [""])[-1]
    assert last.startswith("loaded:"), ran.stdout + ran.stderr
    names = last.removeprefix("loaded:").strip()
    return ran.stdout + ran.stderr, names.split(",") if names else []


def test_history_loads_no_fetching_rendering_or_sending_code(project: Project) -> None:
    output, loaded = loaded_by(project, "history")
    assert loaded == [], output


def test_preview_still_loads_what_it_needs(project: Project) -> None:
    output, loaded = loaded_by(project, "preview", "--out", str(project.root / "preview.html"))
    assert "digest.run.preview" in loaded and "digest.cli.issue" in loaded, output
