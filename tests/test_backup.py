"""`digest backup` and `digest restore`: a copy taken while digest runs, restored whole or
refused, never over a state that holds anything."""

from __future__ import annotations

import json
import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import __version__, store
from digest.core.errors import StateError
from digest.store import backup
from digest.store.migrations import LATEST
from tests.conftest import Project
from tests.support import statefile

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def everything(path: Path) -> dict[str, list[statefile.Row]]:
    return statefile.dump(path, statefile.tables(path))


@pytest.fixture
def sent(project: Project) -> Project:
    """A project whose state holds one issue sent to Ann and Bob."""
    result = project.run("send")
    assert result.exit_code == 0, result.output
    return project


def test_backup_then_restore_gives_back_every_row(sent: Project) -> None:
    state = sent.root / "state.sqlite3"
    copy = sent.root / "backups" / "today.sqlite3"
    taken = sent.run_process("backup", str(copy))
    assert taken.returncode == 0, taken.stderr
    assert f"Backed up {state} to {copy}" in taken.stdout
    assert mode(copy) == 0o600 and mode(backup.sidecar_of(copy)) == 0o600

    sidecar = json.loads(backup.sidecar_of(copy).read_text(encoding="utf-8"))
    assert sidecar["format"] == "digest-backup/1" and sidecar["kind"] == "sqlite"
    assert sidecar["schema"] == LATEST and sidecar["digest_version"] == __version__
    assert sidecar["taken_at"] == sent.now.isoformat()
    assert sidecar["size"] == copy.stat().st_size and len(sidecar["sha256"]) == 64
    # One self-contained file: no write-ahead log needed beside it.
    assert not copy.with_name(copy.name + "-wal").exists()

    target = sent.root / "elsewhere" / "state.sqlite3"
    restored = sent.run_process("restore", str(copy), "--to", str(target))
    assert restored.returncode == 0, restored.stderr
    assert "checksum, integrity check and schema verified" in restored.stdout
    assert mode(target) == 0o600
    assert everything(target) == everything(state)
    assert statefile.value(target, "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'") == 2


def test_restore_defaults_to_the_configured_state_and_digest_carries_on_from_it(
    sent: Project,
) -> None:
    state = sent.root / "state.sqlite3"
    copy = sent.root / "copy.sqlite3"
    assert sent.run("backup", str(copy)).exit_code == 0
    shutil.move(state, sent.root / "old.sqlite3")
    for companion in ("-wal", "-shm"):
        state.with_name(state.name + companion).unlink(missing_ok=True)

    result = sent.run("restore", str(copy))
    assert result.exit_code == 0, result.output
    history = sent.run("history")
    assert history.exit_code == 0 and "│ 2         │" in history.output
    again = sent.run("send")  # the issue is known: nothing new to send, nobody mailed twice
    assert again.exit_code == 0, again.output
    assert sent.smtp.counts() == {"ann@example.com": 1, "bob@example.com": 1}


def test_restore_refuses_a_state_with_anything_in_it(sent: Project) -> None:
    state = sent.root / "state.sqlite3"
    copy = sent.root / "copy.sqlite3"
    assert sent.run("backup", str(copy)).exit_code == 0
    before = everything(state)

    refused = sent.run_process("restore", str(copy))
    assert refused.returncode == 1
    assert f"Error: {state} is not empty; restore into a new path" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert everything(state) == before
    assert not list(sent.root.glob(".*restoring*"))


def test_restore_refuses_a_copy_whose_checksum_differs(sent: Project) -> None:
    copy = sent.root / "copy.sqlite3"
    assert sent.run("backup", str(copy)).exit_code == 0
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, the size unchanged
    copy.write_bytes(bytes(data))
    target = sent.root / "new" / "state.sqlite3"

    refused = sent.run_process("restore", str(copy), "--to", str(target))
    assert refused.returncode == 1
    assert "does not match its sidecar (SHA-256 or size differs)" in refused.stderr
    assert not target.exists()


def test_restore_refuses_a_damaged_copy_even_when_its_sidecar_agrees(sent: Project) -> None:
    copy = sent.root / "copy.sqlite3"
    assert sent.run("backup", str(copy)).exit_code == 0
    page = int(str(statefile.value(copy, "PRAGMA page_size")))
    data = bytearray(copy.read_bytes())
    data[page : 3 * page] = b"\x55" * (2 * page)  # the catalogue and a table page overwritten
    copy.write_bytes(bytes(data))
    sidecar = backup.sidecar_of(copy)
    record = json.loads(sidecar.read_text(encoding="utf-8"))
    record["sha256"], record["size"] = backup._sha256(copy)
    sidecar.write_text(json.dumps(record), encoding="utf-8")
    target = sent.root / "new" / "state.sqlite3"

    refused = sent.run("restore", str(copy), "--to", str(target))
    assert refused.exit_code == 1
    assert "damaged" in refused.output
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")] == []


def test_restore_needs_the_sidecar(sent: Project) -> None:
    copy = sent.root / "copy.sqlite3"
    assert sent.run("backup", str(copy)).exit_code == 0
    backup.sidecar_of(copy).unlink()
    refused = sent.run("restore", str(copy), "--to", str(sent.root / "new.sqlite3"))
    assert refused.exit_code == 1
    assert "copy.sqlite3.json is missing" in refused.output

    backup.sidecar_of(copy).write_text("x" * 100_000, encoding="utf-8")
    refused = sent.run("restore", str(copy), "--to", str(sent.root / "new.sqlite3"))
    assert refused.exit_code == 1 and "not a digest backup's sidecar" in refused.output
    assert not (sent.root / "new.sqlite3").exists()


def test_restore_refuses_a_backup_from_a_newer_digest(sent: Project) -> None:
    copy = sent.root / "copy.sqlite3"
    assert sent.run("backup", str(copy)).exit_code == 0
    sidecar = backup.sidecar_of(copy)
    record = json.loads(sidecar.read_text(encoding="utf-8"))
    record["schema"] = LATEST + 1
    sidecar.write_text(json.dumps(record), encoding="utf-8")
    refused = sent.run("restore", str(copy), "--to", str(sent.root / "new.sqlite3"))
    assert refused.exit_code == 1 and "taken by a newer digest" in refused.output


def test_backup_never_overwrites_and_needs_a_state(project: Project) -> None:
    missing = project.run("backup", str(project.root / "copy.sqlite3"))
    assert missing.exit_code == 1
    assert "there is no state at" in missing.output
    assert not (project.root / "copy.sqlite3").exists()

    assert project.run("send").exit_code == 0
    existing = project.root / "copy.sqlite3"
    existing.write_text("keep me", encoding="utf-8")
    refused = project.run("backup", str(existing))
    assert refused.exit_code == 1 and "exists already" in refused.output
    assert existing.read_text(encoding="utf-8") == "keep me"
    assert not backup.sidecar_of(existing).exists()


def test_a_state_from_the_first_release_backs_up_and_restores_then_upgrades(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.sqlite3"
    shutil.copy(FIXTURES / "state-0.1.0.sqlite3", old)
    before = everything(old)
    info = backup.take(old, tmp_path / "copy.sqlite3", NOW)
    assert info.schema == 0
    target = tmp_path / "restored.sqlite3"
    backup.restore(tmp_path / "copy.sqlite3", target)
    assert everything(target) == before  # restored as it was taken
    with store.open_path(target):  # and the next writing command upgrades it
        pass
    assert statefile.user_version(target) == LATEST


# -- on a schedule ----------------------------------------------------------------------------


def test_scheduled_backups_are_taken_when_due_and_the_oldest_pruned(sent: Project) -> None:
    state = sent.root / "state.sqlite3"
    folder = sent.root / "backups"
    every, keep = timedelta(days=1), 3
    taken = []
    for hours in range(0, 24 * 5, 6):  # a look every six hours for five days
        now = NOW + timedelta(hours=hours)
        done = backup.take_scheduled(state, folder, now, every, keep)
        if done.taken is not None:
            taken.append(now)
    assert taken == [NOW + timedelta(days=day) for day in range(5)]
    names = sorted(p.name for p in folder.iterdir())
    kept = [backup.scheduled_name(NOW + timedelta(days=day)) for day in (2, 3, 4)]
    assert names == sorted([*kept, *(name + ".json" for name in kept)])
    assert mode(folder) == 0o700
    restored = sent.root / "restored.sqlite3"
    backup.restore(folder / kept[-1], restored)
    assert everything(restored) == everything(state)


def test_scheduled_pruning_leaves_other_files_alone(tmp_path: Path) -> None:
    names = [
        "digest-20261101T000000Z.sqlite3",
        "digest-20261102T000000Z.sqlite3",
        "digest-20261103T000000Z.sqlite3",
        "digest-20261103T000000Z.sqlite3.json",
        "notes.txt",
        "digest-manual.sqlite3",
    ]
    assert backup.to_prune(names, 2) == ["digest-20261101T000000Z.sqlite3"]
    assert backup.to_prune(names, 5) == []
    assert backup.is_due(None, NOW, timedelta(days=1))
    assert not backup.is_due(NOW - timedelta(hours=23), NOW, timedelta(days=1))


def test_sidecar_fields_are_checked() -> None:
    where = Path("x.json")
    with pytest.raises(StateError, match="expected format"):
        backup.BackupInfo.from_json('{"format": "other"}', where)
    with pytest.raises(StateError, match="not JSON"):
        backup.BackupInfo.from_json("{", where)
    good = backup.BackupInfo(backup.FORMAT, "sqlite", 3, "0.3.0", NOW.isoformat(), "a" * 64, 10)
    assert backup.BackupInfo.from_json(good.to_json(), where) == good
    bad = json.loads(good.to_json()) | {"size": -1}
    with pytest.raises(StateError, match="not a whole number"):
        backup.BackupInfo.from_json(json.dumps(bad), where)


def test_digest_run_takes_a_backup_on_start_up_and_prunes_past_keep(sent: Project) -> None:
    from tests.test_schedule_run import Daemon

    folder = sent.root / "backups"
    folder.mkdir()
    old = [backup.scheduled_name(NOW - timedelta(days=days)) for days in (3, 2)]
    for name in old:  # two earlier backups, the newest of them more than a day old
        shutil.copy(sent.root / "state.sqlite3", folder / name)
        backup.sidecar_of(folder / name).write_text("{}", encoding="utf-8")
    sent.write_config(
        'schedule:\n  day: monday\n  time: "08:00"\n  timezone: Europe/London\n'
        "backup:\n  every: 1d\n  keep: 2\n  to: backups\n"
    )
    with Daemon(sent, NOW + timedelta(hours=1)) as daemon:
        line = daemon.wait_for("backup taken:")
        daemon.wait_for("old backup removed")
        assert daemon.terminate() == 0, daemon.log
    # The daemon's clock starts at NOW + 1 h and runs on: the backup is named for the moment it
    # was taken, within the minute however slowly the process started.
    taken = [NOW + timedelta(hours=1, seconds=second) for second in range(60)]
    names = [folder / backup.scheduled_name(moment) for moment in taken]
    newest = next((name for name in names if str(name) in line), None)
    assert newest is not None, line
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".json")) == [
        old[1],
        newest.name,
    ]
    assert not (folder / old[0]).exists() and not backup.sidecar_of(folder / old[0]).exists()
    restored = sent.root / "restored.sqlite3"
    backup.restore(newest, restored)
    assert statefile.value(restored, "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'") == 2


def test_a_backup_that_cannot_be_taken_is_logged_and_digest_run_goes_on(
    sent: Project, caplog: pytest.LogCaptureFixture
) -> None:
    from digest.config.schema import load_config
    from digest.run.schedule import Clock, take_backup

    (sent.root / "backups").write_text("a file, not a folder", encoding="utf-8")
    sent.write_config("backup:\n  to: backups\n")
    take_backup(load_config(sent.config), Clock.starting_at(NOW))
    assert "backup not taken: cannot use backup folder" in caplog.text


def test_restore_names_what_is_wrong_with_the_backup_or_the_target(sent: Project) -> None:
    """No backup at the path, a sidecar whose checksum is not one or whose kind is unknown, a
    folder as the target: each a one-line error, and nothing is written."""
    copy = sent.root / "copy.sqlite3"
    assert sent.run("backup", str(copy)).exit_code == 0
    target = sent.root / "new.sqlite3"

    missing = sent.run("restore", str(sent.root / "nothing.sqlite3"), "--to", str(target))
    assert missing.exit_code == 1
    assert f"there is no backup at {sent.root / 'nothing.sqlite3'}" in missing.output

    sidecar = backup.sidecar_of(copy)
    record = json.loads(sidecar.read_text(encoding="utf-8"))
    for changed, said in (
        ({"sha256": "not a checksum"}, "a digest backup's sidecar, but its sha256 is not one"),
        ({"kind": "mysql"}, "is a backup of a mysql state, not of a SQLite file"),
    ):
        sidecar.write_text(json.dumps({**record, **changed}), encoding="utf-8")
        refused = sent.run("restore", str(copy), "--to", str(target))
        assert refused.exit_code == 1 and said in refused.output, refused.output
        assert "Traceback" not in refused.output
    sidecar.write_text(json.dumps(record), encoding="utf-8")

    folder = sent.root / "a-folder"
    folder.mkdir()
    refused = sent.run("restore", str(copy), "--to", str(folder))
    assert refused.exit_code == 1
    assert f"{folder} is a folder; restore into a state file's path" in refused.output
    assert not target.exists() and list(folder.iterdir()) == []
