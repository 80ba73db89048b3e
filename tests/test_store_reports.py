"""The reports' tables (SQLite migration 16, PostgreSQL migration 5) and what is read from them.

A state written by release 0.1.0, a SQLite file at schema 14 and a PostgreSQL database at its
schema 3 each upgrade keeping their rows, and their old issues report what is known. On both
backends: an unsubscribe or preferences change is counted per issue with no address kept; an
issue compacted under retention keeps its counts; an erasure leaves the counts and no trace of
the person.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import store
from digest.core.models import Delivery, DeliveryStatus
from digest.core.tokens import address_hash
from digest.reports.figures import IssueCounts, issue_reports
from digest.store import ReaderCounts, ReaderEvent, migrations, migrations_postgres
from digest.store.location import database_url
from tests.support import statefile
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 (fixtures)

FIXTURE = Path(__file__).parent / "fixtures" / "state-0.1.0.sqlite3"
REPORTS = 16
SECRET = "a-secret-of-thirty-two-bytes-or-more-0123"
NOW = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
CREATED = "2026-03-02T08:00:00+00:00"
ISSUE = (CREATED, CREATED, "Issue 1", "<p>1</p>", "1", 1)
DELIVERIES = [
    (1, "ann@example.com", "sent", "", 1, CREATED),
    (1, "bob@example.com", "failed", "550 5.1.1 <bob@example.com>", 1, CREATED),
]


@dataclass(frozen=True)
class Where:
    """A Location for store.open."""

    state_path: store.StateLocation


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    if request.param == "sqlite":
        return Where(tmp_path / "state.sqlite3")
    url: str = request.getfixturevalue("postgres_url")
    return Where(database_url(url))


@pytest.fixture
def state(where: Where) -> Iterator[store.State]:
    with store.open(where) as opened:
        yield opened


def _issue(state: store.State, created: datetime, *readers: str) -> int:
    issue = state.ledger.create_issue(
        subject="An issue", html="<p>x</p>", text="x", posts=(), now=created
    )
    for reader in readers:
        state.ledger.record_delivery(issue, Delivery(reader, DeliveryStatus.SENT), created)
    state.ledger.finish_issue(issue, created)
    return issue


def test_the_0_1_0_file_upgrades_and_its_issues_report_what_is_known(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)
    before = statefile.dump(path, statefile.tables(path))
    with store.open_path(path) as state:
        totals = state.reports.totals()
        readers = state.reports.by_issue()
    assert statefile.user_version(path) == migrations.LATEST >= REPORTS
    after = statefile.dump(path, list(before))
    # the rows as the earlier release wrote them, beside the columns later migrations added
    earlier = [row[: len(before["deliveries"][0])] for row in after["deliveries"]]
    assert earlier == before["deliveries"]
    assert {"reader_events", "report_mails"} <= set(statefile.tables(path))
    assert readers == {}
    assert totals and sum(t.sent + t.failed + t.pending for t in totals) == len(
        before["deliveries"]
    )


def test_a_file_at_schema_14_upgrades_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    statefile.state_at(path, 14)
    statefile.execute(
        path,
        "INSERT INTO issues (created_at, finished_at, subject, html, text, post_count)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        *ISSUE,
    )
    statefile.executemany(
        path,
        "INSERT INTO deliveries (issue_id, email, status, reply, attempts, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        list(DELIVERIES),
    )
    with store.open_path(path) as state:
        assert statefile.user_version(path) == migrations.LATEST
        [row] = state.reports.totals()
        state.reports.record(ReaderEvent.UNSUBSCRIBE, 1, NOW)
        assert state.reports.by_issue() == {1: ReaderCounts(unsubscribes=1)}
    assert (row.issue_id, row.sent, row.failed, row.compacted) == (1, 1, 1, False)
    assert statefile.rows(path, "SELECT issue_id, kind FROM reader_events") == [(1, "unsubscribe")]


def test_a_postgresql_database_at_schema_3_upgrades_keeping_its_rows(
    request: pytest.FixtureRequest,
) -> None:
    from tests.support.postgres import connect as connect_database

    url: str = request.getfixturevalue("postgres_url")
    with connect_database(url, autocommit=True) as connection:
        for migration in migrations_postgres.MIGRATIONS[:3]:
            for statement in migration:
                connection.execute(statement)
        connection.execute("UPDATE digest_schema SET version = 3")
        connection.execute(
            "INSERT INTO issues (created_at, finished_at, subject, html, text, post_count)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            ISSUE,
        )
        for delivery in DELIVERIES:
            connection.execute(
                "INSERT INTO deliveries (issue_id, email, status, reply, attempts, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                delivery,
            )
    where = Where(database_url(url))
    with store.open(where) as state:
        [row] = state.reports.totals()
        state.reports.record(ReaderEvent.PREFERENCES, 1, NOW)
        assert state.reports.by_issue() == {1: ReaderCounts(preference_changes=1)}
        assert state.reports.queue_mail(1, NOW) and not state.reports.queue_mail(1, NOW)
    assert (row.sent, row.failed) == (1, 1)
    with connect_database(url, autocommit=True) as connection:
        version = connection.execute("SELECT version FROM digest_schema").fetchone()
        assert version == (migrations_postgres.LATEST,)


def test_counts_per_issue_keep_no_address_and_an_unknown_issue_counts_as_none(
    state: store.State,
) -> None:
    issue = _issue(state, NOW - timedelta(days=3), "ann@example.com", "bob@example.com")
    state.reports.record(ReaderEvent.UNSUBSCRIBE, issue, NOW)
    state.reports.record(ReaderEvent.PREFERENCES, issue, NOW)
    state.reports.record(ReaderEvent.PREFERENCES, issue, NOW)
    state.reports.record(ReaderEvent.UNSUBSCRIBE, None, NOW)
    state.reports.record(ReaderEvent.UNSUBSCRIBE, 999, NOW)  # no such issue here
    assert state.reports.by_issue() == {
        issue: ReaderCounts(unsubscribes=1, preference_changes=2),
        None: ReaderCounts(unsubscribes=2),
    }
    assert [event.kind for event in state.reports.dated(NOW - timedelta(days=1))] == [
        "unsubscribe",
        "preferences",
        "preferences",
        "unsubscribe",
        "unsubscribe",
    ]
    columns = {
        str(row["kind"]) for row in state.db.execute("SELECT DISTINCT kind FROM reader_events")
    }
    assert columns == {"unsubscribe", "preferences"}


def test_a_compacted_issue_keeps_its_counts(state: store.State) -> None:
    old = _issue(state, NOW - timedelta(days=800), "ann@example.com", "bob@example.com")
    state.reports.record(ReaderEvent.UNSUBSCRIBE, old, NOW - timedelta(days=799))
    state.bounces.record(
        report_key="k1",
        now=NOW - timedelta(days=799),
        source="imap",
        kind="hard",
        outcome="suppressed",
        email="bob@example.com",
        issue_id=old,
        status="5.1.1",
    )
    done = state.ledger.compact(NOW - timedelta(days=400), NOW)
    assert done.issues == (old,)
    [row] = state.reports.totals()
    assert (row.sent, row.compacted) == (2, True)
    bounced = state.ledger.compacted_bounces()[old]
    [report] = issue_reports(
        [
            IssueCounts(
                old,
                row.subject,
                row.created_at,
                row.sent,
                row.failed,
                row.pending,
                hard_bounces=bounced.hard,
                unsubscribes=state.reports.by_issue()[old].unsubscribes,
                compacted=True,
            )
        ],
        [],
    )
    assert (report.list_before, report.list_after) == (2, 0)
    assert report.rate_of("hard_bounces") == 50


def test_an_erasure_leaves_the_counts_and_no_trace_of_the_person(state: store.State) -> None:
    issue = _issue(state, NOW - timedelta(days=3), "erin@example.com", "bob@example.com")
    state.suppressions.suppress(
        "erin@example.com", NOW, "one-click", kind=store.SuppressionKind.UNSUBSCRIBE
    )
    state.reports.record(ReaderEvent.UNSUBSCRIBE, issue, NOW)
    done = state.erasure.forget(
        ["erin@example.com"], [address_hash(SECRET, "erin@example.com")], NOW
    )
    assert done.found and done.unerased == () and not done.bytes_left
    assert state.reports.by_issue() == {issue: ReaderCounts(unsubscribes=1)}
