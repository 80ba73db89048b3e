"""The public sign-up pages: /subscribe, /confirm and /preferences (see digest.readers.signup).

GET only ever shows a page; only POST changes anything (mail scanners follow links).

A sign-up is answered before anything about its address is looked up: the request handler
checks the text (digest.readers.signup.submit) and answers, and one background worker in this
process carries the sign-up out (digest.readers.signup.act: rate limits, the state, queueing the
confirmation email in the outbox) and then sends that email (digest.readers.outbox), so the
answer takes the same time whether the address is new, pending, subscribed, unsubscribed or
over a rate limit. The worker takes sign-ups in turn; at most `MAX_WAITING` wait for it, and
past that a sign-up is dropped (logged) with the same answer, so a flood cannot grow memory.
Work still waiting when the server stops is finished before the process exits.

Confirmation and welcome emails go through the outbox (digest.store.outbox), shared by every
process using the state: a welcome is queued with the confirmation that earns it and sent on
a background thread, and `keep_draining`, on a thread `digest serve` runs beside its servers,
looks at the outbox every few seconds, so an email another replica left behind (it stopped,
or died mid-send) or one waiting for a retry goes out from whichever replica is running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest import store
from digest.config.schema import Config
from digest.core import counters
from digest.core.addresses import canonical_or_none
from digest.mail.message import DkimKey
from digest.readers import outbox, signup
from digest.readers.audience import section_titles
from digest.readers.subscribers import load_subscribers
from digest.render.pagelook import Link, how_often
from digest.store import ReaderEvent, State, SuppressionKind
from digest.web.common import (
    SubscribeAgain,
    body_or_refusal,
    page_headers,
    public_look,
    render,
    subscribe_again,
)

logger = logging.getLogger(__name__)

MAX_WAITING = 1000  # sign-ups waiting for the background at most
MAX_DRAINS_WAITING = 2  # one running, one to follow
DRAIN_EVERY = 10.0  # seconds between two looks at the outbox (at most half the lease)


class SignupDesk:
    """What the sign-up pages work from: config, state, secret, DKIM key, the sign-up worker
    and the outbox's drainer."""

    def __init__(
        self,
        config: Config,
        secret: str,
        dkim_key: DkimKey | None,
        clock: Callable[[], datetime],
        send: outbox.Sender | None = None,
    ) -> None:
        self.config = config
        self.secret = secret
        self.dkim_key = dkim_key
        self.clock = clock
        self.send = send if send is not None else outbox.send_by_smtp(config)
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="digest-signup")
        self.mail = ThreadPoolExecutor(1, thread_name_prefix="digest-outbox")
        self.waiting = threading.BoundedSemaphore(MAX_WAITING)
        self.drains_waiting = threading.BoundedSemaphore(MAX_DRAINS_WAITING)
        # One drain at a time in this process, sign-ups included: they are carried out in turn.
        self.draining = threading.Lock()
        self.look = public_look(config)

    def state(self) -> State:
        """The state, opened for one request."""
        return store.open(self.config)

    def act_later(self, request: signup.SignupRequest) -> None:
        """Hand a sign-up to the background worker (it returns at once, whatever the address)."""
        if not self.waiting.acquire(blocking=False):
            logger.warning("too many sign-ups waiting: one was dropped")
            return
        self.worker.submit(self._act, request)

    def _act(self, request: signup.SignupRequest) -> None:
        try:
            with self.draining:
                with self.state() as state:
                    _, entry = signup.act(
                        self.config, state, self.secret, request, dkim_key=self.dkim_key
                    )
                if entry is not None:
                    # Sent at once by this process, unless another replica was quicker.
                    outbox.drain_quietly(self.config, self.state, self.send, self.clock, only=entry)
        except Exception:  # a sign-up that cannot be carried out must not stop the worker
            logger.exception("a sign-up could not be carried out")
        finally:
            self.waiting.release()

    def drain_later(self) -> None:
        """Drain the outbox on the background (a welcome was queued); returns at once. One
        drain waiting is enough: it sends whatever is due when it runs."""
        if not self.drains_waiting.acquire(blocking=False):
            return
        self.mail.submit(self._drain)

    def _drain(self) -> None:
        try:
            self.drain_now()
        finally:
            self.drains_waiting.release()

    def drain_now(self) -> outbox.Drained:
        """Send what is due in the outbox, on this thread; failures are logged."""
        with self.draining:
            return outbox.drain_quietly(self.config, self.state, self.send, self.clock)

    def keep_draining(self, stop: threading.Event) -> None:
        """Drain the outbox now and then every few seconds until `stop` is set: what another
        process left (it stopped, or died mid-send and its lease ran out) and what waits for
        a retry is sent by this one. Runs on a thread of `digest serve`'s own."""
        every = min(DRAIN_EVERY, self.config.signup.send_lease / 2)
        while True:
            self.drain_now()
            if stop.wait(every):
                return

    def page(self, template: str, heading: str, *, status: int = 200, **context: Any) -> Response:
        """One of the sign-up pages, in the frame every public page shares."""
        document = render(self.look, template, heading, **context)
        return HTMLResponse(document, status_code=status, headers=page_headers())


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


async def _form_fields(request: Request) -> dict[str, list[str]] | Response:
    body = await body_or_refusal(request)
    if isinstance(body, Response):
        return body
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)


RECENT_ISSUES = 3  # how many of the latest issues the sign-up page lists


@dataclass(frozen=True)
class ArchiveLinks:
    """Where the public pages point readers at issues: the newest ones and the index."""

    recent: tuple[dict[str, str], ...]  # href, subject and date of the newest few
    latest: str  # the newest issue's page, else the index; "" with the archive off
    index: str


def archive_links(config: Config) -> ArchiveLinks:
    """The newest issues and the archive's index, while the archive is on (read-only)."""
    if not (config.archive.enabled and config.newsletter.archive_url):
        return ArchiveLinks((), "", "")
    from digest.archive.pages import site_for

    site = site_for(config)
    with store.open(config, read_only=True) as state:
        issues = state.archive.issues()[:RECENT_ISSUES]
    index = f"{site.base_url}/archive/"
    recent = tuple(
        {
            "href": site.issue_url(entry),
            "subject": entry.issue.subject,
            "date": site.date(entry.issue.created_at),
        }
        for entry in issues
    )
    return ArchiveLinks(recent, recent[0]["href"] if recent else index, index)


def signup_routes(desk: SignupDesk) -> list[Route]:
    """The routes of the sign-up pages, for the public app."""
    config = desk.config
    sections = section_titles(config) if config.newsletter.choosable_sections else []
    often = how_often(config)
    check_inbox = [
        "Thank you. If that address can be subscribed, an email is on its way to it with a link"
        " to confirm.",
        "Nothing is sent to you until you confirm. No email? Check the spam folder, or try"
        " again in a few minutes.",
    ]

    def subscribe_page(
        form: signup.SignupForm,
        error: str = "",
        status: int = 200,
        asked: bool = False,
        field: str = "",
    ) -> Response:
        links = archive_links(config)
        page = desk.page(
            "subscribe.html",
            f"Subscribe to {config.newsletter.title}",
            status=status,
            form=form,
            error=error,
            field=field,
            sections=sections,
            consent_text=config.signup.consent_text,
            how_often=often,
            recent=links.recent,
            archive=links.index,
            action="subscribe",
            asked=asked,
        )
        # The form's own page alone sends its address with the form (to this site only): the
        # page a sign-up came from goes on its consent record. Every other page sends none.
        page.headers["Referrer-Policy"] = "same-origin"
        return page

    async def subscribe(request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(subscribe_page, signup.SignupForm())
        fields = await _form_fields(request)
        if isinstance(fields, Response):
            return fields
        form = signup.parse_form(config, fields)
        # The text alone decides the answer; the address's standing is looked at later, in
        # the background (see the module docstring).
        outcome = signup.submit(
            config,
            form,
            ip=_client_ip(request),
            page=request.headers.get("referer", ""),
            now=desk.clock(),
        )
        if outcome.error:
            return await run_in_threadpool(
                subscribe_page, outcome.form, outcome.error, 400, outcome.asked, outcome.field
            )
        answer = desk.page("notice.html", "Check your inbox", paragraphs=check_inbox, button="")
        if outcome.request is not None:
            # Handed over only once the answer is sent, so no work on this address (which
            # holds the interpreter on another thread) can delay the answer.
            answer.background = BackgroundTask(desk.act_later, outcome.request)
        return answer

    def bad_link(check: signup.LinkCheck, what: str) -> Response:
        if check.problem == "expired":
            text = [f"This {what} link has expired. Nothing was changed."]
            if what == "confirmation":
                text.append("Sign up again to get a fresh link.")
            else:
                text.append("Use the link in a more recent issue.")
        else:
            text = [
                f"This {what} link is not valid: it is incomplete, damaged or was not issued by"
                " this newsletter. Nothing was changed.",
                "Copy the whole link from the email.",
            ]
        return desk.page(
            "notice.html",
            "This link cannot be used",
            status=400,
            paragraphs=text,
            button="",
            links=[Link("subscribe", "Sign up again")] if what == "confirmation" else [],
        )

    def token_of(request: Request) -> str | None:
        tokens = request.query_params.getlist("token")
        return tokens[0] if len(tokens) == 1 else None

    async def confirm(request: Request) -> Response:
        token = token_of(request)
        check = signup.check_link(desk.secret, "confirm", token, desk.clock())
        if request.method == "POST":
            fields = await _form_fields(request)
            if isinstance(fields, Response):
                return fields
        if check.address is None or token is None:
            return bad_link(check, "confirmation")
        action = f"confirm?token={quote(token, safe='')}"
        if request.method == "GET":
            return desk.page(
                "notice.html",
                f"Confirm your subscription to {config.newsletter.title}",
                paragraphs=[f"Send {config.newsletter.title} to {check.address}?"],
                button="Confirm",
                action=action,
            )
        address = canonical_or_none(check.address) or check.address  # an older link's form

        def handle() -> tuple[str, int | None, ArchiveLinks]:
            with desk.state() as state:
                outcome, welcome = signup.confirm(
                    config,
                    state,
                    desk.secret,
                    address,
                    ip=_client_ip(request),
                    now=desk.clock(),
                    dkim_key=desk.dkim_key,
                )
            return outcome, welcome, archive_links(config)

        outcome, welcome, links = await run_in_threadpool(handle)
        if outcome == "unknown":
            return bad_link(signup.LinkCheck(None, "invalid"), "confirmation")
        if welcome is not None:
            desk.drain_later()
        return desk.page(
            "notice.html",
            "You are subscribed",
            paragraphs=[f"{address} will get the next issue of {config.newsletter.title}."],
            button="",
            links=[Link(links.latest, "Read the latest issue")] if links.latest else [],
        )

    async def preferences(request: Request) -> Response:
        token = token_of(request)
        check = signup.check_link(desk.secret, "preferences", token, desk.clock())
        fields: dict[str, list[str]] = {}
        if request.method == "POST":
            read = await _form_fields(request)
            if isinstance(read, Response):
                return read
            fields = read
        if check.address is None or token is None:
            return bad_link(check, "preferences")
        # An older link may name the address as then written (a Unicode domain, say).
        address = canonical_or_none(check.address) or check.address.lower()
        action = f"preferences?token={quote(token, safe='')}"
        choice = (fields.get("action") or [""])[0]

        def no_longer_valid() -> Response:
            return desk.page(
                "notice.html",
                "This link is no longer valid",
                status=410,
                paragraphs=[
                    "This preferences link is for an address that is no longer subscribed to"
                    f" {config.newsletter.title}. Nothing was changed.",
                    "To receive it again, sign up.",
                ],
                button="",
                links=[Link("subscribe", "Sign up again")],
            )

        def again() -> SubscribeAgain:
            return subscribe_again(config, desk.secret, address, "preferences", desk.clock())

        def handle() -> Response:
            listed = {
                s.email: s for s in load_subscribers(config.subscribers_path).subscribers
            }.get(address)
            # A change is decided and made in one transaction, so an erasure cannot fall between.
            with desk.state() as state, state.transaction() if choice else nullcontext():
                prefs = signup.preferences(config, state, desk.secret, address, listed)
                if prefs is None:
                    return no_longer_valid()
                error, saved = "", False
                if choice == "unsubscribe":
                    now = desk.clock()
                    if state.suppressions.suppress(
                        address, now, "preferences page", kind=SuppressionKind.UNSUBSCRIBE
                    ):
                        counters.count(counters.UNSUBSCRIBES, source="preferences")
                        state.reports.record(ReaderEvent.UNSUBSCRIBE, check.issue, now)
                    return desk.page(
                        "notice.html",
                        "You are unsubscribed",
                        paragraphs=[f"{address} will not receive {config.newsletter.title} again."],
                        button="",
                        again=again(),
                    )
                if choice == "save" and not prefs.unsubscribed:
                    form = signup.parse_form(config, fields)
                    error = signup.save_preferences(
                        config,
                        state,
                        address,
                        form,
                        listed=listed is not None,
                        ip=_client_ip(request),
                        now=desk.clock(),
                    )
                    saved = not error
                    before, prefs = (
                        prefs,
                        signup.preferences(config, state, desk.secret, address, listed),
                    )
                    if prefs is None:
                        return no_longer_valid()
                    if saved and prefs != before:
                        state.reports.record(ReaderEvent.PREFERENCES, check.issue, desk.clock())
                return desk.page(
                    "preferences.html",
                    f"Your {config.newsletter.title} preferences",
                    status=400 if error else 200,
                    prefs=prefs,
                    sections=sections,
                    error=error,
                    saved=saved,
                    action=action,
                    again=again() if prefs.unsubscribed else None,
                )

        return await run_in_threadpool(handle)

    return [
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/confirm", confirm, methods=["GET", "POST"]),
        Route("/preferences", preferences, methods=["GET", "POST"]),
    ]
