"""The docs stay true to the code: generated pages are current, links resolve, versions agree."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import yaml

import digest
from tests.test_layers import graph

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
STALE = "{page} is stale: run `python scripts/docs_pages.py` (or `make docs-pages`) and commit it"
# [text](target) and ![alt](target), the target up to a space or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


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
    for name in graph():
        assert f"| `{name}` |" in architecture, name


def _nav_pages(entries: list[object]) -> list[str]:
    found: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                found += _nav_pages(value) if isinstance(value, list) else [str(value)]
    return found


def test_every_page_is_in_the_navigation_and_every_entry_is_a_page() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = _nav_pages(config["nav"])
    on_disk = sorted(str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md"))
    assert sorted(listed) == on_disk
    assert len(listed) == len(set(listed))


def test_links_from_the_readme_and_the_changelog_resolve() -> None:
    """GitHub shows these files outside the docs site, so mkdocs does not check their links."""
    broken = []
    for name in ("README.md", "CHANGELOG.md"):
        for target in LINK.findall((ROOT / name).read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (ROOT / target.split("#")[0]).exists():
                broken.append(f"{name}: {target}")
    assert broken == []


def test_the_readme_stays_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, "the README is the front page: put the detail in docs/"
    opening = "\n".join(lines[:10])
    assert "make demo" in opening and "make test" in opening, "the two commands come first"


def test_the_version_is_the_changelogs_latest_release() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    headings = re.findall(r"^## (.+)$", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    assert headings[0] == "Unreleased"
    latest = headings[1].split(" - ")[0]
    assert project["version"] == digest.__version__ == latest
