"""SIGTERM and Ctrl-C as real signals to real `digest send` and `digest run` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler

import pytest

from digest.core.stopping import GracefulStop
from digest.store.locks import hold_lock
from tests.conftest import Project
from tests.support import statefile
from tests.support.feedserver import Route
from tests.test_schedule_run import SLOT, Daemon, weekly

PEOPLE = [f"reader{n}@example.com" for n in range(8)]


def start_send(project: Project) -> subprocess.Popen[str]:
    """`digest send` as a real process, its output collected when it ends."""
    env = {**os.environ, "DIGEST_NOW": project.now.isoformat()}
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(project.config), "send"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def rows(project: Project, sql: str) -> list[tuple[object, ...]]:
    return statefile.rows(project.root / "state.sqlite3", sql)


def lock_is_free(project: Project) -> bool:
    with hold_lock(project.root / "state.sqlite3", "send"):
        return True


@pytest.fixture
def hanging_feed(project: Project) -> Iterator[threading.Event]:
    """/news.xml accepts the request and never answers until the returned event is set."""
    release = threading.Event()

    def hang(request: BaseHTTPRequestHandler) -> Route | None:
        release.wait()
        return None

    route = project.feeds.routes["/news.xml"]
    project.feeds.routes["/news.xml"] = Route(body=route.body, handler=hang)
    config = project.config.read_text(encoding="utf-8")
    project.config.write_text(config.replace("timeout: 5", "timeout: 120"), encoding="utf-8")
    yield release
    release.set()


def test_sigterm_while_a_feed_hangs_stops_at_once_and_frees_the_lock(
    project: Project, hanging_feed: threading.Event
) -> None:
    process = start_send(project)
    wait_until(lambda: bool(project.feeds.hits("/news.xml")), process)
    process.send_signal(signal.SIGTERM)
    # The feed never answers and its timeout is 120 s: a send that waited for it would not end
    # within this guard.
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stderr
    assert "SIGTERM received: finishing the messages in flight, then stopping" in stderr
    assert stderr.strip().endswith("Error: stopped while collecting the feeds: nothing was sent"), (
        stderr
    )
    assert lock_is_free(project)
    assert rows(project, "SELECT id FROM issues") == []
    assert rows(project, "SELECT failures FROM feeds WHERE failures > 0") == []
    assert project.smtp.received == []

    hanging_feed.set()
    project.feeds.routes["/news.xml"].handler = None
    after = project.run_process("send")
    assert after.returncode == 0, after.stderr
    assert "Sent issue with 3 posts: 2 delivered" in after.stdout


def received_per_person(project: Project) -> Counter[str]:
    return Counter(r.lower() for item in project.smtp.received for r in item.recipients)


def test_a_second_sigterm_during_a_slow_send_stops_at_once(project: Project) -> None:
    project.write_subscribers(*PEOPLE)
    project.smtp.script.data_delay = 20
    process = start_send(project)
    wait_until(lambda: project.smtp.handler.data_commands >= 1, process)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert process.poll() is None  # the first one waits for the messages in flight
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert project.smtp.received == []  # it ended before the server answered (after 20 s)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM received again: stopped at once" in stderr
    assert lock_is_free(project)
    assert rows(project, "SELECT status FROM deliveries WHERE status = 'sent'") == []
    assert rows(project, "SELECT finished_at FROM issues") == [(None,)]

    project.smtp.script.data_delay = 0
    resumed = project.run_process("send", now=project.now + timedelta(hours=1))
    assert resumed.returncode == 0, resumed.stderr
    assert "(resumed issue 1)" in resumed.stdout
    counts = received_per_person(project)
    assert set(counts) == set(PEOPLE)
    assert sum(count - 1 for count in counts.values()) <= 4  # at most smtp.connections repeat


def test_a_second_sigterm_stops_digest_run_at_once(project: Project) -> None:
    weekly(project)
    project.write_subscribers(*PEOPLE)
    project.smtp.script.data_delay = 20
    with Daemon(project, SLOT + timedelta(minutes=1)) as daemon:
        deadline = time.monotonic() + 30
        while project.smtp.handler.data_commands < 1:
            assert time.monotonic() < deadline, daemon.log
            time.sleep(0.02)
        daemon.process.send_signal(signal.SIGTERM)
        daemon.wait_for("SIGTERM received: finishing the messages in flight")
        assert daemon.process.poll() is None
        assert daemon.terminate(signal.SIGTERM) == 128 + signal.SIGTERM, daemon.log
        assert project.smtp.received == []  # it ended before the server answered (after 20 s)
        assert "SIGTERM received again: stopped at once" in daemon.log
    assert lock_is_free(project)
    assert rows(project, "SELECT finished_at FROM issues") == [(None,)]


def test_outside_the_main_thread_no_handler_is_set() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[bool] = []

    def enter() -> None:
        with GracefulStop() as stop:
            seen.append(stop.is_set())
            seen.append(signal.getsignal(signal.SIGTERM) is before)

    worker = threading.Thread(target=enter)
    worker.start()
    worker.join(10)
    assert seen == [False, True]


def test_the_first_signal_sets_stop_and_the_handlers_are_restored_after() -> None:
    before = signal.getsignal(signal.SIGINT)
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(5)
    assert signal.getsignal(signal.SIGINT) is before
