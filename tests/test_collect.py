"""Collecting from a real HTTP server on 127.0.0.1: slow, down, redirecting, 304, mis-encoded."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

import digest.feeds.collect
from digest.config.schema import FeedConfig, FetchConfig
from digest.core.models import FeedResult, FetchStatus
from digest.feeds.collect import KnownFeed, collect
from tests.support.feedserver import FeedServer, gathering

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>{title}</title><link>https://example.org/</link>
<description>d</description>{items}</channel></rss>"""

ITEM = """<item><title>{title}</title><link>{link}</link><guid>{link}</guid>
<pubDate>Fri, 27 Nov 2026 09:30:00 +0000</pubDate><description>Summary.</description></item>"""


def feed_body(*titles: str, site: str = "https://example.org/blog") -> str:
    """An RSS document with one item per title."""
    items = "".join(
        ITEM.format(title=title, link=f"{site}/{n}") for n, title in enumerate(titles, start=1)
    )
    return RSS.format(title="Example blog", items=items)


def feeds_for(*urls: str) -> list[FeedConfig]:
    """A FeedConfig per URL, named after its position."""
    return [FeedConfig(name=f"Feed {n}", url=url) for n, url in enumerate(urls, start=1)]


def run(
    urls: list[str],
    *,
    known: dict[str, KnownFeed] | None = None,
    base_dir: Path = Path("."),
    **fetch: object,
) -> list[FeedResult]:
    """collect() with a short timeout unless told otherwise."""
    options: dict[str, object] = {"timeout": 3, **fetch}
    return collect(feeds_for(*urls), FetchConfig(**options), base_dir, known or {}, NOW)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[FeedServer]:
    """A FeedServer on 127.0.0.1."""
    with FeedServer() as running:
        yield running


def titles(result: FeedResult) -> list[str]:
    """The post titles of one result."""
    return [post.title for post in result.posts]


def test_results_come_back_in_config_order_with_the_configured_url(server: FeedServer) -> None:
    first = server.add("/a.xml", feed_body("Alpha"), delay=0.3)
    second = server.add("/b.xml", feed_body("Beta"))
    results = run([first, second])
    assert [r.feed_url for r in results] == [first, second]
    assert [titles(r) for r in results] == [["Alpha"], ["Beta"]]
    assert all(r.status is FetchStatus.OK and r.http_status == 200 for r in results)
    assert results[0].posts[0].feed_url == first
    assert results[0].feed_title == "Example blog"


def test_user_agent_and_accept_are_sent(server: FeedServer) -> None:
    url = server.add("/a.xml", feed_body("Alpha"))
    run([url], user_agent="digest/9.9 (+https://example.org/digest)")
    headers = server.hits("/a.xml")[0].headers
    assert headers["user-agent"] == "digest/9.9 (+https://example.org/digest)"
    assert "application/rss+xml" in headers["accept"]


@pytest.fixture
def no_backstop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's own backstop for a fetch (fetch.timeout + FETCH_GRACE) put out of reach,
    so that only the request's own deadline can end a slow fetch in these tests."""
    monkeypatch.setattr(digest.feeds.collect, "FETCH_GRACE", 600.0)


@pytest.mark.usefixtures("no_backstop")
def test_a_slow_feed_times_out_and_the_others_are_still_collected(server: FeedServer) -> None:
    slow = server.add("/slow.xml", feed_body("Slow"), delay=10)
    fast = server.add("/fast.xml", feed_body("Fast"))
    results = run([slow, fast], timeout=0.5)
    assert results[0].status is FetchStatus.FAILED
    assert results[0].error == "timed out after 0.5 s (fetch.timeout)"
    assert titles(results[1]) == ["Fast"]
    [exchange] = server.exchanged("/slow.xml")
    assert not exchange.complete  # the client hung up rather than wait the 10 s for the answer


def test_a_server_that_is_down_is_a_named_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    [result] = run([f"http://127.0.0.1:{port}/feed.xml"])
    assert result.status is FetchStatus.FAILED
    assert result.error.startswith("could not connect:")
    assert "\n" not in result.error


@pytest.mark.parametrize(("status", "message"), [(500, "HTTP 500"), (404, "HTTP 404")])
def test_http_errors_fail_with_the_status(server: FeedServer, status: int, message: str) -> None:
    url = server.add("/broken.xml", "oops", status=status)
    [result] = run([url])
    assert result.status is FetchStatus.FAILED
    assert result.error.startswith(message)
    assert result.http_status == status
    assert not result.gone


def test_410_says_remove_the_feed(server: FeedServer) -> None:
    url = server.add("/old.xml", "", status=410)
    [result] = run([url])
    assert result.status is FetchStatus.FAILED
    assert result.gone
    assert result.error == "gone (410): remove this feed from config.yaml"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_decoded(server: FeedServer, encoding: str) -> None:
    url = server.add("/z.xml", feed_body("Squeezed"), **{encoding: True})
    [result] = run([url])
    assert titles(result) == ["Squeezed"]
    assert server.hits("/z.xml")[0].headers["accept-encoding"].count(encoding) == 1


@pytest.mark.parametrize(
    ("status", "permanent"), [(301, True), (302, False), (307, False), (308, True)]
)
def test_redirects_are_followed_and_only_permanent_ones_remembered(
    server: FeedServer, status: int, permanent: bool
) -> None:
    target = server.add("/new.xml", feed_body("Moved"))
    old = server.add("/old.xml", "", status=status, location="/new.xml")
    [result] = run([old])
    assert titles(result) == ["Moved"]
    assert result.feed_url == old
    assert result.posts[0].feed_url == old
    assert result.permanent_url == (target if permanent else None)


def test_a_remembered_permanent_move_is_fetched_directly(server: FeedServer) -> None:
    target = server.add("/new.xml", feed_body("Moved"))
    old = server.add("/old.xml", "", status=301, location="/new.xml")
    [result] = run([old], known={old: KnownFeed(None, None, target)})
    assert titles(result) == ["Moved"]
    assert result.feed_url == old
    assert result.permanent_url == target
    assert server.hits("/old.xml") == []


def test_redirect_loops_and_non_http_redirects_fail(server: FeedServer) -> None:
    loop = server.add("/loop.xml", "", status=302, location="/loop.xml")
    local = server.add("/local.xml", "", status=302, location="file:///etc/passwd")
    results = run([loop, local])
    assert results[0].error == "more than 5 redirects"
    assert results[1].status is FetchStatus.FAILED
    assert results[1].error.startswith("not an http(s) URL")
    assert not results[1].posts


def test_etag_gives_304_and_no_parse(server: FeedServer) -> None:
    url = server.add("/e.xml", feed_body("Tagged"), etag='"v1"')
    [first] = run([url])
    assert first.etag == '"v1"'
    [second] = run([url], known={url: KnownFeed('"v1"', None, None)})
    assert server.hits("/e.xml")[1].headers["if-none-match"] == '"v1"'
    assert second.status is FetchStatus.NOT_MODIFIED
    assert second.posts == ()
    assert second.etag == '"v1"'


def test_last_modified_gives_304(server: FeedServer) -> None:
    stamp = "Fri, 27 Nov 2026 09:30:00 GMT"
    url = server.add("/m.xml", feed_body("Dated"), last_modified=stamp)
    [first] = run([url])
    assert first.last_modified == stamp
    assert "if-modified-since" not in server.hits("/m.xml")[0].headers
    [second] = run([url], known={url: KnownFeed(None, stamp, None)})
    assert server.hits("/m.xml")[1].headers["if-modified-since"] == stamp
    assert second.status is FetchStatus.NOT_MODIFIED
    assert second.last_modified == stamp


def test_windows_1252_with_charset_only_in_the_http_header(server: FeedServer) -> None:
    body = feed_body("\u201cQuoted\u201d \u20ac5 caf\u00e9").replace(' encoding="utf-8"', "")
    url = server.add(
        "/cp.xml",
        body.encode("windows-1252"),
        headers={"Content-Type": "application/rss+xml; charset=windows-1252"},
    )
    [result] = run([url])
    assert titles(result) == ["\u201cQuoted\u201d \u20ac5 caf\u00e9"]


def test_iso_8859_1_declared_in_the_xml(server: FeedServer) -> None:
    body = feed_body("Cr\u00e8me br\u00fbl\u00e9e").replace("utf-8", "iso-8859-1")
    url = server.add(
        "/latin.xml", body.encode("iso-8859-1"), headers={"Content-Type": "application/rss+xml"}
    )
    [result] = run([url])
    assert titles(result) == ["Cr\u00e8me br\u00fbl\u00e9e"]


def test_a_feed_served_as_text_html_is_still_read(server: FeedServer) -> None:
    url = server.add(
        "/html.xml", feed_body("Mislabelled"), headers={"Content-Type": "text/html; charset=utf-8"}
    )
    [result] = run([url])
    assert result.status is FetchStatus.OK
    assert titles(result) == ["Mislabelled"]


def test_bodies_over_max_bytes_fail(server: FeedServer) -> None:
    big = feed_body(*(f"Post {n}" for n in range(40)))
    assert len(big) > 2048
    plain = server.add("/big.xml", big)
    squeezed = server.add("/bomb.xml", big, gzip=True)
    results = run([plain, squeezed], max_bytes=2048)
    for result in results:
        assert result.status is FetchStatus.FAILED
        assert result.error == "larger than 2048 bytes (fetch.max_bytes)"


def test_a_gzip_bomb_stops_at_the_cap(server: FeedServer) -> None:
    bomb = gzip.compress(b"<rss>" + b" " * 50_000_000)
    url = server.add("/gz.xml", bomb, headers={"Content-Encoding": "gzip"})
    tracemalloc.start()
    try:
        [result] = run([url], max_bytes=100_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.error == "larger than 100000 bytes (fetch.max_bytes)"
    assert peak < 5_000_000, f"decoding peaked at {peak / 1e6:.0f} MB of the bomb's 50 MB"


def test_feeds_are_fetched_concurrently(server: FeedServer) -> None:
    """Each request is answered only once all ten are in: fetched one after another, the first
    would wait for nine that never come, and fail."""
    together = gathering(10)
    urls = [server.add(f"/f{n}.xml", feed_body(f"Post {n}"), handler=together) for n in range(10)]
    results = run(urls, concurrency=10, per_host=10)
    assert [titles(r) for r in results] == [[f"Post {n}"] for n in range(10)]
    exchanges = server.exchanges
    assert len(exchanges) == 10
    assert max(e.began for e in exchanges) < min(e.ended for e in exchanges)
    assert server.peak == 10


def test_one_host_gets_at_most_per_host_requests_at_once(server: FeedServer) -> None:
    """Requests are answered in pairs (and held a moment more, so that a third one let through
    at the same time would be seen): the two allowed always meet, a third never joins them."""
    pairs = gathering(2)
    urls = [
        server.add(f"/p{n}.xml", feed_body(f"Post {n}"), handler=pairs, delay=0.3) for n in range(8)
    ]
    results = run(urls, concurrency=8, per_host=2)
    assert [titles(r) for r in results] == [[f"Post {n}"] for n in range(8)]
    assert server.peak == 2


def test_different_hosts_are_fetched_together_each_politely() -> None:
    """Three hosts, four feeds each, per_host 2: each host sees at most two requests at once,
    while the hosts are served side by side (so six at once in all)."""
    with (
        FeedServer("127.0.0.2") as first,
        FeedServer("127.0.0.3") as second,
        FeedServer("127.0.0.4") as third,
    ):
        servers = (first, second, third)
        pairs = {host: gathering(2) for host in servers}
        urls = [
            host.add(f"/h{n}.xml", feed_body(f"Post {n}"), handler=pairs[host], delay=0.3)
            for n in range(4)
            for host in servers
        ]
        results = run(urls, concurrency=64, per_host=2)
        assert all(r.status is FetchStatus.OK for r in results)
        assert [server.peak for server in servers] == [2, 2, 2]


def test_concurrency_is_bounded(server: FeedServer) -> None:
    pairs = gathering(2)
    urls = [
        server.add(f"/s{n}.xml", feed_body(f"Post {n}"), handler=pairs, delay=0.5) for n in range(4)
    ]
    started = time.monotonic()
    run(urls, concurrency=2, per_host=4)
    # Two rounds of two 0.5 s answers. A lower bound cannot be met early by a busy machine.
    assert time.monotonic() - started >= 0.95
    assert server.peak == 2


def test_the_next_request_starts_while_a_body_is_parsed_and_the_backlog_is_bounded(
    server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """concurrency 1: the second feed is requested while the first is parsed (parsing holds no
    network slot), but the third waits until that parse is done (one body waiting, at most).

    a's parse lasts until b's parse has begun (and a moment more, in which a wrongly early
    request for c would come); b's parse lasts until a's has ended. A parse that held the
    network slot would keep b from being requested, and a's parse would wait for it in vain.
    """
    moments: list[tuple[str, float]] = []
    real_parse = digest.feeds.collect.parse_feed
    b_begun, a_ended = threading.Event(), threading.Event()

    def slow_parse(data: bytes, url: str, now: datetime, **options: object) -> FeedResult:
        name = url.rsplit("/", 1)[1]
        moments.append((f"parse {name} begins", time.monotonic()))
        if name == "a.xml":
            b_begun.wait(10)
            time.sleep(0.2)
        elif name == "b.xml":
            b_begun.set()
            a_ended.wait(10)
        moments.append((f"parse {name} ends", time.monotonic()))
        if name == "a.xml":
            a_ended.set()
        return real_parse(data, url, now, **options)  # type: ignore[arg-type]

    def arrival(name: str) -> Callable[[BaseHTTPRequestHandler], None]:
        return lambda handler: moments.append((f"request {name}", time.monotonic()))

    monkeypatch.setattr(digest.feeds.collect, "parse_feed", slow_parse)
    urls = [
        server.add(f"/{name}.xml", feed_body(f"Post {name}"), handler=arrival(name))
        for name in ("a", "b", "c")
    ]
    results = run(urls, concurrency=1, per_host=1)
    assert [titles(r) for r in results] == [["Post a"], ["Post b"], ["Post c"]]
    when = dict(moments)
    assert when["request b"] < when["parse a.xml ends"]
    assert when["request c"] > when["parse a.xml ends"]
    assert server.peak == 1


def test_json_feed_and_html_page_are_not_feeds_we_can_read(server: FeedServer) -> None:
    json_feed = server.add(
        "/feed.json",
        '{"version": "https://jsonfeed.org/version/1.1", "items": []}',
        headers={"Content-Type": "application/feed+json"},
    )
    page = server.add(
        "/page.html",
        "<!doctype html><html><body><p>Welcome</p></body></html>",
        headers={"Content-Type": "text/html"},
    )
    results = run([json_feed, page])
    assert results[0].error == "not a feed we can read: JSON Feed is not supported"
    assert results[1].status is FetchStatus.FAILED
    assert results[1].error.startswith("not a feed we can read")


def test_malformed_but_readable_feed_is_used_with_a_warning(server: FeedServer) -> None:
    body = feed_body("Broken & used").replace("Broken & used", "Broken & used <b>")
    url = server.add("/bozo.xml", body)
    [result] = run([url])
    assert result.status is FetchStatus.OK
    assert titles(result) == ["Broken & used"]
    assert result.warning.startswith("not well-formed, read anyway:")


def test_local_files_are_read_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "feeds").mkdir()
    (tmp_path / "feeds" / "local.xml").write_text(feed_body("From disk"), encoding="utf-8")
    (tmp_path / "huge.xml").write_text(feed_body(*(f"P{n}" for n in range(40))))
    results = run(["feeds/local.xml", "missing.xml", "huge.xml"], base_dir=tmp_path, max_bytes=2048)
    assert titles(results[0]) == ["From disk"]
    assert results[0].posts[0].feed_url == "feeds/local.xml"
    assert results[1].error == f"file not found: {tmp_path / 'missing.xml'}"
    assert results[2].error == "larger than 2048 bytes (fetch.max_bytes)"


def test_a_parse_that_runs_too_long_is_abandoned(
    server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest.feeds.collect as collect_module

    real_parse = collect_module.parse_feed

    def stuck_on_one(data: bytes, url: str, now: datetime, **kwargs: object) -> FeedResult:
        if url.endswith("/stuck.xml"):
            time.sleep(5)  # waited for, this parse would succeed after 5 s
        return real_parse(data, url, now, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(collect_module, "parse_feed", stuck_on_one)
    monkeypatch.setattr(collect_module, "PARSE_TIMEOUT", 0.5)
    stuck = server.add("/stuck.xml", feed_body("Never"))
    fine = server.add("/fine.xml", feed_body("Fine"))
    results = run([stuck, fine])
    assert results[0].error == "parsing took longer than 0.5 s; skipped"
    assert titles(results[1]) == ["Fine"]


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE rss [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>Laughs &lol9;</title>
<item><title>Bomb &lol9;</title><link>https://example.org/bomb</link>
<description>&lol9;</description></item></channel></rss>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">
<!ENTITY % remote SYSTEM "file:///etc/passwd"> %remote;]>
<rss version="2.0"><channel><title>XXE</title>
<item><title>Leak &xxe;</title><link>https://example.org/xxe</link>
<description>&xxe;</description></item></channel></rss>"""


@pytest.mark.parametrize("one_line", [False, True], ids=["multi-line", "one-line"])
def test_billion_laughs_finishes_fast_without_expanding(server: FeedServer, one_line: bool) -> None:
    body = BILLION_LAUGHS.replace("\n", "") if one_line else BILLION_LAUGHS
    url = server.add("/lol.xml", body)
    cpu = time.process_time()
    [result] = run([url])
    # Processor time, which a busy machine does not stretch: expanding &lol9; takes minutes.
    assert time.process_time() - cpu < 5
    assert result.status is FetchStatus.OK
    assert len(result.posts[0].title) < 100
    assert "lollollol" not in result.posts[0].summary_html
    assert "entity declarations in the DOCTYPE were ignored" in result.warning


def test_external_entities_read_no_local_file(server: FeedServer) -> None:
    url = server.add("/xxe.xml", XXE)
    [result] = run([url])
    text = " ".join(f"{p.title} {p.summary_html} {p.excerpt}" for p in result.posts) + str(result)
    assert "root:" not in text
    assert "/bin/" not in text
