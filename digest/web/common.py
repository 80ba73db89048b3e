"""What the public app and the workbench share: the public pages' frame, safety headers and body
limits."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.config.schema import Config
from digest.render.pagelook import Link, PageLook, page_look

if TYPE_CHECKING:
    import jinja2

PAGES = Path(__file__).resolve().parent.parent / "pages"

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
# Every public page's policy: its one inline stylesheet, the logo (an https URL), forms that
# post back to this app, and nothing else.
PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'self';"
    " base-uri 'none'; frame-ancestors 'none'"
)


class BodyTooLarge(Exception):
    """A request body went over MAX_BODY_BYTES."""


class BodyTooSlow(Exception):
    """A request body did not arrive within BODY_SECONDS."""


class BodyCutOff(BodyTooSlow):
    """The connection closed before the whole body arrived: the client left, or the server shed
    it or cut it off at its request deadline. Any answer goes nowhere."""


@cache
def _pages() -> jinja2.Environment:
    import jinja2  # only when a page is drawn: the public app starts without it

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PAGES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(look: PageLook, template: str, heading: str, **context: Any) -> str:
    """One of the public pages (digest/pages/`template`), in the shared frame."""
    return _pages().get_template(template).render(look=look, heading=heading, **context)


def page(
    look: PageLook,
    title: str,
    body: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """A public page in the shared frame, with `title` as its heading; `body` must already be
    escaped markup."""
    document = render(look, "message.html", title, body=body)
    return HTMLResponse(document, status_code=status, headers=page_headers(headers))


def notice(
    look: PageLook,
    heading: str,
    paragraphs: Sequence[str],
    *,
    status: int = 200,
    button: str = "",
    action: str = "",
    links: Sequence[Link] = (),
    again: SubscribeAgain | None = None,
) -> HTMLResponse:
    """A public page of plain paragraphs, with a button that posts to `action`, links, and the
    "Subscribe again" button, as given."""
    document = render(
        look,
        "notice.html",
        heading,
        paragraphs=paragraphs,
        button=button,
        action=action,
        links=links,
        again=again,
    )
    return HTMLResponse(document, status_code=status, headers=page_headers())


def not_found(look: PageLook) -> HTMLResponse:
    """The 404 page: nothing here, and the way back to the newsletter."""
    start = (
        f'<a href="{html.escape(look.home)}">{html.escape(look.title)}</a>'
        if look.home
        else f"the latest email from {html.escape(look.title)}"
    )
    return page(
        look,
        "Page not found",
        f"<p>There is no page at this address. Check the link, or start again from {start}.</p>",
        status=404,
    )


def page_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of a public page: the common safety headers and the page policy."""
    return {**COMMON_HEADERS, "Content-Security-Policy": PAGE_POLICY, **(extra or {})}


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


def public_look(config: Config) -> PageLook:
    """The frame of the public app's pages: the title leads to the archive (or the sign-up
    page when there is no archive), and the navigation to the issues, the feed's page and
    the sign-up page, where they are on."""
    from digest.archive.pages import subscribe_url

    nav: list[Link] = []
    home = ""
    if config.archive.enabled and config.newsletter.archive_url:
        archive = config.newsletter.archive_url.rstrip("/")
        home = f"{archive}/archive/"
        nav += [Link(home, "All issues"), Link(f"{archive}/feed/", "Feed")]
    if config.signup.enabled or config.archive.subscribe_url:
        subscribe = subscribe_url(config)
        home = home or subscribe
        nav.append(Link(subscribe, "Subscribe"))
    return page_look(config, home, tuple(nav))


@dataclass(frozen=True)
class SubscribeAgain:
    """The "Changed your mind? Subscribe again" button of a page that unsubscribed a reader."""

    action: str  # the signed /resubscribe link, relative to the public app's root
    source: str  # the page it is on: "unsubscribe" or "preferences"
    consent_text: str  # the consent sentence shown above the button


def subscribe_again(
    config: Config, secret: str, address: str, source: str, now: datetime
) -> SubscribeAgain:
    """The button that subscribes `address` again: its token names that address alone."""
    from digest.readers.signup import resubscribe_token

    token = resubscribe_token(secret, address, now)
    return SubscribeAgain(
        f"resubscribe?token={quote(token, safe='')}", source, config.signup.consent_text
    )
