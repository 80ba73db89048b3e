"""`digest run` as a real process against real HTTP and SMTP servers: catch-up, lock, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import pytest

from digest import store
from tests.conftest import Project
from tests.support import reports, statefile
from tests.support.imapserver import ImapServer, dovecot_missing
from tests.support.smtpserver import free_port

SLOT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # a Monday, 08:00 in London (GMT)
SLOT_LOG = "slot 2026-11-30T08:00:00+00:00"


class Daemon:
    """`python -m digest run` in its own process, its log lines collected as they come."""

    def __init__(self, project: Project, now: datetime, *args: str) -> None:
        env = {**os.environ, "DIGEST_NOW": now.isoformat()}
        command = [sys.executable, "-m", "digest", "--config", str(project.config), "run", *args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """The first log line containing text; fails with the whole log if none comes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.process.poll() is not None:
                self.reader.join(5)
                break
            time.sleep(0.05)
        matches = [line for line in self.lines if text in line]
        assert matches, f"no log line with {text!r}; log was:\n{self.log}"
        return matches[0]

    def terminate(self, number: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send a signal and wait for the exit code."""
        self.process.send_signal(number)
        code = self.process.wait(timeout)
        self.reader.join(5)
        return code

    def __enter__(self) -> Daemon:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def weekly(project: Project, grace: str = "6h") -> None:
    project.write_config(
        f'schedule:\n  day: monday\n  time: "08:00"\n  timezone: Europe/London\n  grace: {grace}\n'
    )


def rows(project: Project, sql: str) -> list[tuple[Any, ...]]:
    return statefile.rows(project.root / "state.sqlite3", sql)


def recipients(project: Project) -> list[str]:
    return sorted(r for item in project.smtp.received for r in item.recipients)


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_catch_up_within_grace_sends_once_and_a_restart_sends_nothing(project: Project) -> None:
    weekly(project)
    with Daemon(project, SLOT + timedelta(hours=1)) as daemon:
        line = daemon.wait_for(f"{SLOT_LOG}: issue")
        assert "3 posts, 2 delivered, 0 failed, 0 pending" in line
        assert line.endswith("next slot 2026-12-07T08:00:00+00:00")
        assert daemon.terminate() == 0, daemon.log
    assert recipients(project) == ["ann@example.com", "bob@example.com"]
    assert rows(project, "SELECT slot_key FROM issues") == [("2026-11-30T08:00:00+00:00",)]

    with Daemon(project, SLOT + timedelta(hours=2)) as restarted:
        restarted.wait_for(f"{SLOT_LOG} already handled")
        assert restarted.terminate() == 0, restarted.log
    assert recipients(project) == ["ann@example.com", "bob@example.com"]
    assert len(project.feeds.hits("/blog.xml")) == 1


def test_slot_missed_beyond_grace_is_skipped_with_a_log_line(project: Project) -> None:
    weekly(project, grace="1h")
    with store.open_path(project.root / "state.sqlite3") as state:
        state.ledger.record_skipped_slot("2026-11-23T08:00:00+00:00", SLOT, "nothing new")
    with Daemon(project, SLOT + timedelta(hours=3)) as late:
        line = late.wait_for(f"{SLOT_LOG} missed")
        assert "3:00:00 ago, grace 1:00:00" in line and "skipped" in line
        assert late.terminate() == 0
    skipped = rows(project, "SELECT slot_key FROM skipped_slots ORDER BY slot_key")
    assert skipped == [("2026-11-23T08:00:00+00:00",), ("2026-11-30T08:00:00+00:00",)]
    assert project.smtp.received == []


def test_scheduler_fires_when_the_slot_comes(project: Project) -> None:
    weekly(project)
    with Daemon(project, SLOT - timedelta(seconds=3)) as daemon:
        start = daemon.wait_for("digest run:")
        assert start.endswith("next slot 2026-11-30T08:00:00+00:00")
        line = daemon.wait_for(f"{SLOT_LOG}: issue", timeout=30)
        assert "2 delivered" in line
        assert daemon.terminate() == 0
    assert recipients(project) == ["ann@example.com", "bob@example.com"]


def test_second_run_on_the_same_state_exits_1_naming_the_holder(project: Project) -> None:
    weekly(project)
    with Daemon(project, SLOT + timedelta(days=2)) as daemon:
        daemon.wait_for("digest run:")
        for args in (("run",), ("run", "--once")):
            second = project.run_process(*args, now=SLOT + timedelta(days=2))
            assert second.returncode == 1, second.stderr
            match = re.search(
                r"Error: another digest run \(pid (\d+) on (\S+) since (\S+)\) holds the lock"
                r" (\S+)$",
                second.stderr.strip(),
            )
            assert match, second.stderr
            assert int(match.group(1)) == daemon.process.pid
            assert match.group(4).endswith("state.sqlite3.run.lock")
        assert daemon.terminate() == 0
    assert project.smtp.received == []
    after = project.run_process("run", "--once", now=SLOT - timedelta(hours=1))
    assert after.returncode == 0, after.stderr


@pytest.fixture
def slow_smtp(project: Project) -> Iterator[None]:
    """Hold each 250 reply for 0.7 s after the message has arrived."""
    handler = project.smtp.handler
    original = handler.handle_DATA

    async def slow(*args: Any) -> str:
        reply = await original(*args)
        await asyncio.sleep(0.7)
        return reply

    handler.handle_DATA = slow  # type: ignore[method-assign]
    yield
    handler.handle_DATA = original  # type: ignore[method-assign]


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_send_finishes_the_message_in_flight_and_exits_0(
    project: Project, slow_smtp: None, number: int
) -> None:
    weekly(project)
    everyone = sorted(f"reader{n}@example.com" for n in range(16))  # more than connections
    project.write_subscribers(*everyone)
    with Daemon(project, SLOT + timedelta(minutes=1)) as daemon:
        wait_until(lambda: len(project.smtp.received) >= 1)
        assert daemon.terminate(number) == 0, daemon.log
    received = recipients(project)
    recorded = rows(project, "SELECT email FROM deliveries WHERE status = 'sent' ORDER BY email")
    assert 1 <= len(received) < len(everyone)
    assert [email for (email,) in recorded] == received
    assert rows(project, "SELECT finished_at FROM issues") == [(None,)]

    with Daemon(project, SLOT + timedelta(minutes=10)) as restarted:
        restarted.wait_for("resuming unfinished issue 1")
        restarted.wait_for(f"{SLOT_LOG}: issue 1 (resumed issue 1)")
        assert restarted.terminate() == 0
    assert recipients(project) == everyone


def test_a_slot_that_fails_is_retried_with_the_config_as_edited_meanwhile(
    project: Project,
) -> None:
    weekly(project)
    good = project.config.read_text(encoding="utf-8") + "  retry_every: 1s\n"
    closed_port = free_port()
    project.config.write_text(
        good.replace(f"port: {project.smtp.port}", f"port: {closed_port}"), encoding="utf-8"
    )
    with Daemon(project, SLOT + timedelta(minutes=1)) as daemon:
        failure = daemon.wait_for("slot failed:")
        assert f"127.0.0.1:{closed_port}: cannot connect" in failure
        daemon.wait_for("retrying in 0:00:01")
        assert project.smtp.received == []
        project.config.write_text(good, encoding="utf-8")  # the operator fixes the port
        line = daemon.wait_for(f"{SLOT_LOG}: issue 1")
        assert "2 delivered, 0 failed, 0 pending" in line
        time.sleep(2.5)  # retries have stopped: nothing more arrives
        assert daemon.terminate() == 0, daemon.log
    assert recipients(project) == ["ann@example.com", "bob@example.com"]
    assert rows(project, "SELECT slot_key FROM issues") == [("2026-11-30T08:00:00+00:00",)]


@pytest.mark.skipif(dovecot_missing() is not None, reason=str(dovecot_missing()))
def test_the_bounce_mailbox_is_polled_and_a_bounced_address_suppressed(project: Project) -> None:
    assert project.run("send").exit_code == 0
    bounced = reports.dsn("ann@example.com", project.smtp.to("ann@example.com")[-1].data)
    with ImapServer() as imap:
        imap.append("INBOX", bounced)
        project.write_config(
            'schedule:\n  day: monday\n  time: "08:00"\n  timezone: Europe/London\n'
            + imap.settings()
            + "  poll_every: 1s\n"
        )
        with Daemon(project, SLOT + timedelta(days=2)) as daemon:
            line = daemon.wait_for("bounce mailbox:")
            assert "'suppressed': 1" in line, daemon.log
            assert rows(project, "SELECT email, source FROM suppressions") == [
                ("ann@example.com", "bounce")
            ]
            assert imap.messages("INBOX") == [] and len(imap.messages("digest-processed")) == 1
            assert daemon.terminate() == 0, daemon.log
        assert "digest run stopped" in daemon.log
    assert len(project.smtp.received) == 2  # only the issue sent before; the poll sends nothing
