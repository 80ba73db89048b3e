"""The state behind one seam: all of digest's SQL, and everything about the database, lives here.

Outside this package, code opens the state with `store.open(config)` (read-only with
`read_only=True`) and gets a `State`: one attribute per repository, each the one writer of its
tables, and a `transaction()` spanning them. Locks are taken with `store.lock(config, name)`.
Nothing outside sees a database module or its errors: a failure is a one-line StateError.

The repositories are `feeds` (feeds and posts), `ledger` (issues, deliveries, schedule slots),
`suppressions` (with the kind of each), `secrets`, `bounces` (bounce reports),
`signups` (sign-ups, consent, rate limits, forgotten people), `editorial` (the next issue's
note, posts left out or pinned, approvals and the decisions on them, posts marked seen),
`archive`, `previews` and `parsed_feeds` (caches), `webhook_nonces`, `outbox`
(transactional emails waiting to be sent), `clicks` (tracked post links and their counts) and
`reports` (unsubscribes and preference changes counted per issue, and the reports queued for the
editor). `erasure` is the one module that writes across tables: erasing a person is one act.

Repositories are written against `backend.Backend`, a protocol of what they need from a
database: parameterised statements, a re-entrant transaction, named locks, errors explained as
StateError, a best-effort cache write, closing, where the state is for messages, and the parts
of an erasure that depend on how the database keeps deleted bytes. `open` chooses the backend
from config.yaml's `state:` (digest.store.location): a path is a SQLite file
(`sqlite.SQLiteBackend`, with `migrations` and `locks`), a `postgresql://` URL a PostgreSQL
database (`postgres.PostgresBackend`, with `migrations_postgres`), shared by every machine that
uses it; `pool` keeps PostgreSQL connections open for a process answering many requests. The
SQL the repositories share is written once, with `?` placeholders, in the dialect both read
(ON CONFLICT clauses, `instr(...) > 0`, `json_extract`, which PostgreSQL's schema defines as
a function); the PostgreSQL backend translates the placeholders and gives an INSERT that
needs its `lastrowid` a RETURNING clause. psycopg is imported only when a PostgreSQL state is
used. `transfer` copies a SQLite state into an empty PostgreSQL database (`digest migrate`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from digest.core.errors import StateError
from digest.store.clicks import LinkCount
from digest.store.feeds import FeedRecord
from digest.store.ledger import IssueSummary, IssueVariant, Outstanding, Queued, StoredIssue
from digest.store.location import DatabaseURL, StateLocation
from digest.store.reports import ReaderCounts, ReaderEvent
from digest.store.secrets import SECRET_ENVIRONMENT_VARIABLE, configured_secret
from digest.store.signups import ConsentEvent, RateLimit, Signup
from digest.store.sqlite import (
    BUSY_TIMEOUT,
    DEFAULT_FILE,
    explain,
    lock_beside,
    open_database,
    remove_files,
)
from digest.store.state import State
from digest.store.suppressions import Suppression, SuppressionKind

DEFAULT_STATE = DEFAULT_FILE  # where the state is kept when config.yaml does not say


class Location(Protocol):
    """What the store needs to know of the configuration: where the state is."""

    @property
    def state_path(self) -> StateLocation:
        """The SQLite state file, or the PostgreSQL database (config.yaml's `state:`)."""
        ...


def open(config: Location, *, read_only: bool = False) -> State:
    """The project's state, at the latest schema; use it as a context manager.

    `read_only` changes nothing stored: a missing state reads as empty, an older one is read
    as upgraded without being written. StateError when it cannot be used.
    """
    return open_path(config.state_path, read_only=read_only)


@contextmanager
def pool(config: Location) -> Iterator[None]:
    """Keep connections to the state open for the block, for a process answering many
    requests at once (`digest serve`): each `open` borrows one. Nothing to keep for SQLite,
    whose file opens in no time; for PostgreSQL a pool (digest.store.postgres.pool)."""
    where = config.state_path
    if isinstance(where, DatabaseURL):
        from digest.store import postgres

        with postgres.pool(where):
            yield
        return
    yield


def remove_path(path: Path) -> None:
    """Delete the SQLite state file at `path` and its companion files: a fresh start."""
    remove_files(path)


@contextmanager
def lock(
    config: Location,
    name: str,
    *,
    wait: float = 0.0,
    stop: threading.Event | None = None,
    command: str | None = None,
    transient: bool = False,
) -> Iterator[str]:
    """Hold the state's lock `name` for the block, naming what holds it in messages.

    "send" is held by whatever sends (or must not overlap a send), "run" by `digest run` for
    its whole life, "archive" while the archive's files are written; each sender holds one of
    its own while it sends ("sender-..."; `transient`: its lock file goes when released), so
    the others can tell when it has gone (`lock_is_free`). LockHeld when another
    process keeps it past `wait` seconds (or until `stop` is set); `command` (default: the
    lock's name) is the digest command recorded as the holder. The SQLite state locks a file
    beside the state file (digest.store.locks), so taking a lock never opens the database; a
    PostgreSQL state holds a session-level advisory lock on a connection of its own
    (digest.store.postgres), which every machine using the database sees. Yields where the
    lock is, for log lines.
    """
    where = config.state_path
    if isinstance(where, DatabaseURL):
        from digest.store import postgres

        with postgres.hold_lock(where, name, wait=wait, stop=stop, command=command) as held:
            yield held
        return
    with lock_beside(
        where, name, wait=wait, stop=stop, command=command, transient=transient
    ) as held:
        yield held


def lock_is_free(config: Location, name: str) -> bool:
    """Whether nobody holds the state's lock `name` now (its holder released it or died)."""
    where = config.state_path
    if isinstance(where, DatabaseURL):
        from digest.store import postgres

        return postgres.lock_is_free(where, name)
    from digest.store.locks import lock_is_free as file_lock_is_free

    return file_lock_is_free(where, name)


@dataclass(frozen=True)
class SchemaStatus:
    """The state's schema version beside the one this release writes."""

    version: int  # the state's: 0 when it is empty (or, for SQLite, missing)
    latest: int  # this release's

    @property
    def standing(self) -> Literal["current", "older", "newer"]:
        """ "older": migrations not applied yet (the next writing open applies them); "newer":
        written by a later release, which this one must not use."""
        if self.version < self.latest:
            return "older"
        return "newer" if self.version > self.latest else "current"


def schema_status(config: Location) -> SchemaStatus:
    """The state's schema version, read without upgrading or writing anything: for /readyz,
    which must not call a state ready that this release would first have to migrate, nor one a
    newer release wrote. StateError when the state cannot be read or is not digest's."""
    where = config.state_path
    if isinstance(where, DatabaseURL):
        return _postgres_schema(where)
    from digest.store import migrations

    if not where.exists():
        return SchemaStatus(0, migrations.LATEST)
    try:
        uri = where.resolve().as_uri()
        connection = sqlite3.connect(
            f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT, isolation_level=None
        )
        with closing(connection):
            try:
                version = migrations.schema_version(connection, where)
            except StateError:
                version = int(connection.execute("PRAGMA user_version").fetchone()[0])
                if version <= migrations.LATEST:
                    raise  # not a digest state at all
    except sqlite3.Error as error:
        raise explain(where, error) from None
    return SchemaStatus(version, migrations.LATEST)


def _postgres_schema(url: DatabaseURL) -> SchemaStatus:
    import psycopg

    from digest.store import migrations_postgres, postgres

    with closing(postgres.connect(url, application_name="digest readyz")) as connection:
        try:
            try:
                version = migrations_postgres.schema_version(connection, url.masked)
            except StateError:
                newer = _newer_postgres_version(connection)
                if newer is None:
                    raise  # tables that are not digest's
                version = newer
        except psycopg.Error as error:
            raise postgres.explain(url, error) from None
    return SchemaStatus(version, migrations_postgres.LATEST)


def _newer_postgres_version(connection: Any) -> int | None:
    """The version recorded in a database whose schema_version refused it, when that was for
    being newer than this release (None: it was for holding tables that are not digest's)."""
    from digest.store.migrations_postgres import LATEST, SCHEMA_TABLE

    ours = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (SCHEMA_TABLE,)).fetchone()
    if ours is None or not ours[0]:
        return None
    row = connection.execute(f"SELECT max(version) FROM {SCHEMA_TABLE}").fetchone()
    if row is None or row[0] is None or int(row[0]) <= LATEST:
        return None
    return int(row[0])


def open_path(path: StateLocation, *, read_only: bool = False) -> State:
    """The state at `path` (a SQLite file, or a PostgreSQL database's URL), for tools and
    tests that have one but no config.yaml; digest itself opens its state with `open`."""
    if isinstance(path, DatabaseURL):
        from digest.store import postgres

        return State(postgres.open_database(path, read_only=read_only))
    return State(open_database(path, read_only=read_only))


__all__ = [
    "DEFAULT_STATE",
    "SECRET_ENVIRONMENT_VARIABLE",
    "ConsentEvent",
    "DatabaseURL",
    "FeedRecord",
    "IssueSummary",
    "IssueVariant",
    "LinkCount",
    "Location",
    "Outstanding",
    "Queued",
    "RateLimit",
    "ReaderCounts",
    "ReaderEvent",
    "SchemaStatus",
    "Signup",
    "State",
    "StateLocation",
    "StoredIssue",
    "Suppression",
    "SuppressionKind",
    "configured_secret",
    "lock",
    "lock_is_free",
    "open",
    "open_path",
    "pool",
    "remove_path",
    "schema_status",
]
