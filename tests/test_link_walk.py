"""Every link on every public page, and in every email a reader gets on the way in, leads
somewhere: against a running `digest serve`, each same-origin link answers 200 (after
redirects). Links that leave the app are listed with why they are not followed."""

from __future__ import annotations

import html
import re
from collections import deque
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx

from tests.conftest import Project
from tests.support.readerpages import READER, link_in, mail_to, reader_pages_project
from tests.support.serving import serving

HREF = re.compile(r"""<(?:a|link)\b[^>]*?\bhref="([^"]*)"|<img\b[^>]*?\bsrc="([^"]*)\"""")
SRCDOC = re.compile(r'\bsrcdoc="([^"]*)"')
# What leaves the app, and why it is not followed here.
NOT_FOLLOWED = {
    "mailto": "a mail client's link (the email's mailto: unsubscribe): no page to fetch",
    "data": "the favicon placeholder (data:,), inline in the page",
    "https://example.org": "a post in the issue, or the privacy notice, on another site",
}


def links_of(document: str, base: str) -> list[str]:
    """Every link and image address in a page or email, absolute; the email shown inside an
    issue page's frame (its srcdoc) included."""
    found: list[str] = []
    for framed in SRCDOC.findall(document):
        found += links_of(html.unescape(framed), base)
    for href, src in HREF.findall(document):
        link = html.unescape(href or src)
        if link:
            found.append(urldefrag(urljoin(base, link)).url)
    return found


def why_not_followed(link: str, origin: str) -> str | None:
    """Why a link is not followed, or None to follow it."""
    if link.startswith(origin + "/") or link == origin:
        return None
    scheme = urlsplit(link).scheme
    if scheme in ("mailto", "data"):
        return NOT_FOLLOWED[scheme]
    host = f"{scheme}://{urlsplit(link).netloc}"
    if host in NOT_FOLLOWED:
        return NOT_FOLLOWED[host]
    return f"unexpected external link {link}"


def test_every_link_on_the_public_pages_and_in_the_emails_answers_200(
    project: Project,
) -> None:
    port = reader_pages_project(project)
    assert project.run("send").exit_code == 0
    with serving(project, "--no-preview", port=port) as served:
        origin = served.public
        client = httpx.Client(timeout=10, follow_redirects=True)
        # A reader's journey in: the sign-up form, its answer, confirming, the welcome.
        answer = client.post(
            f"{origin}/subscribe",
            data={"email": READER, "name": "Yara", "website": "", "section": "Latest news"},
        )
        assert answer.status_code == 200
        (confirmation,) = mail_to(project, READER, 1)
        confirm = link_in(confirmation, origin, "confirm")
        subscribed = client.post(confirm)
        welcome = mail_to(project, READER, 2)[1]
        preferences = link_in(welcome, origin, "preferences")
        unsubscribed = client.post(preferences, data={"action": "unsubscribe"})
        (issue,) = project.smtp.to("ann@example.com")

        # Pages reached only by a POST are walked from their links; the rest are fetched.
        queue: deque[tuple[str, str]] = deque()
        for where, document in (
            ("the check-your-inbox page", answer.text),
            ("the subscribed page", subscribed.text),
            ("the unsubscribed page", unsubscribed.text),
            ("the confirmation email (HTML)", confirmation.part("html")),
            ("the welcome email (HTML)", welcome.part("html")),
            ("the issue email (HTML)", issue.part("html")),
        ):
            queue.extend((link, where) for link in links_of(document, origin))
        for message, where in ((confirmation, "confirmation"), (welcome, "welcome")):
            text_links = re.findall(r"https?://[^\s<>\"]+", message.part("plain"))
            queue.extend((link, f"the {where} email (text)") for link in text_links)
        queue.extend(
            (link, "the start")
            for link in (
                f"{origin}/",
                f"{origin}/subscribe",
                f"{origin}/resubscribe?token=damaged",  # a designed 400, not walked further
                link_in(issue, origin, "unsubscribe"),
            )
        )

        seen: set[str] = set()
        skipped: dict[str, str] = {}
        broken: list[str] = []
        while queue:
            link, where = queue.popleft()
            why = why_not_followed(link, origin)
            if why is not None:
                skipped[link] = why
                continue
            if link in seen:
                continue
            seen.add(link)
            page = client.get(link)
            if link.endswith("token=damaged"):
                assert page.status_code == 400
                continue
            if page.status_code != 200:
                broken.append(f"{link} (from {where}): {page.status_code}")
                continue
            if page.headers["content-type"].startswith("text/html"):
                queue.extend((found, link) for found in links_of(page.text, str(page.url)))
        client.close()

    assert broken == [], "\n".join(broken)
    assert not [why for why in skipped.values() if why.startswith("unexpected")], skipped
    # The walk reached every kind of public page.
    paths = {urlsplit(link).path for link in seen}
    for path in ("/", "/subscribe", "/archive/", "/feed/", "/feed.atom", "/preferences"):
        assert path in paths, path
    assert any(path.startswith("/issues/1-") for path in paths)
    assert set(skipped.values()) <= set(NOT_FOLLOWED.values())
