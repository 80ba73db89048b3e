"""Parsing in a second process: the same results, its log records, its failures and its end."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import digest.feeds.collect
import digest.feeds.parse_process
from digest.config.schema import FeedConfig, FetchConfig
from digest.core.models import FeedResult, FetchStatus
from digest.feeds.collect import KnownFeed, collect
from digest.feeds.parse import parse_feed, parse_safely
from digest.feeds.parse_process import ParseProcess
from tests.support.feedserver import FeedServer
from tests.test_collect import BILLION_LAUGHS, feed_body

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom <b>blog</b></title>
<link href="https://example.org/"/><id>urn:x</id><updated>2026-11-27T09:00:00Z</updated>
<entry><title type="html">An &lt;em&gt;Atom&lt;/em&gt; post</title>
<link href="/posts/1?utm_source=x&amp;fbclid=y"/><id>urn:1</id>
<published>2026-11-26T08:00:00Z</published><updated>2026-12-30T08:00:00Z</updated>
<author><name>Ann</name></author><category term="news"/>
<content type="html">&lt;p&gt;Body &lt;img src="/a.png"&gt;&lt;script&gt;x()&lt;/script&gt;
&lt;/p&gt;</content>
</entry>
<entry><title>Dated ahead</title><link href="https://example.org/later"/><id>urn:2</id>
<published>2027-01-05T08:00:00Z</published></entry></feed>"""

BODIES: dict[str, tuple[bytes, str | None]] = {
    "rss": (feed_body("One", "Two", "Three").encode(), "application/rss+xml"),
    "atom": (ATOM.encode(), "application/atom+xml"),
    "bozo": (feed_body("Broken & used").encode(), None),
    "laughs": (BILLION_LAUGHS.encode(), "application/xml"),
    "latin1": (feed_body("Café").encode("latin-1"), "application/xml; charset=iso-8859-1"),
    "json": (b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', None),
    "html": (b"<!doctype html><html><body><p>Welcome</p></body></html>", "text/html"),
    "empty": (b"  \n", None),
    "garbage": (bytes(range(256)) * 4, "application/octet-stream"),
}


def parse_and_warn(
    data: bytes, feed_url: str, now: datetime, *, content_type: str | None = None
) -> FeedResult:
    """The real parser, logging a warning first as parse_feed does when it skips an entry."""
    logging.getLogger("digest.feeds.parse").warning(
        "%s: skipped an entry: pid %d", feed_url, os.getpid()
    )
    return parse_feed(data, feed_url, now, content_type=content_type)


def parse_and_raise(
    data: bytes, feed_url: str, now: datetime, *, content_type: str | None = None
) -> FeedResult:
    """A parser that fails the way a bug would, with a two-line message."""
    raise ValueError(f"bad bytes in {feed_url}\nsecond line")


def parse_stuck_on_stuck(
    data: bytes, feed_url: str, now: datetime, *, content_type: str | None = None
) -> FeedResult:
    """The real parser, except that it never finishes a feed whose URL ends in /stuck.xml."""
    if feed_url.endswith("/stuck.xml"):
        time.sleep(8)
    return parse_feed(data, feed_url, now, content_type=content_type)


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, parent, ...); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def children() -> set[int]:
    """Process ids whose parent is this process (from /proc)."""
    mine = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(entry.name)
            if fields is not None and fields[1] == mine:
                found.add(int(entry.name))
    return found


def ready_process(on_ready: Callable[[], None] = lambda: None) -> ParseProcess:
    """A started second process, once it can take parses."""
    process = START(on_ready)
    assert process is not None
    deadline = time.monotonic() + 20
    while not process.try_acquire():
        assert time.monotonic() < deadline, "the second process never became ready"
        time.sleep(0.01)
    process.release()
    return process


START = ParseProcess.start


@pytest.fixture
def process_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """collect() starts its second process for any number of feeds and waits until it is ready,
    so that the first bodies in can go to it however slow the machine is today."""
    monkeypatch.setattr(digest.feeds.collect, "SECOND_PROCESS_FROM", 1)
    monkeypatch.setattr(ParseProcess, "start", staticmethod(ready_process))


def parse_there(process: ParseProcess, *args: object, **options: object) -> FeedResult | None:
    """One parse through the process, its place taken and given back."""
    assert process.try_acquire()
    try:
        return process.parse(*args, abandoned=lambda: False, **options)  # type: ignore[arg-type]
    finally:
        process.release()


@pytest.fixture
def process() -> Iterator[ParseProcess]:
    """A ready second process, killed after the test."""
    started = ready_process()
    yield started
    started.close()


@pytest.fixture
def hosts() -> Iterator[list[FeedServer]]:
    """Four feed servers, each on its own loopback address."""
    servers = [FeedServer(f"127.0.0.{n}") for n in range(2, 6)]
    for server in servers:
        server.__enter__()
    yield servers
    for server in servers:
        server.__exit__()


def serve_feeds(hosts: list[FeedServer], count: int, delay: float) -> list[FeedConfig]:
    """`count` feeds spread over the hosts, each answering after `delay` seconds."""
    urls = []
    for n in range(count):
        server = hosts[n % len(hosts)]
        name, (body, kind) = list(BODIES.items())[n % len(BODIES)]
        headers = {"Content-Type": kind} if kind else {}
        urls.append(server.add(f"/{name}-{n}.xml", body, delay=delay, headers=headers))
    return [FeedConfig(name=f"Feed {n}", url=url) for n, url in enumerate(urls)]


def without_timing(results: list[FeedResult]) -> list[FeedResult]:
    """Results with their elapsed time zeroed, to compare runs."""
    return [replace(result, elapsed_seconds=0.0) for result in results]


FAST = FetchConfig(timeout=10, concurrency=32, per_host=16)


def test_the_process_parses_exactly_as_the_thread_does(process: ParseProcess) -> None:
    for name, (body, kind) in BODIES.items():
        url = f"https://example.org/{name}.xml"
        there = parse_there(process, parse_feed, body, url, kind, NOW)
        here = parse_safely(parse_feed, body, url, kind, NOW)
        assert there == here, name
    assert process.parsed == len(BODIES)
    atom = parse_there(process, parse_feed, ATOM.encode(), "https://example.org/a", None, NOW)
    assert atom is not None and atom.reparse_after == datetime(2026, 12, 30, 8, 0, tzinfo=UTC)


def test_a_parse_that_raises_there_is_one_failed_line(process: ParseProcess) -> None:
    result = parse_there(process, parse_and_raise, b"<rss/>", "https://example.org/f", None, NOW)
    assert result == parse_safely(parse_and_raise, b"<rss/>", "https://example.org/f", None, NOW)
    assert result is not None and result.status is FetchStatus.FAILED
    assert result.error == "not a feed we can read: ValueError: bad bytes in https://example.org/f"


def test_records_logged_there_are_logged_here(
    process: ParseProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="digest.feeds.parse")
    body = feed_body("One").encode()
    result = parse_there(process, parse_and_warn, body, "https://example.org/w", None, NOW)
    assert result is not None and result.status is FetchStatus.OK
    [record] = [r for r in caplog.records if "skipped an entry" in r.getMessage()]
    assert record.name == "digest.feeds.parse" and record.levelno == logging.WARNING
    assert record.getMessage() == f"https://example.org/w: skipped an entry: pid {process.pid}"
    assert record.process == process.pid != os.getpid()


def test_a_function_the_process_cannot_import_is_parsed_here(process: ParseProcess) -> None:
    def local_parse(data: bytes, feed_url: str, now: datetime, **options: object) -> FeedResult:
        return parse_feed(data, feed_url, now)

    assert parse_there(process, local_parse, b"<rss/>", "https://example.org/f", None, NOW) is None
    assert process.usable  # that was the request's fault, not the process's
    body = feed_body("Still").encode()
    assert parse_there(process, parse_feed, body, "https://example.org/f", None, NOW) is not None


def test_a_killed_process_is_not_used_again(process: ParseProcess) -> None:
    os.kill(process.pid, 9)
    assert parse_there(process, parse_feed, b"<rss/>", "https://example.org/f", None, NOW) is None
    deadline = time.monotonic() + 20  # a guard: it notices at once that the process is gone
    while process.usable and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not process.usable and not process.try_acquire()


def test_a_parse_given_up_on_kills_the_process(process: ParseProcess) -> None:
    assert process.try_acquire()
    started = time.monotonic()
    result = process.parse(
        parse_stuck_on_stuck,
        feed_body("Never").encode(),
        "https://example.org/stuck.xml",
        None,
        NOW,
        abandoned=lambda: time.monotonic() - started > 0.3,
    )
    process.release()
    assert result is None  # waited for, the stuck parse would have ended with a result
    assert not process.usable
    assert process.pid not in children()


@pytest.mark.usefixtures("process_first")
def test_collect_gives_the_same_results_with_the_process_as_without(
    hosts: list[FeedServer], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="digest.feeds.parse_process")
    feeds = serve_feeds(hosts, 24, delay=0.3)
    before = children()
    with_process = collect(feeds, FAST, Path("."), {}, NOW)
    assert children() == before and not multiprocessing.active_children()
    monkeypatch.setattr(digest.feeds.collect, "SECOND_PROCESS_FROM", 10_000)
    in_threads = collect(feeds, FAST, Path("."), {}, NOW)
    assert without_timing(with_process) == without_timing(in_threads)
    assert [r.status for r in in_threads].count(FetchStatus.OK) >= 12
    [closed] = [r.getMessage() for r in caplog.records if "closed after parsing" in r.getMessage()]
    assert closed != "second process closed after parsing 0 feeds"


@pytest.mark.usefixtures("process_first")
def test_records_logged_in_the_process_during_collect_reach_the_log(
    hosts: list[FeedServer], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="digest.feeds.parse")
    monkeypatch.setattr(digest.feeds.collect, "parse_feed", parse_and_warn)
    feeds = serve_feeds(hosts, 16, delay=0.5)
    results = collect(feeds, FAST, Path("."), {}, NOW)
    warned = [r for r in caplog.records if "skipped an entry" in r.getMessage()]
    assert sorted(r.getMessage().split(": ")[0] for r in warned) == sorted(
        result.feed_url for result in results
    )
    assert any(r.process != os.getpid() for r in warned)  # some were parsed in the process


def test_with_remembered_parses_the_process_starts_once_enough_bodies_changed(
    hosts: list[FeedServer], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Feeds parsed last time usually answer 304 or the same bytes, so no process is started
    at first; once SECOND_PROCESS_FROM of them had to be parsed after all, it is."""
    caplog.set_level(logging.DEBUG, logger="digest.feeds.parse_process")
    monkeypatch.setattr(ParseProcess, "start", staticmethod(ready_process))
    enough = digest.feeds.collect.SECOND_PROCESS_FROM
    early = [hosts[0].add(f"/early{n}.xml", feed_body(f"Early {n}")) for n in range(enough)]
    late = [hosts[1].add(f"/late{n}.xml", feed_body(f"Late {n}"), delay=1.0) for n in range(4)]
    feeds = [FeedConfig(name=url, url=url) for url in early + late]
    known = {
        url: KnownFeed(parsed=FeedResult(url, FetchStatus.OK, parsed_key="last time's bytes"))
        for url in early + late
    }
    before = children()
    results = collect(feeds, FAST, Path("."), known, NOW)
    assert children() == before
    [closed] = [r.getMessage() for r in caplog.records if "closed after parsing" in r.getMessage()]
    assert closed != "second process closed after parsing 0 feeds"
    monkeypatch.setattr(digest.feeds.collect, "SECOND_PROCESS_FROM", 10_000)
    assert without_timing(results) == without_timing(collect(feeds, FAST, Path("."), known, NOW))
    assert [r.posts[0].title for r in results] == [f"Early {n}" for n in range(enough)] + [
        f"Late {n}" for n in range(4)
    ]


def test_no_process_means_parsing_in_threads(
    hosts: list[FeedServer], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A Python that cannot be started, or a process that dies before it is ready or on its
    first feed: every feed is still parsed, in its own thread, and the reason logged at debug."""
    caplog.set_level(logging.DEBUG, logger="digest.feeds.parse_process")
    monkeypatch.setattr(digest.feeds.collect, "SECOND_PROCESS_FROM", 1)
    feeds = serve_feeds(hosts, 12, delay=0.3)
    expected = without_timing(collect(feeds, FAST, Path("."), {}, NOW))
    dies_on_first = (
        "import os, sys; from multiprocessing.connection import Connection;"
        " c = Connection(int(sys.argv[1])); c.recv(); c.send_bytes(b'ready');"
        " c.recv_bytes(); c.recv_bytes(); os._exit(9)"
    )
    monkeypatch.setattr(digest.feeds.parse_process, "_CHILD", "raise SystemExit(3)")
    assert without_timing(collect(feeds, FAST, Path("."), {}, NOW)) == expected
    monkeypatch.setattr(digest.feeds.parse_process, "_CHILD", dies_on_first)
    monkeypatch.setattr(ParseProcess, "start", staticmethod(ready_process))
    assert without_timing(collect(feeds, FAST, Path("."), {}, NOW)) == expected
    monkeypatch.setattr(ParseProcess, "start", START)
    monkeypatch.setattr(digest.feeds.parse_process.sys, "executable", "/nonexistent/python")
    assert without_timing(collect(feeds, FAST, Path("."), {}, NOW)) == expected
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("no second process: FileNotFoundError" in line for line in said)
    # EOFError, or a reset or broken pipe when it died with a request still unread
    assert any("on one core from now on: the second process failed: " in x for x in said)
    assert not [r for r in caplog.records if r.levelno > logging.DEBUG and "process" in r.name]


@pytest.mark.usefixtures("process_first")
def test_a_parse_stuck_in_the_process_fails_its_feed_and_leaves_no_process(
    hosts: list[FeedServer], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="digest.feeds.parse_process")
    monkeypatch.setattr(digest.feeds.collect, "PARSE_TIMEOUT", 0.5)
    monkeypatch.setattr(digest.feeds.collect, "parse_feed", parse_stuck_on_stuck)
    stuck = hosts[0].add("/stuck.xml", feed_body("Never"), delay=1.0)
    fine = [hosts[1].add(f"/fine{n}.xml", feed_body(f"Fine {n}"), delay=1.2) for n in range(3)]
    before = children()
    results = collect(
        [FeedConfig(name=url, url=url) for url in [stuck, *fine]], FAST, Path("."), {}, NOW
    )
    assert results[0].error == "parsing took longer than 0.5 s; skipped"
    assert [r.posts[0].title for r in results[1:]] == ["Fine 0", "Fine 1", "Fine 2"]
    assert children() == before and not multiprocessing.active_children()
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "the second process was stopped: a parse there was given up on" in said


def test_a_parse_stuck_in_its_thread_holds_up_the_others_only_briefly(
    hosts: list[FeedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a process that never gets ready, bodies take turns in their threads; a stuck one
    keeps its turn for TURN_PATIENCE at most, then the others go ahead.

    The other feeds are answered only once the stuck parse has begun, so it has the turn.
    They must wait TURN_PATIENCE for it, counted from before the stuck feed was even requested
    (so no busy moment can make that wait look shorter than it was), and must not wait until
    the stuck one is given up on at PARSE_TIMEOUT: they would fail with it then.
    """
    monkeypatch.setattr(digest.feeds.collect, "SECOND_PROCESS_FROM", 1)
    monkeypatch.setattr(digest.feeds.collect, "PARSE_TIMEOUT", 3.0)
    monkeypatch.setattr(digest.feeds.collect, "TURN_PATIENCE", 0.5)
    monkeypatch.setattr(digest.feeds.parse_process, "_CHILD", "import time; time.sleep(60)")
    stuck_begun = threading.Event()
    began: dict[str, float] = {}

    def parse(data: bytes, feed_url: str, now: datetime, **options: object) -> FeedResult:
        began[feed_url] = time.monotonic()
        if feed_url.endswith("/stuck.xml"):
            stuck_begun.set()
        return parse_stuck_on_stuck(data, feed_url, now, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(digest.feeds.collect, "parse_feed", parse)
    stuck = hosts[0].add("/stuck.xml", feed_body("Never"))

    def after_the_stuck_one(handler: object) -> None:
        stuck_begun.wait(10)

    fine = [
        hosts[1].add(f"/fine{n}.xml", feed_body(f"Fine {n}"), handler=after_the_stuck_one)
        for n in range(3)
    ]
    before = children()
    results = collect(
        [FeedConfig(name=url, url=url) for url in [stuck, *fine]], FAST, Path("."), {}, NOW
    )
    assert results[0].error == "parsing took longer than 3 s; skipped"
    assert [r.posts[0].title for r in results[1:]] == ["Fine 0", "Fine 1", "Fine 2"]
    [asked] = hosts[0].exchanged("/stuck.xml")
    assert all(began[url] - asked.began > digest.feeds.collect.TURN_PATIENCE for url in fine)
    assert children() == before


@pytest.mark.usefixtures("process_first")
def test_stop_returns_at_once_and_leaves_no_process(
    hosts: list[FeedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop comes while three parses are stuck (8 s) and three feeds are still to answer (10 s):
    collect returns, the process killed, before any of those would have ended."""
    monkeypatch.setattr(digest.feeds.collect, "parse_feed", parse_stuck_on_stuck)
    stuck = [hosts[0].add(f"/{n}/stuck.xml", feed_body("Never"), delay=0.6) for n in range(3)]
    slow = [hosts[1].add(f"/slow{n}.xml", feed_body("Slow"), delay=10) for n in range(3)]
    before = children()
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    feeds = [FeedConfig(name=url, url=url) for url in stuck + slow]
    results = collect(feeds, FAST, Path("."), {}, NOW, stop=stop)
    answered = [e.path for e in hosts[1].exchanges if e.complete]
    assert answered == []  # returned before the slow feeds' answers came
    assert [r.error for r in results] == ["stopped"] * 6
    assert children() == before and not multiprocessing.active_children()


def test_repeated_collections_leave_no_process(
    hosts: list[FeedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(digest.feeds.collect, "SECOND_PROCESS_FROM", 1)
    feeds = serve_feeds(hosts, 8, delay=0.1)
    before = children()
    threads = threading.active_count()
    for _ in range(4):
        collect(feeds, FAST, Path("."), {}, NOW)
        assert children() == before and not multiprocessing.active_children()
    deadline = time.monotonic() + 20  # finished threads end a moment after their last word
    while threading.active_count() > threads:
        assert time.monotonic() < deadline, threading.enumerate()
        time.sleep(0.01)


def test_a_second_process_only_when_enough_feeds_will_be_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enough = digest.feeds.collect.SECOND_PROCESS_FROM
    remote = [FeedConfig(name=f"F{n}", url=f"https://example.org/{n}.xml") for n in range(enough)]
    local = [FeedConfig(name=f"L{n}", url=f"feeds/{n}.xml") for n in range(enough)]
    remembered = {remote[0].url: KnownFeed(parsed=FeedResult(remote[0].url, FetchStatus.OK))}
    only_validators = {remote[0].url: KnownFeed(etag='"x"')}
    when = digest.feeds.collect._second_process
    if len(os.sched_getaffinity(0)) > 1:
        assert when(remote, {}) == when(remote, only_validators) == "now"
        assert when(remote, remembered) == "later"  # if enough of them turn out to need parsing
    assert when(remote[1:] + local, {}) == "never"
    monkeypatch.setattr(digest.feeds.collect.os, "sched_getaffinity", lambda pid: {0})
    assert when(remote, {}) == "never"  # one core: nothing to gain


def parse_stuck_for_good(
    data: bytes, feed_url: str, now: datetime, *, content_type: str | None = None
) -> FeedResult:
    """A parse that never ends (within a test's life), first creating the file named by the
    feed URL's path, to say it has begun."""
    Path(urlsplit(feed_url).path).touch()
    time.sleep(600)
    return parse_feed(data, feed_url, now, content_type=content_type)


PARENT_SCRIPT = """
import sys
from datetime import UTC, datetime
from digest.feeds.parse_process import ParseProcess
from tests.test_collect_process import parse_stuck_for_good, ready_process
process = ready_process()
print(process.pid, flush=True)
assert process.try_acquire()
process.parse(parse_stuck_for_good, b"<rss/>", "file://" + sys.argv[1], None,
              datetime.now(UTC), lambda: False)
"""


def running(pid: int) -> bool:
    """Whether `pid` is a live process (an exited one waiting to be reaped is not)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def test_a_parent_killed_outright_takes_its_second_process_with_it_mid_parse(
    tmp_path: Path,
) -> None:
    begun = tmp_path / "parse-begun"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, str(begun)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 20  # a guard: the parse begins as soon as it is sent
        while not begun.exists():
            assert time.monotonic() < deadline, "the parse never began"
            time.sleep(0.01)
        assert running(child)  # inside a parse that would last ten minutes
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 20  # a guard, far short of the parse ending by itself
    try:
        while running(child):
            assert time.monotonic() < deadline, "the second process outlived its parent"
            time.sleep(0.05)
    finally:
        if running(child):
            os.kill(child, signal.SIGKILL)
