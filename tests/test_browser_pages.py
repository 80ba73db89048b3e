"""A reader's whole journey through the public pages in Chromium, every page checked by axe-core.

The reader signs up from the form, confirms from the email the real SMTP server received,
follows "Read the latest issue", changes what they receive, unsubscribes and subscribes again;
then unsubscribes from an issue's one-click link. Every page on the way has 0 axe-core
violations in light and in dark (the colour scheme emulated), and carries the newsletter's
language and landmarks.
"""

from __future__ import annotations

from typing import Any

import pytest

from digest import store
from digest.config.schema import load_config
from tests.conftest import Project
from tests.support.readerpages import READER, link_in, mail_to, reader_pages_project
from tests.support.serving import serving
from tests.test_browser_preview import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not at /usr/bin/chromium; `make browser` installs it with apt-get",
)


class Checker:
    """Runs axe-core on the page as it is now, in light and in dark, and keeps what it found."""

    def __init__(self, page: Any) -> None:
        axe = pytest.importorskip(
            "axe_playwright_python.sync_playwright",
            reason="axe-playwright-python is not installed (pip install -e '.[dev]')",
        )
        self.axe = axe.Axe()
        self.page = page
        self.checked: list[str] = []
        self.problems: list[str] = []

    def check(self, name: str) -> None:
        """axe-core's violations on the current page, in both colour schemes."""
        page = self.page
        assert page.locator("html").get_attribute("lang") == "en-GB", name
        assert page.locator("header").count() >= 1 and page.locator("main").count() == 1, name
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            results = self.axe.run(page)
            for violation in results.response["violations"]:
                targets = [node["target"] for node in violation["nodes"]]
                self.problems.append(f"{name} ({scheme}): {violation['id']} at {targets}")
        page.emulate_media(color_scheme="light")
        self.checked.append(name)


def test_a_reader_signs_up_reads_changes_unsubscribes_and_comes_back(project: Project) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    expect = sync_api.expect
    port = reader_pages_project(project)
    assert project.run("send").exit_code == 0  # one issue in the archive, to ann and bob
    with (
        serving(project, "--no-preview", port=port) as served,
        sync_api.sync_playwright() as playwright,
    ):
        base = served.public
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            axe = Checker(page)

            page.goto(f"{base}/")  # the app's root leads to the archive
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "All issues of Collaborate Weekly"
            )
            axe.check("archive index")
            page.get_by_role("link", name="Feed", exact=True).click()
            expect(page.get_by_role("heading", level=1)).to_contain_text("feed reader")
            axe.check("feed page")
            page.get_by_role("link", name="Subscribe", exact=True).first.click()

            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Subscribe to Collaborate Weekly"
            )
            expect(page.get_by_text("every Monday morning")).to_be_visible()
            axe.check("sign-up form")
            page.get_by_label("Email address").fill(READER)
            page.get_by_label("Name").fill("Yara")
            page.get_by_label("From the blog").uncheck()
            page.get_by_label("Latest news").uncheck()
            page.get_by_role("button", name="Subscribe").click()
            group = page.get_by_role("group", name="What would you like to receive?")
            expect(group).to_have_attribute("aria-describedby", "sections-error")
            expect(page.get_by_label("Latest news")).to_have_attribute("aria-invalid", "true")
            expect(page.get_by_label("Email address")).not_to_have_attribute("aria-invalid", "true")
            axe.check("sign-up form with an error")
            page.get_by_label("Latest news").check()
            page.get_by_role("button", name="Subscribe").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
            axe.check("check your inbox")

            (confirmation,) = mail_to(project, READER, 1)
            page.goto(link_in(confirmation, base, "confirm"))
            axe.check("confirm")
            page.get_by_role("button", name="Confirm").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
            axe.check("subscribed")
            page.get_by_role("link", name="Read the latest issue").click()
            expect(page).to_have_url(
                f"{base}/issues/1-collaborate-weekly-3-new-posts-30-november-2026/"
            )
            axe.check("issue page")

            welcome = mail_to(project, READER, 2)[1]
            page.goto(link_in(welcome, base, "preferences"))
            expect(page.get_by_label("Latest news")).to_be_checked()
            axe.check("preferences")
            page.get_by_label("From the blog").check()
            page.get_by_role("button", name="Save").click()
            expect(page.get_by_role("status")).to_have_text("Saved.")
            axe.check("preferences saved")
            page.get_by_role("button", name="Unsubscribe from Collaborate Weekly").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
            axe.check("unsubscribed from preferences")
            page.get_by_role("button", name="Subscribe again").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed again")
            axe.check("subscribed again")

            (issue,) = project.smtp.to("ann@example.com")
            page.goto(link_in(issue, base, "unsubscribe"))
            axe.check("unsubscribe")
            page.get_by_role("button", name="Unsubscribe").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
            axe.check("unsubscribed")

            page.goto(f"{base}/no-such-page")
            expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
            axe.check("not found")
            page.goto(f"{base}/unsubscribe?token=damaged")
            axe.check("bad unsubscribe link")
            page.goto(f"{base}/approval?token=damaged")
            axe.check("bad approval link")
        finally:
            browser.close()
    assert axe.problems == [], "\n".join(axe.problems)
    assert len(axe.checked) == 17
    with store.open(load_config(project.config), read_only=True) as state:
        (yara,) = [s for s in state.signups.signups() if s.email == READER]
        assert yara.sections == ("From the blog", "Latest news") and yara.status == "confirmed"
        assert state.suppressions.suppressed() == {"ann@example.com"}
