"""Click counts without a server: the signed redirect path, telling a scanner from a person,
post links rewritten in both parts (and nothing else), the config key, and the counts kept in
the state, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import store
from digest.config.fields import SettingsError
from digest.config.schema import Config, TrackingConfig, load_config
from digest.core.clicks import (
    MAX_REDIRECT_PATH,
    read_redirect_path,
    redirect_path,
    scanner_reason,
)
from digest.core.errors import ConfigError
from digest.core.models import Delivery, DeliveryStatus, Issue, Post, RenderedIssue, Section
from digest.render.links import post_links, redirect_urls, track_links
from digest.render.personalise import placeholder
from digest.store.clicks import LinkCount
from digest.store.location import database_url
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 (fixtures)

SECRET = "click-secret"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=60)
BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.5 Safari/605.1.15"
)

# ---------------------------------------------------------------- the signed path


def test_a_redirect_path_reads_back_and_any_change_is_refused() -> None:
    path = redirect_path(SECRET, 12, 3)
    assert path.startswith("/r/12/3/") and len(path) <= MAX_REDIRECT_PATH
    assert read_redirect_path(SECRET, path) == (12, 3)
    signature = path.rsplit("/", 1)[1]
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    refused = [
        f"/r/12/3/{flipped}",  # tampered signature
        f"/r/12/4/{signature}",  # another link, same signature
        f"/r/13/3/{signature}",  # another issue
        redirect_path("another-secret", 12, 3),  # not this newsletter's
        "/r/12/3/",  # unsigned
        "/r/12/3",
        f"/r/012/3/{signature}",  # one spelling of a number only
        f"/r/12/3/{signature}/",
        f"/r/12/3/{signature}x",
        "/r/" + "1" * 200,  # long: refused before any work
        "/r/https://elsewhere.example/",
        "/r/%2F%2Felsewhere.example",
    ]
    for path_given in refused:
        assert read_redirect_path(SECRET, path_given) is None, path_given
    with pytest.raises(ValueError):
        redirect_path(SECRET, 0, 1)


@pytest.mark.parametrize(
    ("method", "agent", "scanner"),
    [
        ("GET", BROWSER, False),
        ("GET", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0 Safari/537.36", False),
        ("HEAD", BROWSER, True),
        ("head", BROWSER, True),
        ("GET", "", True),
        ("GET", "   ", True),
        ("GET", "Mozilla/5.0 (compatible; Barracuda Sentinel)", True),
        ("GET", "Mozilla/5.0 (Windows NT 10.0) BingPreview/1.0b", True),
        ("GET", "Microsoft Office Existence Discovery", True),
        ("GET", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", True),
        ("GET", "python-requests/2.32", True),
    ],
)
def test_scanners_are_told_by_method_and_user_agent(method: str, agent: str, scanner: bool) -> None:
    assert bool(scanner_reason(method, agent)) is scanner


# ---------------------------------------------------------------- links rewritten


def _post(number: int, link: str) -> Post:
    return Post(
        feed_url="https://example.org/feed.xml",
        key=f"p{number}",
        link_key=f"k{number}",
        title=f"Post {number}",
        link=link,
        published=NOW,
    )


POSTS = (
    _post(1, "https://example.org/a?x=1&y=2"),
    _post(2, "https://example.org/a"),
    _post(3, "https://example.org/a"),  # the same link twice is one tracked link
    _post(4, "mailto:someone@example.org"),
)
ISSUE = Issue(title="T", date=NOW, sections=(Section("Blog", POSTS),))


def test_post_links_are_each_http_link_once_in_order() -> None:
    assert post_links(ISSUE) == ["https://example.org/a?x=1&y=2", "https://example.org/a"]


def test_only_post_links_change_in_both_parts() -> None:
    marker = "m" * 32
    unsubscribe = placeholder(marker, "UNSUBSCRIBE_URL")
    html = (
        '<p><a class="link" title="a > b" href="https://example.org/a?x=1&amp;y=2">One</a>'
        ' <a href="https://example.org/a">Two</a>'
        " <a href='https://example.org/a/more'>Longer</a>"
        ' <img src="https://example.org/a">'
        f' <a href="{unsubscribe}">Unsubscribe</a>'
        ' <a href="https://example.org/archive/">Read it online</a></p>'
    )
    text = (
        "One\nhttps://example.org/a?x=1&y=2\n\nTwo\nhttps://example.org/a\n"
        "See https://example.org/a/more and (https://example.org/a).\n"
        "https://example.org/ab\n"
        f"Unsubscribe:\n{unsubscribe}\n"
    )
    rendered = RenderedIssue("Subject", html, text, marker=marker)
    links = {"https://example.org/a?x=1&y=2": 1, "https://example.org/a": 2}
    redirects = redirect_urls("https://news.example.org/", SECRET, 7, links)
    assert redirects["https://example.org/a"] == "https://news.example.org" + redirect_path(
        SECRET, 7, 2
    )
    tracked = track_links(rendered, redirects)
    one, two = redirects["https://example.org/a?x=1&y=2"], redirects["https://example.org/a"]
    assert tracked.html == (
        f'<p><a class="link" title="a > b" href="{one}">One</a>'
        f' <a href="{two}">Two</a>'
        " <a href='https://example.org/a/more'>Longer</a>"
        ' <img src="https://example.org/a">'
        f' <a href="{unsubscribe}">Unsubscribe</a>'
        ' <a href="https://example.org/archive/">Read it online</a></p>'
    )
    assert tracked.text == (
        f"One\n{one}\n\nTwo\n{two}\n"
        f"See https://example.org/a/more and ({two}).\n"
        "https://example.org/ab\n"
        f"Unsubscribe:\n{unsubscribe}\n"
    )
    assert (tracked.subject, tracked.marker) == ("Subject", marker)
    assert track_links(rendered, {}) is rendered


# ---------------------------------------------------------------- config


def _config(tmp_path: Path, tracking: str, public_url: bool = True) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(
        "newsletter:\n  title: T\n  from: t@example.org\n"
        + ("  public_url: https://news.example.org\n" if public_url else "")
        + "feeds:\n  - name: F\n    url: https://example.org/feed.xml\n"
        + tracking,
        encoding="utf-8",
    )
    return load_config(path)


def test_tracking_is_off_by_default_and_reads_off_as_written(tmp_path: Path) -> None:
    assert _config(tmp_path, "").tracking == TrackingConfig()
    assert not _config(tmp_path, "").tracking.enabled
    assert _config(tmp_path, "tracking:\n  clicks: off\n").tracking.clicks == "off"
    on = _config(tmp_path, "tracking:\n  clicks: aggregate\n  scanner_seconds: 2m\n").tracking
    assert (on.enabled, on.scanner_seconds) == (True, 120)


def test_a_wrong_tracking_value_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as wrong:
        _config(tmp_path, "tracking:\n  clicks: per-reader\n")
    assert str(wrong.value).endswith(
        "config.yaml:9: tracking.clicks: expected one of off or aggregate, got 'per-reader'"
    )
    with pytest.raises(ConfigError) as on:
        _config(tmp_path, "tracking:\n  clicks: on\n")
    assert str(on.value).endswith(
        "tracking.clicks: expected off or aggregate, got on (write aggregate to count clicks)"
    )
    with pytest.raises(ConfigError) as nowhere:
        _config(tmp_path, "tracking:\n  clicks: aggregate\n", public_url=False)
    assert "tracking.clicks: aggregate needs newsletter.public_url" in str(nowhere.value)
    with pytest.raises(SettingsError):
        TrackingConfig(clicks="on")  # type: ignore[arg-type]


# ---------------------------------------------------------------- counts in the state


@dataclass(frozen=True)
class Where:
    """A Location for store.open."""

    state_path: store.StateLocation


@pytest.fixture(params=["sqlite", "postgres"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[store.State]:
    if request.param == "sqlite":
        where = Where(tmp_path / "state.sqlite3")
    else:
        where = Where(database_url(request.getfixturevalue("postgres_url")))
    with store.open(where) as opened:
        yield opened


def _issue(state: store.State) -> int:
    with state.transaction():
        issue_id = state.ledger.create_issue(
            subject="S", html="<p>h</p>", text="t", posts=POSTS, now=NOW
        )
        numbered = state.clicks.record_links(issue_id, post_links(ISSUE))
    assert numbered == {"https://example.org/a?x=1&y=2": 1, "https://example.org/a": 2}
    return issue_id


def test_links_are_kept_and_counted_by_kind(state: store.State) -> None:
    issue_id = _issue(state)
    later = NOW + timedelta(hours=1)
    state.ledger.finish_issue(issue_id, NOW)
    assert state.clicks.links(issue_id) == {
        "https://example.org/a?x=1&y=2": 1,
        "https://example.org/a": 2,
    }
    assert state.clicks.target(issue_id, 2) == "https://example.org/a"
    assert state.clicks.target(issue_id, 3) is None
    assert state.clicks.target(issue_id + 1, 1) is None
    assert state.clicks.counts(issue_id) == [
        LinkCount("https://example.org/a?x=1&y=2", 0, 0),
        LinkCount("https://example.org/a", 0, 0),
    ]
    kinds = [
        state.clicks.count(issue_id, 2, later, scanner=False, window=WINDOW),
        state.clicks.count(issue_id, 2, later, scanner=False, window=WINDOW),
        state.clicks.count(issue_id, 2, later, scanner=True, window=WINDOW),
        state.clicks.count(issue_id, 1, later, scanner=True, window=WINDOW),
    ]
    assert kinds == ["person", "person", "scanner", "scanner"]
    assert state.clicks.counts(issue_id) == [
        LinkCount("https://example.org/a?x=1&y=2", 0, 1),
        LinkCount("https://example.org/a", 2, 1),
    ]
    assert state.clicks.latest_tracked_issue() == issue_id
    assert state.clicks.issue_exists(issue_id) and not state.clicks.issue_exists(issue_id + 1)


def test_requests_soon_after_a_delivery_count_as_scanners(state: store.State) -> None:
    issue_id = _issue(state)

    def kind(at: datetime) -> str:
        return state.clicks.count(issue_id, 1, at, scanner=False, window=WINDOW)

    # Seconds after the send began: a gateway checking the message as it arrives.
    assert kind(NOW + timedelta(seconds=5)) == "scanner"
    # A send still going on: early only within the window after one of its deliveries.
    delivered = NOW + timedelta(minutes=30)
    state.ledger.record_delivery(
        issue_id, Delivery("ann@example.com", DeliveryStatus.SENT), delivered
    )
    assert kind(delivered + timedelta(seconds=30)) == "scanner"
    assert kind(delivered + timedelta(seconds=90)) == "person"
    # Finished: early only within the window after it finished.
    state.ledger.finish_issue(issue_id, delivered)
    assert kind(delivered + timedelta(seconds=59)) == "scanner"
    assert kind(delivered + timedelta(seconds=60)) == "person"
    assert kind(delivered + timedelta(days=30)) == "person"
    assert state.clicks.counts(issue_id)[0] == LinkCount("https://example.org/a?x=1&y=2", 3, 3)


def test_an_issue_sent_untracked_has_no_links(state: store.State) -> None:
    issue_id = state.ledger.create_issue(
        subject="S", html="<p>h</p>", text="t", posts=POSTS, now=NOW
    )
    assert state.clicks.links(issue_id) == {}
    assert state.clicks.counts(issue_id) == []
    assert state.clicks.latest_tracked_issue() is None


def test_every_tracked_issue_s_counts_read_at_once(state: store.State) -> None:
    """What the reports read: each tracked issue's links and counts in one query, the same as
    `counts` gives them one issue at a time; an untracked issue is absent."""
    first = _issue(state)
    untracked = state.ledger.create_issue(
        subject="U", html="<p>h</p>", text="t", posts=POSTS, now=NOW
    )
    second = _issue(state)
    later = NOW + timedelta(hours=1)
    for issue_id, link_id, scanner in ((first, 2, False), (second, 1, True), (second, 1, False)):
        state.clicks.count(issue_id, link_id, later, scanner=scanner, window=WINDOW)
    found = state.clicks.by_issue()
    assert set(found) == {first, second} and untracked not in found
    assert (
        found[first]
        == state.clicks.counts(first)
        == [
            LinkCount("https://example.org/a?x=1&y=2", 0, 0),
            LinkCount("https://example.org/a", 1, 0),
        ]
    )
    assert found[second] == [
        LinkCount("https://example.org/a?x=1&y=2", 1, 1),
        LinkCount("https://example.org/a", 0, 0),
    ]
