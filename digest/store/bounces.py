"""Bounce and complaint reports as recorded, and the deliveries a report can be tied to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.store.addresses import address_key
from digest.store.backend import Backend, iso

REPORT_KEPT = 64 * 1024  # characters of a report's text kept as evidence


@dataclass(frozen=True)
class StoredReport:
    """One report as `digest bounces --show` lists it."""

    id: int
    received_at: datetime
    source: str
    kind: str  # hard, soft, complaint, auto_reply, not_bounce, unreadable
    outcome: str  # suppressed, counted, dropped_signup, ignored, forged, left, duplicate...
    email: str
    issue_id: int | None
    status: str
    detail: str


@dataclass(frozen=True)
class IssueBounces:
    """Bounces and complaints attributed to one issue."""

    hard: int = 0
    soft: int = 0
    complaints: int = 0


class BounceReports:
    """The bounce_reports table, and the deliveries a report can be tied to (read only: a
    report's suppression is written by digest.store.suppressions, a dropped sign-up by
    digest.store.signups)."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    def seen(self, report_key: str) -> bool:
        """Whether a report with this key was processed already."""
        row = self.db.execute(
            "SELECT 1 FROM bounce_reports WHERE report_key = ?", (report_key,)
        ).fetchone()
        return row is not None

    def record(
        self,
        *,
        report_key: str,
        now: datetime,
        source: str,
        kind: str,
        outcome: str,
        email: str = "",
        issue_id: int | None = None,
        status: str = "",
        detail: str = "",
        report: str = "",
    ) -> int | None:
        """Record a processed report; None when one with the same key was recorded before."""
        cursor = self.db.execute(
            "INSERT INTO bounce_reports (report_key, received_at, source, kind, outcome, email,"
            " issue_id, status, detail, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (
                report_key,
                iso(now),
                source,
                kind,
                outcome,
                address_key(email),
                issue_id,
                status[:40],
                detail[:500],
                report[:REPORT_KEPT],
            ),
        )
        return int(cursor.lastrowid or 0) if cursor.rowcount > 0 else None

    def set_outcome(self, report_id: int, outcome: str) -> None:
        """Change what a recorded report did (e.g. counted, then suppressed)."""
        self.db.execute("UPDATE bounce_reports SET outcome = ? WHERE id = ?", (outcome, report_id))

    def recent(self, limit: int = 50) -> list[StoredReport]:
        """The newest reports first."""
        rows = self.db.execute(
            "SELECT id, received_at, source, kind, outcome, email, issue_id, status, detail"
            " FROM bounce_reports ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            StoredReport(
                row["id"],
                datetime.fromisoformat(row["received_at"]),
                row["source"],
                row["kind"],
                row["outcome"],
                row["email"],
                row["issue_id"],
                row["status"],
                row["detail"],
            )
            for row in rows
        ]

    def by_issue(self) -> dict[int, IssueBounces]:
        """Attributed hard and soft bounces and complaints per issue (each address once)."""
        found: dict[int, dict[str, int]] = {}
        for row in self.db.execute(
            "SELECT issue_id, kind, COUNT(DISTINCT email) AS n FROM bounce_reports"
            " WHERE issue_id IS NOT NULL AND kind IN ('hard', 'soft', 'complaint')"
            " AND outcome NOT IN ('forged', 'duplicate') GROUP BY issue_id, kind"
        ):
            found.setdefault(row["issue_id"], {})[row["kind"]] = row["n"]
        return {
            issue: IssueBounces(
                kinds.get("hard", 0), kinds.get("soft", 0), kinds.get("complaint", 0)
            )
            for issue, kinds in found.items()
        }

    def soft_streak(self, email: str, issue_id: int) -> int:
        """Distinct issues up to `issue_id` that soft-bounced for the address, counted back to the
        last issue delivered to it without a bounce."""
        bounced = {
            row["issue_id"]
            for row in self.db.execute(
                "SELECT DISTINCT issue_id FROM bounce_reports WHERE email = ? AND kind = 'soft'"
                " AND issue_id IS NOT NULL AND issue_id <= ? AND outcome != 'forged'",
                (address_key(email), issue_id),
            )
        }
        streak = 0
        for row in self.db.execute(
            "SELECT issue_id FROM deliveries WHERE email = ? AND status = 'sent' AND issue_id <= ?"
            " ORDER BY issue_id DESC",
            (address_key(email), issue_id),
        ):
            if row["issue_id"] not in bounced:
                break
            streak += 1
        return streak

    def delivery(self, issue_id: int, email: str) -> bool:
        """Whether the issue was handed to the server for this address."""
        row = self.db.execute(
            "SELECT 1 FROM deliveries WHERE issue_id = ? AND email = ? AND status != 'pending'",
            (issue_id, address_key(email)),
        ).fetchone()
        return row is not None

    def recipients(self, issue_id: int) -> list[str]:
        """Every address the issue was handed over for."""
        rows = self.db.execute(
            "SELECT email FROM deliveries WHERE issue_id = ? AND status != 'pending'", (issue_id,)
        )
        return [row["email"] for row in rows]

    def recent_delivery(self, email: str, now: datetime, days: int = 14) -> int | None:
        """The newest issue handed over for this address in the last `days` days."""
        row = self.db.execute(
            "SELECT issue_id FROM deliveries WHERE email = ? AND status = 'sent'"
            " AND updated_at >= ? ORDER BY issue_id DESC LIMIT 1",
            (address_key(email), iso(now - timedelta(days=days))),
        ).fetchone()
        return int(row["issue_id"]) if row else None

    def signup_addresses(self) -> list[str]:
        """Every signed-up address, pending or confirmed (transactional mail went to them)."""
        return [row["email"] for row in self.db.execute("SELECT email FROM signups")]
