"""What the public app and the workbench share: small pages, safety headers and body limits."""

from __future__ import annotations

import html
from urllib.parse import parse_qs

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

MAX_BODY_BYTES = 8 * 1024
# How long a client told the server is busy (503) is asked to wait before it tries again.
RETRY_AFTER_SECONDS = 10
BUSY = "Busy: try again shortly.\n"
# A request body (at most MAX_BODY_BYTES) must arrive within this many seconds of its head.
BODY_SECONDS = 10.0

COMMON_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


class BodyTooLarge(Exception):
    """A request body went over MAX_BODY_BYTES."""


class BodyTooSlow(Exception):
    """A request body did not arrive within BODY_SECONDS."""


class BodyCutOff(BodyTooSlow):
    """The connection closed before the whole body arrived: the client left, or the server shed
    it or cut it off at its request deadline. Any answer goes nowhere."""


def page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    """A small self-contained HTML page; `body` must already be escaped markup."""
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:Helvetica,Arial,sans-serif;max-width:34em;margin:3em auto;"
        "padding:0 1em;line-height:1.5;color:#222}button{font-size:1em;padding:.6em 1.2em;"
        "cursor:pointer}pre{white-space:pre-wrap;background:#fff4f4;border:1px solid #c33;"
        "padding:1em}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    headers = {**COMMON_HEADERS, "Content-Security-Policy": PAGE_POLICY}
    return HTMLResponse(document, status_code=status, headers=headers)


def plain(text: str, *, status: int, headers: dict[str, str] | None = None) -> PlainTextResponse:
    """A plain-text answer with the common safety headers."""
    return PlainTextResponse(
        text, status_code=status, headers={**COMMON_HEADERS, **(headers or {})}
    )


def busy() -> PlainTextResponse:
    """503 with Retry-After: the server cannot answer now (its state file stayed locked past
    the store's busy timeout, say), and the client should try again shortly."""
    return plain(BUSY, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def is_one_click(content_type: str, body: bytes) -> bool:
    """Whether a POST body is RFC 8058's List-Unsubscribe=One-Click (urlencoded or multipart)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", errors="replace")
    if kind == "multipart/form-data":
        return 'name="List-Unsubscribe"' in text and "One-Click" in text
    fields = parse_qs(text.strip(), keep_blank_values=True)
    return "One-Click" in fields.get("List-Unsubscribe", [])


class BodyLimit:
    """ASGI middleware refusing request bodies over a size limit with 413, before any handler."""

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, larger: tuple[tuple[str, int], ...] = ()
    ) -> None:
        self.app = app
        self.limit = limit
        self.larger = larger  # (path prefix, limit) pairs for routes that take bigger bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        path = str(scope.get("path", ""))
        limit = next((n for prefix, n in self.larger if path.startswith(prefix)), self.limit)
        try:
            too_big = int(declared) > limit
        except ValueError:
            too_big = True
        if too_big:
            await plain("Request body too large.\n", status=413)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def read_body(
    request: Request, limit: int = MAX_BODY_BYTES, seconds: float = BODY_SECONDS
) -> bytes:
    """The request body, refusing more than `limit` bytes (even chunked) or a slow trickle;
    BodyCutOff (a BodyTooSlow) when the connection closes first."""
    body = b""
    with anyio.move_on_after(seconds) as deadline:
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise BodyTooLarge
        except ClientDisconnect:
            raise BodyCutOff from None
    if deadline.cancelled_caught:
        raise BodyTooSlow
    return body


async def body_or_refusal(request: Request, limit: int = MAX_BODY_BYTES) -> bytes | Response:
    """read_body, or the plain-text 413 or 408 answer to give instead."""
    try:
        return await read_body(request, limit)
    except BodyTooLarge:
        return plain("Request body too large.\n", status=413)
    except BodyTooSlow:
        return plain("Request body too slow.\n", status=408)
