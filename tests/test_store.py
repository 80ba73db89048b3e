"""Each repository of the state on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import store
from digest.core.models import Delivery, DeliveryStatus, FeedResult, FetchStatus, Post
from digest.store import State, Suppression, SuppressionKind
from tests.support import statefile

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
FEED = "https://example.org/feed.xml"
MOVED = "https://example.net/feed.xml"


def a_post(number: int, *, feed_url: str = FEED, dated: bool = True) -> Post:
    return Post(
        feed_url=feed_url,
        key=f"post-{number}",
        link_key=f"https://example.org/post-{number}",
        title=f"Post {number}",
        link=f"https://example.org/post-{number}",
        published=NOW - timedelta(days=number) if dated else None,
        categories=("news", "été"),
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    with store.open_path(tmp_path / "state.sqlite3") as opened:
        yield opened


def test_fetches_keep_validators_count_failures_and_reset_on_success(state: State) -> None:
    ok = FeedResult(FEED, FetchStatus.OK, (a_post(1),), etag='"v1"', last_modified="Mon")
    state.feeds.record_fetch(ok, NOW)
    state.feeds.record_fetch(FeedResult(FEED, FetchStatus.NOT_MODIFIED, permanent_url=MOVED), NOW)
    record = state.feeds.feed(FEED)
    assert record is not None
    assert (record.etag, record.last_modified, record.permanent_url) == ('"v1"', "Mon", MOVED)
    assert record.newest_post_at == NOW - timedelta(days=1)

    failed = FeedResult(FEED, FetchStatus.FAILED, error="HTTP 500")
    state.feeds.record_fetch(failed, NOW + timedelta(hours=1))
    state.feeds.record_fetch(failed, NOW + timedelta(hours=2))
    record = state.feeds.feed(FEED)
    assert record is not None
    assert (record.failures, record.last_error) == (2, "HTTP 500")
    assert record.first_failure_at == NOW + timedelta(hours=1)
    assert record.etag == '"v1"' and record.last_success_at == NOW

    state.feeds.record_fetch(FeedResult(FEED, FetchStatus.NOT_MODIFIED), NOW + timedelta(hours=3))
    record = state.feeds.feed(FEED)
    assert record is not None
    assert (record.failures, record.first_failure_at, record.last_error) == (0, None, None)
    assert state.feeds.feed("https://example.org/never.xml") is None


def test_posts_are_kept_under_the_feeds_configured_url_with_their_first_seen_time(
    state: State,
) -> None:
    state.feeds.record_fetch(FeedResult(FEED, FetchStatus.OK, (a_post(1, dated=False),)), NOW)
    fetched_after_move = FeedResult(
        FEED,
        FetchStatus.OK,
        (a_post(1, feed_url=MOVED, dated=False), a_post(2, feed_url=MOVED)),
        permanent_url=MOVED,
    )
    state.feeds.record_fetch(fetched_after_move, NOW + timedelta(days=1))
    assert state.feeds.first_seen(FEED) == {"post-1": NOW, "post-2": NOW + timedelta(days=1)}
    assert state.feeds.first_seen(MOVED) == {}
    stored = sorted(state.feeds.stored_posts(FEED), key=lambda post: post.key)
    assert stored == [a_post(1, dated=False), a_post(2)]


def test_an_issue_is_frozen_with_its_marker_and_the_posts_it_carried(state: State) -> None:
    issue_id = state.ledger.create_issue(
        subject="Weekly",
        html="<p>m-123</p>",
        text="m-123",
        posts=[a_post(1), a_post(2)],
        now=NOW,
        slot_key="2026-11-30T08:00:00+00:00",
        marker="m-123",
    )
    unfinished = state.ledger.unfinished_issue()
    assert unfinished is not None
    assert (unfinished.id, unfinished.marker, unfinished.post_count) == (issue_id, "m-123", 2)
    assert (unfinished.created_at, unfinished.slot_key) == (NOW, "2026-11-30T08:00:00+00:00")
    keys, links = state.ledger.carried()
    assert keys == {(FEED, "post-1"), (FEED, "post-2")}
    assert links == {"https://example.org/post-1", "https://example.org/post-2"}
    plain = state.ledger.create_issue(subject="s", html="h", text="t", posts=[], now=NOW)
    assert [h.issue.marker for h in state.ledger.history()] == ["", "m-123"]
    assert state.ledger.history(limit=1)[0].issue.id == plain


def test_deliveries_are_recorded_per_address_and_give_up_finishes_the_issue(state: State) -> None:
    issue_id = state.ledger.create_issue(subject="s", html="h", text="t", posts=[], now=NOW)
    state.ledger.record_delivery(
        issue_id, Delivery("Ann@Example.com", DeliveryStatus.SENT, "250"), NOW
    )
    state.ledger.record_delivery(
        issue_id, Delivery("bob@example.com", DeliveryStatus.PENDING, "451"), NOW
    )
    state.ledger.record_delivery(
        issue_id, Delivery("cy@example.com", DeliveryStatus.FAILED, "550"), NOW
    )
    assert state.ledger.deliveries(issue_id)["ann@example.com"].status is DeliveryStatus.SENT
    summary = state.ledger.history()[0]
    assert (summary.sent, summary.failed, summary.pending) == (1, 1, 1)
    assert summary.failures == (Delivery("cy@example.com", DeliveryStatus.FAILED, "550"),)

    later = NOW + timedelta(days=7)
    given_up = state.ledger.give_up_pending(issue_id, later)
    assert given_up == [
        Delivery(
            "bob@example.com", DeliveryStatus.FAILED, "gave up at the next slot; last reply: 451"
        )
    ]
    assert state.ledger.unfinished_issue() is None
    assert state.ledger.history()[0].issue.finished_at == later
    attempts = state.db.execute(
        "SELECT attempts FROM deliveries WHERE email = 'bob@example.com'"
    ).fetchone()[0]
    assert attempts == 2


def test_slots_are_handled_once_by_an_issue_or_a_skip(state: State) -> None:
    first, second, third = (f"2026-11-{day}T08:00:00+00:00" for day in (16, 23, 30))
    assert state.ledger.latest_slot_key() is None
    state.ledger.record_skipped_slot(first, NOW, "nothing new")
    state.ledger.record_skipped_slot(first, NOW, "recorded again")
    issue_id = state.ledger.create_issue(subject="s", html="h", text="t", posts=[], now=NOW)
    state.ledger.claim_slot(second, issue_id)
    state.ledger.claim_slot(third, issue_id)  # an issue keeps the first slot it was given
    assert (
        state.ledger.issue_for_slot(second) == issue_id
        and state.ledger.issue_for_slot(third) is None
    )
    assert state.ledger.slot_handled(first) and state.ledger.slot_handled(second)
    assert not state.ledger.slot_handled(third)
    assert state.ledger.latest_slot_key() == second
    reasons = state.db.execute("SELECT reason FROM skipped_slots").fetchall()
    assert [row[0] for row in reasons] == ["nothing new"]


def test_a_failed_transaction_leaves_nothing_behind(state: State) -> None:
    issue_id = state.ledger.create_issue(subject="s", html="h", text="t", posts=[], now=NOW)
    with pytest.raises(RuntimeError), state.transaction():
        state.ledger.record_delivery(
            issue_id, Delivery("ann@example.com", DeliveryStatus.SENT), NOW
        )
        with state.transaction():  # an inner block joins the outer one
            state.ledger.finish_issue(issue_id, NOW)
        raise RuntimeError("interrupted")
    assert state.ledger.deliveries(issue_id) == {}
    assert state.ledger.unfinished_issue() is not None


def test_suppressions_ignore_case_and_can_be_lifted(state: State) -> None:
    manual, unsubscribe = SuppressionKind.MANUAL, SuppressionKind.UNSUBSCRIBE
    assert state.suppressions.suppress("Zoe@Example.com", NOW, "manual", kind=manual)
    assert not state.suppressions.suppress(
        "zoe@example.com", NOW + timedelta(days=1), "one-click", kind=unsubscribe
    )
    assert state.suppressions.suppress(
        "amy@example.com", NOW + timedelta(days=2), "one-click", kind=unsubscribe
    )
    assert state.suppressions.suppressed() == {"zoe@example.com", "amy@example.com"}
    assert state.suppressions.all() == [
        Suppression("zoe@example.com", NOW, manual, "manual"),
        Suppression("amy@example.com", NOW + timedelta(days=2), unsubscribe, "one-click"),
    ]
    assert state.suppressions.unsuppress("ZOE@example.com")
    assert not state.suppressions.unsuppress("zoe@example.com")
    assert state.suppressions.suppressed() == {"amy@example.com"}


def test_the_secret_is_generated_once_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIGEST_SECRET", raising=False)
    path = tmp_path / "state.sqlite3"
    with store.open_path(path) as state:
        secret = state.secrets.secret()
        assert state.secrets.signing_secret(None) == secret
        assert state.secrets.signing_secret("from-config") == "from-config"
        monkeypatch.setenv("DIGEST_SECRET", "from-environment")
        assert state.secrets.signing_secret("from-config") == "from-environment"
    assert len(secret) >= 43
    with store.open_path(path) as state, store.open_path(path, read_only=True) as reader:
        assert state.secrets.secret() == reader.secrets.secret() == secret
    with statefile.connect(path) as db:
        assert db.execute("SELECT key, value FROM meta").fetchall() == [("secret", secret)]
