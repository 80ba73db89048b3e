"""The approvers' page on the public app: a signed link shows the draft's slot with Approve and
Hold buttons; only a POST with the link's token decides (GET changes nothing).

It lives on the public app because approvers open the link from their mail wherever they are,
as readers open unsubscribe links; the workbench may be on 127.0.0.1 or behind a password. The
token is purpose-bound and expires when the slot's grace runs out. Like the rest of the public
app it imports nothing of the preview machinery.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.slots import slot_key
from digest.store import State
from digest.tokens import APPROVAL_PURPOSE, check_purpose_token
from digest.web.common import BodyTooLarge, BodyTooSlow, page, read_body

BAD_LINK = (
    "This approval link is not valid or has expired (it works until the slot's grace runs out)."
    " Nothing was changed; use `digest approve` or `digest hold` instead."
)
ANSWERS = {"approve": "approved", "hold": "held"}


def slot_of_token(secret: str, token: str | None, now: datetime) -> str | None:
    """The slot key an approval link's token names, if it is ours and not expired."""
    if not token:
        return None
    checked = check_purpose_token(secret, APPROVAL_PURPOSE, token, now)
    if checked.address is None:
        return None
    try:
        return slot_key(datetime.fromisoformat(checked.address))
    except ValueError:
        return None


def approval_routes(state_path: Path, secret: str, clock: Callable[[], datetime]) -> list[Route]:
    """GET and POST /approval?token=…"""

    def current(key: str) -> tuple[str, bool]:
        with State(state_path, read_only=True) as state:
            found = state.editorial.approval(key)
            return (found.status if found else ""), state.slot_handled(key)

    def decide(key: str, status: str, ip: str) -> str:
        with State(state_path) as state:
            found = state.editorial.approval(key)
            if found is None:
                return "unknown"
            if state.slot_handled(key):
                return "done"
            state.editorial.decide(key, status, f"link ({ip})", clock())
            return status

    async def approval(request: Request) -> Response:
        tokens = request.query_params.getlist("token")
        key = slot_of_token(secret, tokens[0] if len(tokens) == 1 else None, clock())
        if key is None:
            return page("Approval", f"<p>{html.escape(BAD_LINK)}</p>", status=400)
        when = html.escape(key)
        if request.method == "POST":
            try:
                body = await read_body(request)
            except BodyTooLarge:
                return page("Approval", "<p>Request body too large.</p>", status=413)
            except BodyTooSlow:
                return page("Approval", "<p>Request body too slow.</p>", status=408)
            fields = parse_qs(body.decode("utf-8", errors="replace"))
            answer = ANSWERS.get((fields.get("answer") or [""])[0])
            if answer is None:
                return page("Approval", "<p>Choose Approve or Hold.</p>", status=400)
            ip = request.client.host if request.client else ""
            outcome = await run_in_threadpool(decide, key, answer, ip)
            if outcome == "unknown":
                return page("Approval", "<p>No draft is waiting for that slot.</p>", status=404)
            if outcome == "done":
                return page("Approval", f"<p>The issue due {when} is already sent or skipped.</p>")
            verdict = "goes out at its slot" if answer == "approved" else "will not be sent"
            return page(f"Issue {answer}", f"<p>The issue due {when} {verdict}.</p>")
        status, handled = await run_in_threadpool(current, key)
        shown = "already sent or skipped" if handled else (status or "not drafted yet")
        return page(
            "Approve this issue?",
            f"<p>The issue due <strong>{when}</strong>: {html.escape(shown)}.</p>"
            '<form method="post"><input type="hidden" name="answer" value="approve">'
            '<button type="submit">Approve</button></form>'
            '<form method="post" style="margin-top:1em">'
            '<input type="hidden" name="answer" value="hold">'
            '<button type="submit">Hold</button></form>'
            "<p>Nothing changes until you press a button.</p>",
        )

    return [Route("/approval", approval, methods=["GET", "POST"])]
