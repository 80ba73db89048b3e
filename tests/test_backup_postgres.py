"""`digest backup` and `digest restore` of a PostgreSQL state, against a real server
(tests/support/postgres.py): pg_dump's copy restored whole into a new database, or refused
without touching it; never a password on show."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.store import backup, postgres
from digest.store.location import database_url
from digest.store.migrations_postgres import LATEST
from tests.conftest import Project
from tests.support.postgres import connect, postgres_cluster, postgres_url  # noqa: F401

PASSWORD = "pw-Never-Shown-4821"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)

Rows = dict[str, list[tuple[object, ...]]]


def everything(url: str) -> Rows:
    """Every row of every table in the database, each table in a stable order."""
    with connect(url) as connection:
        tables = [
            str(row[0])
            for row in connection.execute(
                "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
                " ORDER BY tablename"
            )
        ]
        found: Rows = {}
        for table in tables:
            rows = connection.execute(f'SELECT * FROM "{table}"').fetchall()
            found[table] = sorted(rows, key=repr)
        return found


def with_password(url: str) -> str:
    """The URL with a password (the test cluster trusts every local login and ignores it)."""
    return url.replace("://digest@", f"://digest:{PASSWORD}@", 1)


def use_state(project: Project, url: str) -> None:
    text = project.config.read_text(encoding="utf-8")
    lines = [f"state: {url}" if line.startswith("state:") else line for line in text.split("\n")]
    project.config.write_text("\n".join(lines), encoding="utf-8")


@pytest.fixture
def sent(project: Project, request: pytest.FixtureRequest) -> tuple[Project, str]:
    """A project whose PostgreSQL state holds one issue sent to Ann and Bob; its URL."""
    url: str = request.getfixturevalue("postgres_url")
    use_state(project, with_password(url))
    result = project.run_process("send")
    assert result.returncode == 0, result.stderr
    return project, url


def fresh(request: pytest.FixtureRequest) -> str:
    cluster = request.getfixturevalue("postgres_cluster")
    made: str = cluster.create_database()
    return made


def test_backup_then_restore_into_a_new_database_gives_back_every_row(
    sent: tuple[Project, str], request: pytest.FixtureRequest
) -> None:
    project, url = sent
    before = everything(url)
    assert before["deliveries"] and before["issues"]
    copy = project.root / "backups" / "today.pgdump"
    taken = project.run_process("backup", str(copy))
    assert taken.returncode == 0, taken.stderr
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.sidecar_of(copy).stat().st_mode) == 0o600
    assert copy.read_bytes().startswith(b"PGDMP")
    sidecar = json.loads(backup.sidecar_of(copy).read_text(encoding="utf-8"))
    assert sidecar["kind"] == "postgresql" and sidecar["schema"] == LATEST
    assert sidecar["size"] == copy.stat().st_size

    target = fresh(request)
    use_state(project, with_password(target))
    restored = project.run_process("restore", str(copy))
    assert restored.returncode == 0, restored.stderr
    assert everything(target) == before
    # digest works on it, and knows what was sent: nobody gets a second copy.
    again = project.run_process("send")
    assert again.returncode == 0, again.stderr
    assert len(project.smtp.received) == 2


def test_restore_refuses_a_database_that_holds_a_state_and_leaves_it_as_it_was(
    sent: tuple[Project, str], request: pytest.FixtureRequest
) -> None:
    project, url = sent
    copy = project.root / "today.pgdump"
    assert project.run_process("backup", str(copy)).returncode == 0
    with connect(url, autocommit=True) as connection:
        connection.execute("DELETE FROM deliveries WHERE email = 'bob@example.com'")
    before = everything(url)
    refused = project.run_process("restore", str(copy))
    assert refused.returncode != 0
    assert "is not empty" in refused.stderr and "deliveries" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert everything(url) == before  # Bob's delivery is not put back over the state

    other = fresh(request)
    with connect(other, autocommit=True) as connection:
        connection.execute("CREATE TABLE notes (body text)")
        connection.execute("INSERT INTO notes VALUES ('keep me')")
    use_state(project, other)
    refused = project.run_process("restore", str(copy))
    assert refused.returncode != 0 and "not digest's: notes" in refused.stderr
    assert everything(other) == {"notes": [("keep me",)]}


def test_a_damaged_dump_is_refused_by_its_checksum(
    sent: tuple[Project, str], request: pytest.FixtureRequest
) -> None:
    project, _ = sent
    copy = project.root / "today.pgdump"
    assert project.run_process("backup", str(copy)).returncode == 0
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    target = fresh(request)
    use_state(project, target)
    refused = project.run_process("restore", str(copy))
    assert refused.returncode != 0
    assert "does not match its sidecar" in refused.stderr and "Traceback" not in refused.stderr
    assert everything(target) == {}


def test_a_password_is_never_shown_nor_on_a_command_line(
    sent: tuple[Project, str], request: pytest.FixtureRequest
) -> None:
    project, url = sent
    copy = project.root / "today.pgdump"
    taken = project.run_process("backup", str(copy))
    assert taken.returncode == 0, taken.stderr
    refused = project.run_process("restore", str(copy))  # into the state itself: not empty
    missing = url.rsplit("/", 1)[0] + "/no_such_database"
    use_state(project, with_password(missing))
    unreachable = project.run_process("backup", str(project.root / "other.pgdump"))
    assert refused.returncode != 0 and unreachable.returncode != 0
    outputs = [taken.stdout, taken.stderr, refused.stderr, unreachable.stderr]
    outputs.append(backup.sidecar_of(copy).read_text(encoding="utf-8"))
    assert all(PASSWORD not in text for text in outputs)
    assert "digest:***@" in refused.stderr and "digest:***@" in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1

    # What pg_dump and pg_restore are given: the password only in their environment.
    conninfo, env = backup.libpq_parameters(
        database_url(with_password(url) + "?sslmode=disable"), "digest backup"
    )
    assert PASSWORD not in conninfo and "sslmode=disable" in conninfo
    assert env == {"PGPASSWORD": PASSWORD}
    conninfo, env = backup.libpq_parameters(
        database_url(url + f"?password={PASSWORD}"), "digest backup"
    )
    assert PASSWORD not in conninfo and env == {"PGPASSWORD": PASSWORD}


def test_scheduled_backups_of_a_postgresql_state_are_pgdump_files(
    sent: tuple[Project, str], tmp_path: Path
) -> None:
    _, url = sent
    folder = tmp_path / "backups"
    state = database_url(with_password(url))
    first = backup.take_scheduled(state, folder, NOW, timedelta(days=1), keep=2)
    assert first.taken == folder / "digest-20261130T080000Z.pgdump"
    backup.take_scheduled(state, folder, NOW + timedelta(days=1), timedelta(days=1), keep=2)
    third = backup.take_scheduled(state, folder, NOW + timedelta(days=2), timedelta(days=1), 2)
    assert third.pruned == (first.taken,)
    assert sorted(path.name for path in folder.iterdir()) == [
        "digest-20261201T080000Z.pgdump",
        "digest-20261201T080000Z.pgdump.json",
        "digest-20261202T080000Z.pgdump",
        "digest-20261202T080000Z.pgdump.json",
    ]


def test_restore_takes_a_database_holding_only_digests_empty_schema(
    sent: tuple[Project, str], request: pytest.FixtureRequest
) -> None:
    project, url = sent
    before = everything(url)
    copy = project.root / "today.pgdump"
    assert project.run_process("backup", str(copy)).returncode == 0
    target = fresh(request)
    postgres.open_database(database_url(target)).close()  # digest's schema, no rows
    assert all(not rows for name, rows in everything(target).items() if name != "digest_schema")
    use_state(project, target)
    restored = project.run_process("restore", str(copy))
    assert restored.returncode == 0, restored.stderr
    assert everything(target) == before


def test_restore_to_a_database_named_on_the_command_line(
    sent: tuple[Project, str], request: pytest.FixtureRequest
) -> None:
    """`digest restore PATH --to postgresql://…` restores into that database, whatever
    config.yaml's `state:` names, and says which checks it made."""
    project, url = sent
    before = everything(url)
    copy = project.root / "backups" / "today.pgdump"
    assert project.run_process("backup", str(copy)).returncode == 0
    target = fresh(request)
    restored = project.run_process("restore", str(copy), "--to", with_password(target))
    assert restored.returncode == 0, restored.stderr
    assert "checksum and schema verified" in restored.stdout
    assert PASSWORD not in restored.stdout + restored.stderr
    assert everything(target) == before
