"""The preview cache: the last few rendered (inlined) previews, keyed by a hash of their inputs.

An unchanged issue's preview is then served without rendering or importing the CSS inliner.
Writing is best-effort and never waits: a busy, read-only or older state file just goes
uncached, and a preview still creates no state file.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from digest.models import RenderedIssue
from digest.store.db import Database
from digest.store.migrations import LATEST

logger = logging.getLogger(__name__)

KEEP = 4  # previews kept: enough for an editor switching between a few drafts
_WRITE_TIMEOUT = 0.2  # seconds a cache write may wait for another writer before giving up


class Previews:
    """Cached previews in the open state file."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def cached(self, key: str) -> RenderedIssue | None:
        """The preview stored under `key`, or None."""
        row = self.db.execute(
            "SELECT subject, html, text, marker, warnings FROM preview_cache WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return RenderedIssue(
            row["subject"],
            row["html"],
            row["text"],
            warnings=tuple(json.loads(row["warnings"])),
            marker=row["marker"],
        )


def remember_preview(path: Path, key: str, rendered: RenderedIssue, at: str) -> None:
    """Store a preview under `key` in an existing, up-to-date state file; skip it otherwise."""
    if not path.is_file():
        return
    try:
        connection = sqlite3.connect(path, timeout=_WRITE_TIMEOUT, isolation_level=None)
    except sqlite3.Error:
        return
    try:
        if int(connection.execute("PRAGMA user_version").fetchone()[0]) != LATEST:
            return  # the next writing command upgrades it; a preview does not
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            "INSERT OR REPLACE INTO preview_cache"
            " (key, subject, html, text, marker, warnings, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                rendered.subject,
                rendered.html,
                rendered.text,
                rendered.marker,
                json.dumps(list(rendered.warnings)),
                at,
            ),
        )
        connection.execute(
            "DELETE FROM preview_cache WHERE key NOT IN"
            " (SELECT key FROM preview_cache ORDER BY at DESC LIMIT ?)",
            (KEEP,),
        )
        connection.execute("COMMIT")
    except sqlite3.Error as error:
        logger.debug("preview not cached: %s", error)
    finally:
        connection.close()
