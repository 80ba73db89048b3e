"""Collection keeps its bounds: time per whole request, memory for compressed bodies, `stop`."""

from __future__ import annotations

import functools
import gzip
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import digest
import digest.feeds.collect
from digest.config.schema import FeedConfig, FetchConfig
from digest.core.models import FetchStatus
from digest.feeds.collect import collect
from digest.feeds.fetch import redact_error
from tests.conftest import Project, post, rss
from tests.support.feedserver import FeedServer
from tests.test_collect import NOW, feed_body, feeds_for, run, titles

GIB = 1 << 30


@functools.cache
def zeros_gzip(size: int) -> bytes:
    """A gzip member of `size` zero bytes, made without holding them in memory."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = [packer.compress(block) for _ in range(size // len(block))]
    return b"".join([*parts, packer.flush()])


@pytest.fixture
def server() -> Iterator[FeedServer]:
    """A FeedServer on 127.0.0.1."""
    with FeedServer() as running:
        yield running


# -- time -------------------------------------------------------------------------------


@pytest.fixture
def no_backstop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's own backstop for a fetch (fetch.timeout + FETCH_GRACE) put out of reach,
    so that only the whole-request deadline can end a slow fetch in these tests: each slow
    answer here would otherwise arrive whole, and its feed be read."""
    monkeypatch.setattr(digest.feeds.collect, "FETCH_GRACE", 600.0)


@pytest.mark.usefixtures("no_backstop")
def test_headers_dripped_byte_by_byte_are_given_up_at_the_timeout(server: FeedServer) -> None:
    """No single read waits as long as fetch.timeout (a byte comes every 0.2 s), but all of the
    headers would take about 15 s: only a deadline for the whole request gives up on them."""
    slow = server.add("/drip.xml", feed_body("Slow"), drip_head=0.2)
    fast = server.add("/fast.xml", feed_body("Fast"))
    started = time.monotonic()
    results = run([slow, fast], timeout=2)
    # Not before the deadline. A lower bound cannot be met early by a busy machine.
    assert time.monotonic() - started >= 1.9
    assert results[0].status is FetchStatus.FAILED
    assert results[0].error == "timed out after 2 s (fetch.timeout)"
    assert titles(results[1]) == ["Fast"]
    [exchange] = server.exchanged("/drip.xml")
    assert not exchange.complete  # the client hung up on the drip


@pytest.mark.usefixtures("no_backstop")
def test_a_body_dripped_byte_by_byte_is_given_up_at_the_timeout(server: FeedServer) -> None:
    slow = server.add("/drip.xml", feed_body("Slow"), drip_body=0.05)  # over 15 s in all
    started = time.monotonic()
    [result] = run([slow], timeout=1.5)
    assert time.monotonic() - started >= 1.4  # not before the deadline
    assert result.error == "timed out after 1.5 s (fetch.timeout)"
    assert result.http_status is None and not result.posts
    [exchange] = server.exchanged("/drip.xml")
    assert not exchange.complete


@pytest.mark.usefixtures("no_backstop")
def test_redirect_hops_share_one_deadline(server: FeedServer) -> None:
    """Three hops answering after 0.6 s each: each within fetch.timeout, not all three."""
    server.add("/end.xml", feed_body("Arrived"), delay=0.6)
    server.add("/two.xml", "", status=302, location="/end.xml", delay=0.6)
    first = server.add("/one.xml", "", status=302, location="/two.xml", delay=0.6)
    short = server.add("/short.xml", "", status=302, location="/end.xml")
    results = run([first, short], timeout=1.5)
    assert results[0].error == "timed out after 1.5 s (fetch.timeout)"
    assert titles(results[1]) == ["Arrived"]


def test_send_names_a_dripping_feed_and_delivers_the_others(project: Project) -> None:
    project.feeds.add("/drip.xml", rss([post(20)]), drip_head=1.0)
    project.write_config(
        feeds=(
            f"  - name: From the blog\n    url: {project.feeds.url('/blog.xml')}\n"
            f"  - name: Dripping\n    url: {project.feeds.url('/drip.xml')}\n"
        )
    )
    project.config.write_text(project.config.read_text().replace("timeout: 5", "timeout: 2"))
    # The drip's headers alone would take over a minute: the timeout here only keeps a send
    # that waited for them from hanging the test.
    result = project.run_process("send", timeout=60)
    assert result.returncode == 0, result.stderr
    assert (
        f"Warning: feed 'Dripping' ({project.feeds.url('/drip.xml')}) skipped:"
        " timed out after 2 s (fetch.timeout)"
    ) in result.stderr
    text = project.smtp.to("ann@example.com")[0].part("plain")
    assert "Post number 1" in text and "Post number 2" in text
    assert "Post number 20" not in text


# -- stop and stuck workers ----------------------------------------------------------------


def test_stop_returns_promptly_and_fails_what_is_unfinished(
    server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop is pressed once the first feed is read and the dripping one is being fetched (its
    headers would take over a minute, its timeout is 30 s): collect returns with it unfinished,
    and the feed after it never requested."""
    stop, first_read = threading.Event(), threading.Event()
    real_work = digest.feeds.collect._work

    def work(job: Any) -> None:
        real_work(job)  # which hands the feed's result to the collector
        first_read.set()

    def press_stop(handler: object) -> None:
        first_read.wait(10)
        stop.set()

    monkeypatch.setattr(digest.feeds.collect, "_work", work)
    fast = server.add("/fast.xml", feed_body("Fast"))
    slow = server.add("/drip.xml", feed_body("Slow"), drip_head=1.0, handler=press_stop)
    queued = server.add("/queued.xml", feed_body("Queued"))
    started = time.monotonic()
    results = collect(
        feeds_for(fast, slow, queued),
        FetchConfig(timeout=30, concurrency=1),
        Path("."),
        {},
        NOW,
        stop=stop,
    )
    assert time.monotonic() - started < 20  # only a guard: not stopping would take 30 s
    assert titles(results[0]) == ["Fast"]
    assert [(r.status, r.error) for r in results[1:]] == [(FetchStatus.FAILED, "stopped")] * 2
    assert server.hits("/queued.xml") == []
    [exchange] = server.exchanged("/drip.xml")
    assert not exchange.complete  # the dripping answer was dropped, not waited for


def test_a_fetch_stuck_where_no_timeout_reaches_is_abandoned_and_the_process_exits() -> None:
    script = (
        "import threading\n"
        "from datetime import UTC, datetime\n"
        "from pathlib import Path\n"
        "import httpx\n"
        "from digest.feeds.collect import collect\n"
        "from digest.config.schema import FeedConfig, FetchConfig\n"
        "def hang(request):\n"
        "    threading.Event().wait()\n"
        "feeds = [FeedConfig(name='Stuck', url='http://stuck.example/feed.xml')]\n"
        "[result] = collect(feeds, FetchConfig(timeout=1), Path('.'), {}, datetime.now(UTC),\n"
        "                   transport=httpx.MockTransport(hang))\n"
        "print(result.error)\n"
    )
    # The stuck fetch never ends by itself: a process that waited for it would hang until
    # this timeout (a guard, far above the 2 s fetch.timeout + FETCH_GRACE).
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "timed out after 1 s (fetch.timeout)"


# -- size and compression ----------------------------------------------------------------


BOMBS = {
    "gzip": lambda: zeros_gzip(200 << 20),
    "gzip, gzip": lambda: gzip.compress(zeros_gzip(200 << 20)),
    "deflate, gzip": lambda: gzip.compress(zlib.compress(bytes(50 << 20))),
    "gzip, deflate": lambda: zlib.compress(zeros_gzip(200 << 20)),
}


@pytest.mark.parametrize("encoding", BOMBS)
def test_compression_bombs_are_refused_at_max_bytes(server: FeedServer, encoding: str) -> None:
    body = BOMBS[encoding]()
    url = server.add("/bomb.xml", body, headers={"Content-Encoding": encoding})
    tracemalloc.start()
    try:
        [result] = run([url], max_bytes=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, f"decoding peaked at {peak / 1e6:.0f} MB"
    assert result.status is FetchStatus.FAILED
    assert result.error == "larger than 1000000 bytes (fetch.max_bytes)"


def test_nested_multi_member_and_raw_deflate_bodies_decode(server: FeedServer) -> None:
    body = feed_body("Layered").encode()
    half = len(body) // 2
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    urls = [
        server.add(
            "/nested.xml",
            gzip.compress(zlib.compress(body)),
            headers={"Content-Encoding": "deflate, gzip"},
        ),
        server.add(
            "/members.xml",
            gzip.compress(body[:half]) + gzip.compress(body[half:]),
            headers={"Content-Encoding": "gzip"},
        ),
        server.add(
            "/raw.xml", raw.compress(body) + raw.flush(), headers={"Content-Encoding": "deflate"}
        ),
        server.add("/identity.xml", body, headers={"Content-Encoding": "identity"}),
    ]
    results = run(urls)
    assert [titles(result) for result in results] == [["Layered"]] * 4


@pytest.mark.parametrize(
    ("encoding", "body", "error"),
    [
        ("br", b"\x0b\x02\x80hello\x03", "unsupported Content-Encoding 'br'"),
        (
            "gzip",
            b"\x1f\x8b\x08\x00garbage-not-deflate",
            "the compressed body could not be decoded",
        ),
        (", ".join(["gzip"] * 5), b"", "more than 4 Content-Encoding layers"),
    ],
)
def test_unusable_encodings_fail_with_a_reason(
    server: FeedServer, encoding: str, body: bytes, error: str
) -> None:
    url = server.add("/odd.xml", body, headers={"Content-Encoding": encoding})
    [result] = run([url])
    assert result.status is FetchStatus.FAILED
    assert result.error == error


def test_the_compressed_bytes_are_capped_too() -> None:
    sent: list[int] = []

    def endless_gzip() -> Iterator[bytes]:
        packer = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        for _ in range(1000):
            chunk = packer.compress(os.urandom(64 * 1024)) + packer.flush(zlib.Z_SYNC_FLUSH)
            sent.append(len(chunk))
            yield chunk

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=endless_gzip())

    [result] = collect(
        feeds_for("http://feeds.example/big.xml"),
        FetchConfig(timeout=5, max_bytes=300_000),
        Path("."),
        {},
        NOW,
        transport=httpx.MockTransport(answer),
    )
    assert result.error == "larger than 300000 bytes (fetch.max_bytes)"
    assert sum(sent) < 600_000


MEASURE = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
                  "peak_kib": peak}))
"""


def test_send_with_compression_bombs_stays_small_and_delivers_the_rest(project: Project) -> None:
    bomb = zeros_gzip(GIB)  # about 1 MB on the wire, 1 GiB of zeros decoded
    nested = gzip.compress(bomb * 4)  # four gzip members: a few KB, then 4 MB, then 4 GiB
    assert len(nested) < 16_000
    project.feeds.add("/bomb.xml", bomb, headers={"Content-Encoding": "gzip"})
    project.feeds.add("/nested.xml", nested, headers={"Content-Encoding": "gzip, gzip"})
    project.write_config(
        feeds="".join(
            f"  - name: {name}\n    url: {project.feeds.url(path)}\n"
            for name, path in [
                ("From the blog", "/blog.xml"),
                ("Bomb", "/bomb.xml"),
                ("Nested bomb", "/nested.xml"),
                ("Latest news", "/news.xml"),
            ]
        )
    )
    command = [sys.executable, "-m", "digest", "--config", str(project.config), "send"]
    env = {**os.environ, "DIGEST_NOW": project.now.isoformat()}
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=150,
        check=True,
    )
    report = json.loads(measured.stdout)
    assert report["code"] == 0, report["stderr"]
    for name, path in [("Bomb", "/bomb.xml"), ("Nested bomb", "/nested.xml")]:
        assert (
            f"feed {name!r} ({project.feeds.url(path)}) skipped:"
            " larger than 10000000 bytes (fetch.max_bytes)"
        ) in report["stderr"]
    peak_mb = report["peak_kib"] / 1024
    assert peak_mb < 150, f"digest send peaked at {peak_mb:.0f} MB"
    assert "Sent issue with 3 posts: 2 delivered, 0 failed, 0 pending." in report["stdout"]
    for person in ("ann@example.com", "bob@example.com"):
        [received] = project.smtp.to(person)
        text = received.part("plain")
        assert "Post number 1" in text and "Post number 10" in text


# -- the seam, the User-Agent and redaction ------------------------------------------------


def test_collect_over_a_mock_transport() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        routes = {
            "/feed.xml": httpx.Response(200, content=feed_body("Mocked")),
            "/old.xml": httpx.Response(301, headers={"Location": "/feed.xml"}),
            "/gone.xml": httpx.Response(410),
            "/zipped.xml": httpx.Response(
                200,
                headers={"Content-Encoding": "gzip"},
                content=gzip.compress(feed_body("Zipped").encode()),
            ),
        }
        return routes.get(request.url.path, httpx.Response(404))

    urls = [f"https://feeds.example{path}" for path in ("/feed.xml", "/old.xml", "/gone.xml")]
    urls.append("https://feeds.example/zipped.xml")
    results = collect(
        feeds_for(*urls), FetchConfig(), Path("."), {}, NOW, transport=httpx.MockTransport(answer)
    )
    assert [titles(result) for result in results] == [["Mocked"], ["Mocked"], [], ["Zipped"]]
    assert results[1].permanent_url == "https://feeds.example/feed.xml"
    assert results[2].gone and results[2].error == "gone (410): remove this feed from config.yaml"
    assert {request.headers["accept-encoding"] for request in seen} == {"gzip, deflate"}


def test_the_default_user_agent_carries_the_package_version(server: FeedServer) -> None:
    url = server.add("/a.xml", feed_body("Alpha"))
    collect(feeds_for(url), FetchConfig(), Path("."), {}, NOW)
    agent = server.hits("/a.xml")[0].headers["user-agent"]
    assert agent.startswith(f"digest/{digest.__version__} (+https://")


def test_redact_error_masks_credentials_in_any_quoted_url_and_the_feeds_own() -> None:
    url = "https://reader:s3cret-pass@feeds.example/private.xml?api_key=k3y-value&page=2"
    text = redact_error(
        "redirected to https://other:hunter22@cdn.example/x?token=t0ken-value; "
        "the server echoed s3cret-pass and k3y-value",
        url,
    )
    for secret in ("hunter22", "t0ken-value", "s3cret-pass", "k3y-value"):
        assert secret not in text
    assert "https://***@cdn.example/x?token=***" in text


def test_errors_and_logs_never_carry_feed_credentials(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = f"http://reader:s3cret-pass@127.0.0.1:{port}/feed.xml?token=t0ken-value"

    def echo(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    caplog.set_level(logging.DEBUG)
    [refused] = run([down])
    [echoed] = collect(
        feeds_for("https://reader:s3cret-pass@feeds.example/x.xml?token=t0ken-value"),
        FetchConfig(),
        Path("."),
        {},
        NOW,
        transport=httpx.MockTransport(echo),
    )
    assert refused.error.startswith("could not connect:")
    assert (
        echoed.error == "could not connect: cannot reach https://***@feeds.example/x.xml?token=***"
    )
    logged = caplog.text
    assert "feed http://***@127.0.0.1" in logged
    for text in (refused.error, echoed.error, logged):
        assert "s3cret-pass" not in text and "t0ken-value" not in text


def test_a_stuck_feed_does_not_hold_up_a_feed_config_list_of_many(server: FeedServer) -> None:
    """Three feeds dripping their headers a byte a second (over a minute each) ahead of five
    quick ones, two fetched at a time: each is dropped at its 1 s timeout and the rest read."""
    slow = [server.add(f"/drip{n}.xml", feed_body("Slow"), drip_head=1.0) for n in range(3)]
    fast = [server.add(f"/fast{n}.xml", feed_body(f"Fast {n}")) for n in range(5)]
    started = time.monotonic()
    results = collect(
        [*feeds_for(*slow), *[FeedConfig(name=f"F{n}", url=url) for n, url in enumerate(fast)]],
        FetchConfig(timeout=1, concurrency=2),
        Path("."),
        {},
        NOW,
    )
    assert time.monotonic() - started < 30  # only a guard: waiting out the drips takes minutes
    assert [r.error for r in results[:3]] == ["timed out after 1 s (fetch.timeout)"] * 3
    assert [titles(r) for r in results[3:]] == [[f"Fast {n}"] for n in range(5)]
    for n in range(3):
        [exchange] = server.exchanged(f"/drip{n}.xml")
        assert not exchange.complete


def test_a_body_that_does_not_decompress_and_a_feed_path_that_cannot_be_read_are_named(
    server: FeedServer, tmp_path: Path
) -> None:
    """A server saying gzip but sending something else, a local feed path that is a folder, one
    that does not exist and one that cannot be opened: each fails with what is wrong, never a
    crash, and the other feeds are read."""
    broken = server.add(
        "/broken.xml", b"this is not gzip at all", headers={"Content-Encoding": "gzip"}
    )
    good = server.add("/good.xml", feed_body("Still read"))
    (tmp_path / "folder.xml").mkdir()
    looping = tmp_path / "loop.xml"
    looping.symlink_to(looping)
    results = run([broken, "folder.xml", "missing.xml", "loop.xml", good], base_dir=tmp_path)
    assert [result.error for result in results[:4]] == [
        "the compressed body could not be decoded",
        f"is a folder, not a feed file: {tmp_path / 'folder.xml'}",
        f"file not found: {tmp_path / 'missing.xml'}",
        f"cannot read {looping}: Too many levels of symbolic links",
    ]
    assert all(result.status is FetchStatus.FAILED for result in results[:4])
    assert titles(results[4]) == ["Still read"]
