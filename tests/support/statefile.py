"""The tests' one way into a SQLite state file besides digest.store itself.

Tests look at what digest stored, put a file into a state no command can (an older schema,
a row an earlier release wrote, a damaged page), or hold the file busy from outside. They do it
here, so that the store's own SQL stays in digest/store and the tests that reach past it are
easy to find.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from digest.store.migrations import MIGRATIONS

Row = tuple[object, ...]


def rows(path: Path, sql: str, *parameters: object) -> list[Row]:
    """Every row a query returns, as tuples."""
    with closing(sqlite3.connect(path)) as db:
        return [tuple(row) for row in db.execute(sql, parameters)]


def value(path: Path, sql: str, *parameters: object) -> object:
    """The first column of the first row a query returns (None when there is none)."""
    found = rows(path, sql, *parameters)
    return found[0][0] if found else None


def execute(path: Path, sql: str, *parameters: object) -> int:
    """Run one statement and commit it; how many rows it changed."""
    with closing(sqlite3.connect(path)) as db, db:
        return db.execute(sql, parameters).rowcount


def executemany(path: Path, sql: str, many: list[Row]) -> None:
    """Run one statement for each row, in one transaction."""
    with closing(sqlite3.connect(path)) as db, db:
        db.executemany(sql, many)


@contextmanager
def connect(path: Path, *, autocommit: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection of its own to the file, closed after the block (committed on leaving it
    unless `autocommit`, which leaves transactions to the caller's own BEGIN and COMMIT)."""
    if autocommit:
        with closing(sqlite3.connect(path, isolation_level=None)) as db:
            yield db
        return
    with closing(sqlite3.connect(path)) as db, db:
        yield db


def user_version(path: Path) -> int:
    """The file's schema version."""
    return int(str(value(path, "PRAGMA user_version")))


def tables(path: Path) -> list[str]:
    """The file's tables, by name, SQLite's own left out."""
    found = rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return sorted(str(name) for (name,) in found if not str(name).startswith("sqlite_"))


def dump(path: Path, names: list[str]) -> dict[str, list[Row]]:
    """Every row of each table named, sorted."""
    return {table: sorted(rows(path, f"SELECT * FROM {table}")) for table in names}


def sql_dump(path: Path) -> str:
    """The whole file as SQL text, to compare a file before and after."""
    with closing(sqlite3.connect(path)) as db:
        return "\n".join(db.iterdump())


def state_at(path: Path, version: int) -> None:
    """A state file at schema `version`, made by that version's own migrations (those that
    are SQL statements; a step that rewrites rows has nothing to rewrite in a new file)."""
    with connect(path, autocommit=True) as db:
        for migration in MIGRATIONS[:version]:
            for step in migration:
                if isinstance(step, str):
                    db.execute(step)
        db.execute(f"PRAGMA user_version = {version}")


def snapshot_reader(path: Path) -> str:
    """A Python script for another process that opens a read transaction on the file (as
    `digest serve` answering a page does), says "reading", and holds it until a line arrives
    on its standard input."""
    return (
        "import sqlite3, sys\n"
        f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "db.execute('BEGIN')\n"
        "db.execute('SELECT COUNT(*) FROM deliveries').fetchall()\n"
        "print('reading', flush=True)\n"
        "sys.stdin.readline()\n"
        "db.execute('COMMIT')\n"
    )
