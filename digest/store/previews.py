"""The preview cache: the last few rendered (inlined) previews, keyed by a hash of their inputs.

An unchanged issue's preview is then served without rendering or importing the CSS inliner.
Writing is best-effort and never waits: a busy, read-only or older state file just goes
uncached, and a preview still creates no state file.
"""

from __future__ import annotations

import json

from digest.core.models import RenderedIssue
from digest.store.backend import Backend, Executor

KEEP = 4  # previews kept: enough for an editor switching between a few drafts


class Previews:
    """Cached previews in the open state file."""

    def __init__(self, db: Backend) -> None:
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

    def remember(self, key: str, rendered: RenderedIssue, at: str) -> None:
        """Store a preview under `key`; from a command that only reads, only in an existing,
        up-to-date state file that is free at once (skipped otherwise)."""

        def write(db: Executor) -> None:
            db.execute(
                "INSERT INTO preview_cache (key, subject, html, text, marker, warnings, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                " subject = excluded.subject, html = excluded.html, text = excluded.text,"
                " marker = excluded.marker, warnings = excluded.warnings, at = excluded.at",
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
            db.execute(
                "DELETE FROM preview_cache WHERE key NOT IN"
                " (SELECT key FROM preview_cache ORDER BY at DESC LIMIT ?)",
                (KEEP,),
            )

        self.db.write_if_current(write)
