"""SQLite state: feed validators, posts seen, issues, deliveries, suppressions, secrets."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from digest.errors import DigestError
from digest.models import Delivery, DeliveryStatus, FeedResult, FetchStatus, Post

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS feeds (
    url TEXT PRIMARY KEY,
    etag TEXT,
    last_modified TEXT,
    permanent_url TEXT,
    gone INTEGER NOT NULL DEFAULT 0,
    last_status TEXT,
    last_error TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    first_failure_at TEXT,
    last_success_at TEXT,
    newest_post_at TEXT
);
CREATE TABLE IF NOT EXISTS posts (
    feed_url TEXT NOT NULL,
    post_key TEXT NOT NULL,
    link_key TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (feed_url, post_key)
);
CREATE INDEX IF NOT EXISTS posts_link ON posts (link_key);
CREATE TABLE IF NOT EXISTS issues (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    slot_key TEXT UNIQUE,
    subject TEXT NOT NULL,
    html TEXT NOT NULL,
    text TEXT NOT NULL,
    post_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS issue_posts (
    issue_id INTEGER NOT NULL REFERENCES issues (id),
    feed_url TEXT NOT NULL,
    post_key TEXT NOT NULL,
    link_key TEXT NOT NULL,
    PRIMARY KEY (issue_id, feed_url, post_key)
);
CREATE INDEX IF NOT EXISTS issue_posts_link ON issue_posts (link_key);
CREATE TABLE IF NOT EXISTS deliveries (
    issue_id INTEGER NOT NULL REFERENCES issues (id),
    email TEXT NOT NULL,
    status TEXT NOT NULL,
    reply TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (issue_id, email)
);
CREATE TABLE IF NOT EXISTS suppressions (
    email TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS skipped_slots (
    slot_key TEXT PRIMARY KEY,
    recorded_at TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class FeedRecord:
    """What the state remembers about one feed."""

    url: str
    etag: str | None
    last_modified: str | None
    permanent_url: str | None
    gone: bool
    last_status: str | None
    last_error: str | None
    failures: int
    first_failure_at: datetime | None
    last_success_at: datetime | None
    newest_post_at: datetime | None


@dataclass(frozen=True)
class StoredIssue:
    """An issue as frozen in the state when its send began."""

    id: int
    created_at: datetime
    finished_at: datetime | None
    slot_key: str | None
    subject: str
    html: str
    text: str
    post_count: int


@dataclass(frozen=True)
class IssueSummary:
    """One row of `digest history`."""

    issue: StoredIssue
    sent: int
    failed: int
    pending: int
    failures: tuple[Delivery, ...]  # the failed deliveries, with the server's reply


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime reached the state database")
    return value.astimezone(UTC).isoformat()


def post_to_json(post: Post) -> str:
    """Serialise a post for the posts table."""
    fields = asdict(post)
    for name in ("published", "updated"):
        fields[name] = _iso(fields[name]) if fields[name] else None
    return json.dumps(fields, ensure_ascii=False)


def post_from_json(text: str) -> Post:
    """Read back a post stored with post_to_json."""
    fields: dict[str, Any] = json.loads(text)
    for name in ("published", "updated"):
        fields[name] = _time(fields[name])
    fields["categories"] = tuple(fields.get("categories", ()))
    return Post(**fields)


class State:
    """One open state database; use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as error:
            raise DigestError(f"{path}: cannot open the state database: {error}") from None
        self.db.row_factory = sqlite3.Row

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run statements atomically: all committed, or none."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- secrets ---------------------------------------------------------------

    def secret(self) -> str:
        """The token-signing secret kept in the database, generated on first use."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
            if row:
                return str(row["value"])
            value = secrets.token_urlsafe(32)
            db.execute("INSERT INTO meta (key, value) VALUES ('secret', ?)", (value,))
            return value

    # -- feeds -----------------------------------------------------------------

    def feed(self, url: str) -> FeedRecord | None:
        """What is remembered about a feed, or None if it was never fetched for a send."""
        row = self.db.execute("SELECT * FROM feeds WHERE url = ?", (url,)).fetchone()
        if row is None:
            return None
        return FeedRecord(
            url=row["url"],
            etag=row["etag"],
            last_modified=row["last_modified"],
            permanent_url=row["permanent_url"],
            gone=bool(row["gone"]),
            last_status=row["last_status"],
            last_error=row["last_error"],
            failures=row["failures"],
            first_failure_at=_time(row["first_failure_at"]),
            last_success_at=_time(row["last_success_at"]),
            newest_post_at=_time(row["newest_post_at"]),
        )

    def record_fetch(self, result: FeedResult, now: datetime) -> None:
        """Remember validators, redirects and failures from one fetch; store its posts."""
        previous = self.feed(result.feed_url)
        with self.transaction() as db:
            if result.status is FetchStatus.FAILED:
                first = (previous.first_failure_at if previous else None) or now
                db.execute(
                    "INSERT INTO feeds (url, last_status, last_error, failures, first_failure_at,"
                    " gone) VALUES (?, 'failed', ?, 1, ?, ?) ON CONFLICT (url) DO UPDATE SET"
                    " last_status = 'failed', last_error = excluded.last_error,"
                    " failures = failures + 1, first_failure_at = excluded.first_failure_at,"
                    " gone = excluded.gone",
                    (result.feed_url, result.error, _iso(first), int(result.gone)),
                )
                return
            dates = [p.published for p in result.posts if p.published]
            newest = max(dates) if dates else (previous.newest_post_at if previous else None)
            db.execute(
                "INSERT INTO feeds (url, etag, last_modified, permanent_url, gone, last_status,"
                " last_error, failures, first_failure_at, last_success_at, newest_post_at)"
                " VALUES (?, ?, ?, ?, 0, ?, NULL, 0, NULL, ?, ?) ON CONFLICT (url) DO UPDATE SET"
                " etag = COALESCE(excluded.etag, etag),"
                " last_modified = COALESCE(excluded.last_modified, last_modified),"
                " permanent_url = COALESCE(excluded.permanent_url, permanent_url), gone = 0,"
                " last_status = excluded.last_status, last_error = NULL, failures = 0,"
                " first_failure_at = NULL, last_success_at = excluded.last_success_at,"
                " newest_post_at = COALESCE(excluded.newest_post_at, newest_post_at)",
                (
                    result.feed_url,
                    result.etag,
                    result.last_modified,
                    result.permanent_url,
                    result.status.value,
                    _iso(now),
                    _iso(newest) if newest else None,
                ),
            )
            for post in result.posts:
                db.execute(
                    "INSERT INTO posts (feed_url, post_key, link_key, first_seen, data)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (feed_url, post_key) DO UPDATE SET"
                    " data = excluded.data, link_key = excluded.link_key",
                    (post.feed_url, post.key, post.link_key, _iso(now), post_to_json(post)),
                )

    # -- posts -----------------------------------------------------------------

    def stored_posts(self, feed_url: str) -> list[Post]:
        """Posts kept from the last successful fetch, for a 304 answer."""
        rows = self.db.execute("SELECT data FROM posts WHERE feed_url = ?", (feed_url,))
        return [post_from_json(row["data"]) for row in rows]

    def first_seen(self, feed_url: str) -> dict[str, datetime]:
        """When each post of a feed was first recorded."""
        rows = self.db.execute(
            "SELECT post_key, first_seen FROM posts WHERE feed_url = ?", (feed_url,)
        )
        return {row["post_key"]: datetime.fromisoformat(row["first_seen"]) for row in rows}

    def carried(self) -> tuple[set[tuple[str, str]], set[str]]:
        """(feed_url, post_key) pairs and normalised links that some issue already carried."""
        keys: set[tuple[str, str]] = set()
        links: set[str] = set()
        for row in self.db.execute("SELECT feed_url, post_key, link_key FROM issue_posts"):
            keys.add((row["feed_url"], row["post_key"]))
            if row["link_key"]:
                links.add(row["link_key"])
        return keys, links

    # -- issues ----------------------------------------------------------------

    def create_issue(
        self,
        *,
        subject: str,
        html: str,
        text: str,
        posts: Iterable[Post],
        now: datetime,
        slot_key: str | None = None,
    ) -> int:
        """Freeze an issue: its content and the posts it carries, in one transaction."""
        posts = list(posts)
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO issues (created_at, slot_key, subject, html, text, post_count)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (_iso(now), slot_key, subject, html, text, len(posts)),
            )
            issue_id = int(cursor.lastrowid or 0)
            db.executemany(
                "INSERT OR IGNORE INTO issue_posts (issue_id, feed_url, post_key, link_key)"
                " VALUES (?, ?, ?, ?)",
                [(issue_id, p.feed_url, p.key, p.link_key) for p in posts],
            )
            return issue_id

    def _issue(self, row: sqlite3.Row) -> StoredIssue:
        return StoredIssue(
            id=row["id"],
            created_at=datetime.fromisoformat(row["created_at"]),
            finished_at=_time(row["finished_at"]),
            slot_key=row["slot_key"],
            subject=row["subject"],
            html=row["html"],
            text=row["text"],
            post_count=row["post_count"],
        )

    def unfinished_issue(self) -> StoredIssue | None:
        """The oldest issue whose send has not finished, to resume before anything new."""
        row = self.db.execute(
            "SELECT * FROM issues WHERE finished_at IS NULL ORDER BY id LIMIT 1"
        ).fetchone()
        return self._issue(row) if row else None

    def finish_issue(self, issue_id: int, now: datetime) -> None:
        """Mark an issue's send complete: every subscriber has a final delivery."""
        self.db.execute("UPDATE issues SET finished_at = ? WHERE id = ?", (_iso(now), issue_id))

    def give_up_pending(self, issue_id: int, now: datetime) -> list[Delivery]:
        """Mark an issue's still-pending deliveries failed and finish it, so it stops blocking."""
        rows = self.db.execute(
            "SELECT email, reply FROM deliveries WHERE issue_id = ? AND status = 'pending'",
            (issue_id,),
        ).fetchall()
        given_up = [
            Delivery(
                row["email"],
                DeliveryStatus.FAILED,
                f"gave up at the next slot; last reply: {row['reply'] or 'none'}",
            )
            for row in rows
        ]
        with self.transaction():
            for delivery in given_up:
                self.record_delivery(issue_id, delivery, now)
            self.finish_issue(issue_id, now)
        return given_up

    def issue_for_slot(self, slot_key: str) -> int | None:
        """The issue created for a schedule slot, if any."""
        row = self.db.execute("SELECT id FROM issues WHERE slot_key = ?", (slot_key,)).fetchone()
        return int(row["id"]) if row else None

    def claim_slot(self, slot_key: str, issue_id: int) -> None:
        """Attach a schedule slot to an existing (resumed) issue."""
        self.db.execute(
            "UPDATE issues SET slot_key = ? WHERE id = ? AND slot_key IS NULL", (slot_key, issue_id)
        )

    def record_skipped_slot(self, slot_key: str, now: datetime, reason: str) -> None:
        """Remember that a slot fired without an issue (nothing new), so it is not fired again."""
        self.db.execute(
            "INSERT OR IGNORE INTO skipped_slots (slot_key, recorded_at, reason) VALUES (?, ?, ?)",
            (slot_key, _iso(now), reason),
        )

    def slot_handled(self, slot_key: str) -> bool:
        """Whether a slot already produced an issue or was recorded as skipped."""
        if self.issue_for_slot(slot_key) is not None:
            return True
        row = self.db.execute("SELECT 1 FROM skipped_slots WHERE slot_key = ?", (slot_key,))
        return row.fetchone() is not None

    def latest_slot_key(self) -> str | None:
        """The newest slot with an issue or a skipped record (keys are UTC ISO, so text order)."""
        row = self.db.execute(
            "SELECT MAX(slot_key) AS k FROM (SELECT slot_key FROM issues"
            " UNION ALL SELECT slot_key FROM skipped_slots)"
        ).fetchone()
        return str(row["k"]) if row["k"] else None

    def history(self, limit: int = 50) -> list[IssueSummary]:
        """Recent issues with their delivery counts, newest first."""
        summaries = []
        for row in self.db.execute("SELECT * FROM issues ORDER BY id DESC LIMIT ?", (limit,)):
            counts = dict.fromkeys(("sent", "failed", "pending"), 0)
            for status, count in self.db.execute(
                "SELECT status, COUNT(*) FROM deliveries WHERE issue_id = ? GROUP BY status",
                (row["id"],),
            ):
                counts[status] = count
            failed = tuple(
                Delivery(r["email"], DeliveryStatus.FAILED, r["reply"] or "")
                for r in self.db.execute(
                    "SELECT email, reply FROM deliveries WHERE issue_id = ? AND status = 'failed'"
                    " ORDER BY email",
                    (row["id"],),
                )
            )
            summaries.append(
                IssueSummary(
                    self._issue(row), counts["sent"], counts["failed"], counts["pending"], failed
                )
            )
        return summaries

    # -- deliveries ------------------------------------------------------------

    def deliveries(self, issue_id: int) -> dict[str, Delivery]:
        """Every recorded delivery of an issue, by lower-cased address."""
        rows = self.db.execute(
            "SELECT email, status, reply FROM deliveries WHERE issue_id = ?", (issue_id,)
        )
        return {
            row["email"]: Delivery(row["email"], DeliveryStatus(row["status"]), row["reply"])
            for row in rows
        }

    def record_delivery(self, issue_id: int, delivery: Delivery, now: datetime) -> None:
        """Record one recipient's outcome, committed at once so a crash loses nothing sent."""
        self.db.execute(
            "INSERT INTO deliveries (issue_id, email, status, reply, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (issue_id, email) DO UPDATE SET"
            " status = excluded.status, reply = excluded.reply, attempts = attempts + 1,"
            " updated_at = excluded.updated_at",
            (issue_id, delivery.email.lower(), delivery.status.value, delivery.reply, _iso(now)),
        )

    # -- suppressions ----------------------------------------------------------

    def suppress(self, email: str, now: datetime, source: str) -> bool:
        """Never mail this address again; False if it was already suppressed."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO suppressions (email, created_at, source) VALUES (?, ?, ?)",
            (email.lower(), _iso(now), source),
        )
        return cursor.rowcount > 0

    def unsuppress(self, email: str) -> bool:
        """Allow mail to an address again; False if it was not suppressed."""
        cursor = self.db.execute("DELETE FROM suppressions WHERE email = ?", (email.lower(),))
        return cursor.rowcount > 0

    def suppressed(self) -> set[str]:
        """Every suppressed address, lower-cased."""
        return {row["email"] for row in self.db.execute("SELECT email FROM suppressions")}

    def suppressions(self) -> list[tuple[str, datetime, str]]:
        """(address, when, source) for every suppressed address, oldest first."""
        rows = self.db.execute(
            "SELECT email, created_at, source FROM suppressions ORDER BY created_at, email"
        )
        return [
            (row["email"], datetime.fromisoformat(row["created_at"]), row["source"]) for row in rows
        ]
