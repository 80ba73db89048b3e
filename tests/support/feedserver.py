"""A real HTTP server on 127.0.0.1 that serves scripted feed responses and logs requests.

Besides the requests, it keeps each exchange's moments (when the request came and when its
answer ended, on time.monotonic()) and whether the client hung up before the answer was
complete, so that tests can assert what overlapped and who gave up, rather than how long a
run took.
"""

from __future__ import annotations

import contextlib
import gzip
import select
import socket
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Route:
    """How the server answers one path."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/xml"})
    delay: float = 0.0
    gzip: bool = False
    deflate: bool = False
    etag: str | None = None
    last_modified: str | None = None
    location: str | None = None
    drip_head: float = 0.0  # seconds between bytes of the status line and headers
    drip_body: float = 0.0  # seconds between bytes of the body
    handler: Callable[[BaseHTTPRequestHandler], Route | None] | None = None


@dataclass(frozen=True)
class LoggedRequest:
    """One request the server saw."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Exchange:
    """One request and its answer: when the request came in and when answering it ended (both
    time.monotonic()), and whether the answer went out whole (False: the client hung up first).
    """

    path: str
    began: float
    ended: float
    complete: bool


def gathering(parties: int, timeout: float = 10.0) -> Callable[[BaseHTTPRequestHandler], None]:
    """A Route handler holding each request until `parties` requests are held at once, then
    letting them all go on (and the next `parties` after them): requests that the client makes
    concurrently are then answered concurrently however busy the machine is. After `timeout`
    seconds with too few arrived (the client made them one after another), it stops holding
    anyone."""
    barrier = threading.Barrier(parties, timeout=timeout)

    def gather(handler: BaseHTTPRequestHandler) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()

    return gather


class FeedServer:
    """Serve routes over HTTP on a loopback address (127.0.0.1 unless told another 127.x.y.z,
    which Linux routes to lo too); use as a context manager. `peak` is the most requests it was
    answering at once."""

    def __init__(
        self, host: str = "127.0.0.1", *, certificate: tuple[Path, Path] | None = None
    ) -> None:
        self.host = host
        self.scheme = "https" if certificate else "http"
        self.routes: dict[str, Route] = {}
        self.requests: list[LoggedRequest] = []
        self.exchanges: list[Exchange] = []
        self.active = 0
        self.peak = 0
        self._count = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            hung_up = False  # the client went away before this answer was complete

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                began = time.monotonic()
                self.hung_up = False
                with server._count:
                    server.active += 1
                    server.peak = max(server.peak, server.active)
                try:
                    self._get()
                finally:
                    exchange = Exchange(self.path, began, time.monotonic(), not self.hung_up)
                    with server._count:
                        server.active -= 1
                        server.exchanges.append(exchange)

            def _get(self) -> None:
                server.requests.append(
                    LoggedRequest("GET", self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                route = server.routes.get(self.path.split("?")[0])
                if route is None:
                    self._answer(404, b"not found", {"Content-Type": "text/plain"})
                    return
                if route.handler is not None:
                    route = route.handler(self) or route
                if route.delay and not self._pause(route.delay):
                    return
                headers = dict(route.headers)
                if route.etag:
                    headers["ETag"] = route.etag
                    if self.headers.get("If-None-Match") == route.etag:
                        self._answer(304, b"", headers)
                        return
                if route.last_modified:
                    headers["Last-Modified"] = route.last_modified
                    if self.headers.get("If-Modified-Since") == route.last_modified:
                        self._answer(304, b"", headers)
                        return
                if route.location:
                    headers["Location"] = route.location
                body = route.body
                if route.gzip:
                    body = gzip.compress(body)
                    headers["Content-Encoding"] = "gzip"
                elif route.deflate:
                    body = zlib.compress(body)
                    headers["Content-Encoding"] = "deflate"
                if route.drip_head or route.drip_body:
                    self._drip(route, body, headers)
                else:
                    self._answer(route.status, body, headers)

            def _drip(self, route: Route, body: bytes, headers: dict[str, str]) -> None:
                """Answer one byte at a time, until done or the client hangs up."""
                lines = [f"HTTP/1.1 {route.status} {self.responses[route.status][0]}"]
                lines += [f"{name}: {value}" for name, value in headers.items()]
                lines.append(f"Content-Length: {len(body)}")
                head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
                self.close_connection = True
                try:
                    for data, pause in ((head, route.drip_head), (body, route.drip_body)):
                        if not pause:
                            self.wfile.write(data)
                            continue
                        for offset in range(len(data)):
                            self.wfile.write(data[offset : offset + 1])
                            if not self._pause(pause):
                                return
                except OSError:
                    self.hung_up = True

            def _pause(self, seconds: float) -> bool:
                """Wait `seconds`, less if the client hangs up meanwhile (then record that and
                return False). Over TLS the wait is a plain sleep: a TLS socket cannot be peeked.
                """
                if isinstance(self.connection, ssl.SSLSocket):
                    time.sleep(seconds)
                    return True
                until = time.monotonic() + seconds
                while (left := until - time.monotonic()) > 0:
                    if not select.select([self.connection], [], [], left)[0]:
                        continue
                    try:
                        gone = not self.connection.recv(1, socket.MSG_PEEK)
                    except OSError:
                        gone = True
                    if gone:
                        self.hung_up = self.close_connection = True
                        return False
                    time.sleep(max(0.0, until - time.monotonic()))  # it sent more: just wait
                return True

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if body:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    self.hung_up = True

        class Server(ThreadingHTTPServer):
            def get_request(self) -> tuple[Any, Any]:
                connection, address = super().get_request()
                if tls is None:
                    return connection, address
                # The handshake runs in the request's own thread, on first read.
                return tls.wrap_socket(
                    connection, server_side=True, do_handshake_on_connect=False
                ), address

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client hanging up mid-answer, or refusing the certificate, is what some tests
                # are about.
                if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
                    super().handle_error(request, client_address)

        tls: ssl.SSLContext | None = None
        if certificate:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(str(certificate[0]), str(certificate[1]))
        self.httpd = Server((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """http(s)://HOST:PORT"""
        return f"{self.scheme}://{self.host}:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        """Absolute URL of a path on this server."""
        return self.base_url + path

    def add(self, path: str, body: bytes | str = b"", **options: object) -> str:
        """Serve body at path; returns the absolute URL."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.routes[path] = Route(body=data, **options)  # type: ignore[arg-type]
        return self.url(path)

    def hits(self, path: str) -> list[LoggedRequest]:
        """Requests made for one path."""
        return [r for r in self.requests if r.path.split("?")[0] == path]

    def exchanged(self, path: str, count: int = 1, timeout: float = 20.0) -> list[Exchange]:
        """The exchanges for one path, once `count` of them have ended (the server notices a
        client hanging up a moment after it did); fails after `timeout` seconds, a guard
        against a test hanging rather than a measure of anything."""
        deadline = time.monotonic() + timeout
        while True:
            with self._count:
                done = [e for e in self.exchanges if e.path.split("?")[0] == path]
            if len(done) >= count:
                return done
            assert time.monotonic() < deadline, f"{count} exchanges for {path} never ended"
            time.sleep(0.01)

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
