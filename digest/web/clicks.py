"""The click redirect on the public app: /r/ISSUE/LINK/SIGNATURE leads to the post digest sent
and counts the request, a person's or a link scanner's (digest.core.clicks, digest.store.clicks).

A path this newsletter did not sign gets 400 and a page saying so, and redirects nowhere: it is
refused before the state is read, so nobody can use the redirect to send a reader elsewhere
(no open redirect). A signed path leads only to the URL kept for it when the issue was frozen.
The path names an issue and a link, never a reader, so the answer is the same for everyone
and says nothing about who is subscribed. It is the one public GET that writes, and all it
writes is one more in an aggregate count: no subscription changes, and nothing about anyone
is kept, so a scanner following it harms nothing (it is only counted apart). It is always
served, whatever `tracking.clicks` says now, so the links of issues sent while it was on keep
working.

A count that cannot be written (the state locked past its busy timeout) is logged and lost: the
reader still gets to the post.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest import store
from digest.config.schema import Config
from digest.core.clicks import read_redirect_path, scanner_reason
from digest.core.errors import StateError
from digest.web.common import COMMON_HEADERS, notice, public_look

logger = logging.getLogger(__name__)

BAD_LINK = (
    "This link is not valid: it is damaged, or was not made by this newsletter, so it leads"
    " nowhere. Copy the whole link from the email, or open the post from the email again."
)
GONE_LINK = "This link no longer leads anywhere: the newsletter does not know it any more."


class ClickDesk:
    """What the redirect works from: the state, the signing secret and the clock."""

    def __init__(self, config: Config, secret: str, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.secret = secret
        self.clock = clock
        self.window = timedelta(seconds=config.tracking.scanner_seconds)

    @property
    def state_path(self) -> store.StateLocation:
        """Where the state is (for store.open)."""
        return self.config.state_path

    def follow(self, issue_id: int, link_id: int, reason: str) -> str | None:
        """Where a signed link leads (None: digest sent no such link), its request counted: as
        a scanner's when `reason` says why it looks like one, else as the timing says."""
        with store.open(self) as state:
            url = state.clicks.target(issue_id, link_id)
            if url is None:
                return None
            try:
                kind = state.clicks.count(
                    issue_id, link_id, self.clock(), scanner=bool(reason), window=self.window
                )
            except StateError as error:
                logger.warning("issue %d link %d: click not counted: %s", issue_id, link_id, error)
                return url
        logger.debug(
            "issue %d link %d followed by a %s%s",
            issue_id,
            link_id,
            kind,
            f" ({reason})" if reason else "",
            extra={"issue": issue_id, "event": "link followed"},
        )
        return url


def click_routes(desk: ClickDesk) -> list[Route]:
    """GET and HEAD /r/ISSUE/LINK/SIGNATURE: 302 to the post, 400 for anything unsigned."""
    look = public_look(desk.config)

    async def redirect(request: Request) -> Response:
        found = read_redirect_path(desk.secret, str(request.scope.get("path", "")))
        if found is None:
            return notice(look, "Link not valid", [BAD_LINK], status=400)
        reason = scanner_reason(request.method, request.headers.get("user-agent", ""))
        url = await run_in_threadpool(desk.follow, *found, reason)
        if url is None:
            return notice(look, "Link not found", [GONE_LINK], status=404)
        return RedirectResponse(url, status_code=302, headers=dict(COMMON_HEADERS))

    return [Route("/r/{rest:path}", redirect, methods=["GET", "HEAD"])]
