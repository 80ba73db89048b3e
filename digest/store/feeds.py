"""Feeds and their posts: validators, redirects and failures per feed, and the posts last seen.

A feed is known by its configured URL everywhere (the `url` column, and `feed_url` of its
posts); a remembered permanent redirect is only where it is fetched from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from digest.core.models import FeedResult, FetchStatus, Post
from digest.store.backend import Backend, iso, parse_time


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


def post_to_json(post: Post) -> str:
    """Serialise a post for the posts table."""
    fields = asdict(post)
    for name in ("published", "updated"):
        fields[name] = iso(fields[name]) if fields[name] else None
    return json.dumps(fields, ensure_ascii=False)


def post_from_json(text: str) -> Post:
    """Read back a post stored with post_to_json."""
    fields: dict[str, Any] = json.loads(text)
    for name in ("published", "updated"):
        fields[name] = parse_time(fields[name])
    fields["categories"] = tuple(fields.get("categories", ()))
    return Post(**fields)


class Feeds:
    """The feeds and posts tables."""

    def __init__(self, db: Backend) -> None:
        self.db = db

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
            first_failure_at=parse_time(row["first_failure_at"]),
            last_success_at=parse_time(row["last_success_at"]),
            newest_post_at=parse_time(row["newest_post_at"]),
        )

    def record_fetch(self, result: FeedResult, now: datetime) -> None:
        """Remember validators, redirects and failures from one fetch; store its posts.

        Posts are stored under the result's (configured) feed URL whatever address they were
        fetched from, so a 304 or a first-seen lookup by that URL finds them.
        """
        previous = self.feed(result.feed_url)
        with self.db.transaction():
            if result.status is FetchStatus.FAILED:
                first = (previous.first_failure_at if previous else None) or now
                self.db.execute(
                    "INSERT INTO feeds (url, last_status, last_error, failures, first_failure_at,"
                    " gone) VALUES (?, 'failed', ?, 1, ?, ?) ON CONFLICT (url) DO UPDATE SET"
                    " last_status = 'failed', last_error = excluded.last_error,"
                    " failures = feeds.failures + 1, first_failure_at = excluded.first_failure_at,"
                    " gone = excluded.gone",
                    (result.feed_url, result.error, iso(first), int(result.gone)),
                )
                return
            dates = [p.published for p in result.posts if p.published]
            newest = max(dates) if dates else (previous.newest_post_at if previous else None)
            self.db.execute(
                "INSERT INTO feeds (url, etag, last_modified, permanent_url, gone, last_status,"
                " last_error, failures, first_failure_at, last_success_at, newest_post_at)"
                " VALUES (?, ?, ?, ?, 0, ?, NULL, 0, NULL, ?, ?) ON CONFLICT (url) DO UPDATE SET"
                " etag = COALESCE(excluded.etag, feeds.etag),"
                " last_modified = COALESCE(excluded.last_modified, feeds.last_modified),"
                " permanent_url = COALESCE(excluded.permanent_url, feeds.permanent_url), gone = 0,"
                " last_status = excluded.last_status, last_error = NULL, failures = 0,"
                " first_failure_at = NULL, last_success_at = excluded.last_success_at,"
                " newest_post_at = COALESCE(excluded.newest_post_at, feeds.newest_post_at)",
                (
                    result.feed_url,
                    result.etag,
                    result.last_modified,
                    result.permanent_url,
                    result.status.value,
                    iso(now),
                    iso(newest) if newest else None,
                ),
            )
            posts = [replace(post, feed_url=result.feed_url) for post in result.posts]
            self.db.executemany(
                "INSERT INTO posts (feed_url, post_key, link_key, first_seen, data)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (feed_url, post_key) DO UPDATE SET"
                " data = excluded.data, link_key = excluded.link_key",
                [(p.feed_url, p.key, p.link_key, iso(now), post_to_json(p)) for p in posts],
            )

    def stored_posts(self, feed_url: str) -> list[Post]:
        """Posts kept from the feed's successful fetches, for a 304 answer."""
        rows = self.db.execute("SELECT data FROM posts WHERE feed_url = ?", (feed_url,))
        return [replace(post_from_json(row["data"]), feed_url=feed_url) for row in rows]

    def last_new_posts(self) -> dict[str, datetime]:
        """Per feed URL, when a post new to digest was last recorded (for the metrics)."""
        rows = self.db.execute(
            "SELECT feed_url, MAX(first_seen) AS at FROM posts GROUP BY feed_url"
        ).fetchall()
        return {str(row["feed_url"]): datetime.fromisoformat(row["at"]) for row in rows}

    def first_seen(self, feed_url: str) -> dict[str, datetime]:
        """When each post of a feed was first recorded."""
        rows = self.db.execute(
            "SELECT post_key, first_seen FROM posts WHERE feed_url = ?", (feed_url,)
        )
        return {row["post_key"]: datetime.fromisoformat(row["first_seen"]) for row in rows}
