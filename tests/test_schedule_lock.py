"""State file locks: exclusive across processes and threads, re-entrant in a thread, crash-safe."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.store.locks import LockHeld, hold_lock, lock_path

HOLDER = """
import sys, time
from pathlib import Path
from digest.store.locks import hold_lock
with hold_lock(Path(sys.argv[1]), "send"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def other_process(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the send lock on tmp_path/digest.sqlite3."""
    state = tmp_path / "digest.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    yield process
    if process.poll() is None:
        process.kill()
        process.wait(10)


def test_lock_held_by_another_process_names_it(
    tmp_path: Path, other_process: subprocess.Popen[str]
) -> None:
    state = tmp_path / "digest.sqlite3"
    with pytest.raises(LockHeld) as raised, hold_lock(state, "send"):
        pass
    message = str(raised.value)
    match = re.fullmatch(
        r"another digest send \(pid (\d+) on (\S+) since (\S+)\) holds the lock (\S+)", message
    )
    assert match, message
    assert int(match.group(1)) == other_process.pid
    assert match.group(2) == socket.gethostname()
    assert match.group(4) == str(lock_path(state, "send").resolve())
    assert raised.value.exit_code == 1


def test_waiting_gives_up_after_the_wait_or_when_stopped(
    tmp_path: Path, other_process: subprocess.Popen[str]
) -> None:
    state = tmp_path / "digest.sqlite3"
    started = time.monotonic()
    with pytest.raises(LockHeld), hold_lock(state, wait=0.5):
        pass
    # It waited (a lower bound, which a busy machine cannot meet early) and then gave up (the
    # upper bound is a guard, ten times the wait).
    assert 0.4 < time.monotonic() - started < 5
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    with pytest.raises(LockHeld), hold_lock(state, wait=60, stop=stop):
        pass
    assert time.monotonic() - started < 30  # not the 60 s wait


def test_a_killed_holder_leaves_no_stale_lock(
    tmp_path: Path, other_process: subprocess.Popen[str]
) -> None:
    other_process.kill()
    other_process.wait(10)
    with hold_lock(tmp_path / "digest.sqlite3", "send") as path:
        assert path.exists()


def test_run_and_send_locks_are_separate_and_reentrant(tmp_path: Path) -> None:
    state = tmp_path / "digest.sqlite3"
    with hold_lock(state, "run"), hold_lock(state, "send", command="run") as path:
        with hold_lock(state, "send"):
            assert '"command": "run"' in path.read_text(encoding="utf-8")
        assert path.read_text(encoding="utf-8")
    assert path.read_text(encoding="utf-8") == ""
    probe = subprocess.run(
        [sys.executable, "-c", HOLDER.replace("time.sleep(60)", "pass"), str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.stdout.strip() == "held", probe.stderr


def test_another_thread_of_the_same_process_is_refused_while_one_holds_the_lock(
    tmp_path: Path,
) -> None:
    state = tmp_path / "digest.sqlite3"
    taken, release = threading.Event(), threading.Event()
    reentered: list[bool] = []

    def holder() -> None:
        with hold_lock(state, "send", command="run"):
            with hold_lock(state, "send"):  # the same thread again: fine
                reentered.append(True)
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert taken.wait(10)
        assert reentered == [True]
        with pytest.raises(LockHeld) as raised, hold_lock(state, "send"):
            pass
        assert f"another digest run (pid {os.getpid()} on " in str(raised.value)
        started = time.monotonic()
        with pytest.raises(LockHeld), hold_lock(state, "send", wait=0.5):
            pass
        assert time.monotonic() - started >= 0.4
    finally:
        release.set()
        thread.join(10)
    with hold_lock(state, "send") as path:
        assert '"command": "send"' in path.read_text(encoding="utf-8")


def test_a_thread_waiting_for_the_lock_gets_it_when_the_other_thread_lets_go(
    tmp_path: Path,
) -> None:
    state = tmp_path / "digest.sqlite3"
    taken = threading.Event()
    letting_go: list[float] = []

    def holder() -> None:
        with hold_lock(state, "send"):
            taken.set()
            time.sleep(0.5)
            letting_go.append(time.monotonic())

    thread = threading.Thread(target=holder)
    thread.start()
    assert taken.wait(10)
    with hold_lock(state, "send", wait=10):
        assert letting_go and time.monotonic() > letting_go[0]  # only once the holder let go
    thread.join(10)
