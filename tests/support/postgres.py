"""A throwaway PostgreSQL cluster for the tests: Debian's PostgreSQL 15, started per session.

`postgres_cluster` (session-scoped) runs initdb in its own temporary folder and starts the
server on a free loopback port (tests/support/smtpserver.py's free_port, so parallel workers
each get their own cluster), with fsync off; it is stopped when the session ends. initdb and
the server refuse to run as root, so under root they run as the `postgres` user. Each test
that wants a database gets a fresh one from `postgres_url`. Without PostgreSQL's binaries the
tests that need it are skipped, saying what to install. `connect` is the one way a test reaches
the database without the store (as tests/support/statefile.py is for a SQLite file).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support.smtpserver import free_port


def _server_folder() -> Path:
    """Where Debian keeps the newest PostgreSQL server's programs (15 on bookworm)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = _server_folder()
USER = "digest"
_numbers = itertools.count(1)


@dataclass(frozen=True)
class Cluster:
    """A running cluster: where it listens."""

    port: int
    folder: Path

    def url(self, database: str = "postgres") -> str:
        """The URL of a database on it, as config.yaml's `state:` takes it."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"test_{os.getpid()}_{next(_numbers)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_server_user(command: list[str]) -> list[str]:
    """`command` as the postgres user when the tests run as root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _skip_reason() -> str | None:
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (BIN / name).is_file()]
    if missing:
        return (
            f"PostgreSQL's server is not installed ({', '.join(missing)} missing from {BIN}):"
            " install it with `apt-get install postgresql` (make test does where apt-get is"
            " available)"
        )
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root needs runuser (util-linux) to start PostgreSQL as postgres"
    return None


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """One PostgreSQL cluster for this test session (this worker), stopped at its end."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="digest-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    initdb = [str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8"]
    subprocess.run(_as_server_user([*initdb, "--locale=C.UTF-8"]), check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log")]
    subprocess.run(
        _as_server_user([*pg_ctl, "-o", options, "start"]), check=True, capture_output=True
    )
    try:
        yield Cluster(port, folder)
    finally:
        subprocess.run(
            _as_server_user([*pg_ctl, "-m", "immediate", "stop"]), check=False, capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> str:
    """A fresh, empty database on the session's cluster: its URL."""
    return postgres_cluster.create_database()


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    """A connection of the test's own to the database at `url`, for looking inside it or
    setting up a state an earlier release would have left; use it as a context manager."""
    return psycopg.connect(url, autocommit=autocommit)
