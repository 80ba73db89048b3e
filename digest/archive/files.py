"""Write the static archive into a folder in one step: built beside it, then swapped in.

The files are written to a temporary folder next to the target, which then takes the target's
place by rename (an atomic exchange where Linux offers one), so a web server pointed at the
folder never serves a half-written archive. A folder digest did not write is never replaced.

A write that is killed leaves its temporary folder behind (`.NAME.XXXXXXXX`, or
`.NAME.old.XXXXXXXX` between two renames); the next write removes such leftovers before it
starts, inside the same lock, so no other write can be using them. A folder is removed with
its marker last, so one whose removal is itself cut short is still recognised next time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest import store
from digest.archive import pages as archive
from digest.config.schema import Config
from digest.core.errors import DigestError

logger = logging.getLogger(__name__)

MARKER = ".digest-archive"  # names a folder as digest's own, so it may be replaced
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
LOCK_WAIT = 60.0  # seconds to wait for another process writing the archive


def publish(config: Config, out: Path, now: datetime) -> int:
    """Write every published issue, the index and the feed into `out`; how many issues."""
    if not config.archive.enabled:
        raise DigestError(
            f"{config.source}: the archive is off; set archive.enabled: true (and"
            " newsletter.archive_url) to publish the issues"
        )
    out = out.expanduser().absolute()
    _check_replaceable(out)
    # One writer at a time, reading the state inside the lock: the last archive swapped in is
    # always built from the latest state (a withdrawal racing a send's rewrite cannot be undone).
    with store.lock(config, "archive", wait=LOCK_WAIT, command="archive"):
        return _publish(config, out, now)


@dataclass(frozen=True)
class Withdrawal:
    """What withdrawing an issue did."""

    withdrawn: bool  # False: it already was
    rewritten: Path | None  # the configured archive folder, rewritten without it


def withdraw(config: Config, number: int, now: datetime) -> Withdrawal:
    """Take archived issue `number` off the web for good (410 Gone, out of the index and feed),
    and rewrite the configured static archive (archive.out_dir) without it."""
    with store.open(config) as state:
        withdrawn = state.archive.withdraw(number, now)
    if withdrawn is None:
        raise DigestError(f"there is no archived issue {number}; the archive index lists them")
    rewritten = None
    if config.archive.enabled and config.archive.out_dir:
        rewritten = config.resolve(config.archive.out_dir)
        publish(config, rewritten, now)
    return Withdrawal(withdrawn=withdrawn, rewritten=rewritten)


def _publish(config: Config, out: Path, now: datetime) -> int:
    with store.open(config, read_only=True) as state:
        issues = state.archive.issues(content=True)
        leads = archive.lead_posts(state, issues)
    site = archive.site_for(config)
    _remove_leftovers(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as error:
        raise DigestError(f"cannot write the archive beside {out}: {error.strerror}") from None
    try:
        staging.chmod(0o755)
        (staging / MARKER).write_text("Written by digest; replaced whole on every update.\n")
        for relative, data in archive.site_files(site, issues, now, leads):
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        _swap_in(staging, out)
    except OSError as error:
        raise DigestError(f"cannot write the archive to {out}: {error.strerror}") from None
    finally:
        _remove(staging)
    logger.info("wrote the archive of %d issues to %s", len(issues), out)
    return len(issues)


def _remove_leftovers(out: Path) -> None:
    """Remove the temporary folders earlier writes to `out` left when they were killed: only
    those named as _publish names them, holding digest's marker (or nothing at all)."""
    named = re.compile(rf"\.{re.escape(out.name)}\.(old\.)?[A-Za-z0-9_]{{8}}")
    try:
        entries = [
            (entry, found.group(1) is not None)
            for entry in out.parent.iterdir()
            if (found := named.fullmatch(entry.name))
        ]
    except OSError:
        return  # no folder yet, or one we cannot list: the write itself will say so
    for entry, aside in entries:
        if entry.is_symlink() or not entry.is_dir() or not _only_ours(entry, aside=aside):
            continue
        _remove(entry)
        if entry.exists():
            logger.warning("could not remove %s, left by an archive write that was stopped", entry)
        else:
            logger.info("removed %s, left by an archive write that was stopped", entry)


def _only_ours(folder: Path, *, aside: bool = False) -> bool:
    """Whether a leftover holds digest's writing only: its marker, nothing (killed just after
    it was made), or the old archive as `old` (all an `aside` folder ever holds, so one holding
    anything else is the staging folder of an archive named NAME.old beside this one)."""
    try:
        names = {entry.name for entry in folder.iterdir()}
    except OSError:
        return False
    if not names or (MARKER in names and not aside):
        return True
    old = folder / "old"
    return names == {"old"} and not old.is_symlink() and old.is_dir() and _only_ours(old)


def _remove(folder: Path) -> None:
    """Remove a folder digest wrote, its MARKER last: a removal cut short (the process killed
    while deleting a large old archive) leaves a folder _only_ours still recognises, never
    one that lost its marker but kept the rest. Errors are ignored; the caller checks."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name == MARKER:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                _remove(Path(entry.path))
            else:
                os.unlink(entry.path)
        except OSError:
            pass
    with suppress(OSError):
        os.unlink(folder / MARKER)
    with suppress(OSError):
        os.rmdir(folder)


def _check_replaceable(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise DigestError(f"{out} is a file; give a folder for the archive")
    if any(out.iterdir()) and not (out / MARKER).exists():
        raise DigestError(
            f"{out} already holds files digest did not write; give a new or empty folder for"
            " the archive (it is replaced whole on every update)"
        )


def _swap_in(staging: Path, out: Path) -> None:
    """Put `staging` at `out`; the old `out`, if any, ends up at `staging` (to be removed)."""
    if not out.exists():
        os.rename(staging, out)
        return
    if _exchange(staging, out):
        return
    # No atomic exchange here: two renames; for an instant `out` is missing, never half-written.
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.rename(out, aside / "old")
    os.rename(staging, out)
    os.rename(aside, staging)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically with Linux's renameat2(RENAME_EXCHANGE); False if unavailable."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    libc = ctypes.CDLL(name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    return bool(result == 0)
