"""The PostgreSQL backend: one database shared by every machine that sends or serves.

`state: postgresql://user@host:port/database` in config.yaml chooses it (digest.store.location).
A command opens one connection (psycopg 3) for its life; `digest serve`, answering many
requests, borrows them from a pool held open with `pool(url)` (psycopg-pool), so a request
does not pay for a new connection. Either way the repositories see the same Backend as with
SQLite (digest.store.backend):

- The shared SQL's `?` placeholders become psycopg's `%s`, in one place (`translate`); an
  INSERT into a table with an `id` gains `RETURNING id`, which gives the cursor its `lastrowid`.
- A transaction is BEGIN ... COMMIT with a transaction-level advisory lock taken first, so
  writing transactions queue one behind the other exactly as SQLite's BEGIN IMMEDIATE makes
  them: a check-then-write inside one (a rate limit, a slot claimed) holds across machines.
  Statements outside a transaction commit at once.
- A lock (`lock`) is a session-level `pg_advisory_lock` keyed by a hash of its name, on a
  connection of its own held for the block: it is released when the block ends, or when the
  holder's connection ends (a crash, a lost network), as a flock is when its process dies. The
  holder's command, pid and host are its connection's `application_name`, shown in LockHeld.
- A read-only command sets `default_transaction_read_only`, so a write is refused, not lost.
  On an empty database it reads an empty state: the schema is created inside a transaction
  that is never committed, so nothing is written.
- Errors become a one-line StateError naming the database with its password masked; a
  constraint a statement breaks (a bug of digest's) a RuntimeError.

Erasure (digest.store.erasure): PostgreSQL keeps a deleted row's bytes in the table's pages
(as a dead tuple, and in the write-ahead log) until VACUUM removes it, and VACUUM only removes
tuples no open snapshot can still see; plain VACUUM marks their space free without
overwriting it. So `flush` waits (for `patience` seconds) until no other session holds a
snapshot older than the erasure, then rewrites every table the erasure touched with VACUUM
FULL: the table, its indexes and its TOAST data are copied, live rows only, into new files,
and the old files are deleted. "The bytes are gone" then means: no file of the live database
holds them. What it cannot promise, and the operator's guide says: the write-ahead log keeps
them until its segments are recycled, a WAL archive or a base backup keeps them for as long as
it is kept, a replica until it replays the rewrite, and the filesystem's freed blocks until
they are reused. A client cannot read the server's files, so `holds_bytes` cannot search them
as SQLite's can: it answers for what it can see (nothing left once the rewrite is done).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import UTC
from functools import lru_cache
from typing import Any

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from digest.core.errors import LockHeld, StateError
from digest.core.redact import redact_text
from digest.store.backend import Executor
from digest.store.location import DatabaseURL
from digest.store.migrations_postgres import LATEST, apply, migrate, schema_version

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10  # seconds to reach the server before giving up
POOL_SIZE = 10  # connections `digest serve` keeps at most, per process
POOL_WAIT = 30.0  # seconds a request waits for a free pooled connection
_POLL_SECONDS = 0.2
_WRITE_LOCK = 0x64696765737477  # the advisory key writing transactions queue on ("digestw")
_RETRY_EVERY = 0.1
# Tables with an identity `id`: an INSERT into one returns it (the cursor's lastrowid).
_ID_TABLES = frozenset({"issues", "consents", "bounce_reports", "approval_decisions", "outbox"})
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)
_CHANGE = re.compile(r"^\s*(?:UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)
_APPLICATION_NAME = 63  # PostgreSQL keeps this many bytes of application_name

_pools: dict[str, ConnectionPool[Any]] = {}
_pools_guard = threading.Lock()


class Row(tuple[Any, ...]):
    """A row read by column name or by position, and unpacked like a tuple (as sqlite3.Row)."""

    _names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self._names[key])
        return super().__getitem__(key)

    def keys(self) -> list[str]:
        """The column names, in order."""
        return list(self._names)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = {column.name: index for index, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


@lru_cache(maxsize=512)
def translate(sql: str) -> tuple[str, bool]:
    """The shared SQL as psycopg runs it: `?` placeholders (outside quotes) as `%s`, a literal
    `%` doubled; and whether it is an INSERT given `RETURNING id` for its lastrowid."""
    out: list[str] = []
    quote = ""
    for character in sql:
        if quote:
            if character == quote:
                quote = ""
        elif character in "'\"":
            quote = character
        elif character == "?":
            out.append("%s")
            continue
        out.append("%%" if character == "%" else character)
    text = "".join(out)
    insert = _INSERT.match(text)
    returning = bool(insert and insert.group(1).lower() in _ID_TABLES)
    returning = returning and "RETURNING" not in text.upper()
    return (f"{text} RETURNING id" if returning else text), returning


class Result:
    """One statement's outcome: its rows, the rows it changed and the id an INSERT made."""

    def __init__(self, cursor: Any, returning: bool) -> None:
        self._cursor = cursor
        self.rowcount: int = cursor.rowcount
        self.lastrowid: int | None = None
        if returning:
            row = cursor.fetchone()
            self.lastrowid = int(row[0]) if row is not None else None

    def fetchone(self) -> Any:
        """The next row, or None."""
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        """Every remaining row."""
        return list(self._cursor.fetchall()) if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


def _message(error: BaseException, url: DatabaseURL) -> str:
    """The server's or the driver's words, on one line, the password masked."""
    text = " ".join(str(error).split()) or type(error).__name__
    return redact_text(text, [url.password]).replace(url.url, url.masked)


def explain(url: DatabaseURL, error: BaseException) -> StateError:
    """The one-line error for a database digest cannot use, saying what to do."""
    detail = _message(error, url)
    if isinstance(error, psycopg.errors.ReadOnlySqlTransaction):
        return StateError(f"PostgreSQL database {url} was opened read-only ({detail})")
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return StateError(
            f"cannot use PostgreSQL database {url} ({detail}); grant its user the right to"
            " create tables and write there"
        )
    if isinstance(error, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
        return StateError(f"PostgreSQL database {url} is busy ({detail}); try again")
    return StateError(
        f"cannot use PostgreSQL database {url} ({detail}); check that the server is running,"
        " that the URL's host, port, user and database are right, and that the user may log in"
    )


def lock_key(name: str) -> int:
    """The advisory lock key of the state's lock `name`: a signed 64-bit hash of it."""
    digest = hashlib.blake2b(f"digest lock {name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def connect(url: DatabaseURL, *, application_name: str = "digest") -> psycopg.Connection[Any]:
    """A new autocommit connection; StateError when the server cannot be reached or refuses."""
    try:
        return psycopg.connect(
            url.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=application_name,
        )
    except psycopg.Error as error:
        raise explain(url, error) from None


class PostgresBackend:
    """One PostgreSQL connection with a re-entrant transaction; every repository shares it.

    `release` gives the connection back when the state is closed: to its pool, or closes it.
    """

    def __init__(
        self,
        connection: psycopg.Connection[Any],
        url: DatabaseURL,
        *,
        read_only: bool,
        release: Callable[[psycopg.Connection[Any]], None],
    ) -> None:
        self.connection = connection
        self.url = url
        self._read_only = read_only
        self._release = release
        self._depth = 0
        self._pinned = False  # a transaction never committed holds a private schema
        self._touched: set[str] = set()
        connection.row_factory = _row_factory

    @property
    def read_only(self) -> bool:
        """Whether writes are refused (a read-only command)."""
        return self._read_only

    @property
    def skip_locked(self) -> str:
        """Row locks for a claim: rows another transaction holds are skipped, not waited for."""
        return " FOR UPDATE SKIP LOCKED"

    @property
    def where(self) -> str:
        """The database's URL, its password masked."""
        return self.url.masked

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Result:
        """Run one statement (committed at once outside a transaction)."""
        text, returning = translate(sql)
        changed = _CHANGE.match(sql)
        if changed:
            self._touched.add(changed.group(1).lower())
        try:
            cursor = self.connection.execute(text, tuple(parameters))
            return Result(cursor, returning)
        except psycopg.Error as error:
            raise self._translated(error) from None

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> Result:
        """Run one statement for each row."""
        text, _ = translate(sql)
        if not rows:
            return Result(self.connection.cursor(), False)
        try:
            cursor = self.connection.cursor()
            cursor.executemany(text, [tuple(row) for row in rows])
            return Result(cursor, False)
        except psycopg.Error as error:
            raise self._translated(error) from None

    def _translated(self, error: psycopg.Error) -> Exception:
        if isinstance(
            error,
            psycopg.errors.IntegrityError
            | psycopg.errors.SyntaxError
            | psycopg.errors.UndefinedColumn
            | psycopg.errors.UndefinedTable
            | psycopg.errors.UndefinedFunction
            | psycopg.ProgrammingError,
        ) and not isinstance(error, psycopg.errors.InsufficientPrivilege):
            return RuntimeError(f"PostgreSQL database {self.where}: {_message(error, self.url)}")
        return explain(self.url, error)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run statements atomically, all or none; an inner block joins the outer one.
        Writing transactions queue on one advisory lock, as SQLite's writers do."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.execute("BEGIN")
        self._depth = 1
        try:
            if not self._read_only:
                self.execute("SELECT pg_advisory_xact_lock(?)", (_WRITE_LOCK,))
            yield
        except BaseException:
            self._rollback()
            raise
        finally:
            self._depth = 0
        self.execute("COMMIT")

    def _rollback(self) -> None:
        try:
            self.connection.execute("ROLLBACK")
        except psycopg.Error as error:
            logger.debug("rollback on %s failed: %s", self.where, _message(error, self.url))

    def pin(self) -> None:
        """Hold a transaction open until close, rolled back then (a private view)."""
        self.execute("BEGIN")
        self._depth = 1
        self._pinned = True

    def write_if_current(self, write: Callable[[Executor], None]) -> None:
        """Run `write` in one transaction, for a cache. On a read-only state at the latest
        schema, in a read-write transaction of its own that never waits for another writer
        (skipped if one is writing); on a private view of an older or empty database, never."""
        if not self._read_only:
            with self.transaction():
                write(self)
            return
        if self._pinned:
            return
        try:
            self.connection.execute("BEGIN READ WRITE")
            got = self.connection.execute(
                "SELECT pg_try_advisory_xact_lock(%s)", (_WRITE_LOCK,)
            ).fetchone()
            if got is None or not got[0]:
                self._rollback()
                return
            self._depth = 1
            try:
                write(self)
            finally:
                self._depth = 0
            self.connection.execute("COMMIT")
        except (psycopg.Error, StateError, RuntimeError) as error:
            self._rollback()
            logger.debug("cache not written to %s: %s", self.where, error)

    def lock(
        self,
        name: str,
        *,
        wait: float = 0.0,
        stop: threading.Event | None = None,
        command: str | None = None,
    ) -> AbstractContextManager[str]:
        """The state's advisory lock `name` (see the module docstring)."""
        return hold_lock(self.url, name, wait=wait, stop=stop, command=command)

    def explain(self, error: BaseException) -> StateError | None:
        """psycopg's failures (a connection lost half-way, say) as a one-line StateError."""
        if isinstance(error, psycopg.Error) and not isinstance(error, psycopg.IntegrityError):
            return explain(self.url, error)
        return None

    # -- erasure ---------------------------------------------------------------

    def columns(self) -> dict[str, tuple[str, ...]]:
        """Every table of the state's schema with its columns, from the catalogue."""
        found: dict[str, list[str]] = {}
        for row in self.execute(
            "SELECT table_name AS t, column_name AS c FROM information_schema.columns"
            " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ):
            found.setdefault(str(row["t"]), []).append(str(row["c"]))
        return {table: tuple(names) for table, names in found.items()}

    def erase_securely(self) -> None:
        """Nothing to switch on: `flush` rewrites what the erasure touched."""
        self._touched.clear()

    def flush(
        self, patience: float, sleep: Callable[[float], None], clock: Callable[[], float]
    ) -> bool:
        """Once no other session holds a snapshot from before now (retried for `patience`
        seconds), rewrite every table changed since `erase_securely` with VACUUM FULL; False
        when such a session held it up all along."""
        deadline = clock() + patience
        now = self.execute("SELECT pg_current_xact_id()::text AS x").fetchone()["x"]
        while self._older_snapshots(str(now)):
            if clock() >= deadline:
                logger.warning("rewrite of %s held up by an open transaction", self.where)
                return False
            sleep(_RETRY_EVERY)
        self.rebuild()
        return True

    def _older_snapshots(self, xid: str) -> bool:
        """Whether another session's snapshot may still see rows deleted before `xid`."""
        row = self.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            " AND datname = current_database() AND backend_xmin IS NOT NULL"
            " AND age(backend_xmin) >= age(?::xid))",
            (xid,),
        ).fetchone()
        return bool(row[0])

    def holds_bytes(self, texts: Sequence[str]) -> bool:
        """False: a client cannot read the server's files, and `flush` has rewritten every
        table the erasure touched (see the module docstring for what that leaves)."""
        return False

    def rebuild(self) -> None:
        """VACUUM FULL of the tables changed since `erase_securely` (all of them if none
        were): rewritten from their live rows into new files."""
        tables = sorted(self._touched & set(self.columns())) or sorted(self.columns())
        names = ", ".join(f'"{table}"' for table in tables)
        self.execute(f"VACUUM (FULL, ANALYZE) {names}")

    def close(self) -> None:
        """Give the connection back (a private view's transaction rolled back)."""
        if self._pinned:
            self._rollback()
            self._pinned = False
        self._release(self.connection)


# -- opening ---------------------------------------------------------------------


def open_database(url: DatabaseURL, *, read_only: bool = False) -> PostgresBackend:
    """The database at `url` at the latest schema, from the process's pool for it when one is
    open (digest serve), else on a connection of its own; StateError if it cannot be used."""
    pool = _pools.get(url.url)
    if pool is not None:
        try:
            connection = pool.getconn(timeout=POOL_WAIT)
        except PoolTimeout:
            raise StateError(
                f"PostgreSQL database {url}: no pooled connection came free in {POOL_WAIT:g} s"
            ) from None
        except psycopg.Error as error:
            raise explain(url, error) from None
        release: Callable[[psycopg.Connection[Any]], None] = pool.putconn
    else:
        connection = connect(url)
        release = _close
    try:
        return _prepared(connection, url, read_only=read_only, release=release)
    except BaseException:
        release(connection)
        raise


def _close(connection: psycopg.Connection[Any]) -> None:
    connection.close()


def _prepared(
    connection: psycopg.Connection[Any],
    url: DatabaseURL,
    *,
    read_only: bool,
    release: Callable[[psycopg.Connection[Any]], None],
) -> PostgresBackend:
    where = url.masked
    try:
        if not read_only:
            migrate(connection, where)
            return PostgresBackend(connection, url, read_only=False, release=release)
        version = schema_version(connection, where)
        backend = PostgresBackend(connection, url, read_only=True, release=release)
        if version == LATEST:
            connection.execute("SET default_transaction_read_only = on")
            return backend
        # An empty or older database, read as upgraded in a transaction never committed.
        backend.pin()
        apply(connection, version)
        connection.execute("SET TRANSACTION READ ONLY")
        return backend
    except psycopg.Error as error:
        raise explain(url, error) from None


@contextmanager
def pool(url: DatabaseURL, *, size: int = POOL_SIZE) -> Iterator[None]:
    """Keep a pool of connections to `url` open for the block: every `open_database` of it in
    this process borrows one instead of connecting (digest serve, answering many requests).
    The schema is brought to the latest once, when the pool opens."""
    with connect(url) as first:
        migrate(first, url.masked)
    created: ConnectionPool[Any] = ConnectionPool(
        url.url,
        min_size=1,
        max_size=size,
        kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
        reset=_reset,
        name="digest",
        open=False,
    )
    try:
        created.open(wait=True, timeout=CONNECT_TIMEOUT)
    except PoolTimeout:
        created.close()
        raise StateError(
            f"cannot use PostgreSQL database {url}: no connection in {CONNECT_TIMEOUT} s"
        ) from None
    with _pools_guard:
        _pools[url.url] = created
    try:
        yield
    finally:
        with _pools_guard:
            _pools.pop(url.url, None)
        created.close()


def _reset(connection: psycopg.Connection[Any]) -> None:
    """A connection going back to the pool forgets what its borrower set (read-only)."""
    connection.execute("RESET ALL")


# -- locks -----------------------------------------------------------------------

_held: dict[tuple[str, str, int], list[Any]] = {}  # (url, name, thread) -> [connection, depth]
_held_guard = threading.Lock()


@contextmanager
def hold_lock(
    url: DatabaseURL,
    name: str,
    *,
    wait: float = 0.0,
    stop: threading.Event | None = None,
    command: str | None = None,
) -> Iterator[str]:
    """Hold the advisory lock `name` of the database at `url` for the block; LockHeld if
    another session keeps it past `wait` seconds (or until `stop` is set). Re-entrant within a
    thread; another thread, process or machine is refused (or waits) alike. Yields where the
    lock is, for log lines."""
    where = f"{name} lock of {url.masked}"
    key = (url.url, name, threading.get_ident())
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield where
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    connection = _acquire(url, name, command or name, wait, stop)
    entry = [connection, 1]
    with _held_guard:
        _held[key] = entry
    try:
        yield where
    finally:
        with _held_guard:
            del _held[key]
        try:
            connection.execute("SELECT pg_advisory_unlock(%s)", (lock_key(name),))
        except psycopg.Error as error:
            logger.warning("%s: %s", where, _message(error, url))
        finally:
            connection.close()


def lock_is_free(url: DatabaseURL, name: str) -> bool:
    """Whether no session holds the advisory lock `name` now: its holder released it, or its
    connection ended (the server drops a dead session's locks)."""
    try:
        with closing(connect(url, application_name="digest lock check")) as connection:
            row = connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (lock_key(name),)
            ).fetchone()
            got = bool(row is not None and row[0])
            if got:
                connection.execute("SELECT pg_advisory_unlock(%s)", (lock_key(name),))
            return got
    except psycopg.Error as error:
        raise explain(url, error) from None


def _acquire(
    url: DatabaseURL, name: str, command: str, wait: float, stop: threading.Event | None
) -> psycopg.Connection[Any]:
    holder = f"digest {command} pid {os.getpid()} on {socket.gethostname()}"
    shown = holder.encode()[:_APPLICATION_NAME].decode(errors="ignore")
    connection = connect(url, application_name=shown)
    deadline = time.monotonic() + wait
    try:
        while True:
            row = connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (lock_key(name),)
            ).fetchone()
            if row is not None and row[0]:
                return connection
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                raise LockHeld(
                    f"another {describe_holder(connection, name)} holds the {name} lock of"
                    f" {url.masked}"
                )
            time.sleep(_POLL_SECONDS)
    except psycopg.Error as error:
        connection.close()
        raise explain(url, error) from None
    except BaseException:
        connection.close()
        raise


def describe_holder(connection: psycopg.Connection[Any], name: str) -> str:
    """'digest send pid N on HOST (since TIME)' for the session holding lock `name`."""
    key = lock_key(name) & 0xFFFFFFFFFFFFFFFF
    row = connection.execute(
        "SELECT a.application_name, a.backend_start FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 1",
        (str(key >> 32), str(key & 0xFFFFFFFF)),
    ).fetchone()
    if row is None or not row[0]:
        return "digest process (unknown)"
    since = row[1]
    when = since.astimezone(UTC).isoformat(timespec="seconds") if since else "?"
    return f"{row[0]} (since {when})"
