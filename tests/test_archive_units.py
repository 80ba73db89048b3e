"""The archive's parts on their own: depersonalising, slugs, config checks, the state table."""

from __future__ import annotations

from pathlib import Path

from digest import store
from digest.archive.pages import issue_slug, summary_of_frozen
from digest.config.schema import parse_config
from digest.core.errors import ConfigError
from digest.core.models import RenderedIssue, Subscriber
from digest.render.personalise import (
    depersonalise,
    issue_url_placeholder,
    personalise,
    placeholder,
    stamp_issue_url,
)
from tests.conftest import NOW

FOOTER = (
    '<td class="footer"><p>This email was sent to {recipient}. You subscribed.</p>'
    '<p>Hello <b>{name}</b>, <a class="u" href="{unsubscribe}" style="color:#333">Unsubscribe'
    ' from <i>News</i></a> · <a href="{issue}">Read it online</a></p>'
    "<p>Write to {email} for help</p></td>"
)


def frozen(marker: str) -> RenderedIssue:
    html = FOOTER.format(
        recipient=placeholder(marker, "RECIPIENT"),
        name=placeholder(marker, "NAME"),
        unsubscribe=placeholder(marker, "UNSUBSCRIBE_URL"),
        email=placeholder(marker, "EMAIL"),
        issue=issue_url_placeholder(marker),
    )
    return RenderedIssue(
        "News", f"<html><head></head><body>{html}</body></html>", "", marker=marker
    )


def test_depersonalise_leaves_no_slot_and_turns_unsubscribe_into_subscribe() -> None:
    for marker in ("", "0123456789abcdef0123456789abcdef"):  # 0.1.0's fixed slots, and today's
        page = depersonalise(frozen(marker), "https://x.example/subscribe?a=1&b=2", "Subscribe")
        assert "%%DIGEST" not in page
        assert "This email was sent to" not in page
        assert "Write to" not in page
        assert (
            '<a class="u" href="https://x.example/subscribe?a=1&amp;b=2" style="color:#333">'
            "Subscribe</a>"
        ) in page
        assert "Unsubscribe" not in page
        assert "Hello <b></b>," in page


def test_the_issue_url_is_stamped_once_and_personalise_fills_the_rest() -> None:
    marker = "ab" * 16
    stamped = stamp_issue_url(frozen(marker), "https://n.example/issues/1-a/?x=<y>")
    assert 'href="https://n.example/issues/1-a/?x=&lt;y&gt;"' in stamped.html

    html, _ = personalise(stamped, Subscriber("a@example.com", "A"), "https://u.example/?t=1")
    assert "%%DIGEST" not in html


def test_slugs_are_short_ascii_and_never_empty() -> None:
    assert issue_slug("Café Weekly: 3 new posts, 30 November 2026") == (
        "cafe-weekly-3-new-posts-30-november-2026"
    )
    assert issue_slug("!!!") == "issue"
    long = issue_slug("word " * 40)
    assert len(long) <= 60 and not long.endswith("-")


def test_the_archive_needs_an_address(tmp_path: Path) -> None:
    text = (
        "newsletter:\n  title: T\n  from: t@example.org\nfeeds:\n  - name: F\n    url: f.xml\n"
        "archive:\n  enabled: true\n"
    )
    try:
        parse_config(text, "config.yaml", tmp_path, {})
    except ConfigError as error:
        assert "config.yaml:8: archive.enabled: needs newsletter.archive_url" in str(error)
    else:
        raise AssertionError("accepted an archive without an address")


def test_numbers_follow_each_other_and_withdrawal_is_recorded_once(tmp_path: Path) -> None:
    with store.open_path(tmp_path / "state.sqlite3") as state:
        assert state.archive.next_number() == 1
        for number in (1, 2):
            assert state.archive.next_number() == number
            with state.transaction():
                issue_id = state.ledger.create_issue(
                    subject="S", html="", text="", posts=[], now=NOW
                )
                state.archive.publish(issue_id, state.archive.next_number(), "s", "")
        assert [entry.number for entry in state.archive.issues()] == [2, 1]
        assert state.archive.withdraw(1, NOW) is True
        assert state.archive.withdraw(1, NOW) is False
        assert state.archive.withdraw(7, NOW) is None
        assert [entry.number for entry in state.archive.issues()] == [2]
        assert len(state.archive.issues(include_withdrawn=True)) == 2
        assert state.archive.next_number() == 3


def test_page_links_keep_aa_contrast_on_the_page_and_its_cards(tmp_path: Path) -> None:
    from digest.archive.pages import PAGE_BACKGROUND, site_for
    from digest.render.theme import contrast_ratio

    for accent in ("#ffdd00", "#1d4f91", "#7fb3ff", "#00ff00"):
        text = (
            "newsletter:\n  title: T\n  from: t@example.org\n"
            "  archive_url: https://n.example.org\n"
            f"theme:\n  accent: '{accent}'\n"
            "feeds:\n  - name: F\n    url: f.xml\narchive:\n  enabled: true\n"
        )
        site = site_for(parse_config(text, "config.yaml", tmp_path, {}))
        for background in (PAGE_BACKGROUND, "#ffffff"):
            assert contrast_ratio(site.link_colour, background) >= 4.5, (accent, background)


def test_the_archive_address_is_a_folder_not_a_page(tmp_path: Path) -> None:
    text = (
        "newsletter:\n  title: T\n  from: t@example.org\n"
        "  archive_url: https://n.example.org/latest.html\n"
        "feeds:\n  - name: F\n    url: f.xml\narchive:\n  enabled: true\n"
    )
    try:
        parse_config(text, "config.yaml", tmp_path, {})
    except ConfigError as error:
        assert "not a page" in str(error)
    else:
        raise AssertionError("accepted a page as the archive's address")
    parse_config(text.replace("enabled: true", "enabled: false"), "config.yaml", tmp_path, {})


def test_a_past_issue_is_summarised_by_the_titles_its_frozen_text_shows() -> None:
    text = (
        "Weekly\n======\n\nFrom the blog\n-------------\n\nA long title that the plain text\n"
        "  wrapped onto two lines\nhttps://example.org/a\n\nSecond post\nhttps://example.org/b\n"
    )
    stored = [
        "Second post",
        "Renamed since it was sent",
        "A long title that the plain text wrapped onto two lines",
    ]
    assert summary_of_frozen(stored, text) == (
        "A long title that the plain text wrapped onto two lines · Second post"
    )
    assert summary_of_frozen(["Renamed since it was sent"], text) == ""
