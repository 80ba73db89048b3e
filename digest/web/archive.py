"""The archive on the web: /archive/, /issues/NUMBER-SLUG/, /feed.atom and its page for people,
/feed/, for a Starlette app.

The answers are byte for byte the files `digest archive --out` writes (both come from
digest.archive.pages); a withdrawn issue answers 410 Gone. Reads the state read-only, per request,
so an issue is online as soon as it is frozen. Nothing here renders new issues.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from digest import store
from digest.archive import pages as archive
from digest.config.schema import Config
from digest.store.archive import ArchivedIssue, ArchivedPost
from digest.web.common import not_found, public_look

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "public, max-age=300",
    "Content-Security-Policy": f"{archive.PAGE_POLICY}; frame-ancestors 'none'",
}
HTML = "text/html; charset=utf-8"
_KEY = re.compile(r"(\d{1,9})-([a-z0-9-]+)")


def _answer(body: bytes, media_type: str = HTML, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=media_type, headers=HEADERS)


def archive_routes(config: Callable[[], Config], clock: Callable[[], datetime]) -> list[Route]:
    """The archive's routes; they answer 404 while archive.enabled is false."""

    def _not_found() -> Response:
        return not_found(public_look(config()))

    def load(number: int | None = None) -> tuple[Config, list[ArchivedIssue], ArchivedIssue | None]:
        """The config, the published issues (no content) and issue `number` with its content."""
        current = config()
        with store.open(current, read_only=True) as state:
            issues = state.archive.issues()
            return current, issues, state.archive.issue(number) if number else None

    def load_feed() -> tuple[Config, list[ArchivedIssue], dict[int, list[ArchivedPost]]]:
        """The config, the published issues (no content) and their lead posts, for the feed."""
        current = config()
        with store.open(current, read_only=True) as state:
            issues = state.archive.issues()
            return current, issues, archive.lead_posts(state, issues)

    async def index(request: Request) -> Response:
        page = int(request.path_params.get("page", 1))
        if not config().archive.enabled or (page == 1 and "page" in request.path_params):
            return _not_found()
        current, issues, _ = await run_in_threadpool(load)
        document = archive.index_page(archive.site_for(current), issues, page)
        return _not_found() if document is None else _answer(document)

    async def issue(request: Request) -> Response:
        match = _KEY.fullmatch(request.path_params["key"])
        if not config().archive.enabled or match is None:
            return _not_found()
        current, issues, entry = await run_in_threadpool(load, int(match.group(1)))
        site = archive.site_for(current)
        if entry is None:
            return _not_found()
        if entry.withdrawn_at is not None:
            return _answer(archive.gone_page(site), status=410)
        if entry.key != request.path_params["key"]:
            return RedirectResponse(f"../{entry.key}/", status_code=308, headers=HEADERS)
        return _answer(archive.issue_page(site, issues, entry))

    async def atom(request: Request) -> Response:
        if not config().archive.enabled:
            return _not_found()
        current, issues, leads = await run_in_threadpool(load_feed)
        return _answer(
            archive.feed(archive.site_for(current), issues, clock(), leads),
            media_type="application/atom+xml; charset=utf-8",
        )

    async def feed_page(request: Request) -> Response:
        if not config().archive.enabled:
            return _not_found()
        return _answer(archive.feed_page(archive.site_for(config())))

    return [
        Route("/archive/", index, methods=["GET", "HEAD"]),
        Route("/feed/", feed_page, methods=["GET", "HEAD"]),
        Route("/archive/{page:int}/", index, methods=["GET", "HEAD"]),
        Route("/issues/{key}/", issue, methods=["GET", "HEAD"]),
        Route("/feed.atom", atom, methods=["GET", "HEAD"]),
    ]
