"""The outbox of confirmation and welcome emails (digest.store.outbox, digest.readers.outbox):
claims with a lease on both backends, what a drain does with each answer of a real SMTP server,
erasure reaching it, and the migration that adds it keeping what a state held."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import store
from digest.config.schema import load_config
from digest.core.models import OutgoingMessage
from digest.core.tokens import address_hash
from digest.readers import outbox, signup
from digest.store.migrations import LATEST
from tests.conftest import Project
from tests.support import statefile
from tests.support.postgres import Cluster, postgres_cluster, postgres_url  # noqa: F401 (fixtures)
from tests.test_store_backends import Where, where  # noqa: F401 (fixture)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
SECRET = "test-secret"
FIXTURE = Path(__file__).parent / "fixtures" / "state-0.1.0.sqlite3"
OUTBOX_MIGRATION = 14


def message(recipient: str) -> OutgoingMessage:
    body = f"From: digest@example.org\r\nTo: {recipient}\r\nSubject: Hi\r\n\r\n\x00\xff bytes\r\n"
    return OutgoingMessage("digest@example.org", recipient, body.encode("latin-1"), False)


@pytest.fixture
def state(where: Where) -> Iterator[store.State]:  # noqa: F811 (the fixture above)
    with store.open(where) as opened:
        yield opened


def test_an_entry_is_claimed_by_one_process_until_its_lease_runs_out(state: store.State) -> None:
    with state.transaction():
        first = state.outbox.add("confirmation", "Ann@Example.com", message("ann@example.com"), NOW)
        second = state.outbox.add("welcome", "bob@example.com", message("bob@example.com"), NOW)
    (ann, bob) = state.outbox.claim("host-a:1", NOW, LEASE)
    assert (ann.id, bob.id) == (first, second)
    assert ann.email == "ann@example.com" and ann.kind == "confirmation" and ann.attempts == 1
    assert ann.message == message("ann@example.com")  # the bytes, exactly
    assert ann.claim.startswith("host-a:1:")
    # Another process finds nothing to claim while the lease runs, even a moment before its end.
    assert state.outbox.claim("host-b:2", NOW + LEASE - timedelta(seconds=1), LEASE) == []
    assert state.outbox.sent(bob)
    # The first claimant died: once its lease is over, the other takes the entry over.
    (taken,) = state.outbox.claim("host-b:2", NOW + LEASE, LEASE)
    assert taken.id == first and taken.attempts == 2 and taken.claim.startswith("host-b:2:")
    # The first claimant, back late, can no longer mark it: it was taken over.
    assert not state.outbox.sent(ann)
    assert state.outbox.waiting() == [(first, "confirmation", taken.claim)]
    assert state.outbox.later(taken, NOW + timedelta(hours=1))
    assert state.outbox.claim("host-b:2", NOW + timedelta(minutes=59), LEASE) == []
    (again,) = state.outbox.claim("host-c:3", NOW + timedelta(hours=1), LEASE, only=first)
    assert state.outbox.sent(again)
    assert state.outbox.waiting() == []


def test_forgetting_a_person_deletes_their_waiting_emails(state: store.State) -> None:
    state.outbox.add("confirmation", "ann@example.com", message("ann@example.com"), NOW)
    kept = state.outbox.add("confirmation", "bob@example.com", message("bob@example.com"), NOW)
    report = state.erasure.forget(
        ["ann@example.com"], [address_hash(SECRET, "ann@example.com")], NOW
    )
    assert report.found and report.unerased == ()
    assert [entry_id for entry_id, _, _ in state.outbox.waiting()] == [kept]


def signed_up(project: Project, address: str) -> int:
    """Carry out a sign-up as the public form does; the outbox entry of its email."""
    config = load_config(project.config)
    request = signup.SignupRequest(address, "", None, ip="192.0.2.1", page="", at=NOW)
    with store.open(config) as state:
        outcome, entry = signup.act(config, state, SECRET, request, dkim_key=None)
    assert outcome == "queued" and entry is not None
    return entry


def drain(project: Project, now: datetime) -> outbox.Drained:
    config = load_config(project.config)
    return outbox.drain(
        config, lambda: store.open(config), outbox.send_by_smtp(config), lambda: now
    )


def count(project: Project, table: str) -> int:
    return int(
        str(statefile.value(project.root / "state.sqlite3", f"SELECT COUNT(*) FROM {table}"))
    )


def enable_signup(project: Project) -> None:
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text + "signup:\n  enabled: true\n", encoding="utf-8")


def test_a_drain_sends_once_and_keeps_no_address(project: Project) -> None:
    enable_signup(project)
    signed_up(project, "ann@example.com")
    assert count(project, "outbox") == 1 and count(project, "signups") == 1
    assert drain(project, NOW) == outbox.Drained(sent=1)
    assert drain(project, NOW + timedelta(days=1)) == outbox.Drained()
    (received,) = project.smtp.received
    assert received.recipients == ("ann@example.com",)
    assert count(project, "outbox") == 0  # nothing of the address is left there
    assert count(project, "signups") == 1 and count(project, "rate_events") == 2


def test_a_refused_confirmation_takes_the_sign_up_back(project: Project) -> None:
    enable_signup(project)
    project.smtp.script.reject["gone@example.com"] = "550 5.1.1 No such user gone@example.com"
    signed_up(project, "gone@example.com")
    assert drain(project, NOW) == outbox.Drained(given_up=1)
    assert project.smtp.received == []
    for table in ("outbox", "signups", "consents", "rate_events"):
        assert count(project, table) == 0, table


def test_a_deferred_email_is_tried_again_after_a_backoff_then_given_up(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    enable_signup(project)
    # Each try is the mailer's own four (smtp.retries: 3): two tries are deferred.
    project.smtp.script.defer["slow@example.com"] = 8
    signed_up(project, "slow@example.com")
    assert drain(project, NOW) == outbox.Drained(later=1)
    # Not due again before its backoff (one minute after the first try).
    assert drain(project, NOW + timedelta(seconds=59)) == outbox.Drained()
    assert drain(project, NOW + timedelta(minutes=1)) == outbox.Drained(later=1)
    assert drain(project, NOW + timedelta(minutes=2)) == outbox.Drained()  # two minutes more
    assert drain(project, NOW + timedelta(minutes=3)) == outbox.Drained(sent=1)
    assert [m.recipients for m in project.smtp.received] == [("slow@example.com",)]
    assert count(project, "signups") == 1

    # One the server keeps deferring is given up a day after it was queued, and logged with
    # no address in the line.
    project.smtp.script.defer["never@example.com"] = 1000
    signed_up(project, "never@example.com")
    assert drain(project, NOW + timedelta(minutes=3)) == outbox.Drained(later=1)
    assert drain(project, NOW + timedelta(days=1, seconds=1)) == outbox.Drained(given_up=1)
    assert count(project, "outbox") == 0 and count(project, "signups") == 1
    assert "given up" in caplog.text and "never@example.com" not in caplog.text


def test_the_0_1_0_state_gains_the_outbox_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)
    old_tables = statefile.tables(path)
    before = statefile.dump(path, old_tables)
    with store.open_path(path) as state:
        state.outbox.add("welcome", "carol@example.com", message("carol@example.com"), NOW)
    assert statefile.user_version(path) == LATEST >= OUTBOX_MIGRATION
    after = statefile.dump(path, old_tables)
    for table in old_tables:
        assert len(after[table]) >= len(before[table]), table
    width = len(before["deliveries"][0])  # migration 15 added the queue's columns after these
    assert [row[:width] for row in after["deliveries"]] == before["deliveries"]
    assert count_rows(path, "outbox") == 1


def test_a_state_at_the_schema_before_the_outbox_upgrades_and_keeps_its_sign_ups(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    statefile.state_at(path, OUTBOX_MIGRATION - 2)  # 12, the release before; 13 is reserved
    statefile.execute(
        path,
        "INSERT INTO signups (email, name, status, source, created_at, updated_at)"
        " VALUES ('ann@example.com', 'Ann', 'pending', 'form', ?, ?)",
        NOW.isoformat(),
        NOW.isoformat(),
    )
    before = statefile.dump(path, statefile.tables(path))
    with store.open_path(path) as state:
        assert state.outbox.waiting() == []
        assert state.signups.signup("ann@example.com") is not None
    assert statefile.user_version(path) == LATEST
    assert statefile.dump(path, list(before)) == before
    assert "outbox" in statefile.tables(path)


def count_rows(path: Path, table: str) -> int:
    return int(str(statefile.value(path, f"SELECT COUNT(*) FROM {table}")))


def test_a_postgresql_state_of_the_release_before_gains_the_outbox(
    request: pytest.FixtureRequest,
) -> None:
    from digest.store.location import database_url
    from tests.support.postgres import connect as connect_database

    outbox_version = 3  # PostgreSQL's migration that made the outbox
    url: str = request.getfixturevalue("postgres_url")
    database = Where(database_url(url))
    with store.open(database) as state:
        state.suppressions.suppress(
            "ann@example.com", NOW, "web", kind=store.SuppressionKind.UNSUBSCRIBE
        )
    with connect_database(url, autocommit=True) as connection:  # as the migration before left it
        connection.execute("DROP TABLE outbox")
        for later in (
            "reader_events",
            "report_mails",
            "link_clicks",
            "issue_links",
            "issue_tallies",
        ):
            connection.execute(f"DROP TABLE {later}")  # made by the migrations after it
        connection.execute("UPDATE digest_schema SET version = %s", (outbox_version - 1,))
    with store.open(database) as state:
        assert state.suppressions.suppressed() == {"ann@example.com"}
        state.outbox.add("welcome", "bob@example.com", message("bob@example.com"), NOW)
        assert [kind for _, kind, _ in state.outbox.waiting()] == ["welcome"]
