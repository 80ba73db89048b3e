"""Every repository's main operations, against both backends: a SQLite file and a real
PostgreSQL database (tests/support/postgres.py), through the same `State`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import store
from digest.core.errors import ConfigError, LockHeld, StateError
from digest.core.models import (
    Delivery,
    DeliveryStatus,
    FeedResult,
    FetchStatus,
    OutgoingMessage,
    Post,
    RenderedIssue,
)
from digest.store import migrations_postgres
from digest.store.location import DatabaseURL, database_url
from digest.store.signups import RateLimit
from tests.support.postgres import Cluster, postgres_cluster, postgres_url  # noqa: F401 (fixtures)

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
FEED = "https://example.org/feed.xml"


@dataclass(frozen=True)
class Where:
    """A Location for store.open and store.lock."""

    state_path: store.StateLocation


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    """The state's location on each backend."""
    if request.param == "sqlite":
        return Where(tmp_path / "state.sqlite3")
    url: str = request.getfixturevalue("postgres_url")
    return Where(database_url(url))


@pytest.fixture
def state(where: Where) -> Iterator[store.State]:
    with store.open(where) as opened:
        yield opened


def post(number: int, feed: str = FEED) -> Post:
    return Post(
        feed_url=feed,
        key=f"post-{number}",
        link_key=f"example.org/{number}",
        title=f"Post {number}: 100% \"quoted\" 'text' ?",
        link=f"https://example.org/{number}",
        published=NOW - timedelta(days=number),
    )


def test_feeds_remember_fetches_posts_and_failures(state: store.State) -> None:
    ok = FeedResult(FEED, FetchStatus.OK, posts=(post(1), post(2)), etag='"v1"')
    state.feeds.record_fetch(ok, NOW)
    state.feeds.record_fetch(FeedResult(FEED, FetchStatus.FAILED, error="timed out"), NOW)
    state.feeds.record_fetch(FeedResult(FEED, FetchStatus.FAILED, error="again"), NOW)
    record = state.feeds.feed(FEED)
    assert record is not None
    assert (record.etag, record.failures, record.last_error) == ('"v1"', 2, "again")
    assert record.newest_post_at == NOW - timedelta(days=1)
    state.feeds.record_fetch(FeedResult(FEED, FetchStatus.OK, posts=(post(3),)), NOW)
    record = state.feeds.feed(FEED)
    assert record is not None and record.failures == 0 and record.etag == '"v1"'
    assert sorted(p.title for p in state.feeds.stored_posts(FEED)) == [
        post(n).title for n in (1, 2, 3)
    ]
    assert state.feeds.first_seen(FEED)["post-1"] == NOW


def test_ledger_issues_deliveries_resume_and_slots(state: store.State) -> None:
    variant = store.IssueVariant('["News"]', "S", "<p>v</p>", "v", "m", 1)
    issue = state.ledger.create_issue(
        subject="Issue 1",
        html="<p>1</p>",
        text="1",
        posts=[post(1), post(2)],
        now=NOW,
        slot_key="2025-03-03T09:00:00+00:00",
        marker="m",
        variants=[variant],
    )
    assert issue > 0
    assert state.ledger.variants(issue) == {variant.choice: variant}
    assert state.ledger.carried()[0] == {(FEED, "post-1"), (FEED, "post-2")}
    state.ledger.record_delivery(issue, Delivery("ann@example.com", DeliveryStatus.PENDING), NOW)
    state.ledger.record_delivery(issue, Delivery("ann@example.com", DeliveryStatus.SENT), NOW)
    state.ledger.record_delivery(
        issue, Delivery("bob@example.com", DeliveryStatus.PENDING, "451 later"), NOW
    )
    unfinished = state.ledger.unfinished_issue()
    assert unfinished is not None and unfinished.id == issue
    assert state.ledger.deliveries(issue)["ann@example.com"].status is DeliveryStatus.SENT
    given_up = state.ledger.give_up_pending(issue, NOW)
    assert [d.email for d in given_up] == ["bob@example.com"]
    assert state.ledger.unfinished_issue() is None
    [summary] = state.ledger.history()
    assert (summary.sent, summary.failed, summary.pending) == (1, 1, 0)
    assert "451 later" in summary.failures[0].reply
    state.ledger.record_skipped_slot("2025-03-10T09:00:00+00:00", NOW, "nothing new")
    state.ledger.record_skipped_slot("2025-03-10T09:00:00+00:00", NOW, "twice")
    assert state.ledger.skipped_slots() == [("2025-03-10T09:00:00+00:00", "nothing new")]
    assert state.ledger.slot_handled("2025-03-03T09:00:00+00:00")
    assert state.ledger.latest_slot_key() == "2025-03-10T09:00:00+00:00"
    assert state.ledger.issue_for_slot("2025-03-03T09:00:00+00:00") == issue


def test_the_numbers_the_metrics_read(state: store.State) -> None:
    """Pending deliveries, the last send that delivered anything, the outbox's size and each
    feed's last new post, as the metrics' gauges read them."""
    assert state.ledger.pending_count() == 0 and state.ledger.last_finished_at() is None
    assert state.outbox.size() == 0 and state.feeds.last_new_posts() == {}
    refused = state.ledger.create_issue(subject="0", html="h", text="t", posts=[], now=NOW)
    state.ledger.record_delivery(refused, Delivery("ann@example.com", DeliveryStatus.FAILED), NOW)
    state.ledger.finish_issue(refused, NOW)
    assert state.ledger.last_finished_at() is None  # it delivered nothing
    issue = state.ledger.create_issue(subject="1", html="h", text="t", posts=[], now=NOW)
    state.ledger.record_delivery(issue, Delivery("ann@example.com", DeliveryStatus.SENT), NOW)
    for address in ("bob@example.com", "cy@example.com"):
        state.ledger.record_delivery(issue, Delivery(address, DeliveryStatus.PENDING), NOW)
    assert state.ledger.pending_count() == 2 and state.ledger.last_finished_at() is None
    state.ledger.give_up_pending(issue, NOW + timedelta(hours=1))
    assert state.ledger.pending_count() == 0
    assert state.ledger.last_finished_at() == NOW + timedelta(hours=1)
    state.ledger.compact(NOW + timedelta(days=1), NOW + timedelta(days=1))
    assert state.ledger.deliveries(issue) == {}
    assert state.ledger.last_finished_at() == NOW + timedelta(hours=1)  # from its counts
    message = OutgoingMessage(
        "digest@example.org", "zoe@example.net", b"Subject: hi\r\n\r\n", False
    )
    state.outbox.add("confirmation", "zoe@example.net", message, NOW)
    state.outbox.add("welcome", "zoe@example.net", message, NOW)
    assert state.outbox.size() == 2
    other = "https://example.net/feed.xml"
    state.feeds.record_fetch(FeedResult(FEED, FetchStatus.OK, posts=(post(1),)), NOW)
    later = NOW + timedelta(days=2)
    state.feeds.record_fetch(FeedResult(FEED, FetchStatus.OK, posts=(post(1), post(2))), later)
    state.feeds.record_fetch(FeedResult(other, FetchStatus.OK, posts=(post(3, other),)), NOW)
    assert state.feeds.last_new_posts() == {FEED: later, other: NOW}


def test_a_transaction_is_all_or_nothing(state: store.State) -> None:
    with pytest.raises(RuntimeError, match="boom"), state.transaction():
        state.ledger.create_issue(subject="S", html="h", text="t", posts=[], now=NOW)
        raise RuntimeError("boom")
    assert state.ledger.history() == []


def test_suppressions_keep_the_first_with_its_kind(state: store.State) -> None:
    kinds = store.SuppressionKind
    assert state.suppressions.suppress("Ann@Example.com", NOW, "bounce", kind=kinds.HARD_BOUNCE)
    assert not state.suppressions.suppress("ann@example.com", NOW, "web", kind=kinds.UNSUBSCRIBE)
    assert state.suppressions.suppress("bob@example.com", NOW, "manual", kind=kinds.MANUAL)
    assert [(s.email, s.kind) for s in state.suppressions.all()] == [
        ("ann@example.com", kinds.HARD_BOUNCE),
        ("bob@example.com", kinds.MANUAL),
    ]
    assert state.suppressions.unsuppress("bob@example.com")
    assert state.suppressions.suppressed() == {"ann@example.com"}


def test_subscribing_again_lifts_only_the_readers_own_unsubscribe(state: store.State) -> None:
    kinds = store.SuppressionKind
    state.suppressions.suppress("ann@example.com", NOW, "web", kind=kinds.UNSUBSCRIBE)
    state.suppressions.suppress("bob@example.com", NOW, "report", kind=kinds.COMPLAINT)
    assert not state.suppressions.lift_unsubscribe("bob@example.com")
    assert not state.suppressions.lift_unsubscribe("cat@example.com")
    assert state.suppressions.lift_unsubscribe("Ann@Example.com")
    assert state.suppressions.suppressed() == {"bob@example.com"}
    state.signups.resubscribed(
        "Ann@Example.com",
        NOW,
        "unsubscribe page",
        page="https://x/unsubscribe",
        ip="192.0.2.0",
        consent_sha256="cd",
    )
    (event,) = state.signups.consents("ann@example.com")
    assert (event.event, event.source, event.page, event.ip, event.consent_sha256) == (
        "resubscribed",
        "unsubscribe page",
        "https://x/unsubscribe",
        "192.0.2.0",
        "cd",
    )


def test_signups_consents_and_rate_limits(state: store.State) -> None:
    signups = state.signups
    status = signups.request(
        "cat@example.com", "Cat", ["News"], NOW, page="/", ip="192.0.2.1", consent_sha256="ab"
    )
    assert status == "new"
    assert signups.confirm("cat@example.com", NOW) == "confirmed"
    assert signups.confirm("cat@example.com", NOW) == "already"
    assert signups.add("dan@example.com", "Dan", None, "import", NOW)
    assert not signups.add("dan@example.com", "Dan", None, "import", NOW)
    assert [s.email for s in signups.confirmed()] == ["cat@example.com", "dan@example.com"]
    found = signups.signup("cat@example.com")
    assert found is not None and found.sections == ("News",)
    assert [e.event for e in signups.consents("cat@example.com")] == ["submitted", "confirmed"]
    limit = [RateLimit("ip:192.0.2.1", timedelta(hours=1), 2)]
    assert signups.allow(limit, NOW) and signups.allow(limit, NOW)
    assert not signups.allow(limit, NOW)
    assert signups.allow(limit, NOW + timedelta(hours=2))


def test_bounce_reports_count_once(state: store.State) -> None:
    issue = state.ledger.create_issue(subject="S", html="h", text="t", posts=[], now=NOW)
    state.ledger.record_delivery(issue, Delivery("ann@example.com", DeliveryStatus.SENT), NOW)
    first = state.bounces.record(
        report_key="<r1@mx>", now=NOW, source="imap", kind="hard", outcome="suppressed",
        email="ann@example.com", issue_id=issue, status="5.1.1",
    )  # fmt: skip
    again = state.bounces.record(
        report_key="<r1@mx>", now=NOW, source="imap", kind="hard", outcome="suppressed"
    )
    assert first is not None and again is None
    assert state.bounces.seen("<r1@mx>")
    state.bounces.set_outcome(first, "already suppressed")
    [report] = state.bounces.recent()
    assert report.outcome == "already suppressed"
    assert state.bounces.delivery(issue, "ann@example.com")
    assert state.bounces.recipients(issue) == ["ann@example.com"]


def test_editorial_note_choices_and_approvals(state: store.State) -> None:
    editorial = state.editorial
    editorial.set_note("Hello", NOW)
    assert editorial.note() == "Hello"
    editorial.choose(FEED, "post-1", store_choice("pin"), NOW)
    assert list(editorial.choices().values()) == [store_choice("pin")]
    assert editorial.mark_seen([post(1), post(2)], NOW) == 2
    assert editorial.mark_seen([post(1)], NOW) == 0
    editorial.request_approval("slot-1", frozenset({"a"}), NOW)
    assert editorial.decide_once("slot-1", "approved", "ed@example.org", NOW)
    assert not editorial.decide_once("slot-1", "held", "other@example.org", NOW)
    assert editorial.decide("slot-1", "held", "command line", NOW)
    approval = editorial.approval("slot-1")
    assert approval is not None and approval.status == "held"
    assert [d.status for d in editorial.decisions("slot-1")] == ["approved", "held"]


def store_choice(value: str) -> object:
    from digest.store.editor import Choice

    return Choice(value)


def test_webhook_nonces_refuse_a_replay(state: store.State) -> None:
    keep = timedelta(minutes=10)
    assert state.webhook_nonces.remember("mailgun", "n1", NOW, keep)
    assert not state.webhook_nonces.remember("mailgun", "n1", NOW, keep)
    assert state.webhook_nonces.remember("mailgun", "n2", NOW + timedelta(hours=1), keep)
    assert state.webhook_nonces.count("mailgun") == 1


def test_archive_numbers_titles_and_withdrawal(state: store.State) -> None:
    state.feeds.record_fetch(FeedResult(FEED, FetchStatus.OK, posts=(post(1),)), NOW)
    issue = state.ledger.create_issue(subject="S", html="h", text="t", posts=[post(1)], now=NOW)
    state.ledger.record_delivery(issue, Delivery("ann@example.com", DeliveryStatus.SENT), NOW)
    assert [i.id for i in state.archive.unpublished_sent()] == [issue]
    number = state.archive.next_number()
    state.archive.publish(issue, number, "s", "summary")
    assert state.archive.post_titles(issue) == [post(1).title]
    assert state.archive.withdraw(number, NOW) is True
    archived = state.archive.issue(number)
    assert archived is not None and archived.withdrawn_at == NOW


def test_archive_reads_an_issues_posts_as_last_stored(state: store.State) -> None:
    excerpted = replace(post(2), excerpt='It\'s 100% "done" ?')
    state.feeds.record_fetch(FeedResult(FEED, FetchStatus.OK, posts=(post(1), excerpted)), NOW)
    issue = state.ledger.create_issue(
        subject="S", html="h", text="t", posts=[post(1), excerpted], now=NOW
    )
    found = {p.title: p for p in state.archive.posts(issue)}
    assert set(found) == {post(1).title, post(2).title}
    assert found[post(2).title].link == "https://example.org/2"
    assert found[post(2).title].excerpt == 'It\'s 100% "done" ?'
    assert found[post(1).title].excerpt == ""
    assert state.archive.posts(issue + 1) == []


def test_caches_previews_and_parsed_feeds(state: store.State) -> None:
    rendered = RenderedIssue("S", "<p>100%</p>", "t", ("a warning",))
    state.previews.remember("k", rendered, NOW.isoformat())
    state.previews.remember("k", rendered, NOW.isoformat())
    cached = state.previews.cached("k")
    assert cached is not None and cached.html == "<p>100%</p>"
    result = FeedResult(FEED, FetchStatus.OK, posts=(post(1),), parsed_key="h1", feed_title="F")
    state.parsed_feeds.remember([result], NOW)
    state.parsed_feeds.remember([result], NOW)
    parsed = state.parsed_feeds.parsed(FEED)
    assert parsed is not None and parsed.posts == (post(1),)


def test_the_signing_secret_is_made_once(where: Where) -> None:
    with store.open(where) as state:
        made = state.secrets.secret()
    with store.open(where, read_only=True) as state:
        assert state.secrets.secret() == made


def test_erasure_leaves_nothing_of_the_person(state: store.State) -> None:
    issue = state.ledger.create_issue(subject="S", html="h", text="t", posts=[], now=NOW)
    state.ledger.record_delivery(
        issue, Delivery("eve@example.com", DeliveryStatus.FAILED, "550 eve@example.com"), NOW
    )
    state.suppressions.suppress(
        "eve@example.com", NOW, "bounce", kind=store.SuppressionKind.HARD_BOUNCE
    )
    state.signups.add("eve@example.com", "Eve", None, "import", NOW)
    report = state.erasure.forget(["eve@example.com"], ["hash-of-eve"], NOW, patience=5)
    assert report.found and report.complete, report
    assert state.suppressions.all() == []
    assert state.signups.signup("eve@example.com") is None
    [summary] = state.ledger.history()
    assert summary.failed == 1 and summary.failures[0].reply == ""
    assert state.signups.forgotten() == {"hash-of-eve"}


def test_a_read_only_state_changes_nothing(where: Where) -> None:
    with store.open(where, read_only=True) as state:
        assert state.ledger.history() == []
    with store.open(where) as state:
        state.ledger.create_issue(subject="S", html="h", text="t", posts=[], now=NOW)
    with store.open(where, read_only=True) as state:
        with pytest.raises(StateError):
            state.suppressions.suppress(
                "ann@example.com", NOW, "web", kind=store.SuppressionKind.UNSUBSCRIBE
            )
        assert [s.issue.subject for s in state.ledger.history()] == ["S"]


def test_a_lock_is_refused_to_another_thread_and_reentrant_in_its_own(where: Where) -> None:
    refused: list[str] = []

    def other() -> None:
        try:
            with store.lock(where, "send", command="send"):
                pass
        except LockHeld as error:
            refused.append(str(error))

    with store.lock(where, "send", command="send"), store.lock(where, "send"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(refused) == 1 and "send" in refused[0]
    with store.lock(where, "send"):  # released: free again
        pass


def test_a_lock_given_up_when_stopped(where: Where) -> None:
    stop = threading.Event()
    errors: list[LockHeld] = []

    def waiter() -> None:
        try:
            with store.lock(where, "run", wait=600, stop=stop):
                pass
        except LockHeld as error:
            errors.append(error)

    with store.lock(where, "run", command="run"):
        thread = threading.Thread(target=waiter)
        thread.start()
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive() and len(errors) == 1


# -- PostgreSQL only ---------------------------------------------------------------


def test_a_password_never_reaches_a_message(request: pytest.FixtureRequest) -> None:
    cluster: Cluster = request.getfixturevalue("postgres_cluster")
    url = f"postgresql://digest:s3cret-pass@127.0.0.1:{cluster.port}/no_such_db"
    with pytest.raises(StateError) as raised:
        store.open(Where(database_url(url)))
    assert "s3cret-pass" not in str(raised.value)
    assert "no_such_db" in str(raised.value)
    assert "digest:***@" in str(raised.value)


def test_config_takes_a_url_and_masks_its_password(tmp_path: Path) -> None:
    from digest.config.schema import load_config

    config = tmp_path / "config.yaml"
    base = (
        "newsletter:\n  title: T\n  from: a@example.org\n"
        "feeds:\n  - name: F\n    url: https://example.org/f.xml\n"
    )
    config.write_text(base + "state: postgresql://ed:pw-9876@db.example.org:5433/news\n")
    location = load_config(config).state_path
    assert isinstance(location, DatabaseURL)
    assert (location.database, location.password) == ("news", "pw-9876")
    assert str(location) == "postgresql://ed:***@db.example.org:5433/news"
    assert "pw-9876" not in repr(location)
    config.write_text(base + "state: postgresql://ed:pw-9876@db.example.org:port/\n")
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert "pw-9876" not in str(raised.value) and "state" in str(raised.value)
    config.write_text(base + "state: data/state.sqlite3\n")
    assert load_config(config).state_path == tmp_path / "data" / "state.sqlite3"


def test_a_database_with_other_tables_is_refused(request: pytest.FixtureRequest) -> None:
    from tests.support.postgres import connect as connect_database

    url: str = request.getfixturevalue("postgres_url")
    with connect_database(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE customers (id integer)")
    with pytest.raises(StateError, match="not digest's"):
        store.open(Where(database_url(url)))


def test_a_database_from_a_newer_digest_is_refused_and_kept(
    request: pytest.FixtureRequest,
) -> None:
    from tests.support.postgres import connect as connect_database

    url: str = request.getfixturevalue("postgres_url")
    with store.open(Where(database_url(url))) as state:
        state.suppressions.suppress(
            "ann@example.com", NOW, "web", kind=store.SuppressionKind.UNSUBSCRIBE
        )
    with connect_database(url, autocommit=True) as connection:
        connection.execute("UPDATE digest_schema SET version = 99")
    for read_only in (False, True):
        with pytest.raises(StateError, match="newer digest"):
            store.open(Where(database_url(url)), read_only=read_only)
    with connect_database(url, autocommit=True) as connection:
        connection.execute("UPDATE digest_schema SET version = %s", (migrations_postgres.LATEST,))
    with store.open(Where(database_url(url)), read_only=True) as state:
        assert state.suppressions.suppressed() == {"ann@example.com"}


def test_a_pool_serves_many_threads_at_once(request: pytest.FixtureRequest) -> None:
    where = Where(database_url(request.getfixturevalue("postgres_url")))
    errors: list[BaseException] = []

    def unsubscribe(number: int) -> None:
        try:
            with store.open(where) as state:
                state.suppressions.suppress(
                    f"reader{number}@example.com",
                    NOW,
                    "web",
                    kind=store.SuppressionKind.UNSUBSCRIBE,
                )
            with store.open(where, read_only=True) as state:
                assert f"reader{number}@example.com" in state.suppressions.suppressed()
        except BaseException as error:  # reported below, not lost on the thread
            errors.append(error)

    with store.pool(where):
        threads = [threading.Thread(target=unsubscribe, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        with store.open(where) as state:  # a read-only borrower left nothing behind
            state.suppressions.suppress(
                "last@example.com", NOW, "web", kind=store.SuppressionKind.UNSUBSCRIBE
            )
    assert errors == []
    with store.open(where, read_only=True) as state:
        assert len(state.suppressions.suppressed()) == 21


def test_a_time_without_a_zone_is_refused_at_the_state_and_nothing_is_written(
    state: store.State,
) -> None:
    """Stored times are UTC text whose order is time order; a naive time could be anyone's
    local time, so it never reaches the database."""
    key = "2026-11-30T08:00:00+00:00"
    with pytest.raises(ValueError, match="naive datetime reached the state database"):
        state.ledger.record_skipped_slot(key, NOW.replace(tzinfo=None), "held")
    assert not state.ledger.slot_handled(key)
    state.ledger.record_skipped_slot(key, NOW, "held")  # the same, aware, is kept
    assert state.ledger.slot_handled(key)


def test_a_read_only_command_keeps_a_preview_only_in_a_state_that_exists_and_is_current(
    where: Where,
) -> None:
    """A preview is a cache: a command that only reads keeps it when the state is there and up
    to date, and a state that does not exist yet is not created for it."""
    rendered = RenderedIssue("Subject", "<p>html</p>", "text", warnings=("a warning",))
    with store.open(where, read_only=True) as state:  # nothing there yet: a private, empty view
        state.previews.remember("draft", rendered, NOW.isoformat())
        assert state.previews.cached("draft") is None
    with store.open(where) as state:
        assert state.previews.cached("draft") is None  # it was not written
    with store.open(where, read_only=True) as state:
        state.previews.remember("draft", rendered, NOW.isoformat())
    with store.open(where, read_only=True) as state:
        assert state.previews.cached("draft") == rendered
