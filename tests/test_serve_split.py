"""`digest serve` as a real process: the public app stays fast and open whatever the workbench,
idle sockets or slow clients do; the workbench's password and exposure warnings."""

from __future__ import annotations

import errno
import logging
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import httpx
import pytest

from digest.core.tokens import make_token
from digest.store import sqlite as sqlite_backend
from digest.web import launch
from digest.web.public import PublicSite, create_public_app
from tests.conftest import Project, post, rss
from tests.support import statefile
from tests.support.serving import serving
from tests.support.smtpserver import free_port

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}
PASSWORD = "correct horse battery staple"


def suppressed(project: Project) -> set[tuple[str, str]]:
    with statefile.connect(project.root / "state.sqlite3") as db:
        return set(db.execute("SELECT email, source FROM suppressions"))


def one_click(base: str, address: str, client: httpx.Client | None = None) -> httpx.Response:
    """POST what a mail client's Unsubscribe button sends."""
    token = make_token("test-secret", address)
    return (client or httpx).post(
        f"{base}/unsubscribe",
        params={"token": token},
        content=b"List-Unsubscribe=One-Click",
        headers=ONE_CLICK,
        timeout=10,
    )


def test_one_click_stays_fast_while_the_preview_waits_on_a_hanging_feed(
    project: Project,
) -> None:
    project.feeds.add("/slow.xml", rss([post(1)]), delay=4.0)
    project.write_config(feeds=f"  - name: Slow\n    url: {project.feeds.url('/slow.xml')}\n")
    with serving(project) as served:
        previews: list[int] = []

        def ask_for_preview() -> None:
            try:
                previews.append(httpx.get(f"{served.workbench}/preview", timeout=30).status_code)
            except httpx.TransportError:
                previews.append(0)

        askers = [threading.Thread(target=ask_for_preview) for _ in range(48)]
        for asker in askers:
            asker.start()
        deadline = time.monotonic() + 10
        while not project.feeds.hits("/slow.xml"):
            assert time.monotonic() < deadline, "the preview never fetched the slow feed"
            time.sleep(0.02)
        # A new connection for every POST, as twenty different mail providers would make.
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(limits=fresh) as client:
            for number in range(20):
                response = one_click(served.public, f"reader{number}@example.com", client)
                assert response.status_code == 200, response.text
        # All twenty were answered while the feed was still hanging: no preview has come back.
        assert previews == []
        for asker in askers:
            asker.join(timeout=30)
        assert previews == [200] * 48
    expected = {(f"reader{n}@example.com", "one-click") for n in range(20)}
    assert suppressed(project) == expected


def drip(port: int, closed_after: list[float]) -> None:
    """Send a request head one byte every half second; note when the server hangs up."""
    head = b"POST /unsubscribe?token=x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 26\r\n\r\n"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for byte in head:
            readable, _, _ = select.select([sock], [], [], 0.5)
            try:
                if readable and sock.recv(1024) == b"":
                    break
                sock.sendall(bytes([byte]))
            except OSError:
                break
        closed_after.append(time.monotonic() - started)


def test_idle_sockets_and_a_dripping_client_do_not_lock_out_unsubscribes(
    project: Project,
) -> None:
    with serving(project, "--no-preview") as served:
        port = int(urlsplit(served.public).port or 0)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
        try:
            closed_after: list[float] = []
            dripper = threading.Thread(target=drip, args=(port, closed_after))
            dripper.start()
            time.sleep(0.3)
            before = time.monotonic()
            first = one_click(served.public, "ann@example.com")
            assert first.status_code == 200, first.text
            # Answered without waiting for the idle sockets' 5-second head deadline to free a
            # place (a lock-out would take at least that long); the bound is generous for a
            # busy machine.
            assert time.monotonic() - before < 4.0
            # Over 200 connections, the ones waiting longest for a request head were shed.
            time.sleep(0.3)
            shed = sum(1 for sock in idle if _closed(sock))
            assert shed >= 100
            dripper.join(timeout=15)
            assert len(closed_after) == 1
            assert 4.5 <= closed_after[0] <= 8.0, closed_after
            # By now every idle socket has passed the head deadline too.
            assert all(_closed(sock) for sock in idle)
            second = one_click(served.public, "bob@example.com")
            assert second.status_code == 200, second.text
        finally:
            for sock in idle:
                sock.close()
    assert suppressed(project) == {
        ("ann@example.com", "one-click"),
        ("bob@example.com", "one-click"),
    }


def _closed(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (EOF or reset waiting to be read)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1024, socket.MSG_PEEK) == b""
    except OSError:
        return True


def test_a_workbench_password_guards_the_preview_only(project: Project) -> None:
    env = {"DIGEST_WORKBENCH_PASSWORD": PASSWORD}
    with serving(project, env=env) as served:
        assert httpx.get(f"{served.workbench}/preview").status_code == 401
        wrong = httpx.get(f"{served.workbench}/preview", auth=("editor", "guess"))
        assert wrong.status_code == 401
        page = httpx.get(f"{served.workbench}/preview", auth=("editor", PASSWORD), timeout=30)
        assert page.status_code == 200
        assert "Post number 1" in page.text
        assert httpx.get(f"{served.public}/healthz").status_code == 200
        assert one_click(served.public, "ann@example.com").status_code == 200
        assert httpx.get(f"{served.public}/preview").status_code == 404
    assert served.process.returncode == 0  # SIGTERM stops both servers cleanly
    assert f"live preview: {served.workbench}/preview (password required)" in served.stdout
    assert "preview is public" not in served.stderr
    assert suppressed(project) == {("ann@example.com", "one-click")}


def test_serve_warns_when_the_preview_is_public_and_the_secret_weak(project: Project) -> None:
    with serving(project, workbench_host="0.0.0.0") as served:
        assert httpx.get(f"{served.workbench}/preview/version").status_code == 200
    assert (
        "Warning: the editor's preview is public: the workbench listens on 0.0.0.0 without a"
        " password" in served.stderr
    )
    assert "Warning: the signing secret is shorter than 32 bytes" in served.stderr

    strong = "k" * 40
    project.config.write_text(project.config.read_text().replace("test-secret", strong))
    # Links that reach the server it starts: no warning about where they point either.
    port = free_port()
    project.add_newsletter_lines(f"  public_url: http://127.0.0.1:{port}\n")
    env = {"DIGEST_WORKBENCH_PASSWORD": PASSWORD}
    with serving(project, env=env, workbench_host="0.0.0.0", port=port) as guarded:
        pass
    assert "Warning" not in guarded.stderr and "WARNING" not in guarded.stderr, guarded.stderr
    with serving(project, port=port) as local:
        pass
    assert "Warning" not in local.stderr and "WARNING" not in local.stderr, local.stderr


def test_no_preview_leaves_the_workbench_port_closed(project: Project) -> None:
    with serving(project, "--no-preview") as served:
        assert httpx.get(f"{served.public}/healthz").status_code == 200
        try:
            httpx.get(f"{served.workbench}/preview/version", timeout=2)
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("the workbench answered with --no-preview")
    assert "live preview" not in served.stdout


def test_the_public_app_imports_none_of_the_preview_machinery() -> None:
    preview_parts = [
        "digest.feeds.collect",
        "digest.feeds.fetch",
        "digest.feeds.parse",
        "digest.render.issue",
        "digest.run.pipeline",
        "digest.web.workbench",
        "feedparser",
        "premailer",
        "jinja2",
        "httpx",
    ]
    script = (
        "import sys, digest.web.public\n"
        f"print(' '.join(name for name in {preview_parts!r} if name in sys.modules))\n"
        "print('create_public_app' in dir(digest.web.public))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.splitlines() == ["", "True"]


@contextmanager
def guarded_public(
    project: Project,
    *,
    head_seconds: float = 1.0,
    max_connections: int = 200,
    request_seconds: float = launch.REQUEST_SECONDS,
    linger_seconds: float = launch.LINGER_SECONDS,
    send_buffer: int | None = None,
) -> Iterator[int]:
    """The public app on a real uvicorn server in a thread, with shorter limits; yields its port.
    `send_buffer` sets the kernel's send buffer of every connection (a slow network's)."""
    site = PublicSite(project.config, lambda: project.now)
    protocol = launch.guarded_protocol(
        head_seconds, max_connections, request_seconds, linger_seconds
    )
    sock = launch.listen("127.0.0.1", 0)
    if send_buffer is not None:  # accepted connections inherit it from the listening socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    listener = launch.Listener("public", create_public_app(site), sock, protocol=protocol)
    thread = threading.Thread(target=listener.run, daemon=True)
    thread.start()
    port = int(listener.sock.getsockname()[1])
    try:
        deadline = time.monotonic() + 10
        while not listener.server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield port
    finally:
        listener.server.should_exit = True
        thread.join(timeout=15)
    assert listener.error is None


def _closed_within(sock: socket.socket, seconds: float, drip: bytes = b"") -> float | None:
    """Drip bytes every 0.2 s until the server hangs up; how long that took, or None."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        readable, _, _ = select.select([sock], [], [], 0.2)
        try:
            if readable and sock.recv(65536) == b"":
                return time.monotonic() - started
            if drip:
                sock.sendall(drip)
        except OSError:
            return time.monotonic() - started
    return None


def test_the_next_head_on_a_kept_alive_connection_has_the_same_deadline(
    project: Project,
) -> None:
    with guarded_public(project) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /hea")
        closed = _closed_within(sock, 5, drip=b"l")
        assert closed is not None and 0.6 <= closed <= 2.5, closed


def test_a_body_dripped_after_an_early_413_is_cut_off_too(project: Project) -> None:
    with guarded_public(project) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /unsubscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
        closed = _closed_within(sock, 5, drip=b"x")
        assert closed is not None and closed <= 2.5, closed


def test_over_the_cap_the_longest_waiting_connection_makes_room(project: Project) -> None:
    with guarded_public(project, head_seconds=30, max_connections=5) as port:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
        try:
            time.sleep(0.3)
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert response.status_code == 200
            time.sleep(0.3)
            assert [_closed(sock) for sock in idle] == [True] * 4 + [False] * 4
        finally:
            for sock in idle:
                sock.close()


SLOW_BODY = (
    b"POST /unsubscribe?token=x HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 26\r\n\r\nL"
)


def test_over_the_cap_a_connection_trickling_its_body_makes_room_too(project: Project) -> None:
    with guarded_public(project, head_seconds=30, max_connections=5, request_seconds=30) as port:
        slow = []
        try:
            for _ in range(8):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(SLOW_BODY)
                slow.append(sock)
                time.sleep(0.05)  # each head in before the next connects: a clear order
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert (response.status_code, response.text) == (200, "ok\n")
            time.sleep(0.3)
            # The three over the cap and the reader each shed the oldest still sending a body.
            assert [_closed(sock) for sock in slow] == [True] * 4 + [False] * 4
        finally:
            for sock in slow:
                sock.close()


@contextmanager
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    """The ERROR records logged meanwhile by uvicorn (which does not propagate to the root)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.ERROR)
    watched = [logging.getLogger("uvicorn"), logging.getLogger()]
    for logger in watched:
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger in watched:
            logger.removeHandler(handler)


def test_a_body_that_never_comes_is_cut_off_at_the_request_deadline(project: Project) -> None:
    with (
        guarded_public(project, head_seconds=30, request_seconds=1.0) as port,
        errors_logged() as errors,
        socket.create_connection(("127.0.0.1", port)) as sock,
    ):
        sock.sendall(SLOW_BODY)
        closed = _closed_within(sock, 8, drip=b"x")
        time.sleep(0.2)  # the handler hears the client is gone
    # The app's own body deadline is 10 s; the whole-request deadline of 1 s came first.
    assert closed is not None and 0.6 <= closed <= 5.0, closed
    assert errors == []


def test_a_request_the_app_holds_past_the_deadline_is_told_to_retry(project: Project) -> None:
    token = make_token("test-secret", "ann@example.com")
    request = (
        f"POST /unsubscribe?token={token} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 26\r\n\r\n"
        "List-Unsubscribe=One-Click"
    ).encode()
    with guarded_public(project, request_seconds=1.0) as port:
        # Another process holds the state's write lock (a long send, say): the unsubscribe
        # waits in a worker thread for up to the store's 30-second busy timeout.
        with statefile.connect(project.root / "state.sqlite3", autocommit=True) as blocker:
            blocker.execute("BEGIN IMMEDIATE")
            try:
                with socket.create_connection(("127.0.0.1", port)) as sock:
                    sock.settimeout(10)
                    sock.sendall(request)
                    answer = b""
                    while chunk := sock.recv(65536):
                        answer += chunk
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 503"), answer
                assert b"retry-after: 10" in head.lower()
                assert body == b"Busy: try again shortly.\n"
            finally:
                blocker.execute("COMMIT")
        # The worker finishes once the lock is free: the reader is unsubscribed all the same.
        deadline = time.monotonic() + 10
        while not suppressed(project):
            assert time.monotonic() < deadline, "the held unsubscribe was never recorded"
            time.sleep(0.05)
    assert suppressed(project) == {("ann@example.com", "one-click")}


def test_a_client_that_leaves_mid_body_leaves_no_error_behind(project: Project) -> None:
    with guarded_public(project) as port, errors_logged() as errors:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(SLOW_BODY)
            time.sleep(0.2)
        time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert errors == []


def test_a_state_file_locked_past_the_busy_timeout_is_a_503_not_a_traceback(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store waits BUSY_TIMEOUT (30 s) for a lock; half a second here, so the store gives
    # up well within the request deadline and the app itself must answer.
    monkeypatch.setattr(sqlite_backend, "BUSY_TIMEOUT", 0.5)
    with guarded_public(project) as port, errors_logged() as errors:
        with statefile.connect(project.root / "state.sqlite3", autocommit=True) as blocker:
            blocker.execute("BEGIN IMMEDIATE")
            try:
                refused = one_click(f"http://127.0.0.1:{port}", "ann@example.com")
            finally:
                blocker.execute("COMMIT")
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "10"
        assert refused.headers["cache-control"] == "no-store"
        assert refused.text == "Busy: try again shortly.\n"
        # Nothing was recorded, and once the lock is gone the same click works.
        assert suppressed(project) == set()
        assert one_click(f"http://127.0.0.1:{port}", "ann@example.com").status_code == 200
    assert suppressed(project) == {("ann@example.com", "one-click")}
    assert errors == []


@contextmanager
def silent_reader(port: int, project: Project) -> Iterator[socket.socket]:
    """A client that asks for 200 pages (about 300 KB) in one go and reads none of them: the
    server's buffers fill, and a plain close() would wait for ever to hand them over."""
    token = make_token("test-secret", "ann@example.com")
    asks = f"GET /unsubscribe?token={token} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 200
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    with sock:
        sock.setblocking(False)
        with suppress(BlockingIOError):
            sock.send(asks)
        yield sock


def _cut_off(sock: socket.socket) -> bool:
    """Whether the server reset the connection, seen without reading (which would let the
    server's buffered answers go, and so change what is tested)."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET


def test_a_client_that_never_reads_its_answers_is_cut_off(project: Project) -> None:
    with (
        guarded_public(project, head_seconds=1, request_seconds=1, send_buffer=4096) as port,
        silent_reader(port, project) as reader,
    ):
        # Its deadline (1 s), then LINGER_SECONDS (2 s) to take its answer; 20 s is a generous
        # ceiling for a loaded machine.
        deadline = time.monotonic() + 20
        while not _cut_off(reader):
            assert time.monotonic() < deadline, "the silent reader kept its connection"
            time.sleep(0.2)


def test_a_connection_being_closed_does_not_hold_a_place_under_the_cap(project: Project) -> None:
    # A closed connection may linger for a minute here, while the server holds only one.
    with (
        guarded_public(
            project,
            head_seconds=1,
            request_seconds=1,
            linger_seconds=60,
            max_connections=1,
            send_buffer=4096,
        ) as port,
        silent_reader(port, project) as reader,
    ):
        # Once its deadline has closed it (1 s; 20 s is a generous ceiling for a loaded
        # machine), a new client takes its place.
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the silent reader kept its connection"
                time.sleep(0.5)
                continue
            break
        assert (health.status_code, health.text) == (200, "ok\n")
        assert not _cut_off(reader)  # still lingering: it was not in the new client's way
