"""Click counts: the post links a tracked issue carried, and how often each was followed, by
people and by link scanners apart.

With `tracking.clicks: aggregate`, the post links of an issue are written to `issue_links`
when it is frozen, numbered 1 upwards in the order the issue shows them, in the same
transaction as the issue: a redirect on the public app (digest.core.clicks) leads only to a URL
kept here, so it works after a restart and on any replica sharing the state, and never leads
anywhere digest did not send. Each followed redirect adds one to a count in `link_clicks`, per
(issue, link, kind), kind "person" or "scanner"; nothing about who followed it is kept. The
counts hold no personal data: erasure leaves them, retention may keep them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.store.backend import Backend, iso, parse_time

PERSON = "person"
SCANNER = "scanner"
MAX_URL = 4096  # characters of a post link kept; a longer one is left untracked


@dataclass(frozen=True)
class LinkCount:
    """One tracked link of an issue and how often it was followed: by people, and by link
    scanners and prefetchers."""

    url: str
    people: int
    scanners: int


class Clicks:
    """The issue_links and link_clicks tables (SQLite migration 17, PostgreSQL 6)."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    def record_links(self, issue_id: int, urls: Sequence[str]) -> dict[str, int]:
        """Number an issue's post links (each URL once, 1 upwards, in the order given) and
        keep them; the URL -> number map. Run inside the transaction that freezes the issue."""
        numbered: dict[str, int] = {}
        for url in urls:
            if url and len(url) <= MAX_URL and url not in numbered:
                numbered[url] = len(numbered) + 1
        self.db.executemany(
            "INSERT INTO issue_links (issue_id, link_id, url) VALUES (?, ?, ?)",
            [(issue_id, number, url) for url, number in numbered.items()],
        )
        return numbered

    def links(self, issue_id: int) -> dict[str, int]:
        """The issue's tracked links, URL -> number; empty when it was sent untracked."""
        rows = self.db.execute(
            "SELECT link_id, url FROM issue_links WHERE issue_id = ? ORDER BY link_id",
            (issue_id,),
        )
        return {str(row["url"]): int(row["link_id"]) for row in rows}

    def target(self, issue_id: int, link_id: int) -> str | None:
        """Where one link of an issue leads, or None when digest sent no such link."""
        row = self.db.execute(
            "SELECT url FROM issue_links WHERE issue_id = ? AND link_id = ?", (issue_id, link_id)
        ).fetchone()
        return str(row["url"]) if row else None

    def count(
        self, issue_id: int, link_id: int, now: datetime, *, scanner: bool, window: timedelta
    ) -> str:
        """Count one request for a link, as a scanner's when `scanner` says so or when it
        came within `window` of a delivery of the issue (link checks of mail gateways arrive
        seconds after the message does), else as a person's; the kind counted."""
        with self.db.transaction():
            early = not scanner and self.just_delivered(issue_id, now, window)
            kind = SCANNER if scanner or early else PERSON
            self.db.execute(
                "INSERT INTO link_clicks (issue_id, link_id, kind, clicks) VALUES (?, ?, ?, 1)"
                " ON CONFLICT (issue_id, link_id, kind) DO UPDATE"
                " SET clicks = link_clicks.clicks + 1",
                (issue_id, link_id, kind),
            )
        return kind

    def just_delivered(self, issue_id: int, now: datetime, window: timedelta) -> bool:
        """Whether `now` is within `window` of the issue's send beginning, or of any of its
        messages being handed to the mail server (either way: the web app's clock and the
        sender's may differ). Deliveries are looked up only while the send may still be going
        on (not for an issue that finished longer ago than `window`)."""
        row = self.db.execute(
            "SELECT created_at, finished_at FROM issues WHERE id = ?", (issue_id,)
        ).fetchone()
        if row is None:
            return False
        created, finished = parse_time(row["created_at"]), parse_time(row["finished_at"])
        if created is not None and abs(now - created) < window:
            return True
        if finished is not None and now >= finished + window:
            return False
        recent = self.db.execute(
            "SELECT 1 FROM deliveries WHERE issue_id = ? AND updated_at > ? AND updated_at < ?"
            " LIMIT 1",
            (issue_id, iso(now - window), iso(now + window)),
        ).fetchone()
        return recent is not None

    def counts(self, issue_id: int) -> list[LinkCount]:
        """Every tracked link of an issue in the order the issue shows them, with its counts
        (0 for a link nobody followed); empty when the issue was sent untracked."""
        return self._counted(issue_id).get(issue_id, [])

    def by_issue(self) -> dict[int, list[LinkCount]]:
        """Every tracked issue's links with their counts, as `counts` gives them, in one
        query (what the reports read); an issue sent untracked is absent."""
        return self._counted(None)

    def _counted(self, issue_id: int | None) -> dict[int, list[LinkCount]]:
        """The links and counts of one issue, or of every issue when `issue_id` is None, by
        issue."""
        where, parameters = (
            ("WHERE l.issue_id = ?", (issue_id,)) if issue_id is not None else ("", ())
        )
        rows = self.db.execute(
            "SELECT l.issue_id, l.url,"
            " COALESCE(SUM(CASE WHEN c.kind = 'person' THEN c.clicks END), 0) AS people,"
            " COALESCE(SUM(CASE WHEN c.kind = 'scanner' THEN c.clicks END), 0) AS scanners"
            " FROM issue_links l LEFT JOIN link_clicks c"
            " ON c.issue_id = l.issue_id AND c.link_id = l.link_id"
            f" {where} GROUP BY l.issue_id, l.link_id, l.url ORDER BY l.issue_id, l.link_id",
            parameters,
        )
        found: dict[int, list[LinkCount]] = {}
        for r in rows:
            found.setdefault(int(r["issue_id"]), []).append(
                LinkCount(str(r["url"]), int(r["people"]), int(r["scanners"]))
            )
        return found

    def issue_exists(self, issue_id: int) -> bool:
        """Whether the state holds an issue with this number."""
        row = self.db.execute("SELECT 1 FROM issues WHERE id = ?", (issue_id,)).fetchone()
        return row is not None

    def latest_tracked_issue(self) -> int | None:
        """The most recent issue sent with tracked links, or None."""
        row = self.db.execute("SELECT MAX(issue_id) AS latest FROM issue_links").fetchone()
        return int(row["latest"]) if row and row["latest"] is not None else None
