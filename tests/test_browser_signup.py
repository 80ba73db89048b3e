"""A reader signs up, confirms and chooses a section in Chromium; the next issue follows it."""

from __future__ import annotations

import itertools
import re
import time

import pytest

from tests.conftest import Project, post
from tests.support.serving import serving
from tests.support.smtpserver import Received
from tests.test_browser_preview import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not at /usr/bin/chromium; `make browser` installs it with apt-get",
)

READER = "yara@example.net"


def mail_to(project: Project, address: str, count: int) -> list[Received]:
    deadline = time.monotonic() + 20
    while len(project.smtp.to(address)) < count:
        assert time.monotonic() < deadline, f"mail {count} for {address} did not arrive"
        time.sleep(0.05)
    return project.smtp.to(address)


def link(message: Received, path: str, base: str) -> str:
    found = re.search(rf"https://example\.org/{path}\?token=\S+", message.part("plain"))
    assert found, f"no {path} link in the message"
    return found.group(0).replace("https://example.org", base)


def sections_in(message: Received) -> list[str]:
    lines = message.part("plain").splitlines()
    return [line for line, under in itertools.pairwise(lines) if line and set(under) == {"-"}]


def test_sign_up_confirm_and_choose_a_section_in_a_browser(project: Project) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    expect = sync_api.expect
    project.add_newsletter_lines("  choosable_sections: true\n")
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text + "signup:\n  enabled: true\n", encoding="utf-8")
    with (
        serving(project, "--no-preview") as served,
        sync_api.sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{served.public}/subscribe")
            page.get_by_label("Email address").fill(READER)
            page.get_by_label("Name").fill("Yara")
            page.get_by_role("button", name="Subscribe").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")

            (confirmation,) = mail_to(project, READER, 1)
            page.goto(link(confirmation, "confirm", served.public))
            page.get_by_role("button", name="Confirm").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("You are subscribed")
            mail_to(project, READER, 2)  # the welcome email

            assert project.run("send").exit_code == 0
            first_issue = mail_to(project, READER, 3)[2]
            assert sections_in(first_issue) == ["From the blog", "Latest news"]

            page.goto(link(first_issue, "preferences", served.public))
            page.get_by_label("From the blog").uncheck()
            page.get_by_role("button", name="Save").click()
            expect(page.get_by_role("status")).to_have_text("Saved.")
            expect(page.get_by_label("Latest news")).to_be_checked()
        finally:
            browser.close()
    project.serve("/blog.xml", [post(20, 0.2), post(21, 0.3)])
    project.serve("/news.xml", [post(30, 0.2, site="https://example.org/news")])
    later = project.now.replace(hour=20)
    assert project.run("send", now=later).exit_code == 0
    assert sections_in(mail_to(project, READER, 4)[3]) == ["Latest news"]
    assert sections_in(project.smtp.to("ann@example.com")[-1]) == ["From the blog", "Latest news"]
