"""What a repository needs from the database it is written against: the Backend protocol.

Repositories (feeds, ledger, suppressions...) hold a Backend and nothing else: they run
parameterised statements, group them in transactions, and read rows by column name. Everything
about one kind of database stays behind the protocol: opening it, its schema upgrades, its
locks, turning its errors into one-line StateErrors, and the parts of an erasure that depend on
how it keeps deleted bytes. digest.store.sqlite and digest.store.postgres implement it.

Statements are written in the SQL both SQLite and PostgreSQL read, with `?` placeholders (the
PostgreSQL backend translates them, and adds RETURNING for `lastrowid`); see the store
package's docstring.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from digest.core.errors import StateError


def iso(value: datetime) -> str:
    """A timezone-aware time as stored: UTC ISO 8601, so text order is time order."""
    if value.tzinfo is None:
        raise ValueError("naive datetime reached the state database")
    return value.astimezone(UTC).isoformat()


def parse_time(value: str | None) -> datetime | None:
    """A stored time back as a datetime; None stays None."""
    return datetime.fromisoformat(value) if value else None


class Cursor(Protocol):
    """The result of one statement: its rows (read by column name or position) and counts."""

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""
        ...

    @property
    def lastrowid(self) -> int | None:
        """The id of the row an INSERT made."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        ...

    def __iter__(self) -> Iterator[Any]: ...


class Executor(Protocol):
    """Runs statements: what a write handed to `Backend.write_if_current` is given."""

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Cursor:
        """Run one statement (committed at once outside a transaction)."""
        ...

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> Cursor:
        """Run one statement for each row."""
        ...


class Backend(Executor, Protocol):
    """One open connection to the state, shared by every repository of a State."""

    @property
    def read_only(self) -> bool:
        """Whether it was opened without the right to write (a read-only command)."""
        ...

    @property
    def skip_locked(self) -> str:
        """What a SELECT that claims rows ends with: " FOR UPDATE SKIP LOCKED" where the
        database locks rows, "" where a writing transaction already excludes other writers."""
        ...

    @property
    def where(self) -> str:
        """The state's file or address, for messages."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Statements run atomically, all or none; an inner block joins the outer one."""
        ...

    def write_if_current(self, write: Callable[[Executor], None]) -> None:
        """Run `write` in one transaction, for a cache: on a state opened read-only, only if
        the stored state already exists at the latest schema and is free at once, never
        creating, upgrading or waiting for it (and silently skipped otherwise)."""
        ...

    def lock(
        self,
        name: str,
        *,
        wait: float = 0.0,
        stop: threading.Event | None = None,
        command: str | None = None,
    ) -> AbstractContextManager[str]:
        """Hold the state's named lock (see digest.store.lock) for the block."""
        ...

    def explain(self, error: BaseException) -> StateError | None:
        """The one-line StateError for a failure of the database, saying what to do; None
        when `error` is not the database's."""
        ...

    # The erasure (digest.store.erasure) depends on how the database keeps deleted bytes.

    def columns(self) -> dict[str, tuple[str, ...]]:
        """Every table of the state with its columns."""
        ...

    def erase_securely(self) -> None:
        """From now on, overwrite what is deleted rather than only marking it free."""
        ...

    def flush(
        self, patience: float, sleep: Callable[[float], None], clock: Callable[[], float]
    ) -> bool:
        """Make deletions final in the stored files (a log folded in and emptied); False when
        other readers held it up for longer than `patience` seconds."""
        ...

    def holds_bytes(self, texts: Sequence[str]) -> bool:
        """Whether the stored files hold any of `texts`, in any ASCII case, row or not."""
        ...

    def rebuild(self) -> None:
        """Rewrite the stored files from the live rows, leaving no freed space behind."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...
