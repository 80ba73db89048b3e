"""Suppressions: addresses never to mail again, whatever the subscriber list says."""

from __future__ import annotations

from datetime import datetime

from digest.store.addresses import address_key
from digest.store.db import Database, iso


class Suppressions:
    """The suppressions table; addresses are kept in the canonical form (digest.addresses)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def suppress(self, email: str, now: datetime, source: str) -> bool:
        """Never mail this address again; False if it was already suppressed."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO suppressions (email, created_at, source) VALUES (?, ?, ?)",
            (address_key(email), iso(now), source),
        )
        return cursor.rowcount > 0

    def unsuppress(self, email: str) -> bool:
        """Allow mail to an address again; False if it was not suppressed."""
        cursor = self.db.execute("DELETE FROM suppressions WHERE email = ?", (address_key(email),))
        return cursor.rowcount > 0

    def suppressed(self) -> set[str]:
        """Every suppressed address, in the canonical form."""
        return {row["email"] for row in self.db.execute("SELECT email FROM suppressions")}

    def all(self) -> list[tuple[str, datetime, str]]:
        """(address, when, source) for every suppressed address, oldest first."""
        rows = self.db.execute(
            "SELECT email, created_at, source FROM suppressions ORDER BY created_at, email"
        )
        return [
            (row["email"], datetime.fromisoformat(row["created_at"]), row["source"]) for row in rows
        ]
