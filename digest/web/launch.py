"""Listening sockets and the uvicorn servers behind them, each on its own thread and event loop.

Every server speaks HTTP/1.1 through GuardedProtocol, uvicorn's h11 protocol with the guards
uvicorn lacks, so that slow, idle or half-open sockets cannot lock real clients out:

- A connection must deliver its whole request head within HEAD_SECONDS of connecting (or of its
  previous response, together with any body left over from a request answered early), however
  it trickles it in.
- Once the head is in, the whole request (the rest of its body, and the time the app takes to
  answer) has REQUEST_SECONDS. Past that the client gets 408 (its body never came) or 503 (the
  server was too slow), and the connection is closed; the app's late answer goes nowhere.
- A connection the server closes gets LINGER_SECONDS to take what it was sent; one that reads
  none of it (its answers filling the buffers) is then cut off, where a plain close would wait
  for ever.
- A server holds at most MAX_CONNECTIONS open (those being closed go within LINGER_SECONDS and
  do not count). A new connection over the cap sheds the one that has owed its request
  longest, whether it is still sending the head or the body; connections whose whole request
  is in are not shed (their deadline bounds them).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from digest.config.schema import Config
from digest.core.errors import DigestError
from digest.web.common import BUSY, COMMON_HEADERS, RETRY_AFTER_SECONDS

logger = logging.getLogger(__name__)

HEAD_SECONDS = 5.0
# The public app reads a body for at most BODY_SECONDS (its own 408); this bounds the rest.
REQUEST_SECONDS = 15.0
# The editor's preview may wait on slow feeds (fetch.timeout) and a render.
WORKBENCH_REQUEST_SECONDS = 120.0
MAX_CONNECTIONS = 200
# How long a closed connection may take to read what it was sent before it is cut off.
LINGER_SECONDS = 2.0
KEEP_ALIVE_SECONDS = 5
SHUTDOWN_SECONDS = 10
MAX_HEAD_BYTES = 16 * 1024


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with head and whole-request deadlines and a connection cap."""

    head_seconds = HEAD_SECONDS
    request_seconds = REQUEST_SECONDS
    max_connections = MAX_CONNECTIONS
    linger_seconds = LINGER_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._answered: object = None  # the cycle answered before this head was awaited
        self._timed: object = None  # the cycle whose request deadline runs
        # Since when the client has owed us (the rest of) a request; None once it is all in.
        self.owing_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head deadline; over the cap, shed the connection owing the longest.

        Connections being closed do not count: each goes within linger_seconds (whoever
        closed it, the timer is armed here at the latest)."""
        super().connection_made(transport)
        self._await_head()
        open_ones = []
        for other in self.connections:
            if not isinstance(other, GuardedProtocol):
                continue
            if other.transport.is_closing():
                other._linger()
            else:
                open_ones.append(other)
        if len(open_ones) > self.max_connections:
            owing = [
                other for other in open_ones if other is not self and other.owing_since is not None
            ]
            if owing:
                min(owing, key=lambda other: other.owing_since or 0.0).drop()
            else:
                self.drop()

    def data_received(self, data: bytes) -> None:
        """Pass the bytes to h11; a whole head starts the request deadline."""
        super().data_received(data)
        self._follow_cycle()

    def on_response_complete(self) -> None:
        """After a response, the rest of that request and the next head are due in time too."""
        super().on_response_complete()
        if self.transport.is_closing():  # the answer said Connection: close
            self._linger()
            return
        # Unless a pipelined request is already being answered, the client owes us either the
        # next request head or the rest of a body we answered early (a 413, say).
        if self.cycle.response_complete:
            self._await_head()
        else:
            self._follow_cycle()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadlines, then let uvicorn clean up."""
        self._stop_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self.owing_since = None
        super().connection_lost(exc)

    def timeout_keep_alive_handler(self) -> None:
        """uvicorn's close of an idle keep-alive connection, which may still hold answers."""
        super().timeout_keep_alive_handler()
        self._linger()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a malformed request, which closes the connection."""
        super().send_400_response(msg)
        self._linger()

    def drop(self) -> None:
        """Close this connection now; a request in progress hears that its client is gone."""
        self._stop_timer()
        self.owing_since = None
        if not self.transport.is_closing():
            self.transport.close()
        self._linger()

    def _linger(self) -> None:
        """A closing connection is closed once what it was sent is handed over, which a client
        that reads nothing never lets happen: cut it off after linger_seconds."""
        if self._linger_timer is None and self.transport.is_closing():
            self._linger_timer = self.loop.call_later(self.linger_seconds, self._cut_off)

    def _cut_off(self) -> None:
        """Close this connection at once, discarding what it was not yet sent; a reset, so the
        kernel does not keep the unsent answers on its behalf either."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def _follow_cycle(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle is self._answered:
            return  # still waiting for a head (uvicorn starts a cycle exactly when one is in)
        if cycle is not self._timed:
            self._stop_timer()
            self._timed = cycle
            if cycle.more_body and self.owing_since is None:  # a pipelined request's body
                self.owing_since = time.monotonic()
            self._timer = self.loop.call_later(self.request_seconds, self._request_overdue)
        if not cycle.more_body:
            self.owing_since = None

    def _await_head(self) -> None:
        self._stop_timer()
        self._answered = self.cycle
        self.owing_since = time.monotonic()
        self._timer = self.loop.call_later(self.head_seconds, self._head_overdue)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_overdue(self) -> None:
        self._timer = None
        if self.owing_since is not None:
            logger.debug("closing a connection that sent no whole request head in time")
            self.drop()

    def _request_overdue(self) -> None:
        self._timer = None
        cycle = self.cycle
        if cycle is None or cycle.response_complete or self.transport.is_closing():
            return
        if not cycle.response_started:
            if cycle.more_body:
                logger.debug("closing a connection whose request body did not arrive in time")
                self._refuse(408, "Request body too slow.\n", {})
            else:
                logger.warning(
                    "a request to %s took over %g s to answer; the client was told to retry",
                    cycle.scope.get("path", ""),
                    self.request_seconds,
                )
                self._refuse(503, BUSY, {"retry-after": str(RETRY_AFTER_SECONDS)})
        # The app may still be working: its answer is dropped, and a handler still waiting
        # for the body hears that the client has gone.
        cycle.disconnected = True
        cycle.message_event.set()
        self.drop()

    def _refuse(self, status: int, text: str, extra: dict[str, str]) -> None:
        body = text.encode("utf-8")
        headers = {
            **{name.lower(): value for name, value in COMMON_HEADERS.items()},
            "content-type": "text/plain; charset=utf-8",
            "content-length": str(len(body)),
            "connection": "close",
            **extra,
        }
        events = (
            h11.Response(status_code=status, headers=list(headers.items())),
            h11.Data(data=body),
            h11.EndOfMessage(),
        )
        try:
            output = b"".join(self.conn.send(event) or b"" for event in events)
        except h11.LocalProtocolError:
            return  # the connection is in no state for an answer; it is closed all the same
        self.transport.write(output)


def guarded_protocol(
    head_seconds: float = HEAD_SECONDS,
    max_connections: int = MAX_CONNECTIONS,
    request_seconds: float = REQUEST_SECONDS,
    linger_seconds: float = LINGER_SECONDS,
) -> type[GuardedProtocol]:
    """GuardedProtocol with other limits (the workbench's longer requests; tests' shorter ones)."""
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {
            "head_seconds": head_seconds,
            "max_connections": max_connections,
            "request_seconds": request_seconds,
            "linger_seconds": linger_seconds,
        },
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
            # uvicorn's records go to digest's own handler (JSON lines, addresses masked).
            log_config=None,
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


def serve(
    listeners: Sequence[Listener],
    background: Sequence[Callable[[threading.Event], None]] = (),
) -> None:
    """Run every listener on its own thread until SIGINT or SIGTERM, then stop them all; each
    of `background` runs on a thread of its own, told to stop by the event it is given."""
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
    helpers = [
        threading.Thread(target=job, args=(stopping,), name="digest-background", daemon=True)
        for job in background
    ]
    try:
        for thread in threads + helpers:
            thread.start()
        while all(thread.is_alive() for thread in threads):
            threads[0].join(timeout=0.2)
        for listener in listeners:
            listener.server.should_exit = True
        for thread in threads:
            thread.join(timeout=SHUTDOWN_SECONDS + 5)
        stopping.set()
        for thread in helpers:
            thread.join(timeout=SHUTDOWN_SECONDS + 5)
    finally:
        stopping.set()
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
    config: Config  # config.yaml as read at start: the state's pool, the metrics
    background: tuple[Callable[[threading.Event], None], ...] = ()  # threads beside the servers
    signup: bool = False
    archive: bool = False
    clicks: bool = False


def plan(
    config_path: Path,
    clock: Callable[[], datetime],
    *,
    public: tuple[str, int],
    workbench: tuple[str, int] | None,
) -> Plan:
    """Bind the public app and, unless `workbench` is None, the workbench; collect warnings."""
    from digest.run.check import listening_warnings, secret_warnings
    from digest.web.public import PublicSite, create_public_app

    site = PublicSite(config_path, clock)
    listeners = [Listener("public", create_public_app(site), listen(*public))]
    warnings = secret_warnings(site.secret)
    bound_port = int(listeners[0].sock.getsockname()[1])
    for warning in listening_warnings(site.config, public[0], bound_port):
        logger.warning("%s", warning)  # in the log, where a proxied server's operator looks
    password: str | None = None
    if workbench is not None:
        # Imported only when wanted: the preview machinery is the heavy part.
        from digest.web import workbench as bench

        password = bench.password_from_environment()
        app = bench.create_workbench_app(
            bench.Workbench(config_path, clock), password, listen_host=workbench[0]
        )
        try:
            protocol = guarded_protocol(request_seconds=WORKBENCH_REQUEST_SECONDS)
            listeners.append(Listener("workbench", app, listen(*workbench), protocol=protocol))
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
        clicks=site.config.tracking.enabled,
        config=site.config,
        background=tuple(site.background),
    )
