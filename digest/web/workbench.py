"""The editor's workbench: the live preview (/preview, /preview.txt, /preview/version), the
controls that leave a post out of the next issue or pin it (POST /posts/ID/ACTION), and the
Reports page (/reports: per-issue figures, health warnings and charts, see digest.reports).

It collects feeds and renders, so it runs as its own app on its own server (see launch.py),
with its own small worker pool and a bounded feed cache; an optional password
(DIGEST_WORKBENCH_PASSWORD) puts HTTP Basic auth in front of it, with a limit on wrong guesses.

It answers only the Host names it expects (localhost, loopback addresses, the address a client
connected to, and workbench.hosts): a page elsewhere that points its own name at 127.0.0.1
(DNS rebinding) gets 421 and reads nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import math
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.config.schema import FeedConfig, FetchConfig, load_config
from digest.core.errors import DigestError
from digest.core.models import Choice, FeedResult
from digest.feeds.collect import collect
from digest.issue import choices as editor
from digest.issue.group import Candidate
from digest.render.htmltext import after_body_tag
from digest.reports.figures import IssueReport
from digest.run import preview
from digest.web.common import COMMON_HEADERS, PAGE_POLICY, BodyLimit, body_or_refusal, plain

logger = logging.getLogger(__name__)

PASSWORD_VARIABLE = "DIGEST_WORKBENCH_PASSWORD"
FEED_CACHE_SECONDS = 60.0
FEED_CACHE_ENTRIES = 256
FEED_CACHE_BYTES = 16 * 1024 * 1024
PREVIEW_WORKERS = 4
POLL_MILLISECONDS = 1000
MAX_WATCHED_TEMPLATES = 500
# Wrong passwords one client may give in a window before it is refused (429) for the rest of it.
MAX_WRONG_PASSWORDS = 10
WRONG_PASSWORD_WINDOW = 15 * 60.0
MAX_CLIENTS_REMEMBERED = 4096
MAX_HOSTS_REPORTED = 32
RELOAD_SCRIPT_ID = "digest-preview-reload"
NOTHING_NEW = (
    "Nothing new: `digest send` would send nothing now. Sample posts are shown so you can see"
    " the design."
)

T = TypeVar("T")


@dataclass(frozen=True)
class _Cached:
    result: FeedResult
    stored_at: float
    size: int


def result_size(result: FeedResult) -> int:
    """Roughly how many bytes a collected feed holds: its text, plus a little per post."""
    size = 256 + sum(len(text) for text in (result.feed_url, result.error, result.warning))
    for post in result.posts:
        size += 256 + sum(
            len(text)
            for text in (
                post.key,
                post.link_key,
                post.title,
                post.link,
                post.author,
                post.summary_html,
                post.excerpt,
                post.excerpt_text,
                post.image_url,
                *post.categories,
            )
        )
    return size


class FeedCache:
    """Feeds kept a minute so reloads re-render without re-fetching; bounded, oldest out first."""

    def __init__(
        self,
        collect: Callable[..., Sequence[FeedResult]],
        ttl: float = FEED_CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        max_entries: int = FEED_CACHE_ENTRIES,
        max_bytes: int = FEED_CACHE_BYTES,
    ) -> None:
        self._collect = collect
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._monotonic = monotonic
        self._entries: OrderedDict[str, _Cached] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """The estimated bytes held (see result_size)."""
        return self._bytes

    @staticmethod
    def _key(feed: FeedConfig, fetch: FetchConfig, base_dir: Path) -> str:
        local = ""
        if not feed.is_remote:
            path = (base_dir / feed.url).expanduser()
            local = _stat_token(path)
        return "\n".join((repr(feed), repr(fetch), str(base_dir), local))

    def _drop(self, key: str) -> None:
        self._bytes -= self._entries.pop(key).size

    def _store(self, key: str, result: FeedResult, clock: float) -> None:
        if key in self._entries:
            self._drop(key)
        entry = _Cached(result, clock, result_size(result))
        self._entries[key] = entry
        self._bytes += entry.size
        while self._entries and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            self._drop(next(iter(self._entries)))

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
            for key in [k for k, e in self._entries.items() if clock - e.stored_at >= self.ttl]:
                self._drop(key)
            keys = [self._key(feed, fetch, base_dir) for feed in feeds]
            found = {key: self._entries[key].result for key in keys if key in self._entries}
            missing = [
                (feed, key) for feed, key in zip(feeds, keys, strict=True) if key not in found
            ]
            if missing:
                fresh = self._collect([feed for feed, _ in missing], fetch, base_dir, known, now)
                for (_, key), result in zip(missing, fresh, strict=True):
                    found[key] = result
                    self._store(key, result, clock)
            return [found[key] for key in keys]


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


def inject_notice(document: str, notice: str) -> str:
    """The document with a preview-only banner at the top of the body."""
    banner = (
        '<div id="preview-notice" style="padding:10px 16px;background:#fff3cd;color:#3d2e00;'
        f'font:14px/1.4 sans-serif;text-align:center">{html.escape(notice)}</div>'
    )
    return after_body_tag(document, banner)


def strip_reload(document: str) -> str:
    """The document without the injected reload script and post controls: what a subscriber's
    mail carries."""
    start = document.find(f'<div id="{CONTROLS_ID}"')
    if start != -1:
        end = document.index(CONTROLS_END, start) + len(CONTROLS_END)
        document = document[:start] + document[end:]
    start = document.find(f'<script id="{RELOAD_SCRIPT_ID}"')
    if start == -1:
        return document
    end = document.index("</script>", start) + len("</script>")
    return document[:start] + document[end:]


def _preview_policy(nonce: str) -> str:
    return (
        "default-src 'none'; img-src * data:; style-src 'unsafe-inline' *; font-src *; "
        f"script-src 'nonce-{nonce}'; connect-src 'self'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


# What each button does: (choice, undo), and the buttons a post shows in each status.
ACTIONS: dict[str, tuple[Choice, bool]] = {
    "leave-out": (Choice.LEAVE_OUT, False),
    "put-back": (Choice.LEAVE_OUT, True),
    "pin": (Choice.PIN, False),
    "unpin": (Choice.PIN, True),
}
_LABELS = {"leave-out": "Leave out", "put-back": "Put back", "pin": "Pin", "unpin": "Unpin"}
_BUTTONS = {
    "in": ("leave-out", "pin"),
    "not in": ("leave-out", "pin"),
    "pinned": ("leave-out", "unpin"),
    "left out": ("put-back",),
}
CONTROLS_ID = "editor-controls"
CONTROLS_END = f"<!--/{CONTROLS_ID}-->"


def controls_panel(found: Sequence[Candidate], form_token: str) -> str:
    """The preview-only panel: each candidate post with its status and its buttons (POST)."""
    rows = []
    for candidate in found:
        forms = "".join(
            f'<form method="post" action="posts/{candidate.short_id}/{action}"'
            ' style="display:inline;margin:0 0 0 6px">'
            f'<input type="hidden" name="token" value="{html.escape(form_token)}">'
            f'<button type="submit" data-action="{action}">{_LABELS[action]}</button></form>'
            for action in _BUTTONS[candidate.status]
        )
        rows.append(
            f'<tr data-post="{candidate.short_id}" data-status="{candidate.status}">'
            f'<td style="padding:2px 8px 2px 0"><code>{candidate.short_id}</code></td>'
            f'<td style="padding:2px 8px 2px 0">{html.escape(candidate.post.title)}</td>'
            f'<td style="padding:2px 8px 2px 0" class="status">{candidate.status}</td>'
            f'<td style="padding:2px 0;white-space:nowrap">{forms}</td></tr>'
        )
    body = "".join(rows) or '<tr><td colspan="4">No new posts.</td></tr>'
    return (
        f'<div id="{CONTROLS_ID}" style="padding:10px 16px;background:#eef2f6;color:#1f2933;'
        "font:14px/1.4 sans-serif\"><strong>The next issue's posts</strong>"
        " (editor only; not part of the email) &middot;"
        ' <a href="reports" style="color:#0b57d0">Reports</a>'
        f'<table style="margin-top:6px;border-collapse:collapse">{body}</table></div>'
        f"{CONTROLS_END}"
    )


def inject_controls(document: str, panel: str) -> str:
    """The document with the editor's controls at the top of the body."""
    return after_body_tag(document, panel)


class Workbench:
    """What the preview works from: the config file and the preview's caches."""

    def __init__(
        self,
        config_path: Path,
        clock: Callable[[], datetime],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.clock = clock
        self._monotonic = monotonic
        self._cache: FeedCache | None = None
        self._watch_key = ""
        self._watched: tuple[Path, ...] = ()
        self._templates_dir = self.config.templates_dir
        # Every control's form carries this; a page on another site cannot read it, so cannot
        # make the editor's browser leave a post out.
        self.form_token = secrets.token_urlsafe(24)

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

    def _feeds(self) -> FeedCache:
        if self._cache is None:
            self._cache = FeedCache(collect, monotonic=self._monotonic)
        return self._cache

    def render_preview(self) -> tuple[str, str, bool]:
        """(html, text, sample posts stand in) of the next issue; raises DigestError."""
        config = load_config(self.config_path)
        prepared, document, text = preview.preview(
            config, self.clock(), collector=self._feeds().collect
        )
        return document, text, prepared.sample

    def candidates(self) -> list[Candidate]:
        """The next issue's candidate posts, from the same cached feeds as the preview."""
        config = load_config(self.config_path)
        return editor.next_posts(config, self.clock(), collector=self._feeds().collect)

    def choose(self, post_id: str, action: str) -> Candidate:
        """Do a control's action (see ACTIONS) on a post; raises DigestError."""
        choice, undo = ACTIONS[action]
        config = load_config(self.config_path)
        return editor.choose(
            config, post_id, choice, self.clock(), undo=undo, collector=self._feeds().collect
        )

    def reports_page(self) -> str:
        """The Reports page: health warnings, the latest issue's figures and the charts, read
        from the state without changing it."""
        from digest.reports.charts import report_page
        from digest.reports.gather import gather

        config = load_config(self.config_path)
        found = gather(config, self.clock())
        return report_page(
            found.reports,
            found.weeks,
            [(w.text, w.advice) for w in found.warnings if w.issue_id == _latest(found.reports)],
            config.reports.max_complaint_rate,
            config.reports.max_hard_bounce_rate,
        )

    def allows(self, token: str) -> bool:
        """Whether a form carried this workbench's token."""
        return hmac.compare_digest(token.encode("utf-8"), self.form_token.encode("utf-8"))


def password_from_environment() -> str | None:
    """DIGEST_WORKBENCH_PASSWORD, or None when it is unset or empty."""
    return os.environ.get(PASSWORD_VARIABLE) or None


def is_loopback(host: str) -> bool:
    """Whether a listening address is reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warnings(host: str, password: str | None) -> list[str]:
    """A warning when the workbench listens beyond this machine without a password."""
    if password or is_loopback(host):
        return []
    return [
        f"the editor's preview is public: the workbench listens on {host} without a password,"
        " so anyone who can reach it sees the next issue; set DIGEST_WORKBENCH_PASSWORD or use"
        " --workbench-host 127.0.0.1"
    ]


def _host_of(header: str) -> str | None:
    """The host of a Host header, lower-cased, without its port or an IPv6 address's brackets;
    None when the header is not a host and optional port."""
    value = header.strip().lower()
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
        port = rest[1:]
    else:
        host, _, port = value.partition(":")
    if port and not (port.isascii() and port.isdigit() and len(port) <= 5):
        return None
    return host or None


def expected_host(header: str | None, names: frozenset[str], local: str | None) -> bool:
    """Whether the workbench answers a request with this Host header: localhost, a loopback
    address, the address the client connected to (`local`), or one of `names`, any port.

    A Host that is a name nobody configured is what a DNS-rebinding page sends: the browser
    thinks it talks to that page's own site while its name points at this machine."""
    host = _host_of(header) if header else None
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.removesuffix(".")
        return name == "localhost" or name in names
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_loopback or str(address) in names:
        return True
    if local is None:
        return False
    try:
        connected = ipaddress.ip_address(local)
    except ValueError:
        return False
    if isinstance(connected, ipaddress.IPv6Address) and connected.ipv4_mapped:
        connected = connected.ipv4_mapped
    return address == connected


def allowed_names(configured: Iterable[str], listen_host: str | None = None) -> frozenset[str]:
    """The names the workbench answers to: workbench.hosts, and the name it was told to listen
    on when that is a name rather than an address."""
    names = {name.lower().removesuffix(".") for name in configured}
    if listen_host:
        host = listen_host.strip().lower().removesuffix(".")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            names.add(host)
    return frozenset(names)


class HostCheck:
    """ASGI middleware answering 421 Misdirected Request, with no content, to any Host header
    the workbench does not expect (see expected_host)."""

    def __init__(self, app: ASGIApp, names: frozenset[str]) -> None:
        self.app = app
        self.names = names
        self._reported: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"host")
        text = header.decode("latin-1") if header is not None else None
        server = scope.get("server")
        if expected_host(text, self.names, server[0] if server else None):
            await self.app(scope, receive, send)
            return
        self._report(text)
        refusal = Response(status_code=421, headers={**COMMON_HEADERS, "Connection": "close"})
        await refusal(scope, receive, send)

    def _report(self, header: str | None) -> None:
        """Tell the editor once per name, so a proxy's name can be added to workbench.hosts."""
        shown = (header or "")[:100]
        if shown in self._reported or len(self._reported) >= MAX_HOSTS_REPORTED:
            logger.debug("refused a request for host %r", shown)
            return
        self._reported.add(shown)
        logger.warning(
            "the workbench refused a request for host %r (421); if that name is yours, add it"
            " to workbench.hosts in config.yaml",
            shown,
        )


def client_of(scope: Scope) -> str:
    """Who is guessing: the client's IPv4 address, or its IPv6 /64 (one host's usual share)."""
    client = scope.get("client")
    if not client:
        return ""
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return str(client[0])
    if isinstance(address, ipaddress.IPv6Address) and not address.ipv4_mapped:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(getattr(address, "ipv4_mapped", None) or address)


class PasswordAttempts:
    """Wrong passwords per client: after `limit` within `window` seconds the client is refused
    until the oldest of them is `window` old, so the password cannot be brute-forced.

    Memory is bounded: at most `max_clients` clients are remembered, the one whose last wrong
    guess is oldest forgotten first. Used from the server's event loop only."""

    def __init__(
        self,
        limit: int = MAX_WRONG_PASSWORDS,
        window: float = WRONG_PASSWORD_WINDOW,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS_REMEMBERED,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._monotonic = monotonic
        self._wrong: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float | None:
        """Seconds until the client may try again, or None if it may try now."""
        times = self._wrong.get(client)
        if times is None:
            return None
        now = self._monotonic()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._wrong[client]
            return None
        if len(times) < self.limit:
            return None
        return times[0] + self.window - now

    def wrong(self, client: str) -> None:
        """Note a wrong password from the client."""
        times = self._wrong.pop(client, None) or deque(maxlen=self.limit)
        times.append(self._monotonic())
        self._wrong[client] = times
        while len(self._wrong) > self.max_clients:
            self._wrong.popitem(last=False)

    def right(self, client: str) -> None:
        """The client gave the password: forget its wrong guesses."""
        self._wrong.pop(client, None)


def _digest_of(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class BasicAuth:
    """ASGI middleware asking for the password (HTTP Basic, any user name), in constant time,
    and refusing a client with 429 after too many wrong ones (see PasswordAttempts)."""

    def __init__(
        self,
        app: ASGIApp,
        password: str,
        realm: str = "digest workbench",
        attempts: PasswordAttempts | None = None,
    ) -> None:
        self.app = app
        self._expected = _digest_of(password)
        self.realm = realm
        self.attempts = attempts or PasswordAttempts()

    def allows(self, authorization: bytes | None) -> bool:
        """Whether an Authorization header carries the password."""
        if not authorization:
            return False
        scheme, _, encoded = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        _, _, given = decoded.partition(":")
        return hmac.compare_digest(_digest_of(given), self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = client_of(scope)
        wait = self.attempts.retry_after(client)
        if wait is not None:
            # Refused before the password is even looked at: a right guess now would not show.
            seconds = max(1, math.ceil(wait))
            answer = plain(
                f"Too many wrong passwords from here: try again in {seconds} seconds.\n",
                status=429,
                headers={"Retry-After": str(seconds)},
            )
            await answer(scope, receive, send)
            return
        authorization = dict(scope["headers"]).get(b"authorization")
        if self.allows(authorization):
            self.attempts.right(client)
            await self.app(scope, receive, send)
            return
        if authorization:
            self.attempts.wrong(client)
            logger.info("a wrong workbench password from %s", client)
        challenge = {"WWW-Authenticate": f'Basic realm="{self.realm}", charset="UTF-8"'}
        answer = plain("The workbench needs its password.\n", status=401, headers=challenge)
        await answer(scope, receive, send)


def create_workbench_app(
    workbench: Workbench,
    password: str | None = None,
    *,
    listen_host: str | None = None,
    attempts: PasswordAttempts | None = None,
) -> ASGIApp:
    """The workbench ASGI app: /preview, /preview.txt, /preview/version and the post controls
    (POST /posts/ID/ACTION), behind `password`, answering only the Host names it expects
    (workbench.hosts, and `listen_host` when that is a name)."""
    limiter: list[anyio.CapacityLimiter] = []

    async def in_pool(function: Callable[[], T]) -> T:
        # Preview work runs in its own small pool, created on the server's event loop.
        if not limiter:
            limiter.append(anyio.CapacityLimiter(PREVIEW_WORKERS))
        return await anyio.to_thread.run_sync(function, limiter=limiter[0])

    async def preview_html(request: Request) -> Response:
        version = await in_pool(workbench.version)
        nonce = secrets.token_urlsafe(16)
        headers = {**COMMON_HEADERS, "Content-Security-Policy": _preview_policy(nonce)}
        try:
            document, _, sample = await in_pool(workbench.render_preview)
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
        try:
            found = await in_pool(workbench.candidates)
        except Exception as error:
            found = []
            document = inject_notice(document, f"The post controls are missing: {_describe(error)}")
        document = inject_controls(document, controls_panel(found, workbench.form_token))
        return HTMLResponse(inject_reload(document, version, nonce), headers=headers)

    async def post_action(request: Request) -> Response:
        post_id, action = request.path_params["post_id"], request.path_params["action"]
        if action not in ACTIONS:
            return plain(f"No such action: {action}.\n", status=404)
        body = await body_or_refusal(request)
        if isinstance(body, Response):
            return body
        fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        if not workbench.allows((fields.get("token") or [""])[0]):
            return plain("This form has expired: reload the preview and try again.\n", status=403)
        try:
            await in_pool(lambda: workbench.choose(post_id, action))
        except DigestError as error:
            return plain(f"{error}\n", status=404)
        # Back to the preview, which now shows the issue as changed (POST, redirect, GET).
        return Response(status_code=303, headers={**COMMON_HEADERS, "Location": "../../preview"})

    async def preview_text(request: Request) -> Response:
        try:
            _, text, sample = await in_pool(workbench.render_preview)
        except Exception as error:
            return plain(_describe(error) + "\n", status=422)
        return plain(f"[{NOTHING_NEW}]\n\n{text}" if sample else text, status=200)

    async def preview_version(request: Request) -> Response:
        return plain(await in_pool(workbench.version), status=200)

    async def reports(request: Request) -> Response:
        try:
            document = await in_pool(workbench.reports_page)
        except DigestError as error:
            return plain(f"The reports could not be read: {error}\n", status=503)
        headers = {**COMMON_HEADERS, "Content-Security-Policy": PAGE_POLICY}
        return HTMLResponse(document, headers=headers)

    routes = [
        Route("/preview", preview_html, methods=["GET"]),
        Route("/preview.txt", preview_text, methods=["GET"]),
        Route("/preview/version", preview_version, methods=["GET"]),
        Route("/posts/{post_id}/{action}", post_action, methods=["POST"]),
        Route("/reports", reports, methods=["GET"]),
    ]
    app: ASGIApp = BodyLimit(Starlette(routes=routes))
    if password:
        app = BasicAuth(app, password, attempts=attempts)
    return HostCheck(app, allowed_names(workbench.config.workbench.hosts, listen_host))


def _latest(reports: Sequence[IssueReport]) -> int | None:
    """The number of the latest issue that delivered anything."""
    delivered = [report.issue_id for report in reports if report.counts.delivered]
    return delivered[-1] if delivered else None


def _describe(error: BaseException) -> str:
    if isinstance(error, DigestError):
        return str(error)
    logger.exception("preview failed")
    return f"unexpected error while building the preview: {type(error).__name__}: {error}"
