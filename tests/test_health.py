"""Health an operator can act on: /readyz on the public app, and `digest check --health`, which
names a missed slot, a feed failing for days, too many complaints or hard bounces, an outbox
nobody drains and a scheduled backup overdue; /readyz waits for the state's migrations."""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from digest import store
from digest.config.schema import load_config
from digest.core.errors import StateError
from digest.core.models import OutgoingMessage
from digest.store import backup, migrations_postgres
from digest.store.migrations import LATEST
from tests.conftest import Project
from tests.support import statefile
from tests.support.postgres import Cluster, connect, postgres_cluster, postgres_url  # noqa: F401
from tests.support.reports import arf, dsn
from tests.support.serving import serving
from tests.test_store_backends import Where, where  # noqa: F401 (fixture)

FIXTURE = Path(__file__).parent / "fixtures" / "state-0.1.0.sqlite3"
MONDAY = datetime.fromisoformat("2026-11-30T08:00:00+00:00")  # the project's clock, a slot
SCHEDULE = "schedule:\n  cron: '0 8 * * 1'\n  timezone: UTC\n  grace: 6h\n"


def test_readyz_says_ready_then_why_not_in_one_line_naming_nothing(project: Project) -> None:
    with serving(project, "--no-preview") as served:
        ready = httpx.get(f"{served.public}/readyz", timeout=10)
        assert (ready.status_code, ready.text) == (200, "ready\n")
        assert ready.headers["cache-control"] == "no-store"

        # A state from a newer release (a backup restored under an older digest, say).
        statefile.execute(project.root / "state.sqlite3", f"PRAGMA user_version = {LATEST + 1}")
        newer = httpx.get(f"{served.public}/readyz", timeout=10)
        assert newer.status_code == 503
        assert newer.text == (
            f"not ready: the state file was written by a newer digest (schema {LATEST + 1},"
            f" this release knows {LATEST}); upgrade digest\n"
        )
        # Alive all the same: a restart would not help, so /healthz does not ask for one.
        assert httpx.get(f"{served.public}/healthz", timeout=10).status_code == 200

        (project.root / "state.sqlite3").write_bytes(b"not a database" * 100)
        damaged = httpx.get(f"{served.public}/readyz", timeout=10)
        assert damaged.status_code == 503
        assert damaged.text.startswith("not ready: ") and damaged.text.count("\n") == 1
        assert str(project.root) not in damaged.text
    assert "not ready" in served.stderr  # the detail is in the log


def test_readyz_says_not_ready_while_the_state_awaits_its_migrations(project: Project) -> None:
    state_file = project.root / "state.sqlite3"
    with serving(project, "--no-preview") as served:
        assert httpx.get(f"{served.public}/readyz", timeout=10).text == "ready\n"

        # A replica of the previous release wrote the state: this one's migrations are pending.
        statefile.execute(state_file, f"PRAGMA user_version = {LATEST - 1}")
        older = httpx.get(f"{served.public}/readyz", timeout=10)
        assert older.status_code == 503
        assert older.text == (
            f"not ready: the state file is at schema {LATEST - 1}, older than this release's"
            f" {LATEST}: its migrations have not been applied yet (digest applies them when it"
            " next opens the state to write, e.g. at `digest serve` start)\n"
        )
        # Read, not upgraded: the probe applied nothing.
        assert statefile.value(state_file, "PRAGMA user_version") == LATEST - 1

        statefile.execute(state_file, f"PRAGMA user_version = {LATEST}")
        again = httpx.get(f"{served.public}/readyz", timeout=10)
        assert (again.status_code, again.text) == (200, "ready\n")
    assert "not ready: the state file is at schema" in served.stderr


def test_schema_status_reads_a_state_without_upgrading_it(project: Project) -> None:
    config = load_config(project.config)
    state_file = project.root / "state.sqlite3"
    assert store.schema_status(config) == store.SchemaStatus(0, LATEST)  # none yet

    shutil.copy(FIXTURE, state_file)
    before = state_file.read_bytes()
    status = store.schema_status(config)
    assert (status.version, status.standing) == (0, "older")
    assert state_file.read_bytes() == before and not Path(f"{state_file}-wal").exists()

    with store.open(config) as state:  # a writing open applies the migrations, keeping the data
        assert state.ledger.history(10)
    assert store.schema_status(config).standing == "current"

    statefile.execute(state_file, f"PRAGMA user_version = {LATEST + 2}")
    assert store.schema_status(config) == store.SchemaStatus(LATEST + 2, LATEST)
    assert store.schema_status(config).standing == "newer"

    statefile.execute(state_file, "PRAGMA user_version = 0")
    statefile.execute(state_file, "DROP TABLE issues")
    with pytest.raises(StateError, match="not a digest state file"):
        store.schema_status(config)


def set_schema(location: Where, version: int) -> None:
    """Record `version` as the state's schema, as another release would have left it."""
    if isinstance(location.state_path, store.DatabaseURL):
        with connect(location.state_path.url) as connection:
            connection.execute("UPDATE digest_schema SET version = %s", (version,))
    else:
        statefile.execute(location.state_path, f"PRAGMA user_version = {version}")


def test_schema_status_on_either_backend(where: Where) -> None:  # noqa: F811 (the fixture)
    latest = (
        migrations_postgres.LATEST if isinstance(where.state_path, store.DatabaseURL) else LATEST
    )
    assert store.schema_status(where) == store.SchemaStatus(0, latest)  # empty
    with store.open(where) as state:
        state.ledger.latest_slot_key()
    assert store.schema_status(where).standing == "current"
    set_schema(where, latest - 1)
    assert store.schema_status(where) == store.SchemaStatus(latest - 1, latest)
    assert store.schema_status(where).standing == "older"
    assert store.schema_status(where).version == latest - 1  # the read applied nothing
    set_schema(where, latest + 1)
    assert store.schema_status(where).standing == "newer"


def health(project: Project, now: datetime) -> subprocess.CompletedProcess[str]:
    return project.run_process("check", "--health", now=now)


def test_health_names_the_missed_slot_and_the_feed_failing_for_days(project: Project) -> None:
    project.write_config(SCHEDULE)
    first = project.run_process("run", "--once", now=MONDAY)
    assert first.returncode == 0, first.stderr
    within_grace = health(project, MONDAY + timedelta(hours=1))
    assert (within_grace.returncode, within_grace.stdout) == (0, "healthy\n")

    # The news feed breaks on Tuesday; a send that day records when it began to fail.
    project.feeds.add("/news.xml", "gone", status=500)
    tuesday = MONDAY + timedelta(days=1)
    assert project.run_process("send", now=tuesday).returncode == 0

    # Next Monday, two hours after the slot: still within its grace, the feed failing 6 days.
    next_slot = MONDAY + timedelta(days=7)
    assert health(project, next_slot + timedelta(hours=2)).stdout == "healthy\n"

    # Seven hours after it, with nothing recorded: the slot was missed.
    late = health(project, next_slot + timedelta(hours=7))
    assert late.returncode == 1
    assert late.stdout == (
        "slot 2026-12-07T08:00:00+00:00 missed: no issue and no skip recorded 7:00:00 after it"
        " (grace 6:00:00); is `digest run` running?\n"
    )

    # A day later the feed has been failing for 7 days as well: one line per problem.
    later = health(project, tuesday + timedelta(days=7, hours=1))
    assert later.returncode == 1
    lines = later.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("slot 2026-12-07T08:00:00+00:00 missed")
    assert lines[1].startswith("feed 'Latest news' has failed for 7 days (1 fetches): ")
    assert later.stderr == ""


def test_health_thresholds_come_from_the_config(project: Project) -> None:
    project.write_config("health:\n  feed_failing_days: 2\n")
    project.feeds.add("/news.xml", "gone", status=500)
    assert project.run_process("send", now=MONDAY).returncode == 0

    assert health(project, MONDAY + timedelta(days=1)).stdout == "healthy\n"
    stale = health(project, MONDAY + timedelta(days=2))
    assert stale.returncode == 1
    assert stale.stdout.startswith("feed 'Latest news' has failed for 2 days")


def test_health_names_complaint_and_hard_bounce_rates_over_their_limits(
    project: Project,
) -> None:
    project.write_subscribers(*(f"reader{n}@example.com,Reader {n}" for n in range(40)))
    assert project.run_process("send").returncode == 0
    assert health(project, MONDAY + timedelta(hours=1)).stdout == "healthy\n"
    sent = {message.recipients[0]: message.data for message in project.smtp.received}

    # One complaint in 40 delivered (2.5%) is over 0.3%; one hard bounce (2.5%) is over 2%.
    complaint = arf("reader1@example.com", sent["reader1@example.com"])
    assert project.run("bounces", "--stdin", input=complaint).exit_code == 0
    bounce = dsn("reader2@example.com", sent["reader2@example.com"])
    assert project.run("bounces", "--stdin", input=bounce).exit_code == 0

    result = health(project, MONDAY + timedelta(hours=2))

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "issue 1: complaint rate 2.50% (1 of 40 delivered) is over health.complaint_rate (0.3%)",
        "issue 1: hard-bounce rate 2.50% (1 of 40 delivered) is over health.hard_bounce_rate (2%)",
    ]
    assert "reader1" not in result.stdout + result.stderr


def queue_confirmation(project: Project, email: str, queued: datetime) -> None:
    """A confirmation email put in the outbox at `queued`, as a sign-up would, and not sent."""
    body = f"From: digest@example.org\r\nTo: {email}\r\nSubject: Confirm\r\n\r\nHi\r\n"
    message = OutgoingMessage("digest@example.org", email, body.encode("ascii"), False)
    with store.open(load_config(project.config)) as state:
        state.outbox.add("confirmation", email, message, queued)


def test_health_names_an_outbox_nobody_drains(project: Project) -> None:
    queue_confirmation(project, "ann@example.com", MONDAY)
    queue_confirmation(project, "bob@example.com", MONDAY + timedelta(minutes=20))

    waiting = health(project, MONDAY + timedelta(minutes=59))
    assert (waiting.returncode, waiting.stdout) == (0, "healthy\n")

    stuck = health(project, MONDAY + timedelta(hours=1))
    assert stuck.returncode == 1
    assert stuck.stdout == (
        "outbox stuck: its oldest email has waited 1:00:00 (2 waiting), over"
        " health.outbox_stuck_after (1:00:00); is `digest serve` or `digest run` running, and"
        " does the SMTP server accept their mail?\n"
    )
    assert "ann@" not in stuck.stdout + stuck.stderr
    assert stuck.stderr == ""

    # The threshold is the operator's; and a drained outbox is healthy again.
    project.write_config("health:\n  outbox_stuck_after: 30m\n")
    assert health(project, MONDAY + timedelta(minutes=31)).returncode == 1
    with store.open(load_config(project.config)) as state:
        for entry in state.outbox.claim("test", MONDAY + timedelta(hours=1), timedelta(minutes=5)):
            assert state.outbox.sent(entry)
    assert health(project, MONDAY + timedelta(days=1)).stdout == "healthy\n"


def test_health_names_a_scheduled_backup_older_than_expected(project: Project) -> None:
    from digest.run.schedule import Clock, take_backup

    project.write_config("backup:\n  every: 12h\n  to: backups\n")
    folder = project.root / "backups"
    none_yet = health(project, MONDAY)
    assert none_yet.returncode == 1
    assert none_yet.stdout == (
        f"no scheduled backup in {folder}: `digest run` takes one every 12:00:00; is it running,"
        " and does its log say why not?\n"
    )

    assert project.run_process("send", now=MONDAY).returncode == 0
    take_backup(load_config(project.config), Clock.starting_at(MONDAY))
    assert backup.scheduled_times([path.name for path in folder.iterdir()]) == {
        backup.scheduled_name(MONDAY): MONDAY
    }
    # backup.every plus two hours (the scheduler looks every hour) is still on time.
    on_time = health(project, MONDAY + timedelta(hours=14))
    assert (on_time.returncode, on_time.stdout) == (0, "healthy\n")

    overdue = health(project, MONDAY + timedelta(hours=14, minutes=1))
    assert overdue.returncode == 1
    assert overdue.stdout == (
        f"backup overdue: the newest in {folder} is 14:01:00 old, over backup.every (12:00:00)"
        " plus 2:00:00; is `digest run` running, and does its log say why not?\n"
    )

    # A newer backup taken by the schedule makes it healthy again; files it did not name do not.
    (folder / "digest-manual.sqlite3").write_bytes(b"")
    take_backup(load_config(project.config), Clock.starting_at(MONDAY + timedelta(hours=14)))
    assert health(project, MONDAY + timedelta(hours=15)).stdout == "healthy\n"
