"""The state file across releases: 0.1.0's upgraded in place; newer and damaged ones refused."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from digest import store
from digest.core.errors import StateError
from digest.store.migrations import LATEST, MIGRATIONS
from tests.conftest import Project
from tests.support import statefile

FIXTURE = Path(__file__).parent / "fixtures" / "state-0.1.0.sqlite3"
TABLES = (
    "meta",
    "feeds",
    "posts",
    "issues",
    "issue_posts",
    "deliveries",
    "suppressions",
    "skipped_slots",
)


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    return statefile.rows(path, sql)


def counts(path: Path) -> dict[str, int]:
    return {table: int(rows(path, f"SELECT COUNT(*) FROM {table}")[0][0]) for table in TABLES}


def user_version(path: Path) -> int:
    return int(rows(path, "PRAGMA user_version")[0][0])


def feed_url(path: Path, name: str) -> str:
    return str(rows(path, f"SELECT url FROM feeds WHERE url LIKE '%/{name}'")[0][0])


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """A copy of the state file release 0.1.0 wrote."""
    copy = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, copy)
    return copy


def test_the_fixture_is_a_0_1_0_file(old: Path) -> None:
    assert user_version(old) == 0
    assert counts(old) == {
        "meta": 1,
        "feeds": 3,
        "posts": 9,
        "issues": 3,
        "issue_posts": 7,
        "deliveries": 10,
        "suppressions": 2,
        "skipped_slots": 2,
    }
    columns = [row[1] for row in rows(old, "PRAGMA table_info(issues)")]
    assert "marker" not in columns


def test_upgrading_0_1_0_keeps_every_row_and_repairs_moved_feeds(old: Path) -> None:
    before = {table: set(rows(old, f"SELECT * FROM {table}")) for table in TABLES}
    with store.open_path(old) as state:
        history = state.ledger.history()
        secret = state.secrets.secret()
        unfinished = state.ledger.unfinished_issue()
    assert user_version(old) == LATEST
    after = {table: set(rows(old, f"SELECT * FROM {table}")) for table in TABLES}
    for table in ("meta", "feeds", "skipped_slots"):
        assert after[table] == before[table], table
    # Deliveries gained migration 15's empty name, no rendering yet, and no claim.
    assert after["deliveries"] == {(*row, "", None, "", "") for row in before["deliveries"]}
    # Suppressions gained migration 6's empty reason, issue and report, migration 12's kind,
    # and nothing else.
    kinds = {"carol@example.com": "manual", "erin@example.com": "unsubscribe"}
    assert after["suppressions"] == {
        (*row, "", None, None, kinds[str(row[0])]) for row in before["suppressions"]
    }
    # Issues gained an empty marker, not yet queued, and nothing else.
    assert after["issues"] == {(*row, "", None) for row in before["issues"]}
    # Migration 3 copied the moved news feed's rows under its configured URL; none went away.
    without_data = "SELECT feed_url, post_key, link_key, first_seen FROM posts"
    assert set(rows(FIXTURE, without_data)) < set(rows(old, without_data))
    assert before["issue_posts"] < after["issue_posts"]
    assert counts(old)["posts"] == 10 and counts(old)["issue_posts"] == 8

    configured = feed_url(old, "old-news.xml")
    moved = configured.replace("old-news.xml", "news.xml")
    assert rows(old, f"SELECT permanent_url FROM feeds WHERE url = '{configured}'") == [(moved,)]
    news = rows(
        old,
        f"SELECT post_key, first_seen, json_extract(data, '$.feed_url') FROM posts"
        f" WHERE feed_url = '{configured}' ORDER BY post_key",
    )
    assert news == [
        ("https://example.org/news/post-10", "2026-11-02T09:00:00+00:00", configured),
        ("https://example.org/news/post-11", "2026-11-02T09:00:00+00:00", configured),
        ("https://example.org/news/post-12", "2026-11-30T09:05:00.001064+00:00", configured),
    ]
    assert rows(old, f"SELECT COUNT(*) FROM posts WHERE feed_url = '{moved}'") == [(3,)]
    assert rows(old, f"SELECT issue_id FROM issue_posts WHERE feed_url = '{configured}'") == [
        (1,),
        (1,),
        (3,),
    ]

    assert [(secret,)] == rows(FIXTURE, "SELECT value FROM meta WHERE key = 'secret'")
    assert len(secret) == 43
    assert [(h.issue.id, h.sent, h.failed, h.pending) for h in history] == [
        (3, 1, 1, 1),
        (2, 2, 1, 0),
        (1, 3, 1, 0),
    ]
    assert [f.email for f in history[0].failures] == ["dave@example.com"]
    assert unfinished is not None and unfinished.id == 3 and unfinished.marker == ""
    assert unfinished.slot_key == "2026-11-30T09:00:00+00:00"


def test_a_second_open_changes_nothing(old: Path) -> None:
    with store.open_path(old):
        pass
    dump = statefile.sql_dump(old)
    modified = old.stat().st_mtime_ns
    with store.open_path(old):
        pass
    assert statefile.sql_dump(old) == dump
    assert old.stat().st_mtime_ns == modified
    assert user_version(old) == LATEST


def test_a_fresh_file_runs_every_migration(tmp_path: Path) -> None:
    fresh, upgraded = tmp_path / "fresh.sqlite3", tmp_path / "old.sqlite3"
    shutil.copyfile(FIXTURE, upgraded)
    with store.open_path(fresh), store.open_path(upgraded):
        pass
    assert user_version(fresh) == LATEST == len(MIGRATIONS) >= 3
    schema = (
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    )
    assert rows(fresh, schema) == rows(upgraded, schema)
    assert counts(fresh) == dict.fromkeys(TABLES, 0)


def test_an_upgrade_that_fails_changes_nothing(old: Path) -> None:
    with statefile.connect(old) as db:
        db.execute("DROP INDEX posts_link")  # migration 1 puts it back, then 2 fails
        db.execute("ALTER TABLE issues ADD COLUMN marker TEXT")
    before = statefile.sql_dump(old)
    with pytest.raises(StateError, match="duplicate column name: marker"):
        store.open_path(old)
    assert statefile.sql_dump(old) == before
    assert "INDEX posts_link" not in before
    assert user_version(old) == 0


def test_a_file_from_a_newer_digest_is_refused_by_every_command(project: Project) -> None:
    state = project.root / "state.sqlite3"
    with store.open_path(state):
        pass
    with statefile.connect(state) as db:
        db.execute(f"PRAGMA user_version = {LATEST + 1}")
    expected = (
        f"Error: state file {state} was written by a newer digest (schema {LATEST + 1}, this"
        f" release knows {LATEST}); upgrade digest"
    )
    for command in (("send",), ("history",), ("unsubscribe", "zoe@example.com")):
        result = project.run_process(*command)
        assert result.returncode == 1, command
        assert result.stderr.strip() == expected, command
    assert not project.smtp.received
    assert user_version(state) == LATEST + 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda path: path.write_bytes(b"these are not the bytes of a database" * 50)),
        pytest.param(lambda path: path.write_bytes(path.read_bytes()[:10_000]), id="truncated"),
        pytest.param(
            lambda path: path.write_bytes(path.read_bytes()[:4096] + b"\xff" * 40_000),
            id="pages-overwritten",
        ),
    ],
)
def test_a_damaged_file_is_one_line_naming_it_and_what_to_do(
    project: Project, damage: Callable[[Path], object]
) -> None:
    state = project.root / "state.sqlite3"
    shutil.copyfile(FIXTURE, state)
    damage(state)
    damaged = state.read_bytes()
    for command in (("history",), ("send",)):
        result = project.run_process(*command)
        assert result.returncode == 1, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"Error: state file {state} is damaged"), lines[0]
        assert "restore it from a backup" in lines[0]
        assert "Traceback" not in result.stderr
    assert state.read_bytes() == damaged
    assert not project.smtp.received


def test_another_sqlite_database_is_not_taken_for_state(project: Project) -> None:
    state = project.root / "state.sqlite3"
    with statefile.connect(state) as db:
        db.execute("CREATE TABLE photos (name TEXT)")
    result = project.run_process("send")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: {state} is a SQLite database but not a digest state file; point `state:` in"
        " config.yaml at another file"
    )
    assert rows(state, "SELECT name FROM sqlite_master") == [("photos",)]
