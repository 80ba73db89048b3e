"""Listening sockets and the uvicorn servers behind them, each on its own thread and event loop.

Every server speaks HTTP/1.1 through GuardedProtocol, uvicorn's h11 protocol with two guards
uvicorn lacks: a connection must deliver its whole request head within HEAD_SECONDS of
connecting (or of its previous response, together with any body left over from a request
answered early), however it trickles it in; and a server holds at
most MAX_CONNECTIONS, shedding the connection that has waited longest for a request head to
make room, so idle or half-open sockets cannot lock real clients out.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from digest.errors import DigestError

logger = logging.getLogger(__name__)

HEAD_SECONDS = 5.0
MAX_CONNECTIONS = 200
KEEP_ALIVE_SECONDS = 5
SHUTDOWN_SECONDS = 10
MAX_HEAD_BYTES = 16 * 1024


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a whole-head deadline and a cap on open connections."""

    head_seconds = HEAD_SECONDS
    max_connections = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._answered: object = None
        self.waiting_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head deadline; over the cap, shed the longest-waiting connection."""
        super().connection_made(transport)
        self._await_head()
        if len(self.connections) > self.max_connections:
            waiting = [
                other
                for other in self.connections
                if isinstance(other, GuardedProtocol)
                and other is not self
                and other.waiting_since is not None
            ]
            if waiting:
                min(waiting, key=lambda other: other.waiting_since or 0.0).drop()
            else:
                self.drop()

    def data_received(self, data: bytes) -> None:
        """Pass the bytes to h11; stop the deadline once a whole request head is in."""
        super().data_received(data)
        # uvicorn starts a new request-response cycle exactly when a request head is complete.
        if self.waiting_since is not None and self.cycle is not self._answered:
            self._head_arrived()

    def on_response_complete(self) -> None:
        """After a response, the rest of that request and the next head are due in time too."""
        super().on_response_complete()
        if self.transport.is_closing():
            return
        # Unless a pipelined request is already being answered, the client owes us either the
        # next request head or the rest of a body we answered early (a 413, say).
        if self.cycle.response_complete:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline, then let uvicorn clean up."""
        self._head_arrived()
        super().connection_lost(exc)

    def drop(self) -> None:
        """Close this connection now (it has no request in progress)."""
        self._head_arrived()
        if not self.transport.is_closing():
            self.transport.close()

    def _await_head(self) -> None:
        self._head_arrived()
        self._answered = self.cycle
        self.waiting_since = time.monotonic()
        self._head_timer = self.loop.call_later(self.head_seconds, self._head_overdue)

    def _head_arrived(self) -> None:
        self.waiting_since = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self.waiting_since is not None:
            logger.debug("closing a connection that sent no whole request head in time")
            self.drop()


def guarded_protocol(
    head_seconds: float = HEAD_SECONDS, max_connections: int = MAX_CONNECTIONS
) -> type[GuardedProtocol]:
    """GuardedProtocol with other limits (tests use a shorter deadline)."""
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {"head_seconds": head_seconds, "max_connections": max_connections},
    )


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or a DigestError saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise DigestError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.listen(128)
    return sock


def base_url(sock: socket.socket) -> str:
    """http://host:port of a listening socket."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@dataclass
class Listener:
    """One app on one bound socket, served by its own uvicorn server."""

    name: str
    app: ASGIApp
    sock: socket.socket
    protocol: type[GuardedProtocol] = GuardedProtocol
    server: uvicorn.Server = field(init=False)
    error: BaseException | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        settings = uvicorn.Config(
            self.app,
            http=self.protocol,
            ws="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=SHUTDOWN_SECONDS,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        )
        self.server = uvicorn.Server(settings)

    def run(self) -> None:
        """Serve until told to stop; remember what went wrong, if anything."""
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as error:  # a server thread must not die silently
            self.error = error
            logger.exception("the %s server stopped", self.name)


def serve(listeners: Sequence[Listener]) -> None:
    """Run every listener on its own thread until SIGINT or SIGTERM, then stop them all."""
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        for listener in listeners:
            if stopping.is_set() and signum == signal.SIGINT:
                listener.server.force_exit = True
            listener.server.should_exit = True
        stopping.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        if in_main
        else {}
    )
    threads = [
        threading.Thread(target=listener.run, name=f"digest-{listener.name}", daemon=True)
        for listener in listeners
    ]
    try:
        for thread in threads:
            thread.start()
        while all(thread.is_alive() for thread in threads):
            threads[0].join(timeout=0.2)
        for listener in listeners:
            listener.server.should_exit = True
        for thread in threads:
            thread.join(timeout=SHUTDOWN_SECONDS + 5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = next((item for item in listeners if item.error is not None), None)
    if failed is not None:
        raise DigestError(f"the {failed.name} server stopped: {failed.error}")


@dataclass(frozen=True)
class Plan:
    """What `digest serve` will run: bound listeners, their URLs and what to warn about."""

    title: str
    listeners: list[Listener]
    public_url: str
    workbench_url: str | None
    password: bool
    warnings: list[str]
    signup: bool = False
    archive: bool = False


def plan(
    config_path: Path,
    clock: Callable[[], datetime],
    *,
    public: tuple[str, int],
    workbench: tuple[str, int] | None,
) -> Plan:
    """Bind the public app and, unless `workbench` is None, the workbench; collect warnings."""
    from digest.check import secret_warnings
    from digest.web.public import PublicSite, create_public_app

    site = PublicSite(config_path, clock)
    listeners = [Listener("public", create_public_app(site), listen(*public))]
    warnings = secret_warnings(site.secret)
    password: str | None = None
    if workbench is not None:
        # Imported only when wanted: the preview machinery is the heavy part.
        from digest.web import workbench as bench

        password = bench.password_from_environment()
        app = bench.create_workbench_app(bench.Workbench(config_path, clock), password)
        try:
            listeners.append(Listener("workbench", app, listen(*workbench)))
        except DigestError:
            listeners[0].sock.close()
            raise
        warnings += bench.exposure_warnings(workbench[0], password)
    return Plan(
        title=site.title,
        listeners=listeners,
        public_url=base_url(listeners[0].sock),
        workbench_url=base_url(listeners[1].sock) if len(listeners) > 1 else None,
        password=password is not None,
        warnings=warnings,
        signup=site.config.signup.enabled,
        archive=site.config.archive.enabled,
    )
