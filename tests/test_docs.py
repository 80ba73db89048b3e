"""The docs stay true to the code: the pages generated from it are current."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
STALE = "{page} is stale: run `python scripts/docs_pages.py` (or `make docs-pages`) and commit it"


def docs_pages() -> ModuleType:
    """scripts/docs_pages.py, loaded from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("docs_pages", ROOT / "scripts" / "docs_pages.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_reference_is_current() -> None:
    pages = docs_pages()
    page = pages.CLI_PAGE
    assert page.read_text(encoding="utf-8") == pages.generated(page), STALE.format(
        page="docs/cli.md"
    )


def test_the_architecture_page_is_current() -> None:
    pages = docs_pages()
    page = pages.ARCHITECTURE_PAGE
    assert page.read_text(encoding="utf-8") == pages.generated(page), STALE.format(
        page="docs/architecture.md"
    )


def test_the_command_reference_shows_what_help_prints_in_a_terminal() -> None:
    """The page's text is what a user sees: `digest ... --help` run as a real process."""
    helps = dict(docs_pages().command_helps())
    for path in (("digest",), ("digest", "subscribers", "forget"), ("digest", "serve")):
        shown = subprocess.run(
            [sys.executable, "-m", "digest", *path[1:], "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "80"},
            timeout=60,
            check=True,
        )
        assert shown.stdout == helps[path] + "\n", " ".join(path)


def test_every_command_and_every_module_has_its_place_in_the_docs() -> None:
    pages = docs_pages()
    cli = pages.CLI_PAGE.read_text(encoding="utf-8")
    for path, _ in pages.command_helps():
        assert f"# {' '.join(path)}\n" in cli
    architecture = pages.ARCHITECTURE_PAGE.read_text(encoding="utf-8")
    for file in (ROOT / "digest").rglob("*.py"):
        parts = ("digest", *file.relative_to(ROOT / "digest").with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        assert f"| `{name}` |" in architecture, name
