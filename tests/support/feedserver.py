"""A real HTTP server on 127.0.0.1 that serves scripted feed responses and logs requests."""

from __future__ import annotations

import gzip
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
        self.active = 0
        self.peak = 0
        self._count = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with server._count:
                    server.active += 1
                    server.peak = max(server.peak, server.active)
                try:
                    self._get()
                finally:
                    with server._count:
                        server.active -= 1

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
                if route.delay:
                    time.sleep(route.delay)
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
                try:
                    for data, pause in ((head, route.drip_head), (body, route.drip_body)):
                        if not pause:
                            self.wfile.write(data)
                            continue
                        for offset in range(len(data)):
                            self.wfile.write(data[offset : offset + 1])
                            time.sleep(pause)
                except OSError:
                    pass
                self.close_connection = True

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
                    pass

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

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
