"""The SQLite state's locks: exclusive file locks beside the state file, so two processes never
send at once.

Callers take them through `digest.store.lock`, which a backend on a database server implements
its own way.

Each named lock is an `fcntl.flock` on a small file next to the state file:

- `run` (digest.sqlite3.run.lock): held by `digest run` for its whole life; one scheduler per state.
- `send` (digest.sqlite3.send.lock): held for the duration of any send, by the scheduler or by
  `digest send`, so two issues are never frozen at once. Another sender started meanwhile joins
  the issue being sent without it (digest.run.send).
- `sender-...` (one per sending process, named by a random part of its claim): held while that
  process sends; free means the process is gone, so the others take its batch over at once. Its
  file is removed when released (`transient`).
- `archive` (digest.sqlite3.archive.lock): held while the archive's files are written.

The lock file records who holds it (pid, host, start time, command) for the error message.
The kernel releases a flock when its process dies, so a crash never leaves a stale lock.
Locks are re-entrant within one thread: the scheduler holds `send` around the send
(digest.run.send),
which takes it again on the same thread. Another thread of the same process is refused (or
waits) exactly like another process: flock locks belong to an open file, and each holder opens
its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from digest.core.errors import DigestError, LockHeld

_held: dict[tuple[Path, int], list[int]] = {}  # (lock file, thread id) -> [descriptor, depth]
_held_guard = threading.Lock()
_POLL_SECONDS = 0.2


def lock_path(state_path: Path, name: str) -> Path:
    """The lock file for `name` ('run' or 'send') beside the state database."""
    return state_path.with_name(f"{state_path.name}.{name}.lock")


def describe_holder(path: Path) -> str:
    """'pid N on HOST since TIME' from a lock file, or 'unknown' if it cannot be read."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"{info['command']} (pid {info['pid']} on {info['host']} since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "process (unknown pid)"


@contextmanager
def hold_lock(
    state_path: Path,
    name: str = "send",
    *,
    wait: float = 0.0,
    stop: threading.Event | None = None,
    command: str | None = None,
    transient: bool = False,
) -> Iterator[Path]:
    """Hold the named lock for the block; LockHeld if another process keeps it past `wait` s.

    `command` (default: the lock's name) is the digest command recorded as the holder.
    `transient`: the lock file is removed when released (a lock named for one process only).
    """
    path = lock_path(state_path, name).resolve()
    key = (path, threading.get_ident())
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield path
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    descriptor = _acquire(path, command or name, wait, stop)
    entry = [descriptor, 1]
    with _held_guard:
        _held[key] = entry
    try:
        yield path
    finally:
        with _held_guard:
            del _held[key]
        if transient:
            path.unlink(missing_ok=True)
        os.ftruncate(descriptor, 0)
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def lock_is_free(state_path: Path, name: str) -> bool:
    """Whether nobody holds the named lock now: its holder released it or died (the kernel
    drops a dead process's flock). A free lock's file is removed: it was a transient one's."""
    path = lock_path(state_path, name).resolve()
    try:
        descriptor = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    except OSError as error:
        raise DigestError(f"{path}: cannot open the lock file: {error.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(descriptor)


def _acquire(path: Path, command: str, wait: float, stop: threading.Event | None) -> int:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise DigestError(f"{path}: cannot create the lock file: {error.strerror}") from None
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                os.close(descriptor)
                holder = describe_holder(path)
                raise LockHeld(f"another digest {holder} holds the lock {path}") from None
            time.sleep(_POLL_SECONDS)
    since = datetime.now(UTC).astimezone().isoformat(timespec="seconds")
    record = {"command": command, "pid": os.getpid(), "host": socket.gethostname(), "since": since}
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(record).encode("utf-8"), 0)
    return descriptor
