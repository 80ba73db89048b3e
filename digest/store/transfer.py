"""Moving a SQLite state into PostgreSQL: `digest migrate --to postgresql://...`.

The state file is first brought to the latest schema in place, exactly as the next writing
command would do it (one transaction; the file stays a state this release reads, so going back
is changing `state:` back). Then, while holding the file's `run` and `send` locks (so no send
and no scheduler runs meanwhile) and reading it in one snapshot:

- the target must be empty: no tables at all, or digest's schema with no rows; anything else
  is refused before a row is written;
- everything on the target happens in one transaction: the schema is created, every table is
  copied in dependency order (a table before those that reference it) with its ids as they are,
  each identity column's sequence is moved past the highest id (and past the highest SQLite's
  AUTOINCREMENT ever gave, so no id is reused), and the copy is checked. Any failure rolls it
  all back, leaving the database as empty as it was;
- rows stream through in batches (`BATCH`) with PostgreSQL's COPY, so memory stays flat
  whatever the size of a table;
- the check reads every table back from the target and compares, table by table, the number
  of rows and a checksum of its rows in primary-key order with what was read from the file.
  Only when every table matches is the transaction committed.

The signing secret is a row of `meta` like any other, so unsubscribe and preferences links
already sent keep working against the new state.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from digest.core.errors import StateError
from digest.core.redact import redact_text
from digest.store import postgres
from digest.store.location import DatabaseURL
from digest.store.locks import hold_lock
from digest.store.migrations_postgres import MIGRATION_LOCK, SCHEMA_TABLE, apply, schema_version
from digest.store.sqlite import explain as explain_sqlite
from digest.store.sqlite import open_database

logger = logging.getLogger(__name__)

BATCH = 1000  # rows read from the file, and written to the target, at a time


@dataclass(frozen=True)
class TableCopy:
    """One table as copied: its rows and their checksum on either side."""

    name: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str

    @property
    def matches(self) -> bool:
        """Whether the target holds exactly the rows the file holds."""
        return (self.source_rows, self.source_checksum) == (
            self.target_rows,
            self.target_checksum,
        )


@dataclass(frozen=True)
class Transfer:
    """What `copy_to_postgres` did: the file's schema before, and every table compared.
    Committed only when `ok`; otherwise the target was left as empty as it was."""

    source: Path
    target: DatabaseURL
    upgraded_from: int
    tables: tuple[TableCopy, ...]

    @property
    def ok(self) -> bool:
        """Every table's count and checksum match (and so the copy was committed)."""
        return all(table.matches for table in self.tables)

    @property
    def rows(self) -> int:
        """The rows copied, over every table."""
        return sum(table.source_rows for table in self.tables)


# -- pure parts --------------------------------------------------------------------------------


def encode_row(values: Sequence[object]) -> bytes:
    """A row as bytes for its checksum: each value with its type, text with its length, so
    no two different rows encode alike (NULL is not '', 5 is not '5')."""
    parts: list[bytes] = []
    for value in values:
        if value is None:
            parts.append(b"N;")
        elif isinstance(value, bool):  # never stored; kept apart from 0 and 1 all the same
            parts.append(b"b1;" if value else b"b0;")
        elif isinstance(value, int):
            parts.append(b"i%d;" % value)
        elif isinstance(value, float):
            parts.append(b"f" + repr(value).encode() + b";")
        elif isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
            parts.append(b"t%d:" % len(data) + data + b";")
        else:
            raise TypeError(f"a {type(value).__name__} value cannot be checksummed")
    return b"".join(parts) + b"\n"


class Checksum:
    """A running SHA-256 over rows in the order they are read."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.rows = 0

    def add(self, values: Sequence[object]) -> None:
        """Count one row into the sum."""
        self._hash.update(encode_row(values))
        self.rows += 1

    @property
    def hexdigest(self) -> str:
        """The checksum so far, as hex."""
        return self._hash.hexdigest()


def dependency_order(
    tables: Iterable[str], references: Mapping[str, Iterable[str]]
) -> tuple[str, ...]:
    """The tables, each after every table it references (`references[table]`), otherwise by
    name; a table referencing itself is fine. ValueError on a cycle between tables."""
    pending = sorted(set(tables))
    placed: list[str] = []
    done: set[str] = set()
    while pending:
        ready = [
            table
            for table in pending
            if all(
                other in done or other == table or other not in pending
                for other in references.get(table, ())
            )
        ]
        if not ready:
            raise ValueError(f"the tables {', '.join(pending)} reference each other in a cycle")
        placed.extend(ready)
        done.update(ready)
        pending = [table for table in pending if table not in done]
    return tuple(placed)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _order_by(columns: Sequence[str]) -> str:
    """A stable order both databases sort alike (NULLs first in either)."""
    return ", ".join(f"{_quoted(column)} NULLS FIRST" for column in columns)


# -- the source: the SQLite file -------------------------------------------------------------


@dataclass(frozen=True)
class _SourceTable:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # the primary key's columns; every column when it has none


def _source_tables(connection: sqlite3.Connection) -> dict[str, _SourceTable]:
    found: dict[str, _SourceTable] = {}
    names = [
        str(row[0])
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    for name in names:
        info = list(connection.execute(f"PRAGMA table_info({_quoted(name)})"))
        columns = tuple(str(row[1]) for row in info)
        key = tuple(str(row[1]) for row in sorted(info, key=lambda row: row[5]) if row[5])
        found[name] = _SourceTable(name, columns, key or columns)
    return found


def _highest_ids(connection: sqlite3.Connection) -> dict[str, int]:
    """The highest id SQLite's AUTOINCREMENT ever gave, per table (ids of deleted rows too)."""
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    ).fetchone()
    if not exists:
        return {}
    return {
        str(name): int(seq)
        for name, seq in connection.execute("SELECT name, seq FROM sqlite_sequence")
    }


def _file_version(path: Path) -> int:
    """The file's schema version before any upgrade (0: release 0.1.0)."""
    uri = path.resolve().as_uri()
    try:
        with closing(sqlite3.connect(f"{uri}?mode=ro", uri=True)) as connection:
            return int(connection.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as error:
        raise explain_sqlite(path, error) from None


# -- the target: PostgreSQL ---------------------------------------------------------------


def _target_tables(connection: psycopg.Connection[Any]) -> list[str]:
    rows = connection.execute(
        "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
        " ORDER BY tablename"
    ).fetchall()
    return [str(row[0]) for row in rows]


def _target_columns(connection: psycopg.Connection[Any]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for table, column in connection.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ):
        found.setdefault(str(table), []).append(str(column))
    return {table: tuple(columns) for table, columns in found.items()}


def _target_references(connection: psycopg.Connection[Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table, referenced in connection.execute(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text"
        " FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_namespace n"
        " ON n.oid = c.connamespace WHERE c.contype = 'f' AND n.nspname = current_schema()"
    ):
        found.setdefault(str(table).strip('"'), set()).add(str(referenced).strip('"'))
    return found


def _identity_columns(connection: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    rows = connection.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND is_identity = 'YES'"
        " ORDER BY table_name"
    ).fetchall()
    return [(str(table), str(column)) for table, column in rows]


def _refuse_unless_empty(connection: psycopg.Connection[Any], url: DatabaseURL) -> int:
    """The target's schema version (0: no tables) when it holds no rows; StateError otherwise,
    naming what it holds."""
    tables = _target_tables(connection)
    if tables and SCHEMA_TABLE not in tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise StateError(
            f"PostgreSQL database {url} is not empty (it holds tables that are not digest's:"
            f" {shown}); digest migrate copies only into an empty database: create one"
            " (createdb) and give its URL"
        )
    version = schema_version(connection, url.masked)
    holding = []
    for table in tables:
        if table == SCHEMA_TABLE:
            continue
        count = connection.execute(f"SELECT count(*) FROM {_quoted(table)}").fetchone()
        if count is not None and int(count[0]):
            holding.append(f"{table} ({int(count[0])})")
    if holding:
        raise StateError(
            f"PostgreSQL database {url} is not empty: digest's tables there hold rows"
            f" ({', '.join(holding[:5])}{', ...' if len(holding) > 5 else ''}); digest migrate"
            " copies only into an empty database and nothing was written to it"
        )
    return version


def _target_rows(
    connection: psycopg.Connection[Any],
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    batch: int,
) -> Checksum:
    """Every row of `table` on the target, read back in batches in key order, summed."""
    summed = Checksum()
    names = ", ".join(_quoted(column) for column in columns)
    with connection.cursor(name=f"verify_{table}") as cursor:
        cursor.itersize = batch
        cursor.execute(f"SELECT {names} FROM {_quoted(table)} ORDER BY {_order_by(key)}")
        for row in cursor:
            summed.add(tuple(row))
    return summed


def _copy_table(
    source: sqlite3.Connection,
    target: psycopg.Connection[Any],
    table: _SourceTable,
    target_columns: Sequence[str],
    where: str,
    batch: int,
) -> Checksum:
    """Stream one table into the target with COPY; the checksum of the rows read."""
    missing = [column for column in table.columns if column not in target_columns]
    if missing:
        raise StateError(
            f"table {table.name} of state file {where} has columns the PostgreSQL schema lacks"
            f" ({', '.join(missing)}), so it was not written by digest as released; the copy"
            " was rolled back and the database is as empty as it was"
        )
    names = ", ".join(_quoted(column) for column in table.columns)
    summed = Checksum()
    cursor = source.execute(
        f"SELECT {names} FROM {_quoted(table.name)} ORDER BY {_order_by(table.key)}"
    )
    with target.cursor().copy(f"COPY {_quoted(table.name)} ({names}) FROM STDIN") as copy:
        while rows := cursor.fetchmany(batch):
            for row in rows:
                values = tuple(row)
                for column, value in zip(table.columns, values, strict=True):
                    if isinstance(value, bytes):
                        raise StateError(
                            f"table {table.name} of state file {where} holds binary data in"
                            f" column {column}, which digest never writes; the copy was rolled"
                            " back and the database is as empty as it was"
                        )
                summed.add(values)
                copy.write_row(values)
    return summed


def _move_identities(
    target: psycopg.Connection[Any], highest: Mapping[str, int], tables: Iterable[str]
) -> None:
    """Each identity column's next value past the highest id copied and the highest SQLite
    ever gave, so a new row never takes an id an old link or report may name."""
    copied = set(tables)
    for table, column in _identity_columns(target):
        if table not in copied:
            continue
        row = target.execute(f"SELECT max({_quoted(column)}) FROM {_quoted(table)}").fetchone()
        top = max(int(row[0]) if row and row[0] is not None else 0, highest.get(table, 0))
        sequence = _quoted(table)
        if top > 0:
            target.execute(
                "SELECT setval(pg_get_serial_sequence(%s, %s), %s, true)", (sequence, column, top)
            )
        else:
            target.execute(
                "SELECT setval(pg_get_serial_sequence(%s, %s), 1, false)", (sequence, column)
            )


# -- the whole move ---------------------------------------------------------------------------


def copy_to_postgres(source: Path, target: DatabaseURL, *, batch: int = BATCH) -> Transfer:
    """Copy the SQLite state at `source` (upgraded in place first) into the empty PostgreSQL
    database at `target`, and check it; see the module docstring. A Transfer whose `ok` says
    whether it was committed; StateError (the target untouched) when it cannot be done."""
    if not source.is_file():
        raise StateError(
            f"no state file at {source}; give the SQLite state to copy with --from PATH"
        )
    with ExitStack() as held:
        # No scheduler and no send may write to the file while it is read.
        held.enter_context(hold_lock(source, "run", command="migrate"))
        held.enter_context(hold_lock(source, "send", command="migrate"))
        before = _file_version(source)
        backend = held.enter_context(closing(open_database(source)))  # upgraded as any writer
        try:
            return _copy(backend.connection, source, target, before, batch)
        except sqlite3.DatabaseError as error:
            raise explain_sqlite(source, error) from None


def _copy(
    source: sqlite3.Connection, path: Path, url: DatabaseURL, before: int, batch: int
) -> Transfer:
    source.execute("BEGIN")  # one snapshot of the file for the whole copy
    try:
        tables = _source_tables(source)
        highest = _highest_ids(source)
        connection = postgres.connect(url, application_name="digest migrate")
        with closing(connection):
            try:
                return _into_target(source, connection, url, path, before, tables, highest, batch)
            except psycopg.Error as error:
                detail = redact_text(" ".join(str(error).split()), [url.password])
                raise StateError(
                    f"copying into PostgreSQL database {url} failed ({detail}); the copy was"
                    " rolled back and the database is as empty as it was"
                ) from None
    finally:
        source.execute("ROLLBACK")


class _Mismatch(Exception):
    """A table differs after the copy: the transaction is rolled back."""

    def __init__(self, transfer: Transfer) -> None:
        super().__init__("the copy does not match")
        self.transfer = transfer


def _into_target(
    source: sqlite3.Connection,
    connection: psycopg.Connection[Any],
    url: DatabaseURL,
    path: Path,
    before: int,
    tables: Mapping[str, _SourceTable],
    highest: Mapping[str, int],
    batch: int,
) -> Transfer:
    where = str(path)
    try:
        with connection.transaction():
            # Any digest starting on this database waits until the copy is committed.
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            version = _refuse_unless_empty(connection, url)
            apply(connection, version)
            columns = _target_columns(connection)
            columns.pop(SCHEMA_TABLE, None)
            unplaced = sorted(set(tables) - set(columns))
            if unplaced:
                raise StateError(
                    f"state file {where} holds tables the PostgreSQL schema lacks"
                    f" ({', '.join(unplaced)}), so it was not written by digest as released;"
                    " nothing was written to the database"
                )
            order = dependency_order(columns, _target_references(connection))
            read: dict[str, Checksum] = {}
            for name in order:
                if name not in tables:
                    read[name] = Checksum()
                    continue
                logger.info("copying %s", name)
                read[name] = _copy_table(
                    source, connection, tables[name], columns[name], where, batch
                )
            _move_identities(connection, highest, order)
            compared = []
            for name in order:
                table = tables.get(name)
                shape = (table.columns, table.key) if table else (columns[name], columns[name])
                copied = _target_rows(connection, name, *shape, batch)
                compared.append(
                    TableCopy(
                        name,
                        read[name].rows,
                        copied.rows,
                        read[name].hexdigest,
                        copied.hexdigest,
                    )
                )
            transfer = Transfer(path, url, before, tuple(compared))
            if not transfer.ok:
                raise _Mismatch(transfer)
            return transfer
    except _Mismatch as mismatch:
        return mismatch.transfer


__all__ = [
    "BATCH",
    "Checksum",
    "TableCopy",
    "Transfer",
    "copy_to_postgres",
    "dependency_order",
    "encode_row",
]
