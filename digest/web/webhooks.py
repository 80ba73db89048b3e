"""Bounce and complaint events from email service providers: Mailgun, SendGrid, Postmark.

Each request is authenticated before its body is believed: Mailgun's HMAC-SHA256 over the
timestamp and token, SendGrid's ECDSA signature over the timestamp and body, Postmark's HTTP
basic auth. Signed timestamps older (or newer) than bounces.webhooks.max_age are replays and
refused; a forged, replayed or unsigned request is 401 and records nothing. A provider whose
credentials are not configured has no route (404). Accepted events go through the same
attribution as mailed reports, so an event about an address digest never mailed changes
nothing, and each event is recorded once under its provider's id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest.bouncereport import MESSAGE_ID_PATTERN, Kind, Report, status_kind
from digest.bounces import apply_report
from digest.config import Config
from digest.store import State
from digest.web.common import body_or_refusal, plain

logger = logging.getLogger(__name__)

WEBHOOK_BODY_BYTES = 1024 * 1024
MAX_EVENTS = 1000  # events in one SendGrid batch
UNAUTHORISED = "Not authenticated: the request is not signed by the configured provider.\n"


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

    def fresh(self, timestamp: str) -> bool:
        """Whether a signed Unix timestamp is within the replay window of now."""
        if not timestamp.isdigit() or len(timestamp) > 12:
            return False
        return abs(self.clock().timestamp() - int(timestamp)) <= self.max_age

    def record(self, reports: list[Report], source: str) -> dict[str, int]:
        """Act on accepted events; how many ended each way."""
        counts: dict[str, int] = {}
        now = self.clock()
        with State(self.config.state_path) as state:
            for report in reports:
                outcome, _ = apply_report(self.config, state, self.secret, report, source, now)
                counts[outcome] = counts.get(outcome, 0) + 1
        logger.info("%s webhook: %s", source, counts)
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
        str(event_id or "")[:200]
        or hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    )
    address = str(recipient or "").strip().lower()[:320]
    return Report(
        kind,
        f"{provider}:{identity}",
        (address,) if "@" in address else (),
        status[:40],
        " ".join(str(detail or "").split())[:500],
        (),
        message_ids,
        json.dumps(raw, default=str)[: 64 * 1024],
    )


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


# -- Postmark --------------------------------------------------------------------------------

_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "AddressChange"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "AutoResponder"}


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
    return _report("postmark", event.get("ID"), kind, event.get("Email"), status, detail, (), event)


def _postmark_time(value: object) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _basic_auth(header: str, username: str, password: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
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


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def webhook_routes(desk: WebhookDesk) -> list[Route]:
    """POST /webhooks/mailgun, /webhooks/sendgrid and /webhooks/postmark, for those configured."""
    settings = desk.config.bounces.webhooks

    async def body_of(request: Request) -> bytes | Response:
        return await body_or_refusal(request, WEBHOOK_BODY_BYTES)

    async def accept(reports: list[Report], source: str) -> Response:
        counts = await run_in_threadpool(desk.record, reports, source)
        return Response(json.dumps(counts), media_type="application/json")

    async def mailgun(request: Request) -> Response:
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        data = _json(body)
        signature = data.get("signature") if isinstance(data, dict) else None
        if not isinstance(signature, dict) or not settings.mailgun_signing_key:
            return plain(UNAUTHORISED, status=401)
        timestamp = str(signature.get("timestamp", ""))
        token = str(signature.get("token", ""))
        expected = mailgun_signature(settings.mailgun_signing_key, timestamp, token)
        if not hmac.compare_digest(expected, str(signature.get("signature", ""))):
            return plain(UNAUTHORISED, status=401)
        if not desk.fresh(timestamp):
            return plain("Stale or replayed request: the timestamp is too old.\n", status=401)
        event = data.get("event-data") if isinstance(data, dict) else None
        reports: list[Report] = []
        if isinstance(event, dict):
            report = mailgun_report(event)
            if report is not None:
                reports.append(_keyed(report, f"mailgun:{token[:100]}", event))
        return await accept(reports, "mailgun")

    async def sendgrid(request: Request) -> Response:
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        signature = request.headers.get("x-twilio-email-event-webhook-signature", "")
        timestamp = request.headers.get("x-twilio-email-event-webhook-timestamp", "")
        key = settings.sendgrid_public_key or ""
        if not (key and signature and timestamp):
            return plain(UNAUTHORISED, status=401)
        verified = await run_in_threadpool(sendgrid_verified, key, signature, timestamp, body)
        if not verified:
            return plain(UNAUTHORISED, status=401)
        if not desk.fresh(timestamp):
            return plain("Stale or replayed request: the timestamp is too old.\n", status=401)
        events = _json(body)
        if not isinstance(events, list):
            return plain("Expected a JSON list of events.\n", status=400)
        reports = [
            report
            for event in events[:MAX_EVENTS]
            if isinstance(event, dict) and (report := sendgrid_report(event)) is not None
        ]
        return await accept(reports, "sendgrid")

    async def postmark(request: Request) -> Response:
        username, password = settings.postmark_username or "", settings.postmark_password or ""
        header = request.headers.get("authorization", "")
        if not (username and password and _basic_auth(header, username, password)):
            return plain(UNAUTHORISED, status=401, headers={"WWW-Authenticate": "Basic"})
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        event = _json(body)
        if not isinstance(event, dict):
            return plain("Expected a JSON object.\n", status=400)
        when = _postmark_time(event.get("BouncedAt") or event.get("ReceivedAt") or "")
        # Postmark retries for hours; older than a day is a replay, not a retry.
        if when is None or abs((desk.clock() - when).total_seconds()) > max(desk.max_age, 86400):
            return plain("Stale or replayed request: the event is too old.\n", status=401)
        report = postmark_report(event)
        return await accept([report] if report else [], "postmark")

    routes: list[Route] = []
    if settings.mailgun_signing_key:
        routes.append(Route("/webhooks/mailgun", mailgun, methods=["POST"]))
    if settings.sendgrid_public_key:
        routes.append(Route("/webhooks/sendgrid", sendgrid, methods=["POST"]))
    if settings.postmark_username and settings.postmark_password:
        routes.append(Route("/webhooks/postmark", postmark, methods=["POST"]))
    return routes


def _keyed(report: Report, fallback: str, event: dict[str, Any]) -> Report:
    """A Mailgun report keyed by its event id, else by the signed token (unique per request)."""
    if event.get("id"):
        return report
    return Report(
        report.kind,
        fallback,
        report.recipients,
        report.status,
        report.detail,
        report.tokens,
        report.message_ids,
        report.text,
    )
