"""Collect every feed at once: fetch (conditional, capped) then parse, one FeedResult per feed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import httpx

from digest.config import FeedConfig, FetchConfig
from digest.fetch import Fetched, fetch_url, make_client, read_file
from digest.models import FeedResult, FetchStatus
from digest.parse import normalise_link, parse_feed

if TYPE_CHECKING:
    from pathlib import Path

    from digest.state import FeedRecord

__all__ = [
    "FeedHealth",
    "KnownFeed",
    "check_feeds",
    "collect",
    "normalise_link",
    "parse_feed",
]

logger = logging.getLogger(__name__)

PARSE_TIMEOUT = 30.0
STALE_DAYS = 90


@dataclass(frozen=True)
class KnownFeed:
    """What the state remembers about a feed between runs: validators and a permanent move."""

    etag: str | None
    last_modified: str | None
    permanent_url: str | None


def collect(
    feeds: Sequence[FeedConfig],
    fetch: FetchConfig,
    base_dir: Path,
    known: Mapping[str, KnownFeed],
    now: datetime,
) -> list[FeedResult]:
    """Fetch and parse every feed concurrently; one result per feed, in config order.

    Never raises for a feed's own problems: a failing feed gives FetchStatus.FAILED with a
    one-line error naming what went wrong.
    """
    if not feeds:
        return []
    with (
        make_client(fetch) as client,
        ThreadPoolExecutor(max_workers=min(fetch.concurrency, len(feeds))) as pool,
    ):
        futures = [
            pool.submit(_collect_one, client, feed, fetch, base_dir, known.get(feed.url), now)
            for feed in feeds
        ]
        results = [future.result() for future in futures]
    for result in results:
        if result.status is FetchStatus.FAILED:
            logger.info("feed %s failed: %s", result.feed_url, result.error)
    return results


def _collect_one(
    client: httpx.Client,
    feed: FeedConfig,
    fetch: FetchConfig,
    base_dir: Path,
    known: KnownFeed | None,
    now: datetime,
) -> FeedResult:
    started = time.monotonic()
    try:
        result = _fetch_and_parse(client, feed, fetch, base_dir, known, now)
    except Exception as error:  # a bug for one feed must not sink the others
        logger.exception("collecting %s failed unexpectedly", feed.url)
        result = FeedResult(
            feed.url, FetchStatus.FAILED, error=f"unexpected {type(error).__name__}: {error}"
        )
    return replace(result, elapsed_seconds=time.monotonic() - started)


def _fetch_and_parse(
    client: httpx.Client,
    feed: FeedConfig,
    fetch: FetchConfig,
    base_dir: Path,
    known: KnownFeed | None,
    now: datetime,
) -> FeedResult:
    if feed.is_remote:
        remembered = known.permanent_url if known else None
        url = remembered or feed.url
        fetched = fetch_url(
            client,
            url,
            fetch,
            etag=known.etag if known else None,
            last_modified=known.last_modified if known else None,
        )
        permanent = fetched.permanent_url or remembered
    else:
        url = feed.url
        fetched = read_file(base_dir / feed.url, fetch.max_bytes)
        permanent = None
    answer = FeedResult(
        feed_url=feed.url,
        status=FetchStatus.FAILED,
        http_status=fetched.http_status,
        etag=fetched.etag or (known.etag if known else None),
        last_modified=fetched.last_modified or (known.last_modified if known else None),
        permanent_url=permanent,
        gone=fetched.gone,
        error=fetched.error,
    )
    if fetched.not_modified:
        return replace(answer, status=FetchStatus.NOT_MODIFIED)
    if fetched.data is None:
        return answer
    parsed = _parse_bounded(fetched, url, now)
    return replace(
        answer,
        status=parsed.status,
        posts=parsed.posts,
        error=parsed.error,
        warning=parsed.warning,
        feed_title=parsed.feed_title,
    )


def _parse_bounded(fetched: Fetched, url: str, now: datetime) -> FeedResult:
    """parse_feed in a daemon thread, abandoned after PARSE_TIMEOUT so one feed cannot hang all."""
    outcome: list[FeedResult] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            assert fetched.data is not None
            outcome.append(parse_feed(fetched.data, url, now, content_type=fetched.content_type))
        except BaseException as error:
            failure.append(error)

    worker = threading.Thread(target=work, name=f"parse {url}", daemon=True)
    worker.start()
    worker.join(PARSE_TIMEOUT)
    if outcome:
        return outcome[0]
    if failure:
        error = failure[0]
        message = f"not a feed we can read: {type(error).__name__}: {error}"
        return FeedResult(url, FetchStatus.FAILED, error=message.splitlines()[0][:300])
    return FeedResult(
        url, FetchStatus.FAILED, error=f"parsing took longer than {PARSE_TIMEOUT:g} s; skipped"
    )


# -- feed health -------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedHealth:
    """One row of `digest check --feeds`."""

    name: str
    url: str
    status: str
    entries: int
    newest: datetime | None
    elapsed: float
    problems: tuple[str, ...]


def check_feeds(
    feeds: Sequence[FeedConfig],
    fetch: FetchConfig,
    base_dir: Path,
    records: Mapping[str, FeedRecord | None],
    now: datetime,
) -> list[FeedHealth]:
    """Fetch every feed now (no conditional GET) and say what an editor should do about each."""
    results = collect(feeds, fetch, base_dir, {}, now)
    return [
        _health(feed, result, records.get(feed.url), now)
        for feed, result in zip(feeds, results, strict=True)
    ]


def _health(
    feed: FeedConfig, result: FeedResult, record: FeedRecord | None, now: datetime
) -> FeedHealth:
    problems: list[str] = []
    if result.permanent_url:
        problems.append(f"moved permanently to {result.permanent_url}: update config.yaml")
    if result.gone:
        problems.append("gone: remove this feed")
    elif result.status is FetchStatus.FAILED:
        problems.append(result.error)
        if record and record.failures and record.first_failure_at:
            problems.append(
                f"failing since {record.first_failure_at:%Y-%m-%d} ({record.failures} attempts)"
            )
    if result.warning:
        problems.append(result.warning)
    dates = [post.published for post in result.posts if post.published]
    newest = max(dates) if dates else (record.newest_post_at if record else None)
    if result.status is FetchStatus.OK and newest is not None:
        idle = (now - newest).days
        if idle >= STALE_DAYS:
            problems.append(f"stale: no new post for {idle} days")
    return FeedHealth(
        name=feed.name,
        url=feed.url,
        status=str(result.status),
        entries=len(result.posts),
        newest=newest,
        elapsed=result.elapsed_seconds,
        problems=tuple(problems),
    )
