"""Bounce and complaint events from email service providers: Mailgun, SendGrid, Postmark.

Each request is authenticated before its body is believed: Mailgun's HMAC-SHA256 over the
timestamp and token, SendGrid's ECDSA signature over the timestamp and body, Postmark's HTTP
basic auth. A forged, replayed or unsigned request is 401 and records nothing; a provider whose
credentials are not configured has no route (404).

Replays. A signature proves who made a request, not that it arrives for the first time, so
every accepted request leaves a nonce in the state (see digest.store.webhooks), recorded in the
same transaction as its events, and a second use of it is refused:

- Mailgun signs only the timestamp and token, not the event: a captured request re-posted with
  other event data still verifies. Its token is the nonce, so the re-post is refused.
- SendGrid signs the timestamp and body. The nonce is a hash of exactly those signed bytes, not
  of the signature: an ECDSA signature can be rewritten into another valid one for the same
  bytes, so remembering signatures alone would let a replay through.
- Postmark signs nothing: basic auth shows only that the sender knows the password, which
  travels in every request. Each event's ID is used once. Its event data is taken on trust
  from whoever holds the password, so it acts only as far as attribution allows: digest's
  Message-ID when the event carries one (in its Metadata or bounce content), which must then
  verify, else an address digest delivered to in the last 14 days.

A signed timestamp (Postmark: the event's own time) older than the window is stale; one dated
more than CLOCK_SKEW ahead of our clock is refused alike, since it would otherwise stay
acceptable for longer than the window. Accepted events go through the same attribution as mailed
reports, and each event is recorded once under its provider's id.

Bodies are at most WEBHOOK_BODY_BYTES, and are decoded in a worker thread, never on the event
loop. SendGrid's and Postmark's are parsed only once the request is authenticated; Mailgun's
signature is inside the JSON, so its body is pre-scanned (see `read_json`) before it is parsed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest import store
from digest.bounces.apply import apply_report
from digest.bounces.report import MESSAGE_ID_PATTERN, Kind, Report, status_kind
from digest.config.schema import Config
from digest.core import counters
from digest.core.addresses import canonical_or_none
from digest.core.errors import StateError
from digest.web.common import body_or_refusal, plain

logger = logging.getLogger(__name__)

WEBHOOK_BODY_BYTES = 1024 * 1024
MAX_EVENTS = 1000  # events in one SendGrid batch
CLOCK_SKEW = 300  # seconds a provider's clock may run ahead of ours
POSTMARK_WINDOW = 86400  # seconds: Postmark retries a failed webhook for about ten hours
MAX_NESTING_PASSES = 32  # see read_json: at most 64 levels of nesting reach the parser
CONTENT_SCANNED = 256 * 1024  # characters of a Postmark bounce's content searched for our ids

UNAUTHORISED = "Not authenticated: the request is not signed by the configured provider.\n"
STALE = "Stale or replayed request: the timestamp is too old.\n"
FUTURE = "Refused: the request is dated in the future (check this server's clock).\n"
REPLAYED = "Replayed request: this signed request was accepted before; nothing was recorded.\n"
BUSY = "The state file is busy; nothing was recorded. Try again.\n"


# -- reading bodies --------------------------------------------------------------------------


class NotJson(ValueError):
    """A body that is not a JSON document digest will parse; the message says why."""


# A JSON string, escapes and all; an unterminated one runs to the end, as it does for the
# parser. Unambiguous, so matching is linear: no input makes it backtrack.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _shallow(text: str) -> bool:
    """Whether a JSON text's brackets are balanced and nested at most 2 * MAX_NESTING_PASSES
    deep. Strings are cut out and everything but brackets dropped (both one regular-expression
    pass); then each pass deletes every adjacent "[]" and "{}" pair, which peels at least one
    level. A text not empty after MAX_NESTING_PASSES passes is too deep or not balanced."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(MAX_NESTING_PASSES):
        if not brackets:
            return True
        peeled = brackets.replace("[]", "").replace("{}", "")
        if peeled == brackets:
            return False  # mismatched or unbalanced: not JSON
        brackets = peeled
    return not brackets


def read_json(body: bytes) -> Any:
    """A webhook body as JSON, or NotJson.

    The standard parser recurses once per level of nesting, and a body of a million `[` runs
    it into the recursion limit (a RecursionError, not a ValueError). Rather than lean on that,
    a linear pre-scan refuses anything nested deeper than 64 levels before the parser runs;
    no provider sends more than five. The pre-scan is a few regular-expression and
    str.replace passes in C over at most WEBHOOK_BODY_BYTES (tens of milliseconds at worst),
    which is why it is preferred to a hand-written tokenising loop in Python, and it makes
    the parse bounded even for Mailgun, whose signature can only be read from the parsed
    body. Callers run it in a worker thread."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotJson("the body is not UTF-8") from None
    if not _shallow(text):
        raise NotJson("the body is not JSON, or is nested too deeply")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise NotJson("the body is not JSON") from None


def timestamp_refusal(timestamp: str, now: datetime, max_age: float) -> str:
    """Why a signed Unix timestamp is refused, or "" when it is within the window: older than
    `max_age`, or more than CLOCK_SKEW ahead of `now`."""
    if not timestamp.isdigit() or len(timestamp) > 12:
        return STALE
    age = now.timestamp() - int(timestamp)
    if age > max_age:
        return STALE
    if age < -CLOCK_SKEW:
        return FUTURE
    return ""


# -- what a request comes to -----------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What one webhook request comes to before anything is recorded: a refusal (status and
    text), or the nonce that makes it single-use and the reports it carries."""

    status: int = 200
    text: str = ""
    nonce: str = ""  # "" only for a request that carries nothing to act on
    reports: tuple[Report, ...] = ()


def _refuse(status: int, text: str) -> Verdict:
    return Verdict(status, text)


class WebhookDesk:
    """What the webhook routes work from: the config, the signing secret and the clock."""

    def __init__(self, config: Config, secret: str, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.secret = secret
        self.clock = clock

    @property
    def max_age(self) -> float:
        """Seconds a signed timestamp stays acceptable."""
        return self.config.bounces.webhooks.max_age

    def keep(self, provider: str) -> timedelta:
        """How long a provider's nonces are remembered: as long as a request could be accepted."""
        window = max(self.max_age, POSTMARK_WINDOW) if provider == "postmark" else self.max_age
        return timedelta(seconds=window + CLOCK_SKEW)

    def record(self, provider: str, verdict: Verdict) -> dict[str, int] | None:
        """Act on an accepted request's events, with its nonce, in one transaction; how many
        ended each way, or None when the nonce was used before (nothing is recorded)."""
        counts: dict[str, int] = {}
        if not (verdict.nonce or verdict.reports):
            return counts
        now = self.clock()
        with store.open(self.config) as state, state.transaction():
            if verdict.nonce and not state.webhook_nonces.remember(
                provider, verdict.nonce, now, self.keep(provider)
            ):
                logger.warning("%s webhook: a replayed request was refused", provider)
                return None
            for report in verdict.reports:
                outcome, _ = apply_report(self.config, state, self.secret, report, provider, now)
                counts[outcome] = counts.get(outcome, 0) + 1
        logger.info("%s webhook: %s", provider, counts)
        return counts


def _ids(*values: object) -> tuple[tuple[str, str], ...]:
    """digest's (reference, tag) pairs in Message-ID values, with or without angle brackets."""
    found: dict[tuple[str, str], None] = {}
    for value in values:
        text = str(value or "")[:1000]
        text = text if text.startswith("<") else f"<{text}"
        for match in MESSAGE_ID_PATTERN.finditer(text):
            found[(match.group(1).lower(), match.group(2).lower())] = None
    return tuple(found)


def _clean(value: object, limit: int) -> str:
    """Untrusted event text as a string SQLite can store: at most `limit` characters, a lone
    surrogate (JSON allows "\\ud800") replaced."""
    return str(value or "")[:limit].encode("utf-8", "replace").decode("utf-8")


def _report(
    provider: str,
    event_id: object,
    kind: Kind,
    recipient: object,
    status: str,
    detail: object,
    message_ids: tuple[tuple[str, str], ...],
    raw: object,
) -> Report:
    identity = (
        _clean(event_id, 200)
        or hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    )
    address = canonical_or_none(_clean(recipient, 1000) if isinstance(recipient, str) else None)
    return Report(
        kind,
        f"{provider}:{identity}",
        (address,) if address else (),
        _clean(status, 40),
        " ".join(_clean(detail, 2000).split())[:500],
        (),
        message_ids,
        json.dumps(raw, default=str)[: 64 * 1024],
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- Mailgun ---------------------------------------------------------------------------------


def mailgun_signature(key: str, timestamp: str, token: str) -> str:
    """Mailgun's signature: HMAC-SHA256 of timestamp + token under the webhook signing key."""
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def mailgun_report(event: dict[str, Any]) -> Report | None:
    """A Mailgun event-data object as a report; None for events that are not bounces."""
    name = str(event.get("event", ""))
    status_block = event.get("delivery-status") or {}
    status_block = status_block if isinstance(status_block, dict) else {}
    message = event.get("message") or {}
    headers = message.get("headers", {}) if isinstance(message, dict) else {}
    ids = _ids(headers.get("message-id") if isinstance(headers, dict) else "")
    if name == "complained":
        kind, status = Kind.COMPLAINT, "abuse"
    elif name == "failed":
        status = str(status_block.get("enhanced-code") or "")
        permanent = event.get("severity") == "permanent"
        kind = status_kind(status or "5.0.0") if permanent else Kind.SOFT
        status = status or ("5.0.0" if permanent else "4.0.0")
    else:
        return None
    detail = status_block.get("description") or status_block.get("message") or name
    return _report(
        "mailgun", event.get("id"), kind, event.get("recipient"), status, detail, ids, event
    )


def _text(value: object) -> str:
    """A signature field as text: a string, or an integer timestamp; anything else is ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def mailgun_verdict(body: bytes, key: str, now: datetime, max_age: float) -> Verdict:
    """A Mailgun request: its signature block verified, its timestamp within the window, its
    token the nonce (the event data is not signed, so the token is what makes it single-use)."""
    try:
        data = read_json(body)
    except NotJson:
        return _refuse(401, UNAUTHORISED)
    signature = data.get("signature") if isinstance(data, dict) else None
    if not isinstance(signature, dict):
        return _refuse(401, UNAUTHORISED)
    timestamp = _text(signature.get("timestamp"))
    token = _text(signature.get("token"))
    given = _text(signature.get("signature"))
    if not (timestamp and token and given) or len(token) > 512 or not token.isascii():
        return _refuse(401, UNAUTHORISED)
    expected = mailgun_signature(key, timestamp, token)
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        return _refuse(401, UNAUTHORISED)
    refusal = timestamp_refusal(timestamp, now, max_age)
    if refusal:
        return _refuse(401, refusal)
    event = data.get("event-data")
    reports: list[Report] = []
    if isinstance(event, dict):
        report = mailgun_report(event)
        if report is not None:
            reports.append(_keyed(report, f"mailgun:{token[:100]}", event))
    return Verdict(nonce=_sha256(token.encode()), reports=tuple(reports))


def _keyed(report: Report, fallback: str, event: dict[str, Any]) -> Report:
    """A Mailgun report keyed by its event id, else by the signed token (unique per request)."""
    return report if event.get("id") else replace(report, key=fallback)


# -- SendGrid --------------------------------------------------------------------------------


def sendgrid_verified(public_key: str, signature: str, timestamp: str, body: bytes) -> bool:
    """Whether SendGrid's ECDSA (P-256, SHA-256) signature over timestamp + body verifies."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_der_public_key(base64.b64decode(public_key))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        key.verify(
            base64.b64decode(signature, validate=True),
            timestamp.encode() + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def sendgrid_report(event: dict[str, Any]) -> Report | None:
    """A SendGrid event as a report; None for events that are not bounces or spam reports."""
    name = str(event.get("event", ""))
    ids = _ids(event.get("smtp-id"))
    if name == "spamreport":
        kind, status = Kind.COMPLAINT, "abuse"
    elif name == "bounce":
        status = str(event.get("status") or "5.0.0")
        kind = Kind.SOFT if event.get("type") == "blocked" else status_kind(status)
    elif name == "deferred":
        kind, status = Kind.SOFT, str(event.get("status") or "4.0.0")
    else:
        return None
    detail = event.get("reason") or event.get("response") or name
    return _report(
        "sendgrid", event.get("sg_event_id"), kind, event.get("email"), status, detail, ids, event
    )


def sendgrid_verdict(
    body: bytes, public_key: str, signature: str, timestamp: str, now: datetime, max_age: float
) -> Verdict:
    """A SendGrid request: the signature over timestamp + body verified before the body is
    parsed, the timestamp within the window, and a hash of the signed bytes as the nonce."""
    if not sendgrid_verified(public_key, signature, timestamp, body):
        return _refuse(401, UNAUTHORISED)
    refusal = timestamp_refusal(timestamp, now, max_age)
    if refusal:
        return _refuse(401, refusal)
    try:
        events = read_json(body)
    except NotJson as error:
        return _refuse(400, f"Expected a JSON list of events: {error}.\n")
    if not isinstance(events, list):
        return _refuse(400, "Expected a JSON list of events.\n")
    reports = tuple(
        report
        for event in events[:MAX_EVENTS]
        if isinstance(event, dict) and (report := sendgrid_report(event)) is not None
    )
    return Verdict(nonce=_sha256(timestamp.encode() + body), reports=reports)


# -- Postmark --------------------------------------------------------------------------------

_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "AddressChange"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "AutoResponder"}
_POSTMARK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _postmark_ids(event: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """digest's Message-IDs in a Postmark event: in its Metadata (values set with
    X-PM-Metadata-* headers) or in the bounce content (with "Include bounce content" on)."""
    metadata = event.get("Metadata")
    values = list(metadata.values())[:20] if isinstance(metadata, dict) else []
    found = dict.fromkeys(_ids(*values))
    content = event.get("Content")
    if isinstance(content, str):
        for match in MESSAGE_ID_PATTERN.finditer(content[:CONTENT_SCANNED]):
            found[(match.group(1).lower(), match.group(2).lower())] = None
    return tuple(found)[:20]


def postmark_report(event: dict[str, Any]) -> Report | None:
    """A Postmark bounce or spam-complaint webhook body as a report."""
    record = str(event.get("RecordType", ""))
    kind_name = str(event.get("Type", ""))
    if record == "SpamComplaint" or kind_name == "SpamComplaint":
        kind, status = Kind.COMPLAINT, "abuse"
    elif record == "Bounce" and kind_name in _POSTMARK_HARD:
        kind, status = Kind.HARD, "5.1.1" if kind_name == "HardBounce" else "5.0.0"
    elif record == "Bounce" and kind_name in _POSTMARK_SOFT:
        if kind_name == "AutoResponder":
            return None
        kind, status = Kind.SOFT, "4.0.0"
    else:
        return None
    detail = event.get("Description") or event.get("Details") or kind_name
    return _report(
        "postmark",
        event.get("ID"),
        kind,
        event.get("Email"),
        status,
        detail,
        _postmark_ids(event),
        event,
    )


def _postmark_time(value: object) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _postmark_id(value: object) -> str:
    """A Postmark event's ID as text ("" when missing or not an ID)."""
    text = _text(value)
    return text if _POSTMARK_ID.fullmatch(text) else ""


def postmark_verdict(body: bytes, now: datetime, max_age: float) -> Verdict:
    """A Postmark event (its basic auth already checked): dated within the window and not
    ahead of our clock, and single-use by its ID. An event digest does not act on needs no ID
    and records nothing."""
    try:
        event = read_json(body)
    except NotJson as error:
        return _refuse(400, f"Expected a JSON object: {error}.\n")
    if not isinstance(event, dict):
        return _refuse(400, "Expected a JSON object.\n")
    when = _postmark_time(event.get("BouncedAt") or event.get("ReceivedAt"))
    if when is None:
        return _refuse(401, "Stale or replayed request: the event has no readable time.\n")
    age = (now - when).total_seconds()
    if age > max(max_age, POSTMARK_WINDOW):
        return _refuse(401, "Stale or replayed request: the event is too old.\n")
    if age < -CLOCK_SKEW:
        return _refuse(401, FUTURE)
    report = postmark_report(event)
    event_id = _postmark_id(event.get("ID"))
    if report is None:
        return Verdict(nonce=event_id)
    if not event_id:
        return _refuse(400, "Expected the event's ID: each event is accepted once by its ID.\n")
    return Verdict(nonce=event_id, reports=(report,))


def _basic_auth(header: str, username: str, password: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded or len(encoded) > 1024:
        return False
    try:
        given = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, _, secret = given.partition(":")
    return hmac.compare_digest(user.encode(), username.encode()) & hmac.compare_digest(
        secret.encode(), password.encode()
    )


# -- routes ----------------------------------------------------------------------------------

# How a webhook's answer is counted in digest_webhook_requests_total.
WEBHOOK_OUTCOMES = {
    200: "accepted",
    400: "malformed",
    401: "refused",
    408: "too_slow",
    413: "too_large",
    503: "busy",
}


def counted(
    provider: str, endpoint: Callable[[Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint, its every answer counted by provider and outcome for the metrics."""

    async def answer(request: Request) -> Response:
        response = await endpoint(request)
        outcome = WEBHOOK_OUTCOMES.get(response.status_code, counters.OTHER)
        counters.count(counters.WEBHOOK_REQUESTS, provider=provider, outcome=outcome)
        return response

    return answer


def webhook_routes(desk: WebhookDesk) -> list[Route]:
    """POST /webhooks/mailgun, /webhooks/sendgrid and /webhooks/postmark, for those configured."""
    settings = desk.config.bounces.webhooks

    async def answer(provider: str, verdict: Verdict) -> Response:
        if verdict.status != 200:
            return plain(verdict.text, status=verdict.status)
        try:
            counts = await run_in_threadpool(desk.record, provider, verdict)
        except StateError as error:
            logger.warning("%s webhook not recorded: %s", provider, error)
            return plain(BUSY, status=503, headers={"Retry-After": "60"})
        if counts is None:
            return plain(REPLAYED, status=401)
        return Response(json.dumps(counts), media_type="application/json")

    async def mailgun(request: Request) -> Response:
        body = await body_or_refusal(request, WEBHOOK_BODY_BYTES)
        if isinstance(body, Response):
            return body
        key = settings.mailgun_signing_key or ""
        verdict = await run_in_threadpool(mailgun_verdict, body, key, desk.clock(), desk.max_age)
        return await answer("mailgun", verdict)

    async def sendgrid(request: Request) -> Response:
        body = await body_or_refusal(request, WEBHOOK_BODY_BYTES)
        if isinstance(body, Response):
            return body
        signature = request.headers.get("x-twilio-email-event-webhook-signature", "")
        timestamp = request.headers.get("x-twilio-email-event-webhook-timestamp", "")
        key = settings.sendgrid_public_key or ""
        if not (key and signature and timestamp):
            return plain(UNAUTHORISED, status=401)
        verdict = await run_in_threadpool(
            sendgrid_verdict, body, key, signature, timestamp, desk.clock(), desk.max_age
        )
        return await answer("sendgrid", verdict)

    async def postmark(request: Request) -> Response:
        username, password = settings.postmark_username or "", settings.postmark_password or ""
        header = request.headers.get("authorization", "")
        if not (username and password and _basic_auth(header, username, password)):
            return plain(UNAUTHORISED, status=401, headers={"WWW-Authenticate": "Basic"})
        body = await body_or_refusal(request, WEBHOOK_BODY_BYTES)
        if isinstance(body, Response):
            return body
        verdict = await run_in_threadpool(postmark_verdict, body, desk.clock(), desk.max_age)
        return await answer("postmark", verdict)

    routes: list[Route] = []
    if settings.mailgun_signing_key:
        routes.append(Route("/webhooks/mailgun", counted("mailgun", mailgun), methods=["POST"]))
    if settings.sendgrid_public_key:
        routes.append(Route("/webhooks/sendgrid", counted("sendgrid", sendgrid), methods=["POST"]))
    if settings.postmark_username and settings.postmark_password:
        routes.append(Route("/webhooks/postmark", counted("postmark", postmark), methods=["POST"]))
    return routes
