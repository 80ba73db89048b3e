"""End to end in a real browser: the live preview reloads itself when config.yaml changes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from digest.render.loader import BUNDLED_TEMPLATES
from tests.conftest import Project
from tests.support.serving import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not at /usr/bin/chromium; `make browser` installs it with apt-get",
)


@contextmanager
def preview_page(project: Project) -> Iterator[tuple[Any, Any, str]]:
    """`digest serve` and a Chromium page: (playwright's sync_api, the page, the /preview URL)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    with serving(project) as served, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            yield sync_api, page, f"{served.workbench}/preview"
        finally:
            browser.close()


def test_preview_page_updates_by_itself_when_the_title_is_edited(project: Project) -> None:
    with preview_page(project) as (sync_api, page, url):
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        body = page.locator("body")
        sync_api.expect(body).to_contain_text("Collaborate Weekly")
        sync_api.expect(body).to_contain_text("Post number 1")
        project.config.write_text(
            project.config.read_text().replace("Collaborate Weekly", "Collaborate Daily")
        )
        sync_api.expect(body).to_contain_text("Collaborate Daily", timeout=20_000)
        sync_api.expect(body).not_to_contain_text("Collaborate Weekly")
        assert errors == []


def test_preview_page_shows_a_template_error_and_recovers_after_the_fix(project: Project) -> None:
    with preview_page(project) as (sync_api, page, url):
        page.goto(url)
        body = page.locator("body")
        sync_api.expect(body).to_contain_text("Collaborate Weekly")
        folder = project.root / "templates"
        folder.mkdir()
        lines = (BUNDLED_TEMPLATES / "email.html").read_text(encoding="utf-8").splitlines()
        lines.insert(3, "{{ issue.no_such_thing }}")
        broken = folder / "email.html"
        broken.write_text("\n".join(lines) + "\n", encoding="utf-8")
        error = page.locator("#preview-error")
        sync_api.expect(error).to_contain_text(f"{broken}:4:", timeout=20_000)
        sync_api.expect(error).to_contain_text("issue.no_such_thing")
        broken.unlink()
        sync_api.expect(body).to_contain_text("Post number 1", timeout=20_000)
        sync_api.expect(page.locator("#preview-error")).to_have_count(0)
