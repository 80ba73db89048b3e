"""`digest serve` as a real process: the public app stays fast and open whatever the workbench,
idle sockets or slow clients do; the workbench's password and exposure warnings."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx

from digest.tokens import make_token
from digest.web import launch
from digest.web.public import PublicSite, create_public_app
from tests.conftest import Project, post, rss
from tests.support import statefile
from tests.support.serving import serving

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
        started = time.monotonic()
        # A new connection for every POST, as twenty different mail providers would make.
        fresh = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(limits=fresh) as client:
            for number in range(20):
                before = time.monotonic()
                response = one_click(served.public, f"reader{number}@example.com", client)
                assert response.status_code == 200, response.text
                assert time.monotonic() - before < 0.5
        # All twenty were answered while the feed was still hanging.
        assert time.monotonic() - started < 3.5
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
            assert time.monotonic() - before < 1.0
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
    env = {"DIGEST_WORKBENCH_PASSWORD": PASSWORD}
    with serving(project, env=env, workbench_host="0.0.0.0") as guarded:
        pass
    assert "Warning" not in guarded.stderr, guarded.stderr
    with serving(project) as local:
        pass
    assert "Warning" not in local.stderr, local.stderr


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
        "digest.collect",
        "digest.fetch",
        "digest.parse",
        "digest.render",
        "digest.pipeline",
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
    project: Project, *, head_seconds: float = 1.0, max_connections: int = 200
) -> Iterator[int]:
    """The public app on a real uvicorn server in a thread, with shorter limits; yields its port."""
    site = PublicSite(project.config, lambda: project.now)
    protocol = launch.guarded_protocol(head_seconds, max_connections)
    listener = launch.Listener(
        "public", create_public_app(site), launch.listen("127.0.0.1", 0), protocol=protocol
    )
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
