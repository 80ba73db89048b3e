"""States written before the canonical form: migration 11 rewrites their stored addresses.

Earlier releases kept an address as it came (a Unicode domain from the command line, the local
part as written from the file). The upgrade puts every stored address in the canonical form and
merges the rows that turn out to be one person; forgotten people's hashes, which cannot be
rewritten, are matched in both forms.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from digest import store
from digest.core.tokens import address_hash
from digest.store import SuppressionKind
from digest.store.migrations import LATEST
from tests.conftest import Project
from tests.support import statefile
from tests.test_store_migrations import FIXTURE, user_version

ZOE_UNICODE = "zo\u00eb@b\u00fccher.example"
ZOE = "zo\u00eb@xn--bcher-kva.example"
ERIN_UNICODE = "erin@b\u00fccher.example"
ERIN = "erin@xn--bcher-kva.example"
BEFORE_CANONICAL = 9  # the schema of the last release before migration 11


def rows(path: Path, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    return statefile.rows(path, sql, *parameters)


state_at = statefile.state_at


def test_upgrading_0_1_0_rewrites_its_addresses_and_keeps_every_delivery(tmp_path: Path) -> None:
    old = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, old)
    with statefile.connect(old) as db:
        # As 0.1.0 wrote them: a Unicode domain from the command line and the file, and the
        # same mailbox twice in one issue (the file listed both forms).
        db.executemany(
            "INSERT INTO deliveries (issue_id, email, status, reply, attempts, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (1, ZOE_UNICODE, "sent", "250 ok", 1, "2026-11-02T08:00:01+00:00"),
                (1, ZOE, "failed", "550 no", 1, "2026-11-02T08:00:02+00:00"),
                (2, "Fred@Example.COM", "sent", "250 ok", 2, "2026-11-09T09:00:01+00:00"),
            ],
        )
        db.executemany(
            "INSERT INTO suppressions (email, created_at, source) VALUES (?, ?, ?)",
            [
                (ZOE_UNICODE, "2026-11-03T08:00:00+00:00", "manual"),
                ("ZO\u00cb@xn--bcher-kva.example", "2026-11-05T08:00:00+00:00", "one-click"),
            ],
        )
    untouched = (  # the columns release 0.1.0 wrote
        "SELECT issue_id, email, status, reply, attempts, updated_at FROM deliveries WHERE email IN"
        " ('ann@example.com', 'bob@example.com', 'dave@example.com', 'erin@example.com')"
        " ORDER BY issue_id, email"
    )
    kept = rows(old, untouched)
    with store.open_path(old) as state:
        history = {summary.issue.id: summary for summary in state.ledger.history()}
    assert user_version(old) == LATEST
    assert rows(old, untouched) == kept
    assert rows(
        old,
        "SELECT issue_id, email, status, reply, attempts, updated_at FROM deliveries"
        f" WHERE email = '{ZOE}'",
    ) == [(1, ZOE, "sent", "250 ok", 2, "2026-11-02T08:00:01+00:00")]
    assert rows(old, "SELECT email FROM deliveries WHERE email LIKE 'fred%'") == [
        ("fred@example.com",)
    ]
    # Issue 1 went to Ann, Bob, Erin and Zoë; Dave's address was refused.
    assert (history[1].sent, history[1].failed, history[1].pending) == (4, 1, 0)
    assert (history[2].sent, history[2].failed) == (3, 1)
    assert rows(old, "SELECT email, created_at, source FROM suppressions ORDER BY email") == [
        ("carol@example.com", "2026-11-02T08:00:00+00:00", "manual"),
        ("erin@example.com", "2026-12-02T05:56:03.613392+00:00", "one-click"),
        (ZOE, "2026-11-03T08:00:00+00:00", "manual"),
    ]


def test_upgrading_todays_schema_merges_one_persons_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state_at(path, BEFORE_CANONICAL)
    with statefile.connect(path) as db:
        db.executemany(
            "INSERT INTO signups (email, name, status, sections, source, created_at,"
            " confirmed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                # Signed up with the ASCII form as typed, then again with the Unicode one.
                ("Erin@xn--bcher-kva.example", "Erin", "confirmed", '["News"]', "form",
                 "2026-10-01T08:00:00+00:00", "2026-10-01T09:00:00+00:00",
                 "2026-10-02T08:00:00+00:00"),
                (ERIN_UNICODE, "E.", "pending", None, "form", "2026-09-01T08:00:00+00:00",
                 None, "2026-11-01T08:00:00+00:00"),
                ("Max@Example.org", "Max", "pending", None, "form", "2026-11-01T08:00:00+00:00",
                 None, "2026-11-01T08:00:00+00:00"),
            ],
        )  # fmt: skip
        db.executemany(
            "INSERT INTO consents (email, event, at, source) VALUES (?, ?, ?, ?)",
            [
                ("Erin@xn--bcher-kva.example", "submitted", "2026-10-01T08:00:00+00:00", "form"),
                ("Erin@xn--bcher-kva.example", "confirmed", "2026-10-01T09:00:00+00:00", "form"),
                (ERIN_UNICODE, "submitted", "2026-09-01T08:00:00+00:00", "form"),
            ],
        )
        db.execute(
            "INSERT INTO issues (id, created_at, subject, html, text, post_count)"
            " VALUES (1, '2026-10-05T08:00:00+00:00', 's', 'h', 't', 1)"
        )
        db.executemany(
            "INSERT INTO deliveries (issue_id, email, status, reply, attempts, updated_at)"
            " VALUES (1, ?, ?, '', 1, '2026-10-05T08:00:00+00:00')",
            [(ERIN_UNICODE, "pending"), (ERIN, "sent"), ("forgotten:0123abcd", "sent")],
        )
        db.execute(
            "INSERT INTO bounce_reports (report_key, received_at, source, kind, outcome, email,"
            " issue_id) VALUES ('k1', '2026-10-06T08:00:00+00:00', 'stdin', 'soft', 'counted',"
            " ?, 1)",
            (ERIN_UNICODE,),
        )
    with store.open_path(path, read_only=True) as state:  # an upgrade in memory: the file waits
        assert [signup.email for signup in state.signups.signups()] == [ERIN, "max@example.org"]
    assert user_version(path) == BEFORE_CANONICAL
    with store.open_path(path) as state:
        [erin, _] = state.signups.signups()
        assert (erin.email, erin.name, erin.status, erin.sections) == (
            ERIN,
            "Erin",
            "confirmed",
            ("News",),
        )
        assert erin.created_at.isoformat() == "2026-09-01T08:00:00+00:00"
        assert [event.event for event in state.signups.consents(ERIN)] == [
            "submitted",
            "submitted",
            "confirmed",
        ]
        [summary] = state.ledger.history()
    assert (summary.sent, summary.pending) == (2, 0)
    assert rows(path, "SELECT email FROM deliveries ORDER BY email") == [
        (ERIN,),
        ("forgotten:0123abcd",),
    ]
    assert rows(path, "SELECT email FROM bounce_reports") == [(ERIN,)]
    assert rows(path, "SELECT COUNT(*) FROM consents WHERE email != ?", (ERIN,)) == [(0,)]


def test_an_old_unicode_suppression_and_an_old_erasure_still_hold(project: Project) -> None:
    """`digest unsubscribe zoë@bücher.example` and `digest subscribers forget erin@bücher.example`
    on an earlier release; the file now lists both in the ASCII form."""
    state = project.root / "state.sqlite3"
    state_at(state, BEFORE_CANONICAL)
    with statefile.connect(state) as db:
        db.execute(
            "INSERT INTO suppressions (email, created_at, source) VALUES (?, ?, 'manual')",
            (ZOE_UNICODE, "2026-11-01T08:00:00+00:00"),
        )
        db.execute(
            "INSERT INTO forgotten (address_hash, at) VALUES (?, '2026-11-01T08:00:00+00:00')",
            (address_hash("test-secret", ERIN_UNICODE),),
        )
    project.write_subscribers(f"{ZOE},Zo\u00eb", f"{ERIN},Erin", "ann@example.com,Ann")
    result = project.run_process("send")
    assert result.returncode == 0, result.stderr
    assert [r for item in project.smtp.received for r in item.recipients] == ["ann@example.com"]
    assert rows(state, "SELECT email FROM suppressions") == [(ZOE,)]


def test_preferences_saved_by_a_listed_reader_no_longer_keep_them_on_after_the_upgrade(
    project: Project,
) -> None:
    """Earlier releases kept a file reader's saved preferences as a confirmed sign-up, so taking
    them off the file did not take them off the list. The upgrade makes those `listed` rows."""
    state = project.root / "state.sqlite3"
    state_at(state, BEFORE_CANONICAL)
    at = "2026-11-01T08:00:00+00:00"
    with statefile.connect(state) as db:
        db.executemany(
            "INSERT INTO signups (email, name, status, sections, source, created_at,"
            " confirmed_at, updated_at) VALUES (?, ?, 'confirmed', NULL, ?, ?, ?, ?)",
            [
                ("Fay@Example.com", "Fay", "file", at, at, at),  # saved preferences only
                ("gus@example.com", "Gus", "file", at, at, at),  # added by the editor
                ("hal@example.com", "Hal", "form", at, at, at),  # signed up and confirmed
            ],
        )
        db.executemany(
            "INSERT INTO consents (email, event, at, source) VALUES (?, ?, ?, ?)",
            [
                ("fay@example.com", "listed", at, "file"),
                ("Fay@Example.com", "preferences", at, "preferences page"),
                ("gus@example.com", "added", at, "file"),
                ("hal@example.com", "confirmed", at, "form"),
            ],
        )
    project.write_subscribers("ann@example.com,Ann")  # Fay is off the file now
    result = project.run_process("send")
    assert result.returncode == 0, result.stderr
    assert sorted(r for item in project.smtp.received for r in item.recipients) == [
        "ann@example.com",
        "gus@example.com",
        "hal@example.com",
    ]
    assert rows(state, "SELECT email, name, status FROM signups ORDER BY email") == [
        ("fay@example.com", "Fay", "listed"),
        ("gus@example.com", "Gus", "confirmed"),
        ("hal@example.com", "Hal", "confirmed"),
    ]


def test_the_store_looks_an_address_up_under_its_canonical_form(tmp_path: Path) -> None:
    """Callers pass canonical addresses; one read back from an older link may not be."""
    at = datetime(2026, 12, 1, 8, tzinfo=UTC)
    with store.open_path(tmp_path / "state.sqlite3") as state:
        state.signups.request(ERIN_UNICODE, "Erin", None, at, page="", ip="", consent_sha256="")
        assert state.signups.confirm("Erin@B\u00dcCHER.example", at) == "confirmed"
        assert state.suppressions.suppress(ERIN_UNICODE, at, "manual", kind=SuppressionKind.MANUAL)
        assert not state.suppressions.suppress(ERIN, at, "manual", kind=SuppressionKind.MANUAL)
        assert [signup.email for signup in state.signups.signups()] == [ERIN]
        assert state.suppressions.suppressed() == {ERIN}
        assert state.suppressions.unsuppress("ERIN@xn--bcher-kva.example")
        assert [event.event for event in state.signups.consents(ERIN_UNICODE)] == [
            "submitted",
            "confirmed",
        ]
