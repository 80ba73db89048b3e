"""Collect every feed at once: fetch (conditional, bounded) then parse, one FeedResult per feed."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import httpx

from digest.config.schema import FeedConfig, FetchConfig
from digest.core import counters
from digest.core.models import FeedResult, FetchStatus
from digest.core.redact import redact_url
from digest.feeds.advice import feed_advice
from digest.feeds.fetch import fetch_url, make_client, read_file, redact_error
from digest.feeds.parse import normalise_link, parse_feed, parse_key, parse_safely

if TYPE_CHECKING:
    from pathlib import Path

    from digest.feeds.parse_process import ParseProcess
    from digest.store import FeedRecord

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
FETCH_GRACE = 1.0  # beyond fetch.timeout, for a fetch stuck where no deadline reaches (DNS)
POLL = 0.05
STALE_DAYS = 90
# Remote feeds to parse from which a second process pays: measured, it breaks even near 4
# feeds and saves 35 ms at 8, 0.1 s at 16, 0.2 s at 32 (feeds answering after 200 ms).
SECOND_PROCESS_FROM = 8
TURN_PATIENCE = 1.0  # a parse in a thread running longer than this stops holding up the others


@dataclass(frozen=True)
class KnownFeed:
    """What the state remembers about a feed between runs: validators, a permanent move, and
    its last parse (reused for the same bytes, see digest.store.parsed)."""

    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None
    parsed: FeedResult | None = None


def collect(
    feeds: Sequence[FeedConfig],
    fetch: FetchConfig,
    base_dir: Path,
    known: Mapping[str, KnownFeed],
    now: datetime,
    *,
    stop: threading.Event | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[FeedResult]:
    """Fetch and parse every feed concurrently; one result per feed, in config order.

    Never raises for a feed's own problems: a failing feed gives FetchStatus.FAILED with a
    one-line error naming what went wrong, its URL's credentials masked. Never waits on a stuck
    feed either: each runs in a daemon thread that is abandoned (and cannot keep the process
    alive) once fetch.timeout passes before its body is in, or PARSE_TIMEOUT while it is parsed.
    Setting `stop` makes collect return within POLL seconds, every unfinished feed failed
    "stopped". `transport` replaces the network, for tests.

    With SECOND_PROCESS_FROM or more remote feeds to parse and a second core, a second process
    (digest.feeds.parse_process), started first so that its start-up overlaps the network wait (or
    at
    the SECOND_PROCESS_FROM-th parse, when remembered parses made that unlikely), parses beside
    the threads and is killed on return: for 50 feeds answering after 200 ms the whole
    `digest preview` took a median 1.21 s against 1.60 s on one core (bench/collect.py).
    """
    if not feeds:
        return []
    parsers = _Parsers(_second_process(feeds, known))
    try:
        with make_client(fetch, transport) as client:
            jobs = [
                _Job(
                    feed,
                    partial(
                        _collect_one,
                        client,
                        feed,
                        fetch,
                        base_dir,
                        known.get(feed.url),
                        now,
                        parsers,
                    ),
                )
                for feed in feeds
            ]
            results = _run(jobs, fetch, stop)
    finally:
        parsers.close()
    for feed, result in zip(feeds, results, strict=True):
        counters.count(counters.FEED_FETCHES, feed=feed.name, outcome=result.status.value)
        if result.status is FetchStatus.FAILED:
            logger.info("feed %s failed: %s", redact_url(result.feed_url), result.error)
    return results


@dataclass
class _Job:
    """One feed's work and how far it has got; written by its worker, read by the collector."""

    feed: FeedConfig
    work: Callable[[_Job], FeedResult]
    started: float = 0.0
    fetched: float | None = None  # when the body was in and parsing began
    result: FeedResult | None = None
    abandoned: bool = False  # given up on: whatever the worker still does is not reported
    events: queue.SimpleQueue[tuple[int, bool]] | None = None  # (index, done) to the collector
    index: int = 0

    def body_in(self) -> None:
        """Mark the fetch over (parsing begins): its host and network slot are free again."""
        self.fetched = time.monotonic()
        if self.events is not None:
            self.events.put((self.index, False))


def _run(jobs: list[_Job], fetch: FetchConfig, stop: threading.Event | None) -> list[FeedResult]:
    """Run the jobs, at most fetch.concurrency fetching at once and fetch.per_host from any one
    host, giving up on overdue ones.

    A feed holds its place in those limits only while it is fetched: once its body is in,
    the next feed's request starts while it is parsed (in the second process or in its thread,
    see _Parsers), so parsing never holds back the network. Bodies in memory stay bounded:
    feeds being fetched and feeds being parsed (or waiting for their turn to be) are never more
    than 2 x fetch.concurrency together; the second process holds copies of parseprocess.DEPTH
    of those at most.
    """
    events: queue.SimpleQueue[tuple[int, bool]] = queue.SimpleQueue()
    results: list[FeedResult | None] = [None] * len(jobs)
    waiting = deque(range(len(jobs)))
    fetching: set[int] = set()
    parsing: set[int] = set()
    hosts = [_host(job.feed) for job in jobs]
    busy: Counter[str] = Counter()

    def stop_fetching(index: int) -> None:
        if index in fetching:
            fetching.discard(index)
            busy[hosts[index]] -= 1

    while waiting or fetching or parsing:
        if stop is not None and stop.is_set():
            break
        for index in list(waiting):
            if (
                len(fetching) >= fetch.concurrency
                or len(fetching) + len(parsing) >= 2 * fetch.concurrency
            ):
                break
            if hosts[index] and busy[hosts[index]] >= fetch.per_host:
                continue
            waiting.remove(index)
            busy[hosts[index]] += 1
            job = jobs[index]
            job.started, job.events, job.index = time.monotonic(), events, index
            worker = threading.Thread(target=_work, args=(job,), name=f"feed {index}", daemon=True)
            worker.start()
            fetching.add(index)
        for index in sorted(fetching | parsing):
            overdue = _overdue(jobs[index], fetch)
            if overdue:
                stop_fetching(index)
                parsing.discard(index)
                jobs[index].abandoned = True
                results[index] = _failed(jobs[index], overdue)
        try:
            index, done = events.get(timeout=POLL)
        except queue.Empty:
            continue
        if index not in fetching and index not in parsing:
            continue  # given up on already
        stop_fetching(index)
        if done:
            parsing.discard(index)
            results[index] = jobs[index].result
        else:
            parsing.add(index)
    for job in jobs:
        job.abandoned = True
    return [result or _failed(job, "stopped") for job, result in zip(jobs, results, strict=True)]


def _host(feed: FeedConfig) -> str:
    """The host a feed is fetched from, lower-cased ('' for a local file: no politeness limit).

    A redirect is followed within the same job, so it counts against the feed's own host.
    """
    if not feed.is_remote:
        return ""
    return (urlsplit(feed.url).hostname or "").lower()


def _work(job: _Job) -> None:
    job.result = job.work(job)
    if job.events is not None:
        job.events.put((job.index, True))


def _overdue(job: _Job, fetch: FetchConfig) -> str:
    """Why a running job is given up on now, or ''."""
    moment = time.monotonic()
    if job.fetched is None:
        if moment - job.started > fetch.timeout + FETCH_GRACE:
            return f"timed out after {fetch.timeout:g} s (fetch.timeout)"
    elif moment - job.fetched > PARSE_TIMEOUT:
        return f"parsing took longer than {PARSE_TIMEOUT:g} s; skipped"
    return ""


def _failed(job: _Job, error: str) -> FeedResult:
    elapsed = time.monotonic() - job.started if job.started else 0.0
    return FeedResult(job.feed.url, FetchStatus.FAILED, error=error, elapsed_seconds=elapsed)


def _collect_one(
    client: httpx.Client,
    feed: FeedConfig,
    fetch: FetchConfig,
    base_dir: Path,
    known: KnownFeed | None,
    now: datetime,
    parsers: _Parsers,
    job: _Job,
) -> FeedResult:
    started = time.monotonic()
    try:
        result = _fetch_and_parse(client, feed, fetch, base_dir, known, now, parsers, job)
    except Exception as error:  # a bug for one feed must not sink the others
        if not job.abandoned:  # an abandoned worker fails once its client is closed
            trace = "".join(traceback.format_exception(error))
            message = redact_error(f"{type(error).__name__}: {error}", feed.url)
            logger.error("collecting %s failed unexpectedly: %s", redact_url(feed.url), message)
            logger.debug("%s", redact_error(trace, feed.url))
        result = FeedResult(
            feed.url, FetchStatus.FAILED, error=f"unexpected {type(error).__name__}: {error}"
        )
    return replace(
        result,
        error=redact_error(result.error, feed.url),
        warning=redact_error(result.warning, feed.url),
        elapsed_seconds=time.monotonic() - started,
    )


def _fetch_and_parse(
    client: httpx.Client,
    feed: FeedConfig,
    fetch: FetchConfig,
    base_dir: Path,
    known: KnownFeed | None,
    now: datetime,
    parsers: _Parsers,
    job: _Job,
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
    job.body_in()
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
    key = parse_key(fetched.data, url, fetched.content_type)
    last_parse = known.parsed if known else None
    if last_parse is not None and last_parse.parsed_key == key and _still_current(last_parse, now):
        parsed = replace(last_parse, from_cache=True)
    else:
        parsed = parsers.parse(job, fetched.data, url, fetched.content_type, now)
        parsed = replace(parsed, parsed_key=key)
    return replace(
        answer,
        status=parsed.status,
        posts=tuple(replace(post, feed_url=feed.url) for post in parsed.posts),
        error=parsed.error,
        warning=parsed.warning,
        feed_title=parsed.feed_title,
        parsed_key=parsed.parsed_key,
        reparse_after=parsed.reparse_after,
        from_cache=parsed.from_cache,
    )


def _still_current(parsed: FeedResult, now: datetime) -> bool:
    """Whether a remembered parse is what parsing the same bytes gives at `now`."""
    return parsed.reparse_after is None or now < parsed.reparse_after


When = Literal["now", "later", "never"]


def _second_process(feeds: Sequence[FeedConfig], known: Mapping[str, KnownFeed]) -> When:
    """When to start a second parsing process: "now" if enough remote feeds have no remembered
    parse (they will all be parsed), "later" if enough remote feeds could be (it is started once
    that many were), "never" if too few could be or the machine has one core only."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    remote = [feed for feed in feeds if feed.is_remote]
    if cpus < 2 or len(remote) < SECOND_PROCESS_FROM:
        return "never"
    fresh = [feed for feed in remote if feed.url not in known or known[feed.url].parsed is None]
    return "now" if len(fresh) >= SECOND_PROCESS_FROM else "later"


class _Parsers:
    """Who parses a body that is in: the second process when it has room, else the feed's own
    thread, one such thread at a time, so that both cores parse and the process is kept fed.

    Without a second process every thread parses at once, as the GIL allows. A thread parse
    running beyond TURN_PATIENCE (a stuck one, say) no longer makes the others wait their turn.
    """

    def __init__(self, when: When) -> None:
        self.process: ParseProcess | None = None
        self._turn = threading.Condition()
        self._local: dict[int, float] = {}  # job index -> when its parse in a thread began
        self._later = when == "later"
        self._parses = 0
        self._closed = False
        if when == "now":
            self.process = _start_process(self.wake)

    def close(self) -> None:
        """Kill the second process, if any, and start none from now on."""
        with self._turn:
            self._closed = True
            process = self.process
        if process is not None:
            process.close()

    def wake(self) -> None:
        """Let the bodies waiting for a turn look again (the process is ready)."""
        with self._turn:
            self._turn.notify_all()

    def parse(
        self, job: _Job, data: bytes, url: str, content_type: str | None, now: datetime
    ) -> FeedResult:
        """The body parsed in whichever place frees up first."""
        if self._later:
            self._start_at_enough_parses()
        process = self.process
        while process is not None and process.usable:
            with self._turn:
                there = process.try_acquire()
                moment = time.monotonic()
                if not there and all(moment - b > TURN_PATIENCE for b in self._local.values()):
                    self._local[job.index] = moment
                    break
                if not there:
                    self._turn.wait(TURN_PATIENCE / 4)
            if there:
                return self._parse_there(process, job, data, url, content_type, now)
            if job.abandoned:
                return _failed(job, "stopped")
        try:
            return _parse(data, url, content_type, now)
        finally:
            with self._turn:
                if self._local.pop(job.index, None) is not None:
                    self._turn.notify()

    def _start_at_enough_parses(self) -> None:
        """Count this parse; start the second process at the SECOND_PROCESS_FROM-th."""
        with self._turn:
            self._parses += 1
            if self._closed or self._parses < SECOND_PROCESS_FROM:
                return
            self._later = False
            self.process = _start_process(self.wake)

    def _parse_there(
        self,
        process: ParseProcess,
        job: _Job,
        data: bytes,
        url: str,
        content_type: str | None,
        now: datetime,
    ) -> FeedResult:
        """Parse in the second process, taken by try_acquire; in this thread if it fails."""
        try:
            result = process.parse(parse_feed, data, url, content_type, now, lambda: job.abandoned)
        finally:
            process.release()
            with self._turn:
                self._turn.notify()
        if result is None and not job.abandoned:
            result = _parse(data, url, content_type, now)
        return result or _failed(job, "stopped")


def _start_process(on_ready: Callable[[], None]) -> ParseProcess | None:
    """ParseProcess.start, its module loaded only by a collection that has enough to parse."""
    from digest.feeds.parse_process import ParseProcess

    return ParseProcess.start(on_ready)


def _parse(data: bytes, url: str, content_type: str | None, now: datetime) -> FeedResult:
    """parse_feed, with anything it raises turned into a failed result."""
    return parse_safely(parse_feed, data, url, content_type, now)


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
    failed = result.status is FetchStatus.FAILED
    problems = list(
        feed_advice(
            permanent_url=result.permanent_url,
            gone=result.gone,
            error=result.error if failed else None,
            failures=record.failures if record and failed else 0,
            first_failure_at=record.first_failure_at if record else None,
            warning=result.warning,
        )
    )
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
