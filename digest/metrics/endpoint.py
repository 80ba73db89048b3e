"""The metrics listener: Prometheus text format on `metrics.listen`, a port of its own.

Kept off the public app on purpose: the metrics say how many people sign up and leave, which
is the operator's business, so they are served on their own socket (by default on loopback),
by prometheus_client's own small HTTP server on a thread beside the work, never by a route of
the public app. A port already taken is refused at start with the reason, before any work
begins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from prometheus_client import start_http_server

from digest.config.schema import Config
from digest.core import counters
from digest.core.errors import DigestError
from digest.metrics.gauges import StateCollector

logger = logging.getLogger(__name__)


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
    registry = counters.enable()
    collector = StateCollector(config, clock)
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        registry.unregister(collector)
        raise DigestError(
            f"metrics.listen: cannot listen on {shown(host, port)}: {error.strerror or error}"
        ) from None
    bound_host, bound_port = server.server_address[:2]
    url = f"http://{shown(str(bound_host), int(bound_port))}/metrics"
    logger.info("metrics on %s", url)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        registry.unregister(collector)
