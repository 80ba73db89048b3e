"""Several senders share one send: `digest send` processes on one state (a SQLite file, or a
PostgreSQL database as from several hosts) claim leased batches of the issue's deliveries,
and together deliver each message once, even when one of them is killed mid-send.

Also here: a lease held by a sender that is alive but silent runs out and its batch is sent by
another; a reader who leaves after the freeze is not sent when their batch is claimed; and an
issue left unfinished by the previous release (deliveries recorded without a queue) is
finished by this one, reaching only those it had not reached.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from digest import store
from digest.config.schema import load_config
from digest.store import SuppressionKind
from tests.conftest import Project
from tests.support import statefile
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 (fixtures)

READERS = [f"reader{n:04d}@example.com" for n in range(5000)]
CONNECTIONS = 4

Query = Callable[[str], list[tuple[Any, ...]]]


def use_state(project: Project, backend: str, request: pytest.FixtureRequest) -> Query:
    """Point the project at a SQLite file or a fresh PostgreSQL database; a way to query it."""
    if backend == "sqlite":
        path = project.root / "state.sqlite3"

        def on_file(sql: str) -> list[tuple[Any, ...]]:
            if not path.exists():
                return []
            with closing(sqlite3.connect(path, timeout=30)) as db:
                try:
                    return [tuple(row) for row in db.execute(sql)]
                except sqlite3.OperationalError:  # not created yet
                    return []

        return on_file
    from tests.support.postgres import connect

    url: str = request.getfixturevalue("postgres_url")
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text.replace("state: state.sqlite3", f"state: {url}"), "utf-8")

    def on_database(sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with connect(url, autocommit=True) as db:
            try:
                return [tuple(row) for row in db.execute(sql.replace("?", "%s"))]  # type: ignore[arg-type]
            except psycopg.errors.UndefinedTable:  # not created yet
                return []

    return on_database


TALLIED = "SELECT issue_id, sent, failed, pending FROM issue_tallies ORDER BY issue_id"
COUNTED = (
    "SELECT id,"
    " (SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = issues.id AND d.status = 'sent'),"
    " (SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = issues.id AND d.status = 'failed'),"
    " (SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = issues.id AND d.status = 'pending')"
    " FROM issues ORDER BY id"
)


def assert_tallied(query: Query) -> None:
    """Each issue's tallies, kept as the senders recorded outcomes, equal a count of its rows."""
    tallied = query(TALLIED)
    assert tallied and tallied == query(COUNTED)


def set_smtp(project: Project, lines: str) -> None:
    """Add lines (indented two spaces) under `smtp:` in config.yaml."""
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text.replace("smtp:\n", "smtp:\n" + lines, 1), encoding="utf-8")


def start_send(project: Project) -> subprocess.Popen[str]:
    """`digest send` as a user runs it, in the background."""
    env = {**os.environ, "DIGEST_NOW": project.now.isoformat()}
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(project.config), "send"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(what: str, ready: Callable[[], bool], *processes: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        for process in processes:
            assert process.poll() is None, f"a sender ended before {what}: {process.stderr}"
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_two_senders_share_one_send_and_a_killed_one_loses_nothing(
    project: Project, backend: str, request: pytest.FixtureRequest
) -> None:
    query = use_state(project, backend, request)
    set_smtp(project, f"  connections: {CONNECTIONS}\n  batch: 100\n  lease: 30\n")
    project.write_subscribers(*READERS)
    project.smtp.script.data_delay = 0.004  # slow enough that the kill lands mid-send

    first = start_send(project)
    wait_for("the first sender got going", lambda: len(project.smtp.received) >= 300, first)
    second = start_send(project)
    settled_by_second = (
        f"SELECT COUNT(*) FROM deliveries WHERE status = 'sent' AND claim LIKE '%:{second.pid}:%'"
    )
    wait_for(
        "the second sender joined and sent",
        lambda: query(settled_by_second)[0][0] >= 100,
        first,
        second,
    )
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    killed_at = len(project.smtp.received)
    assert killed_at < len(READERS), "the first sender finished before it could be killed"

    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "(resumed issue 1)" in out  # the second joined the issue the first froze

    counts = project.smtp.counts()
    assert set(counts) == set(READERS)
    twice = sorted(address for address, count in counts.items() if count > 1)
    assert all(count <= 2 for count in counts.values())
    # At most the messages the killed sender had in flight, one per connection.
    assert len(twice) <= CONNECTIONS, twice
    assert query("SELECT status, COUNT(*) FROM deliveries GROUP BY status") == [
        ("sent", len(READERS))
    ]
    assert query("SELECT COUNT(*) FROM issues WHERE finished_at IS NOT NULL") == [(1,)]
    assert_tallied(query)
    # Both took part: the second settled more than it could have alone before the kill.
    assert query(settled_by_second)[0][0] >= 100
    assert query(f"SELECT COUNT(*) FROM deliveries WHERE claim LIKE '%:{first.pid}:%'")[0][0]


def test_a_batch_leased_by_a_silent_sender_is_sent_once_its_lease_runs_out(
    project: Project, backend: str, request: pytest.FixtureRequest
) -> None:
    query = use_state(project, backend, request)
    set_smtp(project, "  retries: 0\n  lease: 2\n")
    project.write_subscribers("ann@example.com,Ann", "bob@example.com,Bob", "cy@example.com,Cy")
    project.smtp.script.defer = {"bob@example.com": 1, "cy@example.com": 1}
    assert project.run("send").exit_code == 1  # bob and cy deferred: left pending
    assert project.smtp.counts() == {"ann@example.com": 1}
    # Another sender, alive (it holds its lock) but silent, has claimed what is pending.
    config = load_config(project.config)
    until = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    _lease_pending(query, backend, project, "elsewhere:4242:5117e47", until)
    with store.lock(config, "sender-5117e47"):
        resumed = project.run("send", now=project.now + timedelta(hours=1))
        assert resumed.exit_code == 0, resumed.output
        assert "(resumed issue 1): 2 delivered, 0 failed, 0 pending" in resumed.output
    assert project.smtp.counts() == dict.fromkeys(
        ["ann@example.com", "bob@example.com", "cy@example.com"], 1
    )
    # Not before the lease ran out: each was sent after it (the claim time is recorded).
    stamps = query("SELECT updated_at FROM deliveries WHERE email != 'ann@example.com'")
    assert all(
        datetime.fromisoformat(stamp) >= datetime.fromisoformat(until) for (stamp,) in stamps
    )
    assert_tallied(query)


def _lease_pending(query: Query, backend: str, project: Project, claim: str, until: str) -> None:
    """Put the pending deliveries under another sender's lease, as its claim would."""
    sql = "UPDATE deliveries SET claim = ?, claimed_until = ? WHERE status = 'pending'"
    if backend == "sqlite":
        statefile.execute(project.root / "state.sqlite3", sql, claim, until)
        return
    from tests.support.postgres import connect

    url = str(load_config(project.config).state_path.url)  # type: ignore[union-attr]
    with connect(url, autocommit=True) as db:
        db.execute(sql.replace("?", "%s"), (claim, until))


def test_a_reader_suppressed_after_the_freeze_is_not_sent_when_their_batch_comes(
    project: Project,
) -> None:
    set_smtp(project, "  connections: 1\n  batch: 1\n")
    readers = ["ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com"]
    project.write_subscribers(*readers)
    project.smtp.script.hold_after = 1  # bob's message waits at the server until released
    path = project.root / "state.sqlite3"
    sender = start_send(project)

    def claimed(address: str) -> bool:
        found = statefile_rows(path, "SELECT claim FROM deliveries WHERE email = ?", address)
        return bool(found and found[0][0])

    wait_for("bob's batch in flight, cy's built", lambda: claimed("cy@example.com"), sender)
    assert not claimed("dee@example.com")
    with store.open(load_config(project.config)) as state:
        state.suppressions.suppress(
            dee := "dee@example.com", project.now, "reader", kind=SuppressionKind.UNSUBSCRIBE
        )
    project.smtp.script.release.set()
    _, err = sender.communicate(timeout=60)
    assert sender.returncode == 0, err
    assert project.smtp.counts() == dict.fromkeys(readers[:3], 1)
    assert statefile.rows(path, "SELECT email FROM deliveries WHERE email = ?", dee) == []
    assert statefile.rows(path, "SELECT finished_at IS NOT NULL FROM issues") == [(1,)]
    assert statefile.rows(path, TALLIED) == statefile.rows(path, COUNTED) == [(1, 3, 0, 0)]


def statefile_rows(path: object, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
    """Rows from the state file, or none while it is being created."""
    try:
        with closing(sqlite3.connect(str(path), timeout=30)) as db:
            return [tuple(row) for row in db.execute(sql, parameters)]
    except sqlite3.OperationalError:
        return []


QUEUE_SQLITE, QUEUE_POSTGRESQL = 15, 4  # the migrations that added the send queue


@pytest.fixture
def earlier_release(
    project: Project, backend: str, request: pytest.FixtureRequest
) -> Iterator[Query]:
    """A project whose state holds issue 1 as the previous release left it unfinished: ann
    sent, bob deferred (pending), cy never tried; the queue's columns not there yet."""
    query = use_state(project, backend, request)
    set_smtp(project, "  retries: 0\n")
    project.smtp.script.defer = {"bob@example.com": 1}
    assert project.run("send").exit_code == 1
    statements = [
        "DROP INDEX deliveries_claimable",
        *(
            f"ALTER TABLE deliveries DROP COLUMN {column}"
            for column in ("name", "edition", "claim", "claimed_until")
        ),
        "ALTER TABLE issues DROP COLUMN queued_at",
        # and the tables the migrations after the queue's made
        *(f"DROP TABLE {table}" for table in ("reader_events", "report_mails", "link_clicks")),
        "DROP TABLE issue_links",
        "DROP TABLE issue_tallies",
    ]
    if backend == "sqlite":
        path = project.root / "state.sqlite3"
        for statement in statements:
            statefile.execute(path, statement)
        statefile.execute(path, f"PRAGMA user_version = {QUEUE_SQLITE - 1}")
    else:
        from tests.support.postgres import connect

        url = str(load_config(project.config).state_path.url)  # type: ignore[union-attr]
        with connect(url, autocommit=True) as db:
            for statement in statements:
                db.execute(statement)  # type: ignore[arg-type]
            db.execute("UPDATE digest_schema SET version = %s", (QUEUE_POSTGRESQL - 1,))
    yield query


def test_an_issue_the_previous_release_left_unfinished_is_finished_once_each(
    project: Project, earlier_release: Query
) -> None:
    project.write_subscribers("ann@example.com,Ann", "bob@example.com,Bob", "cy@example.com,Cy")
    before = earlier_release("SELECT email, status, reply FROM deliveries ORDER BY email")
    assert before == [
        ("ann@example.com", "sent", "250 Message accepted for delivery"),
        ("bob@example.com", "pending", "451 4.3.0 Try again later"),
    ]
    project.smtp.script.defer = {}
    resumed = project.run("send", now=project.now + timedelta(hours=1))
    assert resumed.exit_code == 0, resumed.output
    assert "(resumed issue 1): 2 delivered, 0 failed, 0 pending" in resumed.output
    assert project.smtp.counts() == {
        "ann@example.com": 1,
        "bob@example.com": 1,
        "cy@example.com": 1,
    }
    assert "Bob" in project.smtp.to("bob@example.com")[0].message["To"]
    assert earlier_release("SELECT email, status FROM deliveries ORDER BY email") == [
        ("ann@example.com", "sent"),
        ("bob@example.com", "sent"),
        ("cy@example.com", "sent"),
    ]
    # The row the earlier release wrote kept its data: ann's is untouched.
    assert earlier_release(
        "SELECT reply, attempts FROM deliveries WHERE email = 'ann@example.com'"
    ) == [("250 Message accepted for delivery", 1)]
    assert earlier_release("SELECT COUNT(*) FROM issues WHERE finished_at IS NULL") == [(0,)]
    assert earlier_release(TALLIED) == [(1, 3, 0, 0)]
    assert_tallied(earlier_release)


def test_send_join_with_no_issue_being_sent_starts_none(project: Project) -> None:
    joined = project.run("send", "--join")
    assert joined.exit_code == 0, joined.output
    assert "Nothing sent: no issue is being sent." in joined.output
    assert project.smtp.received == []
    path = project.root / "state.sqlite3"
    assert statefile_rows(path, "SELECT COUNT(*) FROM issues") in ([], [(0,)])
    with store.lock(load_config(project.config), "send"):  # a send being prepared elsewhere
        waiting = project.run_process("send", "--join")
    assert waiting.returncode == 0, waiting.stderr
    assert "Nothing sent: no issue is being sent." in waiting.stdout
    assert project.smtp.received == []


def test_a_scheduler_that_finds_an_issue_being_sent_helps_send_it(project: Project) -> None:
    from digest.run import schedule
    from digest.run.schedule import Clock

    project.write_config('schedule:\n  day: monday\n  time: "08:00"\n  grace: 6h\n')
    set_smtp(project, "  connections: 2\n  batch: 20\n")
    readers = READERS[:400]
    project.write_subscribers(*readers)
    project.smtp.script.data_delay = 0.01
    path = project.root / "state.sqlite3"
    sender = start_send(project)
    wait_for("the send got going", lambda: len(project.smtp.received) >= 40, sender)

    config = load_config(project.config)
    result = schedule.fire(config, Clock.starting_at(project.now), threading.Event())
    _, err = sender.communicate(timeout=120)
    assert sender.returncode == 0, err
    helped = statefile_rows(
        path, f"SELECT COUNT(*) FROM deliveries WHERE claim LIKE '%:{os.getpid()}:%'"
    )
    assert helped[0][0] > 0  # the scheduler sent some of the issue
    assert project.smtp.counts() == dict.fromkeys(readers, 1)
    assert statefile_rows(path, "SELECT COUNT(*) FROM issues WHERE finished_at IS NULL") == [(0,)]
    # Then it saw to its slot as usual: nothing new since the issue it helped send.
    assert result is not None and result.report is not None
    assert result.report.skipped_reason


def test_a_batch_slower_than_the_lease_stays_its_senders_while_it_works(project: Project) -> None:
    """Each batch takes four times the lease at the rate cap: the senders renew their leases as
    outcomes come, so neither takes over the other's batch and nobody gets two copies."""
    set_smtp(project, "  connections: 1\n  batch: 20\n  lease: 1\n  max_per_second: 5\n")
    readers = READERS[:60]
    project.write_subscribers(*readers)
    first = start_send(project)
    wait_for("the first sender got going", lambda: len(project.smtp.received) >= 1, first)
    second = start_send(project)
    for sender in (first, second):
        _, err = sender.communicate(timeout=120)
        assert sender.returncode == 0, err
    assert project.smtp.counts() == dict.fromkeys(readers, 1)
    path = project.root / "state.sqlite3"
    claims = statefile_rows(path, "SELECT COUNT(DISTINCT claim) FROM deliveries")
    assert claims == [(2,)]  # both sent a share


def test_two_senders_started_together_share_the_issue_one_of_them_freezes(
    project: Project,
) -> None:
    set_smtp(project, "  connections: 2\n  batch: 20\n")
    readers = READERS[:300]
    project.write_subscribers(*readers)
    project.smtp.script.data_delay = 0.01
    senders = [start_send(project), start_send(project)]
    outputs = [sender.communicate(timeout=120) for sender in senders]
    for sender, (_, err) in zip(senders, outputs, strict=True):
        assert sender.returncode == 0, err
    assert project.smtp.counts() == dict.fromkeys(readers, 1)
    path = project.root / "state.sqlite3"
    assert statefile_rows(path, "SELECT COUNT(*) FROM issues") == [(1,)]
    assert statefile_rows(path, "SELECT COUNT(DISTINCT claim) FROM deliveries") == [(2,)]
    assert statefile.rows(path, TALLIED) == statefile.rows(path, COUNTED) == [(1, 300, 0, 0)]
