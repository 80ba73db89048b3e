"""The public archive's numbers: which frozen issue is published as which number, and withdrawals.

A number is given when an issue is frozen (inside the same transaction, under the send lock),
so the issue's page URL is known before the first message goes out and never changes. Issues
sent before the archive was turned on get theirs later (digest.archive.backfill), after the highest
number given so far: a number names a page for good, it is not a rank, so the archive lists
issues by the time they were sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from digest.store.backend import Backend, iso, parse_time
from digest.store.ledger import StoredIssue, issue_from_row


@dataclass(frozen=True)
class ArchivedIssue:
    """One numbered issue: the frozen issue, its number and slug, and whether it was withdrawn."""

    number: int
    slug: str
    summary: str
    issue: StoredIssue
    withdrawn_at: datetime | None = None

    @property
    def key(self) -> str:
        """The page's path segment: NUMBER-SLUG."""
        return f"{self.number}-{self.slug}"


@dataclass(frozen=True)
class ArchivedPost:
    """One post of a published issue as last stored: its title, link and excerpt."""

    title: str
    link: str
    excerpt: str


class Archive:
    """The archive_issues table."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    def next_number(self) -> int:
        """The number the next frozen issue gets (numbers are never reused)."""
        row = self.db.execute("SELECT MAX(number) AS n FROM archive_issues").fetchone()
        return int(row["n"] or 0) + 1

    def publish(self, issue_id: int, number: int, slug: str, summary: str) -> None:
        """Give a frozen issue its number; call inside the transaction that froze it."""
        self.db.execute(
            "INSERT INTO archive_issues (number, issue_id, slug, summary) VALUES (?, ?, ?, ?)",
            (number, issue_id, slug, summary),
        )

    def unpublished_sent(self) -> list[StoredIssue]:
        """Issues that reached a subscriber (a delivery the server accepted) but have no number
        yet, in the order they were sent, with their frozen content."""
        rows = self.db.execute(
            "SELECT * FROM issues i WHERE NOT EXISTS"
            " (SELECT 1 FROM archive_issues a WHERE a.issue_id = i.id)"
            " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = i.id"
            " AND d.status = 'sent') ORDER BY i.created_at, i.id"
        )
        return [issue_from_row(row) for row in rows.fetchall()]

    def post_titles(self, issue_id: int) -> list[str]:
        """The titles of an issue's posts as last stored (posts are frozen by key only)."""
        rows = self.db.execute(
            "SELECT json_extract(p.data, '$.title') AS title FROM issue_posts ip"
            " JOIN posts p ON p.feed_url = ip.feed_url AND p.post_key = ip.post_key"
            " WHERE ip.issue_id = ?",
            (issue_id,),
        )
        return [str(row["title"]) for row in rows.fetchall() if row["title"]]

    def posts(self, issue_id: int) -> list[ArchivedPost]:
        """An issue's posts as last stored (posts are frozen by key only), in no set order."""
        rows = self.db.execute(
            "SELECT json_extract(p.data, '$.title') AS title,"
            " json_extract(p.data, '$.link') AS link,"
            " json_extract(p.data, '$.excerpt') AS excerpt FROM issue_posts ip"
            " JOIN posts p ON p.feed_url = ip.feed_url AND p.post_key = ip.post_key"
            " WHERE ip.issue_id = ? ORDER BY p.feed_url, p.post_key",
            (issue_id,),
        )
        return [
            ArchivedPost(str(row["title"] or ""), str(row["link"] or ""), str(row["excerpt"] or ""))
            for row in rows.fetchall()
        ]

    def issues(
        self, *, include_withdrawn: bool = False, content: bool = False
    ) -> list[ArchivedIssue]:
        """Every numbered issue, most recently sent first; html and text only if `content`."""
        where = "" if include_withdrawn else " WHERE a.withdrawn_at IS NULL"
        return self._select(where, (), content=content)

    def issue(self, number: int) -> ArchivedIssue | None:
        """One numbered issue with its frozen content, withdrawn or not."""
        found = self._select(" WHERE a.number = ?", (number,), content=True)
        return found[0] if found else None

    def _select(
        self, where: str, parameters: tuple[object, ...], *, content: bool
    ) -> list[ArchivedIssue]:
        # The frozen html and text are the bulk of a row: read them only where they are shown.
        columns = "i.html, i.text" if content else "'' AS html, '' AS text"
        rows = self.db.execute(
            "SELECT a.number, a.slug, a.summary, a.withdrawn_at, i.id, i.created_at,"
            f" i.finished_at, i.slot_key, i.subject, i.post_count, i.marker, i.queued_at, {columns}"
            f" FROM archive_issues a JOIN issues i ON i.id = a.issue_id{where}"
            " ORDER BY i.created_at DESC, a.number DESC",
            parameters,
        )
        return [
            ArchivedIssue(
                number=row["number"],
                slug=row["slug"],
                summary=row["summary"],
                issue=issue_from_row(row),
                withdrawn_at=parse_time(row["withdrawn_at"]),
            )
            for row in rows.fetchall()
        ]

    def withdraw(self, number: int, now: datetime) -> bool | None:
        """Take an issue off the web for good; False if it already was, None if no such number."""
        row = self.db.execute(
            "SELECT withdrawn_at FROM archive_issues WHERE number = ?", (number,)
        ).fetchone()
        if row is None:
            return None
        if row["withdrawn_at"]:
            return False
        self.db.execute(
            "UPDATE archive_issues SET withdrawn_at = ? WHERE number = ?", (iso(now), number)
        )
        return True
