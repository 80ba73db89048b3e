"""The SQLite state behind one data-access layer: all of digest's SQL lives in this package.

`db` opens the file (owner-only, read-only when asked) and `migrations` upgrades its schema;
the repositories are `feeds` (feeds and posts), `ledger` (issues, deliveries, schedule slots),
`suppressions`, `secrets`, `bounces`, `signups` (sign-ups, consent, rate limits, forgotten
people), `editor` (the next issue's note, posts left out or pinned, approvals and the decisions
on them, posts marked seen) and `webhooks` (the signed webhook requests already accepted).
`State` opens a file and exposes them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from digest.store.feeds import FeedRecord
from digest.store.ledger import IssueSummary, IssueVariant, StoredIssue
from digest.store.locks import hold_lock
from digest.store.secrets import SECRET_ENVIRONMENT_VARIABLE, configured_secret
from digest.store.signups import ConsentEvent, RateLimit, Signup
from digest.store.state import State


class Location(Protocol):
    """What the store needs to know of the configuration: where the state is."""

    @property
    def state_path(self) -> Path:
        """The SQLite state file (config.yaml's `state:`)."""
        ...


def open(config: Location, *, read_only: bool = False) -> State:
    """The project's state, at the latest schema; use it as a context manager.

    `read_only` changes nothing on disk: a missing state reads as empty, an older one is read
    as upgraded without being written. StateError when it cannot be used.
    """
    return open_path(config.state_path, read_only=read_only)


@contextmanager
def lock(
    config: Location,
    name: str,
    *,
    wait: float = 0.0,
    stop: threading.Event | None = None,
    command: str | None = None,
) -> Iterator[str]:
    """Hold the state's lock `name` for the block, naming what holds it in messages.

    "send" is held by whatever sends (or must not overlap a send), "run" by `digest run` for
    its whole life, "archive" while the archive's files are written. LockHeld when another
    process keeps it past `wait` seconds (or until `stop` is set); `command` (default: the
    lock's name) is the digest command recorded as the holder. The SQLite state locks a file
    beside the state file (digest.store.locks), so taking a lock never opens the database; a
    backend on a server locks its own way. Yields where the lock is, for log lines.
    """
    with hold_lock(config.state_path, name, wait=wait, stop=stop, command=command) as path:
        yield str(path)


def open_path(path: Path, *, read_only: bool = False) -> State:
    """The SQLite state file at `path`, for tools and tests that have a file but no
    config.yaml; digest itself opens its state with `open`."""
    return State(path, read_only=read_only)


__all__ = [
    "SECRET_ENVIRONMENT_VARIABLE",
    "ConsentEvent",
    "FeedRecord",
    "IssueSummary",
    "IssueVariant",
    "Location",
    "RateLimit",
    "Signup",
    "State",
    "StoredIssue",
    "configured_secret",
    "lock",
    "open",
    "open_path",
]
