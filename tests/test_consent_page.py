"""Each sign-up's consent record holds the page it came from: the built-in form's own page and a
`digest snippet --page` form on the organisation's site, submitted in Chromium and read back with
`digest subscribers export`; the page is only ever a bounded http(s) URL kept as data."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from digest.readers.signup import MAX_PAGE, recorded_page
from tests.conftest import Project
from tests.support.serving import Serving, serving
from tests.test_browser_preview import CHROMIUM, CHROMIUM_ARGS
from tests.test_signup import enable_signup, sign_up, wait_for_mail


def consent_pages(project: Project, address: str) -> dict[str, str]:
    """The consent record's page for each event, from `digest subscribers export`."""
    result = project.run_process("subscribers", "export")
    assert result.returncode == 0, result.stderr
    people: list[dict[str, Any]] = json.loads(result.stdout)
    (person,) = [p for p in people if p["email"] == address]
    return {event["event"]: event["page"] for event in person["consent"]}


def organisation_page(project: Project, served: Serving, path: str, *options: str) -> str:
    """A page of the organisation's own site (another origin) with `digest snippet`'s form
    pasted in, posting to the running `digest serve`; its URL."""
    result = project.run("snippet", *options)
    assert result.exit_code == 0, result.output
    form = result.output.replace("https://example.org/subscribe", f"{served.public}/subscribe")
    html = f"<!doctype html><html lang=en><title>Join us</title><h1>Join us</h1>{form}</html>"
    return project.feeds.add(path, html, headers={"Content-Type": "text/html; charset=utf-8"})


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not at /usr/bin/chromium; `make browser` installs it with apt-get",
)
def test_the_page_of_the_built_in_form_and_of_a_snippet_form_is_on_record(
    project: Project,
) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    enable_signup(project)
    with serving(project, "--no-preview") as served, sync_api.sync_playwright() as playwright:
        joined = organisation_page(
            project, served, "/join.html", "--page", project.feeds.url("/join.html")
        )
        plain = organisation_page(project, served, "/about/plain.html")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for url, address in (
                (f"{served.public}/subscribe", "built.in@example.net"),
                (joined, "snippet@example.net"),
                (plain, "plain.snippet@example.net"),
            ):
                page = browser.new_page()
                page.goto(url)
                page.get_by_label("Email address").fill(address)
                page.get_by_role("button", name="Subscribe").click()
                sync_api.expect(page.locator("body")).to_contain_text("Check your inbox")
                page.close()
                wait_for_mail(project, address)
        finally:
            browser.close()
    assert consent_pages(project, "built.in@example.net")["submitted"] == (
        f"{served.public}/subscribe"
    )
    assert consent_pages(project, "snippet@example.net")["submitted"] == joined
    # Without --page, browsers tell another site only the origin: that much is kept.
    assert consent_pages(project, "plain.snippet@example.net")["submitted"] == (
        project.feeds.base_url + "/"
    )


def test_only_the_form_page_sends_its_address(project: Project) -> None:
    enable_signup(project)
    with serving(project, "--no-preview") as served:
        form = httpx.get(f"{served.public}/subscribe", timeout=10)
        assert form.headers["referrer-policy"] == "same-origin"
        refused = sign_up(served, "not-an-address")
        assert refused.status_code == 400 and refused.headers["referrer-policy"] == "same-origin"
        for path in ("/confirm?token=x", "/preferences?token=x", "/healthz"):
            answer = httpx.get(f"{served.public}{path}", timeout=10)
            assert answer.headers.get("referrer-policy") in (None, "no-referrer"), path


def test_a_forged_page_field_is_kept_only_as_a_bounded_http_url(project: Project) -> None:
    enable_signup(project)
    long_query = "https://org.example/join?" + "q=1&" * 200
    cases = {
        "script@example.net": ("javascript:alert(document.cookie)", ""),
        "fragment@example.net": (
            "https://user:pw@org.example/join#top",
            "https://org.example/join",
        ),
        "long@example.net": (long_query, "https://org.example/join"),
        "referer@example.net": ("data:text/html,<b>x</b>", "https://org.example/from-referer"),
    }
    with serving(project, "--no-preview") as served:
        for address, (field, _) in cases.items():
            headers = {"Referer": "https://org.example/from-referer"}
            if address != "referer@example.net":
                headers = {}
            answer = httpx.post(
                f"{served.public}/subscribe",
                data={"email": address, "website": "", "section": "Latest news", "page": field},
                headers=headers,
                timeout=10,
            )
            assert answer.status_code == 200
            wait_for_mail(project, address)
    for address, (_, kept) in cases.items():
        assert consent_pages(project, address)["submitted"] == kept, address


def test_snippet_page_must_be_an_http_address(project: Project) -> None:
    enable_signup(project)
    wrong = project.run("snippet", "--page", "ftp://org.example/join")
    assert wrong.exit_code == 1
    assert "--page must be the http(s) address of the page the form goes on" in wrong.output
    right = project.run("snippet", "--page", "https://org.example/join?x=1&y=2")
    assert right.exit_code == 0
    assert '<input type="hidden" name="page" value="https://org.example/join?x=1&amp;y=2">' in (
        right.output
    )
    assert "<script" not in right.output
    without = project.run("snippet")
    assert 'name="page"' not in without.output and "digest snippet --page" in without.output


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://Org.example/a/b?c=d", "https://Org.example/a/b?c=d"),
        ("HTTP://org.example", "http://org.example/"),
        ("https://org.example:8443/x#frag", "https://org.example:8443/x"),
        ("https://me:secret@org.example/x", "https://org.example/x"),
        ("https://org.example:port/x", ""),
        ("mailto:ann@example.org", ""),
        ("/relative/page", ""),
        ("https://org.example/a b", ""),
        ("https://org.example/\x00", ""),
        ("https://org.example/" + "a" * MAX_PAGE, ""),
        ("", ""),
    ],
)
def test_recorded_page(given: str, kept: str) -> None:
    assert recorded_page(given) == kept
    assert len(recorded_page(given)) <= MAX_PAGE
