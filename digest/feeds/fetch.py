"""Get one feed's bytes: over HTTP (conditional, bounded in time and size) or from disk (capped).

Bounds, per feed request:
- `fetch.timeout` covers the whole request: connecting, the headers, the body and every
  redirect hop together. Every socket operation is given only the time left, so a server that
  drips its answer a byte at a time is given up at the deadline.
- `fetch.max_bytes` caps both the bytes that arrive and the bytes they decode to. Compressed
  bodies (gzip or deflate, nested in any order, at most MAX_ENCODINGS layers) are decoded here
  in steps of DECODE_STEP bytes, so a small bomb never expands past the cap in memory.
"""

from __future__ import annotations

import re
import ssl
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpcore
import httpx

from digest.config.schema import FetchConfig
from digest.core.redact import SECRET_PARAMETERS, redact_text, redact_url
from digest.render.htmltext import error_line

MAX_REDIRECTS = 5
MAX_ENCODINGS = 4
DECODE_STEP = 64 * 1024
PERMANENT = (301, 308)
REDIRECTS = (301, 302, 303, 307, 308)
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9,"
    " application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
ACCEPT_ENCODING = "gzip, deflate"
_GZIP_MAGIC = b"\x1f\x8b"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


@dataclass(frozen=True)
class Fetched:
    """A server's (or the disk's) answer for one feed: bytes to parse, or why there are none."""

    data: bytes | None = None
    content_type: str | None = None
    http_status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    permanent_url: str | None = None
    not_modified: bool = False
    gone: bool = False
    error: str = ""


class TooLarge(Exception):
    """The body, as sent or decoded, went past fetch.max_bytes."""


class Undecodable(Exception):
    """The body's Content-Encoding is unknown, too deep, or its data is corrupt."""


# -- the whole-request deadline ---------------------------------------------------------

_deadline = threading.local()


def _time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    """The per-operation timeout, shortened to what is left of this thread's deadline."""
    deadline: float | None = getattr(_deadline, "at", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the time for the whole request ran out")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the requesting thread's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """Plain sockets, connected and used within the requesting thread's deadline."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def feed_tls_context(cafile: str | None = None) -> ssl.SSLContext:
    """The TLS context for fetching feeds: certificates verified against `cafile` (by default
    certifi's bundle, as httpx uses), with hostname checks."""
    if cafile is None:
        import certifi

        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile)


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport over a connection pool that keeps to each request's deadline."""

    def __init__(self, fetch: FetchConfig, cafile: str | None = None) -> None:
        context = feed_tls_context(cafile)  # one for both
        super().__init__(verify=context, trust_env=False)
        # httpx takes no network backend, so its pool is replaced by one that has ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=fetch.concurrency,
            max_keepalive_connections=fetch.concurrency,
            network_backend=_DeadlineBackend(),
        )


def make_client(
    fetch: FetchConfig, transport: httpx.BaseTransport | None = None, *, cafile: str | None = None
) -> httpx.Client:
    """One HTTP client shared by all feeds of a run: pooled and timed; fetch_url follows redirects.

    `transport` replaces the network (tests use httpx.MockTransport); the whole-request deadline
    is then still checked between the body's chunks. `cafile` replaces the trusted certificate
    authorities (tests trust their own).
    """
    return httpx.Client(
        transport=transport or _DeadlineTransport(fetch, cafile),
        timeout=httpx.Timeout(fetch.timeout),
        follow_redirects=False,
        headers={
            "User-Agent": fetch.user_agent,
            "Accept": ACCEPT,
            "Accept-Encoding": ACCEPT_ENCODING,
        },
        trust_env=False,
    )


# -- one request --------------------------------------------------------------------------


def fetch_url(
    client: httpx.Client,
    url: str,
    fetch: FetchConfig,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Fetched:
    """GET a feed URL within fetch.timeout; never raises for the server's or network's failings.

    Error texts never carry the URL's credentials.
    """
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + fetch.timeout
    _deadline.at = deadline
    try:
        answer = _get(client, url, fetch, headers, deadline)
    finally:
        _deadline.at = None
    return replace(answer, error=redact_error(answer.error, url)) if answer.error else answer


def _get(
    client: httpx.Client, url: str, fetch: FetchConfig, headers: dict[str, str], deadline: float
) -> Fetched:
    try:
        return _follow(client, httpx.URL(url), fetch, headers, deadline)
    except TooLarge:
        return Fetched(error=f"larger than {fetch.max_bytes} bytes (fetch.max_bytes)")
    except Undecodable as error:
        return Fetched(error=str(error))
    except httpx.TimeoutException:
        return Fetched(error=f"timed out after {fetch.timeout:g} s (fetch.timeout)")
    except httpx.UnsupportedProtocol as error:
        return Fetched(error=f"not an http(s) URL: {error}")
    except httpx.DecodingError:
        return Fetched(error="the compressed body could not be decoded")
    except httpx.ConnectError as error:
        verify = re.search(r"certificate verify failed: ([^(]+)", str(error))
        if verify:
            return Fetched(
                error=f"the site's certificate could not be verified ({verify[1].strip()});"
                " its owner needs to fix its HTTPS setup"
            )
        return Fetched(error=f"could not connect: {error_line(error)}")
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        return Fetched(error=f"{type(error).__name__}: {error_line(error)}")


def _follow(
    client: httpx.Client,
    url: httpx.URL,
    fetch: FetchConfig,
    headers: dict[str, str],
    deadline: float,
) -> Fetched:
    """Follow redirects here rather than in httpx, which would read each hop's body unbounded."""
    origin = url
    permanent: str | None = None
    moved_for_good = True
    for _ in range(MAX_REDIRECTS + 1):
        if url.scheme not in ("http", "https"):
            return Fetched(
                error=f"not an http(s) URL: the server redirected to a {url.scheme}: URL"
            )
        with client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            location = response.headers.get("location")
            if status in REDIRECTS and location:
                url = response.url.join(location.strip())
                if origin.userinfo and not url.userinfo and url.host == origin.host:
                    url = url.copy_with(userinfo=origin.userinfo)
                moved_for_good = moved_for_good and status in PERMANENT
                permanent = str(url) if moved_for_good else permanent
                continue
            answer = Fetched(
                http_status=status,
                permanent_url=permanent,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
            )
            if status == 304:
                return replace(answer, not_modified=True)
            if status == 410:
                error = "gone (410): remove this feed from config.yaml"
                return replace(answer, gone=True, error=error)
            if status >= 300:
                return replace(answer, error=f"HTTP {status} {response.reason_phrase}".strip())
            data = _read_capped(response, fetch.max_bytes, deadline)
            return replace(answer, data=data, content_type=response.headers.get("content-type"))
    return Fetched(error=f"more than {MAX_REDIRECTS} redirects")


def _read_capped(response: httpx.Response, limit: int, deadline: float) -> bytes:
    """The decoded body, refused once the bytes sent or decoded pass `limit` or time runs out."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    if response.is_stream_consumed:  # an answer built in memory, e.g. by httpx.MockTransport
        if len(response.content) > limit:
            raise TooLarge
        return response.content
    encodings = _encodings(response.headers.get_list("content-encoding", split_commas=True))
    received = 0

    def raw() -> Iterator[bytes]:
        nonlocal received
        for chunk in response.iter_raw():
            received += len(chunk)
            if received > limit:
                raise TooLarge
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("the body took too long", request=response.request)
            yield chunk

    body = bytearray()
    for piece in decode(raw(), encodings):
        if len(body) + len(piece) > limit:
            raise TooLarge
        body += piece
    return bytes(body)


def _encodings(names: list[str]) -> list[str]:
    """The Content-Encoding layers to undo, outermost last, or Undecodable."""
    layers = [name.strip().lower() for name in names if name.strip()]
    layers = [name for name in layers if name != "identity"]
    for name in layers:
        if name not in ("gzip", "x-gzip", "deflate"):
            raise Undecodable(f"unsupported Content-Encoding {name[:40]!r}")
    if len(layers) > MAX_ENCODINGS:
        raise Undecodable(f"more than {MAX_ENCODINGS} Content-Encoding layers")
    return layers


def decode(chunks: Iterable[bytes], encodings: list[str]) -> Iterator[bytes]:
    """Undo Content-Encoding layers (listed in the order applied), DECODE_STEP bytes at a time."""
    stream: Iterable[bytes] = chunks
    for name in reversed(encodings):
        stream = _Inflater(name).run(stream)
    return iter(stream)


class _Inflater:
    """One gzip or deflate layer, whose output never comes in pieces over DECODE_STEP."""

    def __init__(self, encoding: str) -> None:
        self.gzip = encoding != "deflate"
        self.decoder: Any = None
        self.finished = False

    def run(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            yield from self._feed(chunk)

    def _feed(self, data: bytes) -> Iterator[bytes]:
        while not self.finished:
            if self.decoder is None:
                if not data:
                    return
                self.decoder = zlib.decompressobj(self._wbits(data))
            try:
                out = self.decoder.decompress(data, DECODE_STEP)
            except zlib.error:
                raise Undecodable("the compressed body could not be decoded") from None
            if out:
                yield out
            if self.decoder.eof:
                # Another gzip member may follow; anything else after the end is ignored.
                data = self.decoder.unused_data
                self.decoder = None
                self.finished = not (self.gzip and data.startswith(_GZIP_MAGIC))
                continue
            data = self.decoder.unconsumed_tail
            if not data and len(out) < DECODE_STEP:
                return

    def _wbits(self, head: bytes) -> int:
        if self.gzip:
            return 16 + zlib.MAX_WBITS
        # "deflate" should be zlib-wrapped, but some servers send raw deflate data.
        wrapped = len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
        return zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS


def read_file(path: Path, max_bytes: int) -> Fetched:
    """A feed stored on disk, refused beyond max_bytes."""
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        return Fetched(error=f"file not found: {path}")
    except IsADirectoryError:
        return Fetched(error=f"is a folder, not a feed file: {path}")
    except OSError as error:
        return Fetched(error=f"cannot read {path}: {error.strerror or error}")
    if len(data) > max_bytes:
        return Fetched(error=f"larger than {max_bytes} bytes (fetch.max_bytes)")
    return Fetched(data=data)


# -- texts --------------------------------------------------------------------------------


def redact_error(text: str, url: str) -> str:
    """`text` with credentials masked: in any URL it quotes, and the feed URL's own secrets."""
    text = _URL.sub(lambda match: redact_url(match.group()), text)
    return redact_text(text, _secrets(url))


def _secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        found = [parts.username or "", parts.password or ""]
    except ValueError:
        return []
    found += [
        value
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if SECRET_PARAMETERS.search(name)
    ]
    return [form for secret in found if secret for form in (secret, unquote(secret))]
