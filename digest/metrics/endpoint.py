"""The metrics listener: Prometheus text format at /metrics on `metrics.listen`, a port of its own.

Kept off the public app on purpose: the metrics say how many people sign up and leave, which
is the operator's business, so they are served by an app of their own on their own socket (by
default on loopback), never by a route of the public app. That app runs on a uvicorn server of
its own, on its own thread, with the guards every digest server has (digest.web.launch: the
request-head and whole-request deadlines, the connection cap), so a client that trickles or
hoards connections cannot pile up threads. The state is read for a scrape on a worker thread,
not on the server's event loop. A port already taken is refused at start with the reason,
before any work begins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.config.schema import Config
from digest.core import counters
from digest.core.errors import DigestError
from digest.metrics.gauges import StateCollector
from digest.web.launch import SHUTDOWN_SECONDS, Listener, base_url, listen

logger = logging.getLogger(__name__)


def metrics_app(registry: CollectorRegistry) -> Starlette:
    """GET /metrics: the registry in Prometheus text format; any other path is a 404."""

    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])


def shown(host: str, port: int) -> str:
    """host:port as a URL has it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextmanager
def serving(
    config: Config, address: tuple[str, int] | None, clock: Callable[[], datetime]
) -> Iterator[str | None]:
    """Serve the metrics on `address` (None: metrics are off, nothing happens) while the block
    runs; gives the URL of /metrics. Counting starts here (digest.core.counters.enable), and
    the state's gauges are read at each scrape (digest.metrics.gauges)."""
    if address is None:
        yield None
        return
    host, port = address
    try:
        sock = listen(host, port)
    except DigestError as error:
        raise DigestError(f"metrics.listen: {error}") from None
    registry = counters.enable()
    collector = StateCollector(config, clock)
    registry.register(collector)
    listener = Listener("metrics", metrics_app(registry), sock)
    thread = threading.Thread(target=listener.run, name="digest-metrics", daemon=True)
    thread.start()
    url = f"{base_url(sock)}/metrics"
    logger.info("metrics on %s", url)
    try:
        yield url
    finally:
        listener.server.should_exit = True
        thread.join(timeout=SHUTDOWN_SECONDS + 5)
        sock.close()
        registry.unregister(collector)
