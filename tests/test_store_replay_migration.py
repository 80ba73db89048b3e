"""Migration 10 (webhook nonces, approval decisions) on files older releases wrote."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest import store
from digest.store.migrations import LATEST, MIGRATIONS
from tests.support import statefile

FIXTURE = Path(__file__).parent / "fixtures" / "state-0.1.0.sqlite3"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
REPLAY = 10


dump = statefile.dump
tables = statefile.tables
version = statefile.user_version


def test_the_0_1_0_file_upgrades_through_migration_10_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)
    old_tables = tables(path)
    before = dump(path, old_tables)
    with store.open_path(path) as state:
        assert state.webhook_nonces.remember("mailgun", "t", NOW, timedelta(minutes=10))
        assert state.editorial.decisions("2026-11-30T08:00:00+00:00") == []
    assert version(path) == LATEST >= REPLAY
    after = dump(path, old_tables)
    width = len(before["deliveries"][0])  # migration 15 added the queue's columns after these
    assert [row[:width] for row in after["deliveries"]] == before["deliveries"]
    # Migration 2's marker; migration 15's queued mark, not set.
    assert after["issues"] == [(*row, "", None) for row in before["issues"]]
    assert len(after["posts"]) >= len(before["posts"])  # migration 3 adds, never removes
    assert {"webhook_nonces", "approval_decisions"} <= set(tables(path))


def test_a_file_at_the_previous_schema_keeps_its_data_and_its_decisions(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with statefile.connect(path, autocommit=True) as db:
        for statements in MIGRATIONS[: REPLAY - 1]:
            for statement in statements:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {REPLAY - 1}")
        db.executemany(
            "INSERT INTO approvals (slot_key, requested_at, posts, status, decided_at,"
            " decided_by) VALUES (?, ?, '[]', ?, ?, ?)",
            [
                (
                    "2026-11-23T08:00:00+00:00",
                    "2026-11-23T06:00:00+00:00",
                    "approved",
                    "2026-11-23T06:30:00+00:00",
                    "link (192.0.2.7)",
                ),
                (
                    "2026-11-30T08:00:00+00:00",
                    "2026-11-30T06:00:00+00:00",
                    "held",
                    "2026-11-30T07:00:00+00:00",
                    "command line",
                ),
                ("2026-12-07T08:00:00+00:00", "2026-12-07T06:00:00+00:00", "requested", None, ""),
            ],
        )
        db.execute(
            "INSERT INTO bounce_reports (report_key, received_at, source, kind, outcome, email)"
            " VALUES ('mailgun:e1', '2026-11-30T07:00:00+00:00', 'mailgun', 'hard',"
            " 'suppressed', 'ann@example.com')"
        )
    kept = ["approvals", "bounce_reports", "issues", "suppressions"]
    before = dump(path, kept)
    with store.open_path(path) as state:
        decisions = state.editorial.decisions("2026-11-23T08:00:00+00:00")
        held = state.editorial.decisions("2026-11-30T08:00:00+00:00")
        waiting = state.editorial.decisions("2026-12-07T08:00:00+00:00")
        approval = state.editorial.approval("2026-11-23T08:00:00+00:00")
    assert version(path) == LATEST
    assert dump(path, kept) == before
    assert [(d.status, d.by, d.at) for d in decisions] == [
        ("approved", "link (192.0.2.7)", datetime(2026, 11, 23, 6, 30, tzinfo=UTC))
    ]
    assert [(d.status, d.by) for d in held] == [("held", "command line")]
    assert waiting == []
    assert approval is not None and approval.decided_at == datetime(2026, 11, 23, 6, 30, tzinfo=UTC)
