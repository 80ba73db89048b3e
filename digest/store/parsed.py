"""The parse cache: each feed's last parse, keyed by a hash of exactly the bytes parsed.

A feed that answers with the same bytes as last time (many servers send no validators for a
304) is then not parsed again, and feedparser is not even imported. A parse is reused only
until a post it dropped for being dated ahead comes due. Rows are kept per configured feed
URL; a feed taken out of config.yaml loses its row at the next parse written. Commands that
only read (a preview) write it best-effort, like the preview cache: never creating, upgrading
or waiting on the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from digest.core.models import FeedResult, FetchStatus
from digest.store.backend import Backend, Executor, iso, parse_time
from digest.store.feeds import post_from_json, post_to_json


class ParsedFeeds:
    """The parsed_feeds table in the open state file."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    def parsed(self, url: str) -> FeedResult | None:
        """The feed's last parse (its `parsed_key` says of what), or None."""
        row = self.db.execute(
            "SELECT parsed_key, feed_title, warning, reparse_after, posts FROM parsed_feeds"
            " WHERE url = ?",
            (url,),
        ).fetchone()
        if row is None:
            return None
        posts = tuple(post_from_json(text) for text in json.loads(row["posts"]))
        return FeedResult(
            feed_url=url,
            status=FetchStatus.OK,
            posts=posts,
            warning=row["warning"],
            feed_title=row["feed_title"],
            parsed_key=row["parsed_key"],
            reparse_after=parse_time(row["reparse_after"]),
        )

    def remember(self, results: Sequence[FeedResult], now: datetime) -> None:
        """Keep the fresh parses among `results`: in the open file if it was opened for
        writing, else best-effort in the file itself (never creating, upgrading or waiting)."""
        if not any(_fresh(result) for result in results):
            return
        self.db.write_if_current(lambda db: _store(db, results, now))


def _fresh(result: FeedResult) -> bool:
    return result.status is FetchStatus.OK and bool(result.parsed_key) and not result.from_cache


def _store(db: Executor, results: Sequence[FeedResult], now: datetime) -> None:
    db.executemany(
        "INSERT INTO parsed_feeds (url, parsed_key, feed_title, warning, reparse_after, posts,"
        " at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (url) DO UPDATE SET"
        " parsed_key = excluded.parsed_key, feed_title = excluded.feed_title,"
        " warning = excluded.warning, reparse_after = excluded.reparse_after,"
        " posts = excluded.posts, at = excluded.at",
        [
            (
                result.feed_url,
                result.parsed_key,
                result.feed_title,
                result.warning,
                iso(result.reparse_after) if result.reparse_after else None,
                json.dumps([post_to_json(post) for post in result.posts]),
                iso(now),
            )
            for result in results
            if _fresh(result)
        ],
    )
    configured = [result.feed_url for result in results]
    db.execute(
        f"DELETE FROM parsed_feeds WHERE url NOT IN ({', '.join('?' * len(configured))})",
        configured,
    )
