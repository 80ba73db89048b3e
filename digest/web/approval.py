"""The approvers' page on the public app: a signed link shows the draft's slot with Approve and
Hold buttons; only a POST with the link's token decides (GET changes nothing).

It lives on the public app because approvers open the link from their mail wherever they are,
as readers open unsubscribe links; the workbench may be on 127.0.0.1 or behind a password. The
token is purpose-bound, names the slot and the approver it was sent to, and expires when the
slot's grace runs out. Like the rest of the public app it imports nothing of the preview
machinery.

A link decides once. When a draft has been approved or held (by any approver's link, or on the
command line), the page says what was decided, by whom and when, and pressing either button
changes nothing: a second press, a press of the other button, or a colleague's press cannot
quietly undo a decision someone else relies on. `digest approve` and `digest hold` on the
command line still override it, and every decision stays on record. The page never shows the
address a link was pressed from; that stays in the state.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest import store
from digest.core.tokens import APPROVAL_PURPOSE, check_purpose_token
from digest.render.pagelook import PageLook
from digest.run.slots import slot_key
from digest.store.editor import Approval, Decision
from digest.web.common import BodyTooLarge, BodyTooSlow, page, read_body

BAD_LINK = (
    "This approval link is not valid or has expired (it works until the slot's grace runs out)."
    " Nothing was changed; use `digest approve` or `digest hold` instead."
)
ANSWERS = {"approve": "approved", "hold": "held"}
OLD_LINK = "approval link"  # who decided, for a link sent before links named their approver


@dataclass(frozen=True)
class Link:
    """What an approval link's token names: the slot, and the approver it was sent to."""

    slot_key: str
    approver: str  # "" for a link that names no approver


def link_of_token(secret: str, token: str | None, now: datetime) -> Link | None:
    """The slot and approver an approval link's token names, if it is ours and not expired."""
    if not token:
        return None
    checked = check_purpose_token(secret, APPROVAL_PURPOSE, token, now)
    if checked.address is None:
        return None
    named, _, approver = checked.address.partition(" ")
    try:
        return Link(slot_key(datetime.fromisoformat(named)), approver)
    except ValueError:
        return None


def slot_of_token(secret: str, token: str | None, now: datetime) -> str | None:
    """The slot key an approval link's token names, if it is ours and not expired."""
    link = link_of_token(secret, token, now)
    return link.slot_key if link else None


def who(by: str) -> str:
    """Who decided, as the page says it."""
    if by == "command line":
        return "on the command line"
    if by == OLD_LINK or by.startswith("link ("):  # older records kept the IP here
        return "with the approval link"
    return f"by {by}"


def _decision_text(status: str, by: str, at: datetime | None) -> str:
    when = f" on {at:%Y-%m-%d} at {at:%H:%M} UTC" if at else ""
    return f"{status} {who(by)}{when}"


@dataclass(frozen=True)
class Outcome:
    """What pressing a button came to."""

    # "decided"; "already" (decided before: nothing changed); "open" (shown, not pressed);
    # "unknown" (no draft for the slot); "done" (the slot is sent or skipped)
    result: str
    approval: Approval | None = None
    decisions: tuple[Decision, ...] = ()


def approval_routes(
    where: store.Location, secret: str, clock: Callable[[], datetime], look: PageLook
) -> list[Route]:
    """GET and POST /approval?token=…, in the frame of the public pages (`look`)."""

    def current(key: str) -> Outcome:
        with store.open(where, read_only=True) as state:
            found = state.editorial.approval(key)
            if found is None:
                return Outcome("unknown")
            if state.ledger.slot_handled(key):
                return Outcome("done", found)
            return Outcome("open", found, tuple(state.editorial.decisions(key)))

    def decide(link: Link, status: str, ip: str) -> Outcome:
        by = link.approver or OLD_LINK
        with store.open(where) as state, state.transaction():
            found = state.editorial.approval(link.slot_key)
            if found is None:
                return Outcome("unknown")
            if state.ledger.slot_handled(link.slot_key):
                return Outcome("done", found)
            decided = state.editorial.decide_once(link.slot_key, status, by, clock(), ip=ip)
            return Outcome(
                "decided" if decided else "already",
                state.editorial.approval(link.slot_key),
                tuple(state.editorial.decisions(link.slot_key)),
            )

    def decided_page(when: str, outcome: Outcome, *, pressed: bool) -> Response:
        found = outcome.approval
        assert found is not None
        verdict = "goes out at its slot" if found.status == "approved" else "will not be sent"
        said = _decision_text(found.status, found.decided_by, found.decided_at)
        earlier = ""
        if len(outcome.decisions) > 1:
            items = "".join(
                f"<li>{html.escape(_decision_text(d.status, d.by, d.at))}</li>"
                for d in outcome.decisions
            )
            earlier = f"<p>Every decision on this draft:</p><ul>{items}</ul>"
        unchanged = "Nothing was changed: this" if pressed else "This"
        return page(
            look,
            f"Issue already {found.status}" if pressed else f"Issue {found.status}",
            f"<p>The issue due <strong>{when}</strong> was {html.escape(said)}: it"
            f" {verdict}.</p>{earlier}"
            f"<p>{unchanged} link decides once. To change the decision, run"
            " <code>digest approve</code> or <code>digest hold</code> on the command line.</p>",
            status=409 if pressed else 200,
        )

    async def approval(request: Request) -> Response:
        tokens = request.query_params.getlist("token")
        link = link_of_token(secret, tokens[0] if len(tokens) == 1 else None, clock())
        if link is None:
            return page(look, "Approval", f"<p>{html.escape(BAD_LINK)}</p>", status=400)
        when = html.escape(link.slot_key)
        if request.method == "POST":
            try:
                body = await read_body(request)
            except BodyTooLarge:
                return page(look, "Approval", "<p>Request body too large.</p>", status=413)
            except BodyTooSlow:
                return page(look, "Approval", "<p>Request body too slow.</p>", status=408)
            fields = parse_qs(body.decode("utf-8", errors="replace"))
            answer = ANSWERS.get((fields.get("answer") or [""])[0])
            if answer is None:
                return page(look, "Approval", "<p>Choose Approve or Hold.</p>", status=400)
            ip = request.client.host if request.client else ""
            outcome = await run_in_threadpool(decide, link, answer, ip)
            if outcome.result == "unknown":
                return page(
                    look, "Approval", "<p>No draft is waiting for that slot.</p>", status=404
                )
            if outcome.result == "done":
                return page(
                    look, "Approval", f"<p>The issue due {when} is already sent or skipped.</p>"
                )
            if outcome.result == "already":
                return decided_page(when, outcome, pressed=True)
            verdict = "goes out at its slot" if answer == "approved" else "will not be sent"
            return page(look, f"Issue {answer}", f"<p>The issue due {when} {verdict}.</p>")
        outcome = await run_in_threadpool(current, link.slot_key)
        if outcome.result == "done":
            shown = "already sent or skipped"
        elif outcome.approval is not None and outcome.approval.status != "requested":
            return decided_page(when, outcome, pressed=False)
        else:
            shown = "requested" if outcome.approval else "not drafted yet"
        return page(
            look,
            "Approve this issue?",
            f"<p>The issue due <strong>{when}</strong>: {html.escape(shown)}.</p>"
            '<form method="post"><input type="hidden" name="answer" value="approve">'
            '<button type="submit">Approve</button></form>'
            '<form method="post">'
            '<input type="hidden" name="answer" value="hold">'
            '<button type="submit">Hold</button></form>'
            "<p>Nothing changes until you press a button.</p>",
        )

    return [Route("/approval", approval, methods=["GET", "POST"])]
