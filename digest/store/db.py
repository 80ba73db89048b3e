"""The state file's connection: owner-only creation, read-only opening, schema upgrades.

Writing commands open the file read-write: digest creates it (and its folder) owner-only,
0600 and 0700, since it holds the token-signing secret, and an older file is upgraded in place
on the spot, in one transaction. Commands that only read open it with `mode=ro` and change
nothing on disk: a missing file reads as an empty state, an older file is upgraded in a private
in-memory copy (the file itself waits for the next writing command), a file in a read-only
folder is read as it stands (SQLite's `immutable`). A file from a newer digest is refused
either way.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path

from digest.errors import StateError
from digest.store.migrations import LATEST, migrate, schema_version

logger = logging.getLogger(__name__)

BUSY_TIMEOUT = 30.0
# What SQLite answers when a WAL file's shared-memory file cannot be created beside it.
_NO_SHARED_MEMORY = ("SQLITE_CANTOPEN", "SQLITE_READONLY")


def iso(value: datetime) -> str:
    """A timezone-aware time as stored: UTC ISO 8601, so text order is time order."""
    if value.tzinfo is None:
        raise ValueError("naive datetime reached the state database")
    return value.astimezone(UTC).isoformat()


def parse_time(value: str | None) -> datetime | None:
    """A stored time back as a datetime; None stays None."""
    return datetime.fromisoformat(value) if value else None


# How long a best-effort cache write waits for another writer before giving up.
_CACHE_WRITE_TIMEOUT = 0.2


def write_if_current(path: Path, write: Callable[[sqlite3.Connection], None]) -> None:
    """Run `write` in one transaction on an existing state file at the latest schema, for a
    cache written by a command that otherwise only reads; skip it if the file is missing,
    older, busy or read-only (the cache is an optimisation: a preview never creates or
    upgrades a state file, and never waits)."""
    if not path.is_file():
        return
    try:
        connection = sqlite3.connect(path, timeout=_CACHE_WRITE_TIMEOUT, isolation_level=None)
    except sqlite3.Error:
        return
    try:
        if int(connection.execute("PRAGMA user_version").fetchone()[0]) != LATEST:
            return  # the next writing command upgrades it
        connection.execute("BEGIN IMMEDIATE")
        write(connection)
        connection.execute("COMMIT")
    except sqlite3.Error as error:
        logger.debug("cache not written to %s: %s", path, error)
    finally:
        connection.close()


def explain(path: Path, error: sqlite3.Error) -> StateError:
    """The one-line error for a state file SQLite cannot use, saying what to do."""
    name = getattr(error, "sqlite_errorname", "")
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return StateError(
            f"state file {path} is busy: another process kept it locked for"
            f" {BUSY_TIMEOUT:g} s ({error}); try again"
        )
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR")):
        return StateError(
            f"cannot use state file {path} ({error}); check that digest may read and write it"
            " and its folder"
        )
    return StateError(
        f"state file {path} is damaged or is not a digest state file ({error}); restore it"
        " from a backup, or move it aside and digest starts a new one (which forgets what was"
        " sent)"
    )


class Database:
    """One SQLite connection with a re-entrant transaction; every repository shares it."""

    def __init__(self, connection: sqlite3.Connection, path: Path, *, read_only: bool) -> None:
        self.connection = connection
        self.path = path
        self.read_only = read_only
        self._depth = 0
        connection.row_factory = sqlite3.Row

    def execute(self, sql: str, parameters: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """Run one statement (committed at once outside a transaction)."""
        return self.connection.execute(sql, parameters)

    def executemany(self, sql: str, rows: list[tuple[object, ...]]) -> sqlite3.Cursor:
        """Run one statement for each row."""
        return self.connection.executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run statements atomically, all or none; an inner block joins the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.connection.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0
        self.connection.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def open_database(path: Path, *, read_only: bool = False) -> Database:
    """The state file at `path`, at the latest schema; StateError if it cannot be used."""
    try:
        if read_only:
            return _open_read_only(path)
        return _open_writable(path)
    except sqlite3.DatabaseError as error:
        raise explain(path, error) from None


def _create_owner_only(path: Path) -> None:
    """Make the folder (0700) and an empty file (0600) when they do not exist yet."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        raise StateError(
            f"cannot create state file {path}: {error.strerror}; check the folder exists"
            " and digest may write there"
        ) from None
    os.close(descriptor)


def _open_writable(path: Path) -> Database:
    _create_owner_only(path)
    if path.is_dir():
        raise StateError(f"state file {path} is a folder; point `state:` in config.yaml at a file")
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    database = Database(connection, path, read_only=False)
    try:
        schema_version(connection, path)  # refuses a newer or foreign file before any write
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as error:
            raise explain(path, error) from None
        connection.execute("PRAGMA synchronous=NORMAL")
        migrate(connection, path)
    except BaseException:
        connection.close()
        raise
    return database


def _open_read_only(path: Path) -> Database:
    if not path.exists():
        memory = sqlite3.connect(":memory:", isolation_level=None)
        migrate(memory, path)
        memory.execute("PRAGMA query_only = ON")
        return Database(memory, path, read_only=True)
    if path.is_dir():
        raise StateError(f"state file {path} is a folder; point `state:` in config.yaml at a file")
    uri = path.resolve().as_uri()
    connection = sqlite3.connect(
        f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT, isolation_level=None
    )
    try:
        version = schema_version(connection, path)
    except sqlite3.OperationalError as error:
        connection.close()
        if not getattr(error, "sqlite_errorname", "").startswith(_NO_SHARED_MEMORY):
            raise
        # A WAL file whose folder this process cannot write has no shared-memory file to
        # coordinate through: read it as it stands.
        connection = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)
        version = schema_version(connection, path)
    except BaseException:
        connection.close()
        raise
    if version == LATEST:
        return Database(connection, path, read_only=True)
    memory = sqlite3.connect(":memory:", isolation_level=None)
    with closing(connection):
        connection.backup(memory)
    migrate(memory, path)
    memory.execute("PRAGMA query_only = ON")  # a write here would be lost: refuse it
    return Database(memory, path, read_only=True)
