"""The per-issue counts table (SQLite migration 13, PostgreSQL migration 2): a state written
before it upgrades, keeps every row, and its old issues can then be compacted.

Tested on the file release 0.1.0 wrote, on a SQLite file at schema 12 and on a PostgreSQL
database at its schema 1, each holding deliveries and (where the schema has them) reports.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest import store
from digest.store import migrations, migrations_postgres
from digest.store.location import database_url
from tests.support import statefile
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 (fixtures)

FIXTURE = Path(__file__).parent / "fixtures" / "state-0.1.0.sqlite3"
COUNTS = 13
NOW = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
CREATED = "2026-03-02T08:00:00+00:00"
ISSUE = (CREATED, CREATED, "Issue 1", "<p>1</p>", "1", 1)
DELIVERIES = [
    (1, "ann@example.com", "sent", "", 1, CREATED),
    (1, "bob@example.com", "failed", "550 5.1.1 <bob@example.com>", 1, CREATED),
]
REPORT = ("k1", CREATED, "imap", "hard", "suppressed", "bob@example.com", 1, "5.1.1", "x", "y")


def test_the_0_1_0_file_upgrades_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)
    before = statefile.dump(path, statefile.tables(path))
    with store.open_path(path) as state:
        shown = [row.sent + row.failed + row.pending for row in state.ledger.history()]
    assert statefile.user_version(path) == migrations.LATEST >= COUNTS
    assert "issue_counts" in statefile.tables(path)
    after = statefile.dump(path, list(before))
    width = len(before["deliveries"][0])  # migration 15 added the queue's columns after these
    assert [row[:width] for row in after["deliveries"]] == before["deliveries"]
    width = len(before["issues"][0])  # earlier migrations added columns after these
    assert [row[:width] for row in after["issues"]] == before["issues"]
    assert shown and all(not row.compacted for row in _history(path))
    assert statefile.rows(path, "SELECT COUNT(*) FROM issue_counts") == [(0,)]
    assert sum(shown) == len(before["deliveries"])


def test_a_file_at_schema_12_upgrades_and_its_old_issue_compacts(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    statefile.state_at(path, COUNTS - 1)
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
    statefile.execute(
        path,
        "INSERT INTO bounce_reports (report_key, received_at, source, kind, outcome, email,"
        " issue_id, status, detail, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        *REPORT,
    )
    with store.open_path(path) as state:
        assert sorted(state.ledger.deliveries(1)) == ["ann@example.com", "bob@example.com"]
        assert statefile.user_version(path) == migrations.LATEST
        done = state.ledger.compact(NOW, NOW)
        [row] = state.ledger.history()
        bounced = state.ledger.compacted_bounces()
    assert done.issues == (1,)
    assert (row.sent, row.failed, row.compacted) == (1, 1, True)
    assert bounced[1].hard == 1
    assert statefile.rows(path, "SELECT * FROM deliveries") == []
    assert statefile.rows(path, "SELECT email, detail, report, status FROM bounce_reports") == [
        ("", "", "", "5.1.1")
    ]


def test_a_postgresql_database_at_schema_1_upgrades_keeping_its_rows(
    request: pytest.FixtureRequest,
) -> None:
    from tests.support.postgres import connect as connect_database

    url: str = request.getfixturevalue("postgres_url")
    with connect_database(url, autocommit=True) as connection:
        for statement in migrations_postgres.SCHEMA_0_2:
            connection.execute(statement)
        connection.execute("UPDATE digest_schema SET version = 1")
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
    where = _Where(database_url(url))
    with store.open(where, read_only=True) as state:  # read as upgraded, nothing written
        [row] = state.ledger.history()
        assert (row.sent, row.failed) == (1, 1)
    with connect_database(url, autocommit=True) as connection:
        assert connection.execute("SELECT version FROM digest_schema").fetchone() == (1,)
    with store.open(where) as state:
        assert sorted(state.ledger.deliveries(1)) == ["ann@example.com", "bob@example.com"]
    with connect_database(url, autocommit=True) as connection:
        version = connection.execute("SELECT version FROM digest_schema").fetchone()
        assert version == (migrations_postgres.LATEST,)
        assert connection.execute("SELECT COUNT(*) FROM issue_counts").fetchone() == (0,)


class _Where:
    """A Location for store.open."""

    def __init__(self, state_path: store.StateLocation) -> None:
        self.state_path = state_path


def _history(path: Path) -> list[store.IssueSummary]:
    with store.open_path(path, read_only=True) as state:
        return state.ledger.history()
