"""`digest serve`: RFC 8058 one-click unsubscribe, a health check and the editor's live preview."""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from digest import pipeline
from digest.archive_web import archive_routes
from digest.collect import collect
from digest.config import FeedConfig, FetchConfig, load_config
from digest.errors import DigestError
from digest.models import FeedResult
from digest.store import State
from digest.tokens import verify_token

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024
FEED_CACHE_SECONDS = 60.0
POLL_MILLISECONDS = 1000
MAX_WATCHED_TEMPLATES = 500
ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
RELOAD_SCRIPT_ID = "digest-preview-reload"

_COMMON_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


class BodyTooLarge(Exception):
    """A request body went over MAX_BODY_BYTES."""


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
    headers = {**_COMMON_HEADERS, "Content-Security-Policy": _PAGE_POLICY}
    return HTMLResponse(document, status_code=status, headers=headers)


def plain(text: str, *, status: int) -> PlainTextResponse:
    """A plain-text answer with the common safety headers."""
    return PlainTextResponse(text, status_code=status, headers=dict(_COMMON_HEADERS))


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

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        try:
            too_big = int(declared) > self.limit
        except ValueError:
            too_big = True
        if too_big:
            await plain("Request body too large.\n", status=413)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refusing more than `limit` bytes even when sent chunked."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return body


@dataclass(frozen=True)
class _Cached:
    result: FeedResult
    stored_at: float


class FeedCache:
    """Collected feeds kept for a minute, so preview reloads re-render without re-fetching."""

    def __init__(
        self,
        collect: Callable[..., Sequence[FeedResult]],
        ttl: float = FEED_CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collect = collect
        self.ttl = ttl
        self._monotonic = monotonic
        self._entries: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(feed: FeedConfig, fetch: FetchConfig, base_dir: Path) -> str:
        local = ""
        if not feed.is_remote:
            path = (base_dir / feed.url).expanduser()
            local = _stat_token(path)
        return "\n".join((feed.model_dump_json(), fetch.model_dump_json(), str(base_dir), local))

    def collect(
        self,
        feeds: Sequence[FeedConfig],
        fetch: FetchConfig,
        base_dir: Path,
        known: Mapping[str, Any],
        now: datetime,
    ) -> list[FeedResult]:
        """Like collect(), but fetches only the feeds not collected within the last minute."""
        with self._lock:
            clock = self._monotonic()
            keys = [self._key(feed, fetch, base_dir) for feed in feeds]
            missing = [
                (feed, key)
                for feed, key in zip(feeds, keys, strict=True)
                if key not in self._entries or clock - self._entries[key].stored_at >= self.ttl
            ]
            if missing:
                wanted = [feed for feed, _ in missing]
                fresh = self._collect(wanted, fetch, base_dir, known, now)
                for (_, key), result in zip(missing, fresh, strict=True):
                    self._entries[key] = _Cached(result, clock)
            return [self._entries[key].result for key in keys]


def _stat_token(path: Path) -> str:
    try:
        info = path.stat()
    except OSError:
        return f"{path}:missing"
    return f"{path}:{info.st_mtime_ns}:{info.st_size}"


def reload_script(version: str, nonce: str) -> str:
    """The preview-only script that polls /preview/version and reloads when the files change."""
    quoted = json.dumps(version).replace("</", "<\\/")
    return (
        f'<script id="{RELOAD_SCRIPT_ID}" nonce="{nonce}">(function(){{'
        f"var shown={quoted};"
        "function poll(){fetch('preview/version',{cache:'no-store'})"
        ".then(function(r){return r.text();})"
        ".then(function(now){if(now!==shown){location.reload();}"
        f"else{{setTimeout(poll,{POLL_MILLISECONDS});}}}})"
        f".catch(function(){{setTimeout(poll,{2 * POLL_MILLISECONDS});}});}}"
        f"setTimeout(poll,{POLL_MILLISECONDS});}})();</script>"
    )


def inject_reload(document: str, version: str, nonce: str) -> str:
    """The document with the reload script just before </body> (or at the end)."""
    script = reload_script(version, nonce)
    index = document.lower().rfind("</body>")
    if index == -1:
        return document + script
    return document[:index] + script + document[index:]


NOTHING_NEW = (
    "Nothing new: `digest send` would send nothing now. Sample posts are shown so you can see"
    " the design."
)


def inject_notice(document: str, notice: str) -> str:
    """The document with a preview-only banner at the top of the body."""
    banner = (
        '<div id="preview-notice" style="padding:10px 16px;background:#fff3cd;color:#3d2e00;'
        f'font:14px/1.4 sans-serif;text-align:center">{html.escape(notice)}</div>'
    )
    match = re.search(r"<body\b[^>]*>", document, re.IGNORECASE)
    if match is None:
        return banner + document
    return document[: match.end()] + banner + document[match.end() :]


def strip_reload(document: str) -> str:
    """The document without the injected reload script: what a subscriber's mail carries."""
    start = document.find(f'<script id="{RELOAD_SCRIPT_ID}"')
    if start == -1:
        return document
    end = document.index("</script>", start) + len("</script>")
    return document[:start] + document[end:]


def _preview_policy(nonce: str) -> str:
    return (
        "default-src 'none'; img-src * data:; style-src 'unsafe-inline' *; font-src *; "
        f"script-src 'nonce-{nonce}'; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )


class Workbench:
    """What `digest serve` works from: the config file, its state, and the preview's caches."""

    def __init__(
        self,
        config_path: Path,
        clock: Callable[[], datetime],
        *,
        preview: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.clock = clock
        self.preview_enabled = preview
        self._monotonic = monotonic
        self._cache: FeedCache | None = None
        self._watch_key = ""
        self._watched: tuple[Path, ...] = ()
        self._templates_dir = self.config.templates_dir
        with State(self.config.state_path) as state:
            self.secret = state.signing_secret(self.config.secret)

    # -- unsubscribe -----------------------------------------------------------

    def address_for(self, token: str) -> str | None:
        """The address a token names, if it was signed with this newsletter's secret."""
        return verify_token(self.secret, token)

    def suppress(self, address: str, source: str) -> bool:
        """Record the address as unsubscribed; False if it already was."""
        with State(self.config.state_path) as state:
            added = state.suppress(address, self.clock(), source)
        logger.info("unsubscribed %s (%s)", address, source)
        return added

    # -- preview ---------------------------------------------------------------

    def watched_files(self) -> tuple[Path, ...]:
        """config.yaml, the subscribers file, local feed files and the editor's templates."""
        key = _stat_token(self.config_path)
        if key != self._watch_key:
            paths = [self.config_path]
            try:
                config = load_config(self.config_path)
            except DigestError:
                config = self.config
            paths.append(config.subscribers_path)
            paths.extend(config.resolve(f.url) for f in config.feeds if not f.is_remote)
            self._watched, self._watch_key = tuple(paths), key
            self._templates_dir = config.templates_dir
        templates = self._templates_dir
        found = sorted(templates.rglob("*"))[:MAX_WATCHED_TEMPLATES] if templates.is_dir() else []
        return (*self._watched, templates, *found)

    def version(self) -> str:
        """A fingerprint of the watched files' names, sizes and modification times."""
        tokens = "\n".join(_stat_token(path) for path in self.watched_files())
        return hashlib.sha256(tokens.encode("utf-8")).hexdigest()[:20]

    def render_preview(self) -> tuple[str, str, bool]:
        """(html, text, sample posts stand in) of the next issue; raises DigestError."""
        if self._cache is None:
            self._cache = FeedCache(collect, monotonic=self._monotonic)
        config = load_config(self.config_path)
        prepared, document, text = pipeline.preview(
            config, self.clock(), collector=self._cache.collect
        )
        return document, text, prepared.sample


def _client_error(message: str) -> Response:
    return plain(message, status=400)


BAD_TOKEN = (
    "This unsubscribe link is not valid: the token is missing, damaged or was not issued by"
    " this newsletter. Nothing was changed.\n\nCopy the whole link from the email, or reply to"
    " the email and ask to be removed.\n"
)


def create_app(workbench: Workbench) -> ASGIApp:
    """The ASGI app: /unsubscribe, /healthz and, unless disabled, /preview."""
    title = workbench.config.newsletter.title

    def token_of(request: Request) -> str | None:
        tokens = request.query_params.getlist("token")
        return tokens[0] if len(tokens) == 1 else None

    async def unsubscribe(request: Request) -> Response:
        token = token_of(request)
        address = workbench.address_for(token) if token else None
        if request.method == "POST":
            try:
                body = await read_body(request)
            except BodyTooLarge:
                return plain("Request body too large.\n", status=413)
            if address is None:
                return _client_error(BAD_TOKEN)
            one_click = is_one_click(request.headers.get("content-type", ""), body)
            source = "one-click" if one_click else "web"
            await run_in_threadpool(workbench.suppress, address, source)
            return page(
                "You are unsubscribed",
                f"<p><strong>{html.escape(address)}</strong> will not receive"
                f" {html.escape(title)} again.</p>"
                "<p>If this was a mistake, reply to any issue and ask to be added back.</p>",
            )
        if address is None:
            return _client_error(BAD_TOKEN)
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

    async def preview_html(request: Request) -> Response:
        version = await run_in_threadpool(workbench.version)
        nonce = secrets.token_urlsafe(16)
        headers = {**_COMMON_HEADERS, "Content-Security-Policy": _preview_policy(nonce)}
        try:
            document, _, sample = await run_in_threadpool(workbench.render_preview)
        except Exception as error:
            message = _describe(error)
            body = (
                '<!doctype html><html><head><meta charset="utf-8">'
                '<title>Preview: error</title></head><body style="font-family:sans-serif">'
                "<h1>The preview could not be built</h1>"
                f'<pre id="preview-error" style="white-space:pre-wrap">{html.escape(message)}'
                "</pre><p>Fix it and save: this page reloads by itself.</p></body></html>"
            )
            return HTMLResponse(
                inject_reload(body, version, nonce), status_code=422, headers=headers
            )
        if sample:
            document = inject_notice(document, NOTHING_NEW)
        return HTMLResponse(inject_reload(document, version, nonce), headers=headers)

    async def preview_text(request: Request) -> Response:
        try:
            _, text, sample = await run_in_threadpool(workbench.render_preview)
        except Exception as error:
            return plain(_describe(error) + "\n", status=422)
        return plain(f"[{NOTHING_NEW}]\n\n{text}" if sample else text, status=200)

    async def preview_version(request: Request) -> Response:
        return plain(await run_in_threadpool(workbench.version), status=200)

    routes = [
        Route("/unsubscribe", unsubscribe, methods=["GET", "POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        *archive_routes(lambda: workbench.config, workbench.clock),
    ]
    if workbench.preview_enabled:
        routes += [
            Route("/preview", preview_html, methods=["GET"]),
            Route("/preview.txt", preview_text, methods=["GET"]),
            Route("/preview/version", preview_version, methods=["GET"]),
        ]
    return BodyLimit(Starlette(routes=routes))


def _describe(error: BaseException) -> str:
    if isinstance(error, DigestError):
        return str(error)
    logger.exception("preview failed")
    return f"unexpected error while building the preview: {type(error).__name__}: {error}"


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or a DigestError saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise DigestError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.listen(128)
    return sock


def serve(app: ASGIApp, sock: socket.socket) -> None:
    """Run uvicorn on an already-bound socket until SIGINT or SIGTERM."""
    settings = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
        limit_concurrency=200,
    )
    uvicorn.Server(settings).run(sockets=[sock])
