"""Click counts end to end: a real send with tracking.clicks on, the links in the messages
followed through the real `digest serve` process, and `digest clicks` reading the counts."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx

from digest.core.clicks import redirect_path
from tests.conftest import NOW, Project
from tests.support import statefile
from tests.support.serving import digest_serve, serving

REDIRECT = re.compile(r"https://example\.org(/r/\d+/\d+/[A-Za-z0-9_-]{16})")
POSTS = {
    "https://example.org/blog/post-1",
    "https://example.org/blog/post-2",
    "https://example.org/news/post-10",
}
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"}
SCANNER = {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel; link check)"}


def track(project: Project, extra: str = "") -> None:
    project.write_config("tracking:\n  clicks: aggregate\n" + extra)


def redirects(project: Project, address: str = "ann@example.com") -> tuple[list[str], list[str]]:
    """The redirect paths in the HTML and the text part of the last message to `address`."""
    received = project.smtp.to(address)[-1]
    return REDIRECT.findall(received.part("html")), REDIRECT.findall(received.part("plain"))


def counts(project: Project) -> list[tuple[object, ...]]:
    return statefile.rows(
        project.root / "state.sqlite3",
        "SELECT l.url, c.kind, c.clicks FROM link_clicks c JOIN issue_links l"
        " ON l.issue_id = c.issue_id AND l.link_id = c.link_id ORDER BY l.link_id, c.kind",
    )


def test_a_tracked_link_leads_to_the_post_and_scanners_are_counted_apart(
    project: Project,
) -> None:
    track(project)
    assert project.run("send").exit_code == 0
    html_links, text_links = redirects(project)
    assert len(set(html_links)) == 3 and set(html_links) == set(text_links)
    for address in ("ann@example.com", "bob@example.com"):
        received = project.smtp.to(address)[-1]
        for url in POSTS:  # no straight post link is left in either part
            assert f'href="{url}"' not in received.part("html")
            assert url not in received.part("plain")
    assert redirects(project, "bob@example.com") == (html_links, text_links)  # same for all
    first = html_links[0]
    later = project.now + timedelta(hours=1)
    with digest_serve(project, env={"DIGEST_NOW": later.isoformat()}) as base:
        followed = httpx.get(base + first, headers=BROWSER)
        assert followed.status_code == 302
        target = followed.headers["location"]
        assert target in POSTS
        assert followed.headers["referrer-policy"] == "no-referrer"
        assert followed.headers["cache-control"] == "no-store"
        assert followed.content == b""
        assert counts(project) == [(target, "person", 1)]
        assert httpx.get(base + first, headers=BROWSER).status_code == 302
        assert httpx.head(base + first, headers=BROWSER).status_code == 302
        assert httpx.get(base + first, headers=SCANNER).headers["location"] == target
        assert httpx.get(base + first, headers={"User-Agent": ""}).status_code == 302
        assert counts(project) == [(target, "person", 2), (target, "scanner", 3)]
        shown = project.run("clicks", now=later)
    assert shown.exit_code == 0, shown.output
    assert "Issue 1" in shown.output and target in shown.output
    assert "2 clicks by people, 3 by link scanners and prefetchers" in shown.output
    assert shown.output.count("https://example.org/") == 3


def test_a_tampered_or_unsigned_link_gets_400_and_leads_nowhere(project: Project) -> None:
    track(project)
    assert project.run("send").exit_code == 0
    good = redirects(project)[0][0]
    issue, link, signature = good.removeprefix("/r/").split("/")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    bad = [
        f"/r/{issue}/{link}/{flipped}",
        f"/r/{issue}/{int(link) + 1}/{signature}",
        redirect_path("another-secret", int(issue), int(link)),
        f"/r/{issue}/{link}",
        "/r/",
        "/r/https://elsewhere.example/",
        "/r//elsewhere.example",
        f"/r/{issue}/{link}/{signature}" + "A" * 5000,
    ]
    with digest_serve(project) as base:
        for path in bad:
            response = httpx.get(base + path, headers=BROWSER)
            assert response.status_code == 400, path
            assert "location" not in response.headers
            assert "This link is not valid" in response.text
            assert "elsewhere" not in response.text
        # Signed with this newsletter's secret, but for a link digest never sent.
        unknown = httpx.get(base + redirect_path("test-secret", 9, 1), headers=BROWSER)
        assert unknown.status_code == 404 and "location" not in unknown.headers
        assert httpx.post(base + good).status_code == 405
    assert counts(project) == []


def test_clicks_within_seconds_of_delivery_count_as_scanners(project: Project) -> None:
    track(project, "  scanner_seconds: 2m\n")
    assert project.run("send").exit_code == 0
    first = redirects(project)[0][0]
    soon = project.now + timedelta(seconds=90)
    with serving(project, env={"DIGEST_NOW": soon.isoformat()}) as served:
        assert httpx.get(served.public + first, headers=BROWSER).status_code == 302
    assert [kind for _, kind, _ in counts(project)] == ["scanner"]
    assert f"click redirects: {served.public}/r/..." in served.stdout


def test_with_tracking_off_both_parts_link_straight_to_the_posts(project: Project) -> None:
    assert project.run("send").exit_code == 0
    received = project.smtp.to("ann@example.com")[-1]
    for url in POSTS:
        assert f'href="{url}"' in received.part("html")
        assert f"\r\n{url}\r\n" in received.part("plain")
    assert "/r/" not in received.part("html") + received.part("plain")
    assert statefile.rows(project.root / "state.sqlite3", "SELECT * FROM issue_links") == []
    shown = project.run("clicks")
    assert shown.exit_code == 0
    assert "No issue was sent with tracked links yet" in shown.output
    missing = project.run("clicks", "7")
    assert missing.exit_code == 1
    assert "there is no issue 7" in missing.output


def test_the_archive_links_straight_to_the_posts(project: Project, tmp_path: Path) -> None:
    track(project, f"archive:\n  enabled: true\n  out_dir: {tmp_path / 'site'}\n")
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text.replace("newsletter:\n", "newsletter:\n  archive_url: https://example.org/\n", 1),
        encoding="utf-8",
    )
    assert project.run("send").exit_code == 0
    assert len(set(redirects(project)[0])) == 3
    [page] = (tmp_path / "site" / "issues").glob("*/index.html")
    written = page.read_text(encoding="utf-8")
    for url in POSTS:
        assert url in written
    assert "/r/" not in written
    with digest_serve(project) as base:
        served = httpx.get(f"{base}/issues/{page.parent.name}/")
        assert served.status_code == 200
        assert "/r/" not in served.text and all(url in served.text for url in POSTS)


def test_a_click_on_an_issue_sent_before_the_setting_was_turned_off_still_works(
    project: Project,
) -> None:
    track(project)
    assert project.run("send").exit_code == 0
    first = redirects(project)[0][0]
    project.write_config()
    later = NOW + timedelta(days=2)
    with digest_serve(project, env={"DIGEST_NOW": later.isoformat()}) as base:
        assert httpx.get(base + first, headers=BROWSER).status_code == 302
    assert [kind for _, kind, _ in counts(project)] == ["person"]


def test_a_resumed_send_carries_the_same_redirects(project: Project) -> None:
    track(project)
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text.replace("  retry_delay: 0\n", "  retry_delay: 0\n  retries: 1\n")
    )
    project.smtp.script.defer = {"ann@example.com": 100}
    assert project.run("send").exit_code == 1  # ann's message left pending
    assert project.smtp.to("ann@example.com") == []
    project.smtp.script.defer = {}
    resumed = project.run("send", now=project.now + timedelta(hours=1))
    assert resumed.exit_code == 0, resumed.output
    assert "resumed issue 1" in resumed.output
    assert redirects(project, "ann@example.com") == redirects(project, "bob@example.com")
    assert len(set(redirects(project, "ann@example.com")[0])) == 3
