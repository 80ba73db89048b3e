"""The click tables (SQLite migration 17, PostgreSQL migration 6): a state written before them
upgrades, keeps every row, and can then track a new issue's links.

Tested on the file release 0.1.0 wrote, on a SQLite file at schema 14 (the last before them)
and on a PostgreSQL database at its schema 3, each holding an issue with deliveries.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import store
from digest.store import migrations, migrations_postgres
from digest.store.clicks import LinkCount
from digest.store.location import database_url
from tests.support import statefile
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 (fixtures)

FIXTURE = Path(__file__).parent / "fixtures" / "state-0.1.0.sqlite3"
CLICKS, CLICKS_POSTGRES = 17, 6
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
CREATED = "2026-03-02T08:00:00+00:00"
ISSUE = (CREATED, CREATED, "Issue 1", "<p>1</p>", "1", 1)
DELIVERIES = [
    (1, "ann@example.com", "sent", "", 1, CREATED),
    (1, "bob@example.com", "failed", "550 5.1.1 <bob@example.com>", 1, CREATED),
]
URL = "https://example.org/blog/post-1"


@dataclass(frozen=True)
class Where:
    """A Location for store.open."""

    state_path: store.StateLocation


def track_a_new_issue(state: store.State) -> int:
    """A new issue with one tracked link, followed once by a person."""
    with state.transaction():
        issue_id = state.ledger.create_issue(
            subject="New", html="<p>n</p>", text="n", posts=[], now=NOW
        )
        assert state.clicks.record_links(issue_id, [URL]) == {URL: 1}
    state.ledger.finish_issue(issue_id, NOW)
    later = NOW + timedelta(days=1)
    assert state.clicks.count(issue_id, 1, later, scanner=False, window=timedelta(seconds=60))
    assert state.clicks.counts(issue_id) == [LinkCount(URL, 1, 0)]
    return issue_id


def test_the_0_1_0_file_upgrades_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)
    before = statefile.dump(path, statefile.tables(path))
    with store.open_path(path) as state:
        old = [row.issue.id for row in state.ledger.history()]
        assert old and all(state.clicks.counts(issue) == [] for issue in old)
        assert state.clicks.latest_tracked_issue() is None
        new = track_a_new_issue(state)
    assert statefile.user_version(path) == migrations.LATEST >= CLICKS
    after = statefile.dump(path, list(before))
    # the rows as the earlier release wrote them, beside the columns later migrations added
    earlier = [row[: len(before["deliveries"][0])] for row in after["deliveries"]]
    assert earlier == before["deliveries"]
    width = len(before["issues"][0])  # later migrations added columns after these
    assert [row[:width] for row in after["issues"] if row[0] != new] == before["issues"]
    assert statefile.rows(path, "SELECT issue_id, link_id, url FROM issue_links") == [(new, 1, URL)]


def test_a_file_at_schema_14_upgrades_keeping_its_issue(tmp_path: Path) -> None:
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
    assert "issue_links" not in statefile.tables(path)
    with store.open_path(path) as state:
        assert sorted(state.ledger.deliveries(1)) == ["ann@example.com", "bob@example.com"]
        assert state.clicks.counts(1) == []
        assert track_a_new_issue(state) == 2
    assert statefile.user_version(path) == migrations.LATEST
    assert {"issue_links", "link_clicks"} <= set(statefile.tables(path))
    assert statefile.rows(path, "SELECT subject FROM issues ORDER BY id") == [
        ("Issue 1",),
        ("New",),
    ]


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
    with store.open(where, read_only=True) as state:  # read as upgraded, nothing written
        assert state.clicks.counts(1) == []
    with connect_database(url, autocommit=True) as connection:
        assert connection.execute("SELECT version FROM digest_schema").fetchone() == (3,)
    with store.open(where) as state:
        assert sorted(state.ledger.deliveries(1)) == ["ann@example.com", "bob@example.com"]
        assert track_a_new_issue(state) == 2
    with connect_database(url, autocommit=True) as connection:
        version = connection.execute("SELECT version FROM digest_schema").fetchone()
        assert version == (migrations_postgres.LATEST,) and version[0] >= CLICKS_POSTGRES
        assert connection.execute("SELECT url FROM issue_links").fetchall() == [(URL,)]
        assert connection.execute("SELECT kind, clicks FROM link_clicks").fetchall() == [
            ("person", 1)
        ]
