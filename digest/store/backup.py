"""Backups of the state that restore: `digest backup PATH`, `digest restore PATH`, and the
copies `digest run` takes on a schedule (config.yaml's `backup:`).

A backup is two files: the copy itself at PATH, and beside it PATH.json, a small sidecar
saying what the copy is (the kind of state, its schema version, the digest release and the
time it was taken) and the SHA-256 and size of the copy, so that a damaged or altered copy is
refused rather than restored. Both are written owner-only (0600): the copy holds every
reader's address and the token-signing secret.

A SQLite state is copied online with SQLite's backup API in one step, which reads the file in
one snapshot: sends, sign-ups and the scheduler go on writing meanwhile (the write-ahead log
lets them), and the copy holds exactly what was committed when it began. The copy is written
under a temporary name, switched out of WAL mode so it is one self-contained file, synced, and
only then given its name, so a backup interrupted half-way leaves no file that looks whole.

Restoring refuses a target that is not empty (a state file that exists with anything in it),
a copy whose checksum or size differs from its sidecar, and a copy from a newer digest. The
copy is written beside the target under a temporary name, checked there (SQLite's
`integrity_check`, the schema version the sidecar names, and that it is a digest state), and
moved into place only when every check passes; the restored state is then opened as digest
opens it. The target's `run` and `send` locks are held meanwhile, so nothing sends into a state
being restored.

A PostgreSQL state is copied with PostgreSQL's own `pg_dump --format=custom`, from the newest
PostgreSQL release's programs installed (/usr/lib/postgresql/*/bin, else the PATH). digest
opens a read-only REPEATABLE READ transaction, reads the schema version there, exports that
transaction's snapshot and has pg_dump read the very same snapshot, so the version in the
sidecar is the version of the rows in the copy, whatever is written meanwhile. The URL is
given to pg_dump as libpq parameters without its password, which goes in PGPASSWORD: a
password is never on a command line (where `ps` shows it) nor in a message. The dump goes
through the same owner-only partial-then-rename flow as a SQLite copy, with a sidecar of kind
"postgresql".

Restoring a PostgreSQL backup takes an empty database: no tables at all, or digest's schema
with no rows (as `digest migrate` requires), checked while holding the state's `run` and
`send` locks and the locks every digest write and migration queues on, so nothing writes into
it meanwhile. `pg_restore --single-transaction --exit-on-error --no-owner --no-privileges`
then puts it back in one transaction: any failure leaves the database as it was. The restored
database is then opened through the store and its schema version checked against the sidecar.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from digest import __version__
from digest.core.errors import StateError
from digest.core.redact import redact_text
from digest.store import postgres
from digest.store.location import DatabaseURL, StateLocation
from digest.store.locks import hold_lock
from digest.store.migrations import LATEST, schema_version
from digest.store.migrations_postgres import LATEST as POSTGRES_LATEST
from digest.store.migrations_postgres import MIGRATION_LOCK, SCHEMA_TABLE
from digest.store.migrations_postgres import schema_version as postgres_schema_version
from digest.store.sqlite import explain, open_database

logger = logging.getLogger(__name__)

FORMAT = "digest-backup/1"  # the sidecar's own format, for a later release to read
SIDECAR_SUFFIX = ".json"
MAX_SIDECAR_BYTES = 64_000  # a sidecar is a few hundred bytes; anything larger is not one
SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_CHUNK = 1 << 20
_DUMP_MAGIC = b"PGDMP"  # how every pg_dump custom-format file begins
_DETAIL = 400  # characters of a PostgreSQL program's complaint kept in a message
_PROGRAMS = Path("/usr/lib/postgresql")  # Debian's home of each PostgreSQL release's programs
# Scheduled backups are named by the moment they were taken, so name order is time order.
_SCHEDULED = re.compile(r"^digest-(\d{8}T\d{6}Z)\.(?:sqlite3|pgdump)$")
_SCHEDULED_TIME = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class BackupInfo:
    """What a backup's sidecar records: enough to know what the copy is and that it is whole."""

    format: str
    kind: str
    schema: int
    digest_version: str
    taken_at: str
    sha256: str
    size: int

    def to_json(self) -> str:
        """The sidecar's text."""
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: Path) -> BackupInfo:
        """The sidecar read back; StateError naming `where` when it is not one of ours."""
        try:
            data = json.loads(text)
        except ValueError:
            raise StateError(f"{where} is not a digest backup's sidecar (not JSON)") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise StateError(
                f"{where} is not a digest backup's sidecar (expected format {FORMAT!r})"
            )
        try:
            info = cls(
                format=str(data["format"]),
                kind=str(data["kind"]),
                schema=_whole(data["schema"]),
                digest_version=str(data["digest_version"]),
                taken_at=str(data["taken_at"]),
                sha256=str(data["sha256"]).lower(),
                size=_whole(data["size"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"{where}: a digest backup's sidecar, but {error}") from None
        if not re.fullmatch(r"[0-9a-f]{64}", info.sha256):
            raise StateError(f"{where}: a digest backup's sidecar, but its sha256 is not one")
        return info


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a whole number")
    return value


@dataclass(frozen=True)
class Restored:
    """What `restore` put back: the backup's record, and where it now is."""

    info: BackupInfo
    target: StateLocation


def sidecar_of(path: Path) -> Path:
    """Where the sidecar of the backup at `path` is: PATH.json."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


# -- taking a backup ---------------------------------------------------------------------------


def take(source: StateLocation, target: Path, now: datetime) -> BackupInfo:
    """Copy the state at `source` into a new backup at `target` (and its sidecar), online:
    other digest processes may write meanwhile. StateError when the state cannot be read or
    the target exists or cannot be written; nothing half-written is left behind."""
    if not isinstance(source, DatabaseURL) and not source.is_file():
        raise StateError(f"there is no state at {source} to back up")
    for existing in (target, sidecar_of(target)):
        if existing.exists():
            raise StateError(f"{existing} exists already; name a new file for the backup")
    partial = target.with_name(f".{target.name}.partial")
    with _removed_on_failure(partial):
        _create_owner_only(partial)
        if isinstance(source, DatabaseURL):
            kind, schema = POSTGRESQL, _dump_postgres(source, partial)
        else:
            _copy_sqlite(source, partial)
            kind, schema = SQLITE, _checked_copy(partial, source)
        digest, size = _sha256(partial)
        info = BackupInfo(
            format=FORMAT,
            kind=kind,
            schema=schema,
            digest_version=__version__,
            taken_at=now.astimezone(UTC).isoformat(),
            sha256=digest,
            size=size,
        )
        _write_owner_only(sidecar_of(target), info.to_json())
        os.replace(partial, target)
        _sync_folder(target.parent)
    logger.info("backup of %s taken: %s (%d bytes, schema %d)", source, target, size, schema)
    return info


def _copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's backup API, in one step: one read snapshot of the source, whatever writes on."""
    try:
        with (
            closing(sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)) as src,
            closing(sqlite3.connect(target, isolation_level=None)) as dst,
        ):
            src.execute("PRAGMA busy_timeout = 30000")
            schema_version(src, source)  # refuses a file that is not a digest state
            src.backup(dst)
            # The copy is one self-contained file: no log beside it to lose when it is moved.
            dst.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error as error:
        raise explain(source, error) from None


def _checked_copy(path: Path, named: Path) -> int:
    """The copy's schema version, once SQLite finds it whole and it is a digest state."""
    try:
        with closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)) as db:
            result = [str(row[0]) for row in db.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                raise StateError(f"{named} is damaged: {'; '.join(result[:3])}")
            return schema_version(db, named)
    except sqlite3.Error as error:
        raise explain(named, error) from None


# -- PostgreSQL's programs ---------------------------------------------------------------------


def program(name: str) -> str:
    """Where PostgreSQL's program `name` (pg_dump, pg_restore) is: the newest release's under
    /usr/lib/postgresql (a pg_dump reads servers of its release and older), else on the PATH;
    StateError saying what to install when there is none."""

    def release(path: Path) -> int:
        number = path.parent.parent.name
        return int(number) if number.isdigit() else 0

    found = sorted(_PROGRAMS.glob(f"*/bin/{name}"), key=release)
    if found:
        return str(found[-1])
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise StateError(
        f"{name} is not installed: a PostgreSQL state is backed up and restored with"
        " PostgreSQL's own programs (apt-get install postgresql-client, of the server's"
        " release or newer)"
    )


def libpq_parameters(url: DatabaseURL, application_name: str) -> tuple[str, dict[str, str]]:
    """The URL as libpq's key=value parameters for a program's --dbname, without the password,
    and the environment that carries the password (PGPASSWORD) instead: a command line is
    visible to every user of the machine (ps), the environment only to its owner."""
    try:
        parameters = conninfo_to_dict(url.url)
    except psycopg.Error:
        raise StateError(f"{url} is not a PostgreSQL URL libpq can read") from None
    password = str(parameters.pop("password", None) or "")
    parameters.setdefault("connect_timeout", str(postgres.CONNECT_TIMEOUT))
    parameters["application_name"] = application_name
    conninfo = make_conninfo(**{key: str(value) for key, value in parameters.items()})
    return conninfo, ({"PGPASSWORD": password} if password else {})


def _run(
    command: list[str], url: DatabaseURL, env: dict[str, str], doing: str, stdout: Any = None
) -> None:
    """Run a PostgreSQL program; StateError with its complaint on one line, password masked,
    when it fails."""
    name = Path(command[0]).name
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **env},
            check=False,
        )
    except OSError as error:
        raise StateError(f"cannot run {name}: {error.strerror}") from None
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace")
        detail = " ".join(said.split())
        detail = redact_text(detail, [url.password]).replace(url.url, url.masked)
        if len(detail) > _DETAIL:
            detail = detail[:_DETAIL] + "..."
        raise StateError(
            f"{name} could not {doing} PostgreSQL database {url}"
            f" ({detail or f'exit status {done.returncode}'})"
        )


def _dump_postgres(url: DatabaseURL, partial: Path) -> int:
    """pg_dump the database into `partial`, reading the snapshot in which its schema version
    was read; that version."""
    conninfo, env = libpq_parameters(url, "digest backup")
    pg_dump = program("pg_dump")
    connection = postgres.connect(url, application_name="digest backup")
    with closing(connection):
        try:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            schema = postgres_schema_version(connection, url.masked)
            row = connection.execute("SELECT pg_export_snapshot()").fetchone()
        except psycopg.Error as error:
            raise postgres.explain(url, error) from None
        if schema == 0 or row is None:
            raise StateError(f"PostgreSQL database {url} holds no digest state to back up")
        command = [pg_dump, "--format=custom", "--no-password", f"--snapshot={row[0]}"]
        try:
            with partial.open("r+b") as output:
                _run([*command, "--dbname", conninfo], url, env, "back up", stdout=output)
                output.flush()
                os.fsync(output.fileno())
            with partial.open("rb") as written:
                whole = written.read(len(_DUMP_MAGIC)) == _DUMP_MAGIC
        except OSError as error:
            raise StateError(f"cannot write {partial}: {error.strerror}") from None
    if not whole:
        raise StateError(f"pg_dump wrote no dump of PostgreSQL database {url}")
    return schema


# -- restoring ---------------------------------------------------------------------------------


def read_info(backup: Path) -> BackupInfo:
    """The sidecar of the backup at `backup`; StateError when either file is missing."""
    if not backup.is_file():
        raise StateError(f"there is no backup at {backup}")
    sidecar = sidecar_of(backup)
    try:
        with sidecar.open("rb") as file:
            raw = file.read(MAX_SIDECAR_BYTES + 1)
    except FileNotFoundError:
        raise StateError(
            f"{sidecar} is missing: a backup is restored with the sidecar written beside it"
        ) from None
    except OSError as error:
        raise StateError(f"cannot read {sidecar}: {error.strerror}") from None
    if len(raw) > MAX_SIDECAR_BYTES:
        raise StateError(f"{sidecar} is not a digest backup's sidecar (too large)")
    return BackupInfo.from_json(raw.decode("utf-8", "replace"), sidecar)


def restore(backup: Path, target: StateLocation) -> Restored:
    """Put the backup at `backup` into the empty state at `target` and verify it there.

    StateError, with `target` left as it was, when the target is not empty, the backup's
    checksum or size differs from its sidecar, it comes from a newer digest, or SQLite finds
    the copy damaged (for a PostgreSQL backup, when pg_restore fails: it restores in one
    transaction, so the database is left as it was)."""
    info = read_info(backup)
    if info.kind == POSTGRESQL:
        return _restore_postgres(backup, info, target)
    if isinstance(target, DatabaseURL):
        raise StateError(
            f"{backup} is a copy of a SQLite state; restore it into a file (point --to or"
            " `state:` at a path), then `digest migrate` moves it into PostgreSQL"
        )
    if info.kind != SQLITE:
        raise StateError(f"{backup} is a backup of a {info.kind} state, not of a SQLite file")
    _refuse_unless_whole(backup, info, LATEST)
    if target.is_dir():
        raise StateError(f"{target} is a folder; restore into a state file's path")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with ExitStack() as held:
        for name in ("run", "send"):
            held.enter_context(hold_lock(target, name, command="restore"))
        _refuse_unless_empty(target)
        partial = target.with_name(f".{target.name}.restoring")
        with _removed_on_failure(partial):
            _create_owner_only(partial)
            _copy_bytes(backup, partial)
            if _sha256(partial) != (info.sha256, info.size):
                raise StateError(f"the copy of {backup} at {partial} differs; nothing restored")
            schema = _checked_copy(partial, backup)
            if schema != info.schema:
                raise StateError(
                    f"{backup} holds schema {schema} but its sidecar says {info.schema};"
                    " nothing restored"
                )
            _refuse_unless_empty(target)
            os.replace(partial, target)
            _sync_folder(target.parent)
    # Opened as every reading command opens it: what digest will find there.
    open_database(target, read_only=True).close()
    logger.info("backup %s restored into %s (schema %d)", backup, target, info.schema)
    return Restored(info, target)


def _refuse_unless_whole(backup: Path, info: BackupInfo, latest: int) -> None:
    """Refuse a backup from a newer digest, or one that differs from its sidecar."""
    if info.schema > latest:
        raise StateError(
            f"{backup} was taken by a newer digest ({info.digest_version}, schema {info.schema};"
            f" this release knows {latest}); restore it with that release or a later one"
        )
    digest, size = _sha256(backup)
    if (digest, size) != (info.sha256, info.size):
        raise StateError(
            f"{backup} does not match its sidecar (SHA-256 or size differs): the copy is"
            " damaged or was changed; it was not restored"
        )


def _restore_postgres(backup: Path, info: BackupInfo, target: StateLocation) -> Restored:
    """pg_restore the backup into the empty database at `target`, then check it there."""
    if not isinstance(target, DatabaseURL):
        raise StateError(
            f"{backup} is a backup of a PostgreSQL database; restore it into an empty database"
            " (set `state:` in config.yaml to its postgresql:// URL)"
        )
    _refuse_unless_whole(backup, info, POSTGRES_LATEST)
    conninfo, env = libpq_parameters(target, "digest restore")
    pg_restore = program("pg_restore")
    with ExitStack() as held:
        for name in ("run", "send"):
            held.enter_context(postgres.hold_lock(target, name, command="restore"))
        connection = postgres.connect(target, application_name="digest restore")
        held.callback(connection.close)
        try:
            # Every digest write and migration queues on these keys: none starts until the
            # restore is done (the locks end with this connection).
            for key in (MIGRATION_LOCK, postgres._WRITE_LOCK):
                connection.execute("SELECT pg_advisory_lock(%s)", (key,))
            holds_schema = _refuse_unless_empty_database(connection, target, info)
        except psycopg.Error as error:
            raise postgres.explain(target, error) from None
        command = [
            pg_restore,
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            "--no-password",
        ]
        if holds_schema:  # digest's tables, empty: replaced by the backup's
            command += ["--clean", "--if-exists"]
        _run(
            [*command, "--dbname", conninfo, str(backup)],
            target,
            env,
            "restore into (nothing was restored; the database is as it was)",
        )
    try:
        with closing(postgres.connect(target, application_name="digest restore")) as connection:
            schema = postgres_schema_version(connection, target.masked)
    except psycopg.Error as error:
        raise postgres.explain(target, error) from None
    if schema != info.schema:
        raise StateError(
            f"{backup} was restored into PostgreSQL database {target}, but it holds schema"
            f" {schema} where the sidecar says {info.schema}: do not use it; drop and create the"
            " database again and restore a backup whose sidecar matches it"
        )
    # Opened as every reading command opens it: what digest will find there.
    postgres.open_database(target, read_only=True).close()
    logger.info("backup %s restored into %s (schema %d)", backup, target, info.schema)
    return Restored(info, target)


def _refuse_unless_empty_database(
    connection: psycopg.Connection[Any], url: DatabaseURL, info: BackupInfo
) -> bool:
    """Whether the database holds digest's schema (with no rows, at the backup's version);
    StateError when it holds anything else: a restore never overwrites a state."""
    tables = [
        str(row[0])
        for row in connection.execute(
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
            " ORDER BY tablename"
        ).fetchall()
    ]
    if not tables:
        return False
    advice = "restore into a new database (createdb), or drop this one and create it again"
    if SCHEMA_TABLE not in tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise StateError(
            f"PostgreSQL database {url} is not empty (it holds tables that are not digest's:"
            f" {shown}); {advice}"
        )
    holding = []
    for table in tables:
        if table == SCHEMA_TABLE:
            continue
        quoted = '"' + table.replace('"', '""') + '"'
        count = connection.execute(f"SELECT count(*) FROM {quoted}").fetchone()
        if count is not None and int(count[0]):
            holding.append(f"{table} ({int(count[0])})")
    if holding:
        raise StateError(
            f"PostgreSQL database {url} is not empty: digest's tables there hold rows"
            f" ({', '.join(holding[:5])}{', ...' if len(holding) > 5 else ''}); {advice};"
            " nothing was restored"
        )
    version = postgres_schema_version(connection, url.masked)
    if version != info.schema:
        raise StateError(
            f"PostgreSQL database {url} holds digest's schema {version} with no rows, and the"
            f" backup is of schema {info.schema}; {advice}"
        )
    return True


def _refuse_unless_empty(target: Path) -> None:
    """A state file that exists with anything in it (or its log) is not overwritten."""
    for path in (target, target.with_name(f"{target.name}-wal")):
        if path.exists() and path.stat().st_size > 0:
            raise StateError(
                f"{target} is not empty; restore into a new path, or move the state there aside"
                " first (a restore never overwrites a state)"
            )
    target.with_name(f"{target.name}-shm").unlink(missing_ok=True)


# -- on a schedule -----------------------------------------------------------------------------


def scheduled_name(now: datetime, kind: str = SQLITE) -> str:
    """The file name of a backup `digest run` takes at `now`: .sqlite3 for a copy of a SQLite
    state, .pgdump for a PostgreSQL dump."""
    suffix = "pgdump" if kind == POSTGRESQL else "sqlite3"
    return f"digest-{now.astimezone(UTC).strftime(_SCHEDULED_TIME)}.{suffix}"


def scheduled_times(names: list[str]) -> dict[str, datetime]:
    """The scheduled backups among `names`, each with when it was taken (by its name)."""
    found: dict[str, datetime] = {}
    for name in names:
        match = _SCHEDULED.match(name)
        if match:
            taken = datetime.strptime(match.group(1), _SCHEDULED_TIME).replace(tzinfo=UTC)
            found[name] = taken
    return found


def is_due(newest: datetime | None, now: datetime, every: timedelta) -> bool:
    """Whether a scheduled backup is due: none yet, or the newest is `every` old."""
    return newest is None or now - newest >= every


def to_prune(names: list[str], keep: int) -> list[str]:
    """The scheduled backups among `names` beyond the newest `keep`, oldest first."""
    scheduled = sorted(scheduled_times(names).items(), key=lambda item: item[1])
    return [name for name, _ in scheduled[: max(0, len(scheduled) - keep)]]


@dataclass(frozen=True)
class Scheduled:
    """What one look at the backup schedule did: the backup taken (None: not due yet) and
    the old backups removed."""

    taken: Path | None
    pruned: tuple[Path, ...]


def take_scheduled(
    source: StateLocation, folder: Path, now: datetime, every: timedelta, keep: int
) -> Scheduled:
    """Take a backup into `folder` when the newest there is `every` old (or there is none),
    then remove all but the newest `keep` (only files this schedule named, with their
    sidecars). The folder is made owner-only (0700) if it does not exist."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        names = [path.name for path in folder.iterdir()]
    except OSError as error:
        raise StateError(f"cannot use backup folder {folder}: {error.strerror}") from None
    times = scheduled_times(names)
    taken: Path | None = None
    if is_due(max(times.values(), default=None), now, every):
        kind = POSTGRESQL if isinstance(source, DatabaseURL) else SQLITE
        taken = folder / scheduled_name(now, kind)
        take(source, taken, now)
        names.append(taken.name)
    pruned: list[Path] = []
    for name in to_prune(names, keep):
        old = folder / name
        old.unlink(missing_ok=True)
        sidecar_of(old).unlink(missing_ok=True)
        pruned.append(old)
    return Scheduled(taken, tuple(pruned))


# -- files -------------------------------------------------------------------------------------


@contextmanager
def _removed_on_failure(path: Path) -> Iterator[None]:
    """Remove `path` (and a log SQLite may have left beside it) if the block fails."""
    try:
        yield
    except BaseException:
        for leftover in (path, path.with_name(f"{path.name}-journal")):
            leftover.unlink(missing_ok=True)
        raise


def _create_owner_only(path: Path) -> None:
    """A new, empty, owner-only (0600) file at `path`; a stale one from a crash is replaced."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as error:
        raise StateError(
            f"cannot write {path}: {error.strerror}; check the folder exists and digest may"
            " write there"
        ) from None


def _write_owner_only(path: Path, text: str) -> None:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        raise StateError(f"cannot write {path}: {error.strerror}") from None


def _copy_bytes(source: Path, target: Path) -> None:
    try:
        with source.open("rb") as reading, target.open("r+b") as writing:
            while chunk := reading.read(_CHUNK):
                writing.write(chunk)
            writing.flush()
            os.fsync(writing.fileno())
    except OSError as error:
        raise StateError(f"cannot copy {source} to {target}: {error.strerror}") from None


def _sha256(path: Path) -> tuple[str, int]:
    """The file's SHA-256 (hex) and size, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as error:
        raise StateError(f"cannot read {path}: {error.strerror}") from None
    return digest.hexdigest(), size


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
