"""Feed text and config strings never become per-subscriber data, sent or previewed."""

from __future__ import annotations

import re
from email.utils import format_datetime
from pathlib import Path

import lxml.html
import pytest

from digest.config.schema import parse_config
from digest.core.models import Issue, Post, Section, Subscriber
from digest.render.issue import render_issue
from digest.render.personalise import personalise, placeholder
from tests.conftest import NOW, Project

# Every form a placeholder has had or could be guessed to have: 0.1.0's fixed placeholders, and the
# marked form with a made-up marker.
LEGACY = (
    "%%DIGEST_EMAIL%%",
    "%%DIGEST_NAME%%",
    "%%DIGEST_RECIPIENT%%",
    "%%DIGEST_UNSUBSCRIBE_URL%%",
)
GUESSED = ("%%DIGEST_EMAIL_00000000000000000000000000000000%%", "%%DIGEST_UNSUBSCRIBE_URL_x%%")
TRAPS = LEGACY + GUESSED
TRACKER = "tracker.example"


def hostile_feed() -> str:
    """An RSS feed with placeholders in the title, link, image URL, excerpt and author."""
    traps = " ".join(TRAPS)
    link = f"https://{TRACKER}/click?u=%%DIGEST_EMAIL%%&t=%%DIGEST_UNSUBSCRIBE_URL%%"
    image = f"https://{TRACKER}/pixel.gif?e=%%DIGEST_EMAIL%%&g={GUESSED[0]}"
    summary = (
        f'<p>Read more: <a href="https://{TRACKER}/more?r=%%DIGEST_RECIPIENT%%">here</a>'
        f" {traps}</p>"
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        "<title>Hostile</title><link>https://example.org/</link><description>x</description>"
        f"<item><title>Win a prize {traps}</title><link>{escape(link)}</link>"
        f"<guid>https://{TRACKER}/guid-1</guid>"
        f"<pubDate>{format_datetime(NOW)}</pubDate>"
        f"<dc:creator>%%DIGEST_NAME%% %%DIGEST_EMAIL%%</dc:creator>"
        f'<enclosure url="{escape(image)}" type="image/gif" length="1"/>'
        f"<description>{escape(summary)}</description></item>"
        "</channel></rss>"
    )


def escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def tracker_urls(html: str, text: str) -> list[str]:
    """Every URL pointing at the tracker, from the HTML's attributes and the text part."""
    doc = lxml.html.fromstring(html)
    urls = [
        value for element in doc.iter() for value in element.attrib.values() if TRACKER in value
    ]
    urls += re.findall(rf"https?://{re.escape(TRACKER)}\S*", text)
    return urls


def assert_nothing_personal_leaks(html: str, text: str, email: str, token: str) -> None:
    urls = tracker_urls(html, text)
    assert urls, "the hostile links should still be there, unfilled"
    for url in urls:
        assert email not in url and token not in url and "@" not in url, url
        assert "DIGEST_" in url, url
    for trap in TRAPS:
        assert trap in text, trap
    for line in text.splitlines():
        if f"token={token}" in line:
            assert line.strip().startswith("https://example.org/unsubscribe?token="), line


@pytest.fixture
def hostile(project: Project) -> Project:
    project.feeds.add("/hostile.xml", hostile_feed())
    project.write_config(
        feeds=(
            f"  - name: From the blog\n    url: {project.feeds.url('/blog.xml')}\n"
            f"  - name: Elsewhere\n    url: {project.feeds.url('/hostile.xml')}\n"
        ),
    )
    project.add_newsletter_lines(
        f'  intro: "Hi %%DIGEST_NAME%%, see [this](https://{TRACKER}/intro?e=%%DIGEST_EMAIL%%)"\n'
        '  footer: "Sent to %%DIGEST_EMAIL%% %%DIGEST_RECIPIENT%%"\n'
    )
    return project


def test_a_sent_issue_fills_only_the_templates_slots(hostile: Project) -> None:
    result = hostile.run("send")
    assert result.exit_code == 0, result.output
    for email in ("ann@example.com", "bob@example.com"):
        (received,) = hostile.smtp.to(email)
        header = str(received.message["List-Unsubscribe"])
        token = re.search(r"token=([^>\s,]+)", header).group(1)  # type: ignore[union-attr]
        html, text = received.part("html"), received.part("plain")
        assert_nothing_personal_leaks(html, text, email, token)
        # The template's own slots were filled: the footer line and the unsubscribe link.
        assert f"This email was sent to {email.split('@')[0].title()} ({email})." in text
        assert f"https://example.org/unsubscribe?token={token}" in html
        assert "Sent to %%DIGEST_EMAIL%% %%DIGEST_RECIPIENT%%" in text


def test_the_preview_shows_the_same_unfilled_feed_text(hostile: Project, tmp_path: Path) -> None:
    out = tmp_path / "preview.html"
    result = hostile.run("preview", "--out", str(out), "--text")
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    text = result.output
    assert_nothing_personal_leaks(html, text, "reader@example.org", "preview")
    assert "Win a prize %%DIGEST_EMAIL%%" in text


def test_a_dry_run_and_a_test_send_leave_feed_text_alone(hostile: Project) -> None:
    assert hostile.run("send", "--to", "carol@example.net").exit_code == 0
    (received,) = hostile.smtp.to("carol@example.net")
    header = str(received.message["List-Unsubscribe"])
    token = re.search(r"token=([^>\s,]+)", header).group(1)  # type: ignore[union-attr]
    assert_nothing_personal_leaks(
        received.part("html"), received.part("plain"), "carol@example.net", token
    )


def test_each_issue_gets_its_own_random_marker(tmp_path: Path) -> None:
    config = parse_config(
        "newsletter:\n  title: T\n  from: a@example.org\nfeeds:\n"
        "  - name: F\n    url: https://example.org/f.xml\nsubscribers: s.csv\n",
        "config.yaml",
        tmp_path,
        {},
    )
    issue = Issue(title="T", date=NOW, sections=(Section("F", ()),))
    first, second = render_issue(issue, config), render_issue(issue, config)
    assert re.fullmatch(r"[0-9a-f]{32}", first.marker)
    assert first.marker != second.marker
    assert placeholder(first.marker, "UNSUBSCRIBE_URL") in first.html
    assert placeholder(second.marker, "UNSUBSCRIBE_URL") not in first.html


def test_a_guessed_marker_in_a_post_is_left_as_it_is(tmp_path: Path) -> None:
    config = parse_config(
        "newsletter:\n  title: T\n  from: a@example.org\nfeeds:\n"
        "  - name: F\n    url: https://example.org/f.xml\nsubscribers: s.csv\n",
        "config.yaml",
        tmp_path,
        {},
    )
    other = render_issue(Issue(title="T", date=NOW, sections=()), config).marker
    trap = placeholder(other, "EMAIL")
    hostile_post = Post(
        feed_url="https://example.org/f.xml",
        key="k",
        link_key="example.org/p",
        title=f"Title {trap}",
        link=f"https://{TRACKER}/p?e={trap}",
        published=NOW,
        excerpt=f"Excerpt {trap}",
    )
    issue = Issue(title="T", date=NOW, sections=(Section("F", (hostile_post,)),))
    rendered = render_issue(issue, config)
    html, text = personalise(rendered, Subscriber("ann@example.com", "Ann"), "https://u.example/t")
    assert trap in text and f"Title {trap}" in text
    assert "ann@example.com" not in "".join(tracker_urls(html, text))


def test_an_issue_frozen_by_0_1_0_is_still_personalised(tmp_path: Path) -> None:
    """Issues frozen before markers existed (marker "") keep the fixed placeholders."""
    config = parse_config(
        "newsletter:\n  title: T\n  from: a@example.org\nfeeds:\n"
        "  - name: F\n    url: https://example.org/f.xml\nsubscribers: s.csv\n",
        "config.yaml",
        tmp_path,
        {},
    )
    rendered = render_issue(Issue(title="T", date=NOW, sections=()), config, marker="")
    assert "%%DIGEST_UNSUBSCRIBE_URL%%" in rendered.html
    html, _ = personalise(rendered, Subscriber("ann@example.com"), "https://example.org/u?t=1")
    assert "https://example.org/u?t=1" in html and "%%DIGEST_" not in html
