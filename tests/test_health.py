"""Health an operator can act on: /readyz on the public app, and `digest check --health`, which
names a missed slot, a feed failing for days and too many complaints or hard bounces."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta

import httpx

from digest.store.migrations import LATEST
from tests.conftest import Project
from tests.support import statefile
from tests.support.reports import arf, dsn
from tests.support.serving import serving

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
