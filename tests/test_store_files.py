"""How digest opens the state file: owner-only when it creates it, changing nothing when reading."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest import store
from digest.core.errors import StateError
from digest.store import SuppressionKind
from digest.store import sqlite as store_sqlite
from digest.store.migrations import LATEST
from tests.conftest import Project
from tests.support import statefile

FIXTURE = Path(__file__).parent / "fixtures" / "state-0.1.0.sqlite3"
NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_a_new_state_file_and_folder_are_owner_only(project: Project) -> None:
    config = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        config.replace("state: state.sqlite3", "state: private/state.sqlite3"), encoding="utf-8"
    )
    result = project.run_process("send")
    assert result.returncode == 0, result.stderr
    folder = project.root / "private"
    assert mode(folder) == 0o700
    assert mode(folder / "state.sqlite3") == 0o600


def test_reading_commands_create_nothing(project: Project) -> None:
    for command in (("history",), ("check",), ("preview", "--text"), ("subscribers",)):
        result = project.run_process(*command)
        assert result.returncode == 0, (command, result.stderr)
    assert not list(project.root.glob("state.sqlite3*"))


@pytest.fixture
def read_only_project(project: Project) -> Iterator[Project]:
    """A project whose state folder and file are read-only (0555, 0444) after one real send."""
    assert project.run("send").exit_code == 0
    folder = project.root / "state"
    folder.mkdir()
    (project.root / "state.sqlite3").rename(folder / "state.sqlite3")
    config = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        config.replace("state: state.sqlite3", "state: state/state.sqlite3"), encoding="utf-8"
    )
    (folder / "state.sqlite3").chmod(0o444)
    folder.chmod(0o555)
    yield project
    folder.chmod(0o755)


def test_reading_commands_work_on_a_read_only_file_and_change_nothing(
    read_only_project: Project,
) -> None:
    # Root may still create SQLite's -wal and -shm companions here; the file itself must not
    # change. (The test below checks a user the permissions apply to: nothing appears.)
    state = read_only_project.root / "state" / "state.sqlite3"
    before = state.read_bytes()
    history = read_only_project.run_process("history")
    assert history.returncode == 0, history.stderr
    assert "2026-11-30 08:00" in history.stdout
    subscribers = read_only_project.run_process("subscribers")
    assert subscribers.returncode == 0, subscribers.stderr
    assert state.read_bytes() == before


def as_user_who_cannot_write(work: Callable[[], str]) -> str:
    """Run `work` where file permissions apply: in a child process as nobody when we are root."""
    if os.geteuid() != 0:
        return work()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            answer = work()
        except BaseException as error:
            answer = f"{type(error).__name__}: {error}"
        os.write(writer, answer.encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(child, 0)
    return answer


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's own temporary folders are owner-only)."""
    folder = Path(tempfile.mkdtemp(prefix="digest-state-"))
    folder.chmod(0o755)
    yield folder
    folder.chmod(0o755)
    shutil.rmtree(folder)


def test_a_state_file_in_a_folder_nobody_may_write_is_still_readable(shared_folder: Path) -> None:
    path = shared_folder / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)
    with store.open_path(path):  # upgraded, and in WAL mode as every writing command leaves it
        pass
    path.chmod(0o444)
    shared_folder.chmod(0o555)
    before = snapshot(shared_folder)

    def history() -> str:
        with store.open_path(path, read_only=True) as state:
            return ",".join(str(summary.issue.id) for summary in state.ledger.history())

    def write() -> str:
        with store.open_path(path) as state:
            state.suppressions.suppress(
                "zoe@example.com",
                state.ledger.history()[0].issue.created_at,
                "manual",
                kind=SuppressionKind.MANUAL,
            )
        return "written"

    assert as_user_who_cannot_write(history) == "3,2,1"
    refused = as_user_who_cannot_write(write)
    assert refused.startswith(f"StateError: cannot use state file {path}"), refused
    assert snapshot(shared_folder) == before


def test_reading_an_old_file_upgrades_a_private_copy_only(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)
    with (
        pytest.raises(StateError, match="cannot use state file"),
        store.open_path(path, read_only=True) as state,
    ):
        assert [summary.issue.marker for summary in state.ledger.history()] == ["", "", ""]
        assert state.suppressions.suppressed() == {"carol@example.com", "erin@example.com"}
        state.suppressions.unsuppress("carol@example.com")  # the upgraded copy refuses writes too
    assert path.read_bytes() == FIXTURE.read_bytes()
    with statefile.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    with store.open_path(path) as state:
        pass
    with statefile.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == LATEST


def test_a_read_only_state_has_no_secret_to_invent(tmp_path: Path) -> None:
    with store.open_path(tmp_path / "absent.sqlite3", read_only=True) as state:
        assert state.ledger.history() == []
        with pytest.raises(StateError, match="run a writing command"):
            state.secrets.secret()
    assert not (tmp_path / "absent.sqlite3").exists()


def test_a_folder_in_place_of_the_state_file_is_one_line(project: Project) -> None:
    (project.root / "state.sqlite3").mkdir()
    for command in ("send", "history"):
        result = project.run_process(command)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"Error: state file {project.root / 'state.sqlite3'} is a folder; point `state:` in"
            " config.yaml at a file"
        )


def test_history_reads_a_0_1_0_file_without_upgrading_it(project: Project) -> None:
    state = project.root / "state.sqlite3"
    shutil.copyfile(FIXTURE, state)
    result = project.run_process("history")
    assert result.returncode == 0, result.stderr
    assert "2026-11-30 09:05 (unfinished)" in result.stdout
    assert "Issue 1 failed dave@example.com: 550 5.1.1 No such user" in result.stdout
    assert "2 unsubscribed addresses are skipped on every send." in result.stdout
    assert state.read_bytes() == FIXTURE.read_bytes()
    assert sorted(path.name for path in project.root.glob("state.sqlite3*")) == ["state.sqlite3"]


def test_a_busy_state_is_a_one_line_error_even_outside_a_with_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No sqlite3 exception leaves the store: a repository's statement on a file another
    process keeps locked raises StateError, whether or not the state is used in `with`."""
    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT", 0.2)
    path = tmp_path / "state.sqlite3"
    state = store.open_path(path)
    try:
        with statefile.connect(path, autocommit=True) as holder:
            holder.execute("BEGIN IMMEDIATE")  # another process is writing
            try:
                with pytest.raises(StateError, match=r"state file .* is busy"):
                    state.ledger.record_skipped_slot(
                        "2026-11-30T08:00:00+00:00", datetime(2026, 11, 30, tzinfo=UTC), "quiet"
                    )
            finally:
                holder.execute("ROLLBACK")
        assert state.ledger.skipped_slots() == []
    finally:
        state.close()
