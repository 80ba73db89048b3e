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

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from digest import store
from digest.config.schema import load_config
from digest.core import counters
from digest.core.addresses import canonical_or_none
from digest.core.errors import StateError
from digest.core.tokens import UnsubscribeLink, read_token
from digest.readers.audience import is_forgotten
from digest.web.approval import approval_routes
from digest.web.archive import archive_routes
from digest.web.clicks import ClickDesk, click_routes
from digest.web.common import (
    BodyLimit,
    body_or_refusal,
    busy,
    is_one_click,
    page,
    plain,
)
from digest.web.webhooks import WEBHOOK_BODY_BYTES, WebhookDesk, webhook_routes

logger = logging.getLogger(__name__)

BAD_TOKEN = (
    "This unsubscribe link is not valid: the token is missing, damaged or was not issued by"
    " this newsletter. Nothing was changed.\n\nCopy the whole link from the email, or reply to"
    " the email and ask to be removed.\n"
)


class PublicSite:
    """What the public app works from: the newsletter's title, its state file and signing secret."""

    def __init__(self, config_path: Path, clock: Callable[[], datetime]) -> None:
        config = load_config(config_path)
        self.config = config
        self.title = config.newsletter.title
        self.state_path = config.state_path
        self.clock = clock
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
    """The public ASGI app: /unsubscribe (GET confirms, POST records), /healthz (the process
    answers), /readyz (the state can be used: 503 with a one-line reason if not), the archive
    (/archive/, /issues/…, /feed.atom; 404 while it is off), the approvers' /approval page, the
    click redirects (/r/…), and with signup.enabled the sign-up pages (/subscribe, /confirm,
    /preferences)."""
    title = site.title

    def token_of(request: Request) -> str | None:
        tokens = request.query_params.getlist("token")
        return tokens[0] if len(tokens) == 1 else None

    async def unsubscribe(request: Request) -> Response:
        token = token_of(request)
        link = site.link_for(token) if token else None
        address = link.address if link else None
        if request.method == "POST":
            body = await body_or_refusal(request)
            if isinstance(body, Response):
                return body
            if address is None:
                return plain(BAD_TOKEN, status=400)
            one_click = is_one_click(request.headers.get("content-type", ""), body)
            source = "one-click" if one_click else "web"
            await run_in_threadpool(site.suppress, address, source, link.issue if link else None)
            return page(
                "You are unsubscribed",
                f"<p><strong>{html.escape(address)}</strong> will not receive"
                f" {html.escape(title)} again.</p>"
                "<p>If this was a mistake, reply to any issue and ask to be added back.</p>",
            )
        if address is None:
            return plain(BAD_TOKEN, status=400)
        return page(
            f"Unsubscribe from {title}?",
            f"<p>Stop sending {html.escape(title)} to"
            f" <strong>{html.escape(address)}</strong>?</p>"
            '<form method="post"><input type="hidden" name="confirm" value="yes">'
            '<button type="submit">Unsubscribe</button></form>'
            "<p>Nothing changes until you press the button.</p>",
        )

    async def healthz(request: Request) -> Response:
        return plain("ok\n", status=200)

    async def readyz(request: Request) -> Response:
        problem = await run_in_threadpool(site.unready)
        return plain(
            f"not ready: {problem}\n" if problem else "ready\n",
            status=503 if problem else 200,
        )

    routes = [
        Route("/unsubscribe", unsubscribe, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    routes += archive_routes(lambda: site.config, site.clock)
    routes += approval_routes(site, site.secret, site.clock)
    if site.config.signup.enabled:
        from digest.mail.message import load_dkim
        from digest.web.signup import SignupDesk, signup_routes

        desk = SignupDesk(site.config, site.secret, load_dkim(site.config), site.clock)
        routes += signup_routes(desk)
        site.background.append(desk.keep_draining)
    routes += webhook_routes(WebhookDesk(site.config, site.secret, site.clock))
    routes += click_routes(ClickDesk(site.config, site.secret, site.clock))
    app = Starlette(routes=routes, exception_handlers={StateError: state_unavailable})
    return BodyLimit(app, larger=(("/webhooks/", WEBHOOK_BODY_BYTES),))


async def state_unavailable(request: Request, error: Exception) -> Response:
    """503 with Retry-After when the state file cannot be used now: locked past the store's
    busy timeout by a long send, say. One line in the log, no traceback; the public actions
    (unsubscribe, sign-up, confirm, webhooks) are safe for the client to repeat."""
    logger.warning("could not answer a request to %s: %s", request.url.path, error)
    return busy()
