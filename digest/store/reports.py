"""What readers did through an issue's links, counted per issue, and the reports queued for
the editor.

An unsubscribe or a preferences change made through a link in an issue's message is one row
of `reader_events`: the issue its token named (NULL for a link made before links named one),
what was done and when. No address is kept, nor anything else that tells one reader from
another, so there is nothing here for an erasure to take out or for retention to strip, and
an issue compacted long ago keeps these counts as they were. `report_mails` records that the
report of an issue was queued for the editor (`reports.email_to`), so it is queued once.

The report also reads what other repositories wrote (deliveries, bounce reports, sign-ups)
through them; what is read here of `bounce_reports` is only when and of what kind, which
stays after a report is stripped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from digest.store.backend import Backend, iso


class ReaderEvent(StrEnum):
    """What a reader did through a link."""

    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"


@dataclass(frozen=True)
class ReaderCounts:
    """Unsubscribes and preference changes made through one issue's links."""

    unsubscribes: int = 0
    preference_changes: int = 0


@dataclass(frozen=True)
class IssueTotals:
    """One issue's deliveries by status (from its rows, or the counts kept when they were
    compacted), with its subject and when it was frozen."""

    issue_id: int
    subject: str
    created_at: datetime
    sent: int
    failed: int
    pending: int
    compacted: bool


@dataclass(frozen=True)
class Dated:
    """One thing that happened, and when: for the weekly charts."""

    at: datetime
    kind: str  # an unsubscribe or preferences change; a hard, soft or complaint report


class Reports:
    """The reader_events and report_mails tables (and a read of bounce reports' kinds and
    times)."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    def record(self, kind: ReaderEvent, issue_id: int | None, now: datetime) -> None:
        """Count one unsubscribe or preferences change against the issue its link named. An
        issue number the state does not know (a link from another newsletter's state with the
        same secret, or a forged one can only be refused earlier) is kept as no issue."""
        if issue_id is not None:
            known = self.db.execute("SELECT 1 FROM issues WHERE id = ?", (issue_id,)).fetchone()
            issue_id = issue_id if known else None
        self.db.execute(
            "INSERT INTO reader_events (issue_id, kind, at) VALUES (?, ?, ?)",
            (issue_id, kind.value, iso(now)),
        )

    def by_issue(self) -> dict[int | None, ReaderCounts]:
        """Each issue's unsubscribes and preference changes; None holds those whose link named
        no issue."""
        found: dict[int | None, dict[str, int]] = {}
        for row in self.db.execute(
            "SELECT issue_id, kind, COUNT(*) AS n FROM reader_events GROUP BY issue_id, kind"
        ):
            issue = int(row["issue_id"]) if row["issue_id"] is not None else None
            found.setdefault(issue, {})[row["kind"]] = int(row["n"])
        return {
            issue: ReaderCounts(
                kinds.get(ReaderEvent.UNSUBSCRIBE.value, 0),
                kinds.get(ReaderEvent.PREFERENCES.value, 0),
            )
            for issue, kinds in found.items()
        }

    def totals(self) -> list[IssueTotals]:
        """Every issue's delivery totals, oldest first, in two queries however many issues."""
        live: dict[int, dict[str, int]] = {}
        for row in self.db.execute(
            "SELECT issue_id, status, COUNT(*) AS n FROM deliveries GROUP BY issue_id, status"
        ):
            live.setdefault(int(row["issue_id"]), {})[row["status"]] = int(row["n"])
        found = []
        for row in self.db.execute(
            "SELECT issues.id, issues.subject, issues.created_at, c.sent AS c_sent,"
            " c.failed AS c_failed, c.pending AS c_pending FROM issues"
            " LEFT JOIN issue_counts c ON c.issue_id = issues.id ORDER BY issues.id"
        ):
            compacted = row["c_sent"] is not None
            counts = (
                {"sent": row["c_sent"], "failed": row["c_failed"], "pending": row["c_pending"]}
                if compacted
                else live.get(int(row["id"]), {})
            )
            found.append(
                IssueTotals(
                    int(row["id"]),
                    row["subject"],
                    datetime.fromisoformat(row["created_at"]),
                    int(counts.get("sent", 0)),
                    int(counts.get("failed", 0)),
                    int(counts.get("pending", 0)),
                    compacted,
                )
            )
        return found

    def dated(self, since: datetime) -> list[Dated]:
        """Unsubscribes and preference changes through links, and hard bounces, soft bounces
        and complaints as reported, from `since` on, oldest first."""
        found = [
            Dated(datetime.fromisoformat(row["at"]), row["kind"])
            for row in self.db.execute(
                "SELECT at, kind FROM reader_events WHERE at >= ? ORDER BY at", (iso(since),)
            )
        ]
        found += [
            Dated(datetime.fromisoformat(row["received_at"]), row["kind"])
            for row in self.db.execute(
                "SELECT received_at, kind FROM bounce_reports WHERE received_at >= ?"
                " AND kind IN ('hard', 'soft', 'complaint')"
                " AND outcome NOT IN ('forged', 'duplicate') ORDER BY received_at",
                (iso(since),),
            )
        ]
        return sorted(found, key=lambda event: event.at)

    def queue_mail(self, issue_id: int, now: datetime) -> bool:
        """Record that the issue's report is being queued for the editor; False if it was
        already (the caller then queues nothing)."""
        cursor = self.db.execute(
            "INSERT INTO report_mails (issue_id, queued_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (issue_id, iso(now)),
        )
        return cursor.rowcount > 0

    def mailed(self) -> set[int]:
        """The issues whose report was queued for the editor."""
        return {
            int(row["issue_id"]) for row in self.db.execute("SELECT issue_id FROM report_mails")
        }
