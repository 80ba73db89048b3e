"""Suppressions: addresses never to mail again, whatever the subscriber list says.

Each suppression has a `kind`, what made it (see SuppressionKind), so that what is counted and
shown never depends on the wording of its `source` or `reason`: those say, for a person, where
it came from ("one-click", "preferences page", "bounce"...) and why ("hard bounce 5.1.1: ...").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from digest.store.addresses import address_key
from digest.store.backend import Backend, iso

REASON_KEPT = 300  # characters of a reason kept


class SuppressionKind(StrEnum):
    """What suppressed an address."""

    HARD_BOUNCE = "hard_bounce"  # a report of a permanent failure
    SOFT_BOUNCES = "soft_bounces"  # bounces.soft_limit temporary failures in a row
    REFUSED = "refused"  # the server refused the address for good during the send
    COMPLAINT = "complaint"  # the reader reported the issue as spam
    UNSUBSCRIBE = "unsubscribe"  # the reader's own link or preferences page
    MANUAL = "manual"  # the editor, on the command line

    @property
    def is_bounce(self) -> bool:
        """Whether mail to the address failed (or was complained of), as opposed to the reader
        or the editor asking."""
        return self in (
            SuppressionKind.HARD_BOUNCE,
            SuppressionKind.SOFT_BOUNCES,
            SuppressionKind.REFUSED,
            SuppressionKind.COMPLAINT,
        )


@dataclass(frozen=True)
class Suppression:
    """One suppressed address, with what suppressed it, from where, when and why."""

    email: str
    at: datetime
    kind: SuppressionKind
    source: str
    reason: str = ""


class Suppressions:
    """The suppressions table; addresses are kept in the canonical form (digest.core.addresses)."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    def suppress(
        self,
        email: str,
        now: datetime,
        source: str,
        *,
        kind: SuppressionKind,
        reason: str = "",
        issue_id: int | None = None,
        report_id: int | None = None,
    ) -> bool:
        """Never mail this address again; False if it was already suppressed (the first
        suppression stands). A bounce or complaint keeps the issue and report behind it."""
        cursor = self.db.execute(
            "INSERT INTO suppressions (email, created_at, source, kind, reason, issue_id,"
            " report_id) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                address_key(email),
                iso(now),
                source,
                kind.value,
                reason[:REASON_KEPT],
                issue_id,
                report_id,
            ),
        )
        return cursor.rowcount > 0

    def unsuppress(self, email: str) -> bool:
        """Allow mail to an address again; False if it was not suppressed."""
        cursor = self.db.execute("DELETE FROM suppressions WHERE email = ?", (address_key(email),))
        return cursor.rowcount > 0

    def lift_unsubscribe(self, email: str) -> bool:
        """Take back the reader's own unsubscribe (they subscribed again from the page that
        unsubscribed them); False if the address is not suppressed that way. A bounce, a
        complaint or the editor's suppression stays."""
        cursor = self.db.execute(
            "DELETE FROM suppressions WHERE email = ? AND kind = ?",
            (address_key(email), SuppressionKind.UNSUBSCRIBE.value),
        )
        return cursor.rowcount > 0

    def suppressed(self) -> set[str]:
        """Every suppressed address, in the canonical form."""
        return {row["email"] for row in self.db.execute("SELECT email FROM suppressions")}

    def all(self) -> list[Suppression]:
        """Every suppression, oldest first."""
        rows = self.db.execute(
            "SELECT email, created_at, kind, source, reason FROM suppressions"
            " ORDER BY created_at, email"
        )
        return [
            Suppression(
                row["email"],
                datetime.fromisoformat(row["created_at"]),
                SuppressionKind(row["kind"]),
                row["source"],
                row["reason"],
            )
            for row in rows
        ]
