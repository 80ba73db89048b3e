"""The SQLite backend: the state file's connection, owner-only creation, read-only opening,
schema upgrades, and what an erasure needs of SQLite.

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
import mmap
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from pathlib import Path

from digest.core.errors import StateError
from digest.store.backend import Executor
from digest.store.locks import hold_lock
from digest.store.migrations import LATEST, migrate, schema_version

logger = logging.getLogger(__name__)

DEFAULT_FILE = "digest.sqlite3"  # config.yaml's `state:` when it names none
BUSY_TIMEOUT = 30.0
# What SQLite answers when a WAL file's shared-memory file cannot be created beside it.
_NO_SHARED_MEMORY = ("SQLITE_CANTOPEN", "SQLITE_READONLY")


# How long a best-effort cache write waits for another writer before giving up.
_CACHE_WRITE_TIMEOUT = 0.2
_CHECKPOINT_BUSY_MS = 100  # how long one checkpoint attempt lets SQLite wait for readers
_RETRY_EVERY = 0.1


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


class SQLiteBackend:
    """One SQLite connection with a re-entrant transaction; every repository shares it.

    A failure of SQLite leaves a statement as a one-line StateError naming the file (a
    constraint a statement breaks, which is a bug of digest's, as a RuntimeError): no sqlite3
    exception reaches a caller.
    """

    def __init__(self, connection: sqlite3.Connection, path: Path, *, read_only: bool) -> None:
        self.connection = connection
        self.path = path
        self._read_only = read_only
        self._depth = 0
        connection.row_factory = sqlite3.Row

    @property
    def read_only(self) -> bool:
        """Whether it was opened with `mode=ro` (or is a private in-memory copy)."""
        return self._read_only

    @property
    def skip_locked(self) -> str:
        """Nothing: a writing transaction (BEGIN IMMEDIATE) already excludes every other writer."""
        return ""

    @property
    def where(self) -> str:
        """The state file's path."""
        return str(self.path)

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> sqlite3.Cursor:
        """Run one statement (committed at once outside a transaction)."""
        try:
            return self.connection.execute(sql, parameters)
        except sqlite3.Error as error:
            raise self._translated(error) from None

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> sqlite3.Cursor:
        """Run one statement for each row."""
        try:
            return self.connection.executemany(sql, rows)
        except sqlite3.Error as error:
            raise self._translated(error) from None

    def _translated(self, error: sqlite3.Error) -> Exception:
        if isinstance(error, sqlite3.IntegrityError | sqlite3.ProgrammingError):
            return RuntimeError(f"state file {self.path}: {error}")
        return explain(self.path, error)

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
        self.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0
        self.execute("COMMIT")

    def write_if_current(self, write: Callable[[Executor], None]) -> None:
        """Run `write` in one transaction: here when the file was opened for writing, else on
        a connection of its own to an existing file at the latest schema, skipped if the file
        is missing, older, busy or read-only (the cache is an optimisation: a preview never
        creates or upgrades a state file, and never waits)."""
        if not self.read_only:
            with self.transaction():
                write(self)
            return
        if not self.path.is_file():
            return
        try:
            connection = sqlite3.connect(
                self.path, timeout=_CACHE_WRITE_TIMEOUT, isolation_level=None
            )
        except sqlite3.Error:
            return
        try:
            if int(connection.execute("PRAGMA user_version").fetchone()[0]) != LATEST:
                return  # the next writing command upgrades it
            other = SQLiteBackend(connection, self.path, read_only=False)
            with other.transaction():
                write(other)
        except (sqlite3.Error, StateError, RuntimeError) as error:
            logger.debug("cache not written to %s: %s", self.path, error)
        finally:
            connection.close()

    def lock(
        self,
        name: str,
        *,
        wait: float = 0.0,
        stop: threading.Event | None = None,
        command: str | None = None,
    ) -> AbstractContextManager[str]:
        """A lock file beside the state file (digest.store.locks)."""
        return lock_beside(self.path, name, wait=wait, stop=stop, command=command)

    def explain(self, error: BaseException) -> StateError | None:
        """SQLite's failures (a page found damaged half-way, say) as a one-line StateError."""
        if isinstance(error, sqlite3.DatabaseError) and not isinstance(
            error, sqlite3.IntegrityError
        ):
            return explain(self.path, error)
        return None

    # -- erasure ---------------------------------------------------------------

    def columns(self) -> dict[str, tuple[str, ...]]:
        """Every table with its columns, from SQLite's own catalogue."""
        found: dict[str, list[str]] = {}
        for row in self.execute(
            "SELECT m.name AS t, c.name AS c FROM sqlite_master m, pragma_table_info(m.name) c"
            " WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, c.cid"
        ):
            found.setdefault(str(row["t"]), []).append(str(row["c"]))
        return {table: tuple(names) for table, names in found.items()}

    def erase_securely(self) -> None:
        """SQLite's `secure_delete`: freed space is overwritten with zeros."""
        self.execute("PRAGMA secure_delete = ON")

    def flush(
        self, patience: float, sleep: Callable[[float], None], clock: Callable[[], float]
    ) -> bool:
        """Fold the write-ahead log into the file and empty it (`wal_checkpoint(TRUNCATE)`),
        retried while a reader of an older snapshot holds it up, for `patience` seconds."""
        deadline = clock() + patience
        timeout = int(self.execute("PRAGMA busy_timeout").fetchone()[0])
        self.execute(f"PRAGMA busy_timeout = {_CHECKPOINT_BUSY_MS}")
        try:
            while True:
                busy = int(self.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
                if not busy:
                    return True
                if clock() >= deadline:
                    logger.warning("checkpoint of %s held up by a reader", self.path)
                    return False
                sleep(_RETRY_EVERY)
        finally:
            self.execute(f"PRAGMA busy_timeout = {timeout}")

    def holds_bytes(self, texts: Sequence[str]) -> bool:
        """Whether the state file or its log holds any of `texts`, in any ASCII case."""
        pattern = re.compile(
            b"|".join(re.escape(text.encode("utf-8")) for text in texts), re.IGNORECASE
        )
        for candidate in (self.path, self.path.with_name(f"{self.path.name}-wal")):
            try:
                with candidate.open("rb") as file:
                    if not file.seek(0, 2):
                        continue
                    with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
                        if pattern.search(data):
                            return True
            except FileNotFoundError:
                continue
        return False

    def rebuild(self) -> None:
        """VACUUM: the file rewritten from its live rows."""
        self.execute("VACUUM")

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def remove_files(path: Path) -> None:
    """Delete the state file at `path` and the log and shared-memory files SQLite keeps beside
    it, for a fresh start (`digest demo`); missing ones are fine."""
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        path.with_name(name).unlink(missing_ok=True)


def open_database(path: Path, *, read_only: bool = False) -> SQLiteBackend:
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


def _open_writable(path: Path) -> SQLiteBackend:
    _create_owner_only(path)
    if path.is_dir():
        raise StateError(f"state file {path} is a folder; point `state:` in config.yaml at a file")
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
    database = SQLiteBackend(connection, path, read_only=False)
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


def _open_read_only(path: Path) -> SQLiteBackend:
    if not path.exists():
        memory = sqlite3.connect(":memory:", isolation_level=None)
        migrate(memory, path)
        memory.execute("PRAGMA query_only = ON")
        return SQLiteBackend(memory, path, read_only=True)
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
        return SQLiteBackend(connection, path, read_only=True)
    memory = sqlite3.connect(":memory:", isolation_level=None)
    with closing(connection):
        connection.backup(memory)
    migrate(memory, path)
    memory.execute("PRAGMA query_only = ON")  # a write here would be lost: refuse it
    return SQLiteBackend(memory, path, read_only=True)


@contextmanager
def lock_beside(
    path: Path,
    name: str,
    *,
    wait: float = 0.0,
    stop: threading.Event | None = None,
    command: str | None = None,
    transient: bool = False,
) -> Iterator[str]:
    """The named lock of the state file at `path`: a lock file beside it (digest.store.locks);
    yields the lock file's path, for log lines."""
    with hold_lock(path, name, wait=wait, stop=stop, command=command, transient=transient) as held:
        yield str(held)
