"""Get one feed's bytes: over HTTP (conditional, capped, timed) or from disk (capped)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path

import httpx

from digest.config import FetchConfig

MAX_REDIRECTS = 5
PERMANENT = (301, 308)
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9,"
    " application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)


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
    """The body went past fetch.max_bytes."""


def make_client(fetch: FetchConfig) -> httpx.Client:
    """One HTTP client shared by all feeds of a run: pooled, timed, redirect-following."""
    return httpx.Client(
        timeout=httpx.Timeout(fetch.timeout),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        headers={"User-Agent": fetch.user_agent, "Accept": ACCEPT},
        limits=httpx.Limits(
            max_connections=fetch.concurrency, max_keepalive_connections=fetch.concurrency
        ),
        trust_env=False,
    )


def fetch_url(
    client: httpx.Client,
    url: str,
    fetch: FetchConfig,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Fetched:
    """GET a feed URL; never raises for the server's or the network's failings."""
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + fetch.timeout * 2
    try:
        with client.stream("GET", url, headers=headers) as response:
            permanent = _permanent_target(response)
            status = response.status_code
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
    except TooLarge:
        return Fetched(error=f"larger than {fetch.max_bytes} bytes (fetch.max_bytes)")
    except httpx.TimeoutException:
        return Fetched(error=f"timed out after {fetch.timeout:g} s (fetch.timeout)")
    except httpx.TooManyRedirects:
        return Fetched(error=f"more than {MAX_REDIRECTS} redirects")
    except httpx.UnsupportedProtocol as error:
        return Fetched(error=f"not an http(s) URL: {error}")
    except httpx.DecodingError:
        return Fetched(error="the compressed body could not be decoded")
    except httpx.ConnectError as error:
        return Fetched(error=f"could not connect: {_one_line(error)}")
    except httpx.HTTPError as error:
        return Fetched(error=f"{type(error).__name__}: {_one_line(error)}")


def _read_capped(response: httpx.Response, limit: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    compressed = bool(response.headers.get("content-encoding"))
    if declared.isdigit() and not compressed and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the body took too long", request=response.request)
        chunks.append(chunk)
    return b"".join(chunks)


def _permanent_target(response: httpx.Response) -> str | None:
    """Where the leading run of 301/308 redirects ended, if the answer began with one."""
    hops = [*response.history, response]
    target = None
    for hop, following in pairwise(hops):
        if hop.status_code not in PERMANENT:
            break
        target = str(following.url)
    return target


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


def _one_line(error: object) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]
