"""The public app: RFC 8058 one-click unsubscribe, /healthz and /readyz, kept apart from the
preview.

Subscribers' mail clients reach this app, so it imports nothing of the preview machinery
(collecting feeds, rendering, the feed cache): a slow feed or a broken template cannot touch it.
Sign-up, the archive and the ESP webhooks for bounces and complaints live here too.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from digest import store
from digest.archive.pages import subscribe_url
from digest.config.schema import load_config
from digest.core import counters
from digest.core.addresses import canonical_or_none
from digest.core.errors import StateError
from digest.core.tokens import UnsubscribeLink, read_token
from digest.readers.audience import is_forgotten
from digest.render.pagelook import Link
from digest.web.approval import approval_routes
from digest.web.archive import archive_routes
from digest.web.clicks import ClickDesk, click_routes
from digest.web.common import (
    COMMON_HEADERS,
    BodyLimit,
    body_or_refusal,
    busy,
    is_one_click,
    not_found,
    notice,
    page,
    plain,
    public_look,
    subscribe_again,
)
from digest.web.webhooks import WEBHOOK_BODY_BYTES, WebhookDesk, webhook_routes

logger = logging.getLogger(__name__)

BAD_TOKEN = (
    "This unsubscribe link is not valid: the token is missing, damaged or was not issued by"
    " this newsletter. Nothing was changed."
)
BAD_TOKEN_HELP = "Copy the whole link from the email, or reply to the email and ask to be removed."
BAD_AGAIN = (
    "This link cannot subscribe anyone again: it is incomplete, damaged, was not issued by this"
    " newsletter, or is more than a day old. Nothing was changed."
)


class PublicSite:
    """What the public app works from: the newsletter's title, its state file and signing secret."""

    def __init__(self, config_path: Path, clock: Callable[[], datetime]) -> None:
        config = load_config(config_path)
        self.config = config
        self.title = config.newsletter.title
        self.state_path = config.state_path
        self.clock = clock
        self.look = public_look(config)
        # Work `digest serve` runs on threads of its own beside the servers, until told to stop.
        self.background: list[Callable[[threading.Event], None]] = []
        with store.open(self) as state:
            self.secret = state.secrets.signing_secret(config.secret)

    def link_for(self, token: str) -> UnsubscribeLink | None:
        """The address a token names (in the canonical form: an older message's token may
        carry a Unicode domain) and the issue it was sent in, if it was signed with this
        newsletter's secret."""
        link = read_token(self.secret, token)
        if link is None:
            return None
        return UnsubscribeLink(canonical_or_none(link.address) or link.address.lower(), link.issue)

    def suppress(self, address: str, source: str, issue: int | None = None) -> bool:
        """Record the address as unsubscribed, counted against the issue whose link was used;
        False if it already was (counted once), or if its owner was forgotten (their hash keeps
        them off the list; their address is not written again)."""
        with store.open(self) as state, state.transaction():
            if is_forgotten(address, state.signups.forgotten(), self.secret):
                return False
            now = self.clock()
            added = state.suppressions.suppress(
                address, now, source, kind=store.SuppressionKind.UNSUBSCRIBE
            )
            if added:
                state.reports.record(store.ReaderEvent.UNSUBSCRIBE, issue, now)
        logger.info("unsubscribed %s (%s)", address, source)
        if added:
            counters.count(counters.UNSUBSCRIBES, source=source)
        return added

    def check_again(self, token: str | None) -> str | None:
        """The address a "Subscribe again" button's token names, if it is ours and fresh."""
        from digest.readers.signup import RESUBSCRIBE_PURPOSE, check_link

        return check_link(self.secret, RESUBSCRIBE_PURPOSE, token, self.clock()).address

    def resubscribe(self, address: str, source: str, ip: str) -> bool:
        """Subscribe again a reader who unsubscribed themselves (digest.readers.signup)."""
        from digest.readers.signup import resubscribe
        from digest.readers.subscribers import load_subscribers

        listed = {
            s.email: s for s in load_subscribers(self.config.subscribers_path).subscribers
        }.get(address)
        page = f"{self.config.public_url or ''}/{source}"
        with store.open(self) as state:
            return resubscribe(
                self.config,
                state,
                self.secret,
                address,
                listed,
                source=f"{source} page",
                page=page,
                ip=ip,
                now=self.clock(),
            )

    def preferences_link(self, address: str) -> str:
        """A fresh link to the address's preferences page."""
        from digest.readers.signup import preferences_link

        return preferences_link(self.config, self.secret, address, self.clock())

    def unready(self) -> str | None:
        """Why the app cannot serve readers now, in one line fit for anyone to read, or None.

        Ready means the state is at this release's schema and answers a query: a state whose
        migrations have not been applied yet (read without applying them), one written by a
        newer digest, a damaged or unreadable file, or one locked past the busy timeout is not.
        The line names no file and nothing stored; the log has the detail."""
        try:
            status = store.schema_status(self)
            if status.standing != "current":
                return self._schema_problem(status)
            with store.open(self, read_only=True) as state:
                state.ledger.latest_slot_key()
        except StateError as error:
            logger.warning("not ready: %s", error)
            message = str(error).splitlines()[0] if str(error) else "the state cannot be read"
            path = str(self.state_path)
            return message.replace(f"state file {path}", "the state file").replace(
                path, "the state file"
            )
        return None

    def _schema_problem(self, status: store.SchemaStatus) -> str:
        what = "database" if isinstance(self.state_path, store.DatabaseURL) else "state file"
        if status.standing == "newer":
            problem = (
                f"the {what} was written by a newer digest (schema {status.version}, this"
                f" release knows {status.latest}); upgrade digest"
            )
        else:
            problem = (
                f"the {what} is at schema {status.version}, older than this release's"
                f" {status.latest}: its migrations have not been applied yet (digest applies"
                " them when it next opens the state to write, e.g. at `digest serve` start)"
            )
        logger.warning("not ready: %s", problem)
        return problem


def create_public_app(site: PublicSite) -> ASGIApp:
    """The public ASGI app: /unsubscribe (GET confirms, POST records), /resubscribe (the signed
    "Subscribe again" button of the page that unsubscribed a reader), /healthz (the process
    answers), /readyz (the state can be used: 503 with a one-line reason if not), the archive
    (/archive/, /issues/…, /feed/, /feed.atom; 404 while it is off), the approvers' /approval
    page, the click redirects (/r/…), with signup.enabled the sign-up pages (/subscribe,
    /confirm, /preferences), and `/`, which leads to the archive, else the sign-up page."""
    title = site.title
    config = site.config
    look = site.look

    def token_of(request: Request) -> str | None:
        tokens = request.query_params.getlist("token")
        return tokens[0] if len(tokens) == 1 else None

    def bad_token() -> Response:
        return notice(look, "This link cannot be used", [BAD_TOKEN, BAD_TOKEN_HELP], status=400)

    async def unsubscribe(request: Request) -> Response:
        token = token_of(request)
        link = site.link_for(token) if token else None
        address = link.address if link else None
        if request.method == "POST":
            body = await body_or_refusal(request)
            if isinstance(body, Response):
                return body
            if address is None:
                return bad_token()
            one_click = is_one_click(request.headers.get("content-type", ""), body)
            source = "one-click" if one_click else "web"
            await run_in_threadpool(site.suppress, address, source, link.issue if link else None)
            again = subscribe_again(config, site.secret, address, "unsubscribe", site.clock())
            return notice(
                look,
                "You are unsubscribed",
                [f"{address} will not receive {title} again."],
                again=again,
            )
        if address is None:
            return bad_token()
        return notice(
            look,
            f"Unsubscribe from {title}?",
            [f"Stop sending {title} to {address}?"],
            button="Unsubscribe",
            action="",
        )

    async def resubscribe(request: Request) -> Response:
        address = site.check_again(token_of(request))
        body = b""
        if request.method == "POST":
            read = await body_or_refusal(request)
            if isinstance(read, Response):
                return read
            body = read
        if address is None:
            return notice(look, "This link cannot be used", [BAD_AGAIN], status=400)
        if request.method == "GET":
            again = subscribe_again(config, site.secret, address, "unsubscribe", site.clock())
            return notice(
                look,
                f"Subscribe to {title} again?",
                [f"Send {title} to {address} again?"],
                again=again,
            )
        fields = parse_qs(body.decode("utf-8", errors="replace"))
        source = "preferences" if fields.get("from") == ["preferences"] else "unsubscribe"
        ip = request.client.host if request.client else ""
        if not await run_in_threadpool(site.resubscribe, address, source, ip):
            return notice(
                look,
                "This address cannot be subscribed again here",
                [
                    f"{address} cannot be subscribed to {title} again from this page. Nothing was"
                    " changed."
                ],
                links=[Link(subscribe_url(config), "Sign up")] if config.signup.enabled else [],
                status=409,
            )
        return notice(
            look,
            "You are subscribed again",
            [f"{address} will get the next issue of {title}, with the same choices as before."],
            links=(
                [Link(site.preferences_link(address), "Change your name or what you receive")]
                if config.signup.enabled
                else []
            ),
        )

    async def home(request: Request) -> Response:
        if config.archive.enabled:
            return RedirectResponse("archive/", status_code=307, headers=COMMON_HEADERS)
        if config.signup.enabled:
            return RedirectResponse("subscribe", status_code=307, headers=COMMON_HEADERS)
        return page(
            look,
            title,
            _para(
                f"This is where readers of {title} manage their subscription: the links in"
                " every email lead here."
            ),
        )

    async def healthz(request: Request) -> Response:
        return plain("ok\n", status=200)

    async def readyz(request: Request) -> Response:
        problem = await run_in_threadpool(site.unready)
        return plain(
            f"not ready: {problem}\n" if problem else "ready\n",
            status=503 if problem else 200,
        )

    async def missing(request: Request, error: Exception) -> Response:
        return not_found(look)

    async def not_allowed(request: Request, error: Exception) -> Response:
        return page(
            look,
            "This page cannot do that",
            _para("This address answers links and forms only. Nothing was changed."),
            status=405,
            headers=getattr(error, "headers", None),  # Allow: what it does answer
        )

    routes = [
        Route("/", home, methods=["GET", "HEAD"]),
        Route("/unsubscribe", unsubscribe, methods=["GET", "POST"]),
        Route("/resubscribe", resubscribe, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    routes += archive_routes(lambda: site.config, site.clock)
    routes += approval_routes(site, site.secret, site.clock, look)
    if site.config.signup.enabled:
        from digest.mail.message import load_dkim
        from digest.web.signup import SignupDesk, signup_routes

        desk = SignupDesk(site.config, site.secret, load_dkim(site.config), site.clock)
        routes += signup_routes(desk)
        site.background.append(desk.keep_draining)
    routes += webhook_routes(WebhookDesk(site.config, site.secret, site.clock))
    routes += click_routes(ClickDesk(site.config, site.secret, site.clock))
    app = Starlette(
        routes=routes,
        exception_handlers={StateError: state_unavailable, 404: missing, 405: not_allowed},
    )
    return BodyLimit(app, larger=(("/webhooks/", WEBHOOK_BODY_BYTES),))


def _para(text: str) -> str:
    """A paragraph of plain text, escaped."""
    return f"<p>{html.escape(text)}</p>"


async def state_unavailable(request: Request, error: Exception) -> Response:
    """503 with Retry-After when the state file cannot be used now: locked past the store's
    busy timeout by a long send, say. One line in the log, no traceback; the public actions
    (unsubscribe, sign-up, confirm, webhooks) are safe for the client to repeat."""
    logger.warning("could not answer a request to %s: %s", request.url.path, error)
    return busy()
