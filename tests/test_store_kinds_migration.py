"""Migration 12: each suppression carries its kind, and the issue-note table nothing read is gone.

Tested on the file release 0.1.0 wrote and on a file at schema 11 holding every source of
suppression earlier releases wrote; then through `digest subscribers`, which groups bounces by
kind and no longer by the wording of their reason.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from digest import store
from digest.store import SuppressionKind
from digest.store.migrations import LATEST
from tests.conftest import Project
from tests.support import statefile

FIXTURE = Path(__file__).parent / "fixtures" / "state-0.1.0.sqlite3"
KINDS = 12
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)

# (address, source, reason) as releases before the kind wrote them, and the kind each becomes.
EARLIER = [
    ("amy@example.com", "one-click", "", SuppressionKind.UNSUBSCRIBE),
    ("bob@example.com", "web", "", SuppressionKind.UNSUBSCRIBE),
    ("cat@example.com", "preferences page", "", SuppressionKind.UNSUBSCRIBE),
    ("dan@example.com", "manual", "", SuppressionKind.MANUAL),
    ("eve@example.com", "bounce", "hard bounce 5.1.1: no such user", SuppressionKind.HARD_BOUNCE),
    (
        "fay@example.com",
        "bounce",
        "3 soft bounces in a row; last: soft bounce 4.2.2: mailbox full",
        SuppressionKind.SOFT_BOUNCES,
    ),
    (
        "gus@example.com",
        "bounce",
        "no such user at SMTP time: 550 5.1.1 unknown",
        SuppressionKind.REFUSED,
    ),
    ("hal@example.com", "complaint", "complaint: abuse", SuppressionKind.COMPLAINT),
]


def test_the_0_1_0_file_gets_kinds_and_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)
    old_tables = statefile.tables(path)
    before = statefile.dump(path, old_tables)
    with store.open_path(path) as state:
        kinds = {s.email: (s.kind, s.source) for s in state.suppressions.all()}
    assert statefile.user_version(path) == LATEST >= KINDS
    assert kinds == {
        "carol@example.com": (SuppressionKind.MANUAL, "manual"),
        "erin@example.com": (SuppressionKind.UNSUBSCRIBE, "one-click"),
    }
    after = statefile.dump(path, old_tables)
    for table in old_tables:  # migration 3 adds the rows of a moved feed, nothing goes
        assert len(after[table]) >= len(before[table]), table
    width = len(before["deliveries"][0])  # migration 15 added the queue's columns after these
    assert [row[:width] for row in after["deliveries"]] == before["deliveries"]
    assert [row[:3] for row in after["suppressions"]] == before["suppressions"]


def test_a_file_at_schema_11_keeps_its_suppressions_with_their_kinds(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    statefile.state_at(path, KINDS - 1)
    statefile.executemany(
        path,
        "INSERT INTO suppressions (email, created_at, source, reason) VALUES (?, ?, ?, ?)",
        [(email, NOW.isoformat(), source, reason) for email, source, reason, _ in EARLIER],
    )
    statefile.execute(
        path,
        "INSERT INTO issues (created_at, subject, html, text, post_count)"
        " VALUES (?, 'Issue 1', '<p>Note for this week</p>', 'Note for this week', 0)",
        NOW.isoformat(),
    )
    statefile.execute(path, "INSERT INTO issue_notes VALUES (1, 'Note for this week')")
    before = statefile.rows(path, "SELECT * FROM suppressions ORDER BY email")

    with store.open_path(path) as state:
        found = {s.email: (s.source, s.reason, s.kind) for s in state.suppressions.all()}

    assert found == {email: (source, reason, kind) for email, source, reason, kind in EARLIER}
    assert statefile.rows(
        path,
        "SELECT email, created_at, source, reason, issue_id, report_id FROM suppressions"
        " ORDER BY email",
    ) == [row[:6] for row in before]
    # The note went out in the issue itself: that stays, the table nothing read does not.
    assert "issue_notes" not in statefile.tables(path)
    assert statefile.rows(path, "SELECT text FROM issues") == [("Note for this week",)]


def test_subscribers_groups_bounces_by_kind_not_by_the_words_of_the_reason(
    project: Project,
) -> None:
    """A hard bounce whose server happened to say "soft bounce" is listed as a hard bounce."""
    with store.open_path(project.root / "state.sqlite3") as state:
        state.suppressions.suppress(
            "ann@example.com",
            NOW,
            "bounce",
            kind=SuppressionKind.HARD_BOUNCE,
            reason="hard bounce 5.1.1: mailbox gone (this is not a soft bounce)",
        )
        state.suppressions.suppress(
            "bob@example.com",
            NOW,
            "bounce",
            kind=SuppressionKind.SOFT_BOUNCES,
            reason="3 soft bounces in a row; last: soft bounce 4.2.2",
        )
    result = project.run("subscribers")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    hard = next(line for line in lines if "Suppressed: hard bounce" in line)
    soft = next(line for line in lines if "Suppressed: soft bounces" in line)
    assert "ann@example.com" in hard and "bob@example.com" in soft
