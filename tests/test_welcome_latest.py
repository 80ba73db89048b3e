"""The welcome email's "Read the latest issue": the newest published issue's page, which a real
`digest serve` answers; the archive's index while nothing is published; no button without an
archive."""

from __future__ import annotations

import re

import httpx

from tests.conftest import Project
from tests.support.serving import Serving, serving
from tests.test_archive import ARCHIVE_URL, enable_archive, send_three
from tests.test_signup import enable_signup, link_in, sign_up, wait_for_mail


def welcome_of(project: Project, served: Serving, address: str) -> tuple[str, str]:
    """Sign `address` up and confirm it; (HTML, text) of the welcome it gets."""
    assert sign_up(served, address).status_code == 200
    (confirmation,) = wait_for_mail(project, address)
    assert httpx.post(link_in(confirmation, "confirm", served), timeout=10).status_code == 200
    welcome = wait_for_mail(project, address, 2)[1]
    assert welcome.message["Subject"] == "Welcome to Collaborate Weekly"
    return welcome.part("html"), welcome.part("plain")


def button_link(html: str) -> str:
    found = re.search(r'<a class="button-link" href="([^"]+)"[^>]*>Read the latest issue</a>', html)
    assert found, "no Read the latest issue button"
    return found.group(1).replace("&amp;", "&")


def test_the_welcome_links_the_newest_issue_and_digest_serve_answers_it(
    project: Project,
) -> None:
    enable_archive(project)
    enable_signup(project)
    send_three(project)
    with serving(project, "--no-preview") as served:
        html, text = welcome_of(project, served, "zoe@example.net")
        link = button_link(html)
        index = httpx.get(f"{served.public}/archive/", timeout=10).text
        newest = re.findall(r'<h2><a href="\.\./issues/([^"]+)/">', index)[0]
        assert newest.startswith("3-")
        assert link == f"{ARCHIVE_URL}/issues/{newest}/"
        assert f"Read the latest issue:\n{link}\n" in text.replace("\r\n", "\n")
        page = httpx.get(link.replace(ARCHIVE_URL, served.public), timeout=10)
        assert page.status_code == 200 and "<iframe" in page.text


def test_with_nothing_published_yet_the_welcome_links_the_archives_index(
    project: Project,
) -> None:
    enable_archive(project)
    enable_signup(project)
    with serving(project, "--no-preview") as served:
        html, _ = welcome_of(project, served, "zoe@example.net")
        link = button_link(html)
        assert link == f"{ARCHIVE_URL}/archive/"
        assert httpx.get(link.replace(ARCHIVE_URL, served.public), timeout=10).status_code == 200


def test_without_an_archive_the_welcome_has_no_latest_issue_button(project: Project) -> None:
    enable_signup(project)
    # An archive_url without the archive is a "view in browser" address digest does not serve.
    project.add_newsletter_lines(f"  archive_url: {ARCHIVE_URL}/\n")
    with serving(project, "--no-preview") as served:
        html, text = welcome_of(project, served, "zoe@example.net")
    assert "Read the latest issue" not in html and "latest issue" not in text
    assert 'class="button-link"' not in html
    assert "Change your name or sections, or unsubscribe" in html
