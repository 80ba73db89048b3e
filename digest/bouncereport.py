"""Read one bounce or complaint report: what kind it is, whom it names, and which delivery.

Untrusted input: the message is cut at MAX_REPORT_BYTES, every failure inside the parsers is
caught, and the result is always a Report (kind "unreadable" at worst). DSNs (RFC 3464) are
read from their message/delivery-status part; complaints from ARF (RFC 5965) feedback
reports; anything else goes through flufl.bounce, Mailman's detectors for the many
non-standard formats. Auto-replies are recognised before the heuristic detectors run.
"""

from __future__ import annotations

import email
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from enum import StrEnum

from digest.tokens import TAG_LENGTH

logger = logging.getLogger(__name__)

MAX_REPORT_BYTES = 2 * 1024 * 1024
_MAX_PARTS = 200
_MAX_RECIPIENTS = 50
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_FAILURE_STATUS = re.compile(r"\b([45])\.(\d{1,3})\.(\d{1,3})\b")
_REFERENCE = r"(\d{1,12}|s)"
# bounces+12-abcdefghijklmnop@example.org: the VERP token in an envelope address.
VERP_PATTERN = re.compile(rf"\+{_REFERENCE}-([a-z2-7]{{{TAG_LENGTH}}})@", re.IGNORECASE)
# <d12.abcdefghijklmnop.0123456789ab@example.org>: a Message-ID digest made.
MESSAGE_ID_PATTERN = re.compile(
    rf"<d{_REFERENCE}\.([a-z2-7]{{{TAG_LENGTH}}})\.[0-9a-f]{{12}}@", re.IGNORECASE
)
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|auto:|out of (the )?office|"
    r"abwesenheit|absence|vacation|away from|r[ée]ponse automatique|on leave)",
    re.IGNORECASE,
)
_FAILURE_SUBJECT = re.compile(
    r"undeliver|deliver(y|ed)? (status|failure|failed|has failed|notification)|"
    r"returned mail|mail delivery|failure notice|non[- ]?delivery|could not be delivered|"
    r"delivery problem|unable to deliver|message not delivered|bounce|reject",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)
_NO_SUCH_USER = re.compile(r"\b5\.1\.1\b|\b5\.1\.10\b|\b5\.2\.1\b")


class Kind(StrEnum):
    """What a report turned out to be."""

    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto_reply"
    NOT_BOUNCE = "not_bounce"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Report:
    """One report as read: its kind, the addresses and deliveries it names, and its identity."""

    kind: Kind
    key: str  # the same report read twice has the same key
    recipients: tuple[str, ...] = ()
    status: str = ""  # e.g. "5.1.1"; "abuse" for a complaint
    detail: str = ""
    tokens: tuple[tuple[str, str], ...] = ()  # (reference, tag) from VERP addresses
    message_ids: tuple[tuple[str, str], ...] = ()  # (reference, tag) from our Message-IDs
    text: str = ""  # the report as kept for the record

    @property
    def is_bounce(self) -> bool:
        """Whether the report says something about an address: a bounce or a complaint."""
        return self.kind in (Kind.HARD, Kind.SOFT, Kind.COMPLAINT)


def permanent_refusal(reply: str) -> str:
    """'no such user' or 'mailbox disabled' when an SMTP reply says so for good, else ''."""
    match = _NO_SUCH_USER.search(reply)
    if match is None or not reply.lstrip().startswith("5"):
        return ""
    return "mailbox disabled (5.2.1)" if match.group(0) == "5.2.1" else "no such user"


def status_kind(status: str) -> Kind:
    """A DSN status code as a bounce kind: 5.x.x is hard, except a full mailbox (5.2.2) and a
    policy refusal (5.7.x), which say nothing lasting about the address; 4.x.x is soft."""
    if status.startswith("5.") and not status.startswith(("5.2.2", "5.7.")):
        return Kind.HARD
    return Kind.SOFT


def report_key(data: bytes, message: Message | None) -> str:
    """The report's identity: a hash of its own Message-ID and its body, so the same report
    fetched again (even with a Received line more) is the same, and two reports that share a
    careless MTA's Message-ID are not."""
    own = ""
    if message is not None:
        try:
            own = str(message.get("message-id", "") or "").strip()[:300]
        except Exception:  # a malformed header is the sender's problem, never ours
            own = ""
    head, separator, body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
    hashed = hashlib.sha256(own.encode("utf-8", "replace") + b"\0" + (body if separator else head))
    return "sha256:" + hashed.hexdigest()


def read_report(data: bytes) -> Report:
    """Classify one message; never raises for anything the message contains."""
    data = data[:MAX_REPORT_BYTES]
    try:
        message = email.message_from_bytes(data)
    except Exception as error:  # the parser is lenient, but the input is anyone's
        logger.info("unreadable report: %s", error)
        return Report(Kind.UNREADABLE, report_key(data, None), detail=str(error)[:200])
    key = report_key(data, message)
    text = data.decode("utf-8", "replace")
    try:
        tokens, message_ids = _identifiers(message, text)
        found = _classify(message, text)
    except Exception as error:  # a detector tripping over a strange message is not a crash
        logger.info("report could not be classified: %r", error)
        return Report(Kind.UNREADABLE, key, detail=repr(error)[:200], text=text)
    kind, recipients, status, detail = found
    return Report(
        kind,
        key,
        tuple(dict.fromkeys(r.lower() for r in recipients if "@" in r))[:_MAX_RECIPIENTS],
        status,
        " ".join(detail.split())[:500],
        tokens,
        message_ids,
        text,
    )


def _parts(message: Message) -> list[Message]:
    return [part for _, part in zip(range(_MAX_PARTS), message.walk(), strict=False)]


def _part_texts(message: Message) -> list[str]:
    """Every text-ish part decoded (quoted-printable, base64), for identifiers and codes."""
    texts = []
    for part in _parts(message):
        if part.is_multipart() or part.get_content_maintype() not in ("text", "message"):
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            texts.append(payload[:MAX_REPORT_BYTES].decode("utf-8", "replace"))
    return texts


def _identifiers(
    message: Message, text: str
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """VERP tokens and digest Message-IDs anywhere in the report: its own headers, the
    delivery-status part, the returned message or its headers, in raw or decoded form."""
    haystacks = [text, *_part_texts(message)]
    tokens: dict[tuple[str, str], None] = {}
    ids: dict[tuple[str, str], None] = {}
    for haystack in haystacks:
        for match in VERP_PATTERN.finditer(haystack):
            tokens[(match.group(1).lower(), match.group(2).lower())] = None
        for match in MESSAGE_ID_PATTERN.finditer(haystack):
            ids[(match.group(1).lower(), match.group(2).lower())] = None
    return tuple(tokens)[:_MAX_RECIPIENTS], tuple(ids)[:_MAX_RECIPIENTS]


def _header_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    if isinstance(payload, str):
        return [HeaderParser().parsestr(block) for block in re.split(r"\r?\n\r?\n", payload)]
    return []


def _address(value: object) -> str:
    """The address in a DSN recipient field such as 'rfc822; ann@example.com'."""
    text = str(value or "")
    if ";" in text:
        text = text.split(";", 1)[1]
    return parseaddr(text.strip())[1].strip().lower()


def _classify(message: Message, text: str) -> tuple[Kind, list[str], str, str]:
    """(kind, recipients, status, detail) for the parsed message."""
    parts = _parts(message)
    feedback = [p for p in parts if p.get_content_type() == "message/feedback-report"]
    if feedback:
        return _complaint(message, feedback[0])
    statuses = [p for p in parts if p.get_content_type() == "message/delivery-status"]
    if statuses:
        found = _dsn(statuses)
        if found is not None:
            return found
    if _looks_like_auto_reply(message):
        return Kind.AUTO_REPLY, [], "", str(message.get("subject", ""))[:200]
    return _heuristic(message, text)


def _complaint(message: Message, part: Message) -> tuple[Kind, list[str], str, str]:
    """An ARF report (RFC 5965): the complained-about recipient and the feedback type."""
    fields: dict[str, str] = {}
    for block in _header_blocks(part):
        for name, value in block.items():
            fields.setdefault(name.lower(), str(value))
    feedback_type = fields.get("feedback-type", "abuse").strip().lower()
    if feedback_type == "not-spam":
        return Kind.NOT_BOUNCE, [], feedback_type, "not-spam feedback"
    recipients = [_address(fields["original-rcpt-to"])] if "original-rcpt-to" in fields else []
    if not recipients:
        returned = _returned_headers(message)
        if returned is not None:
            recipients = [a for _, a in getaddresses([str(returned.get("to", ""))])]
    agent = fields.get("user-agent", "")
    return Kind.COMPLAINT, recipients, feedback_type, f"{feedback_type} report {agent}".strip()


def _returned_headers(message: Message) -> Message | None:
    """The headers of the returned message: message/rfc822 or text/rfc822-headers."""
    for part in _parts(message):
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif kind == "text/rfc822-headers":
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                return HeaderParser().parsestr(body.decode("utf-8", "replace"))
    return None


def _dsn(statuses: list[Message]) -> tuple[Kind, list[str], str, str] | None:
    """A DSN's failed or delayed recipients; None when it reports only successes."""
    hard: list[tuple[str, str, str]] = []
    soft: list[tuple[str, str, str]] = []
    for part in statuses:
        for block in _header_blocks(part):
            action = str(block.get("action", "")).strip().lower()
            recipient = _address(block.get("original-recipient")) or _address(
                block.get("final-recipient")
            )
            diagnostic = str(block.get("diagnostic-code", ""))
            match = _STATUS.search(str(block.get("status", ""))) or _STATUS.search(diagnostic)
            status = match.group(0) if match else ""
            if not recipient or action.startswith(("delivered", "relayed", "expanded")):
                continue
            if action.startswith("delayed"):
                soft.append((recipient, status or "4.0.0", diagnostic))
            elif action.startswith(("fail", "error")):
                status = status or "5.0.0"
                chosen = hard if status_kind(status) is Kind.HARD else soft
                chosen.append((recipient, status, diagnostic))
    if not hard and not soft:
        return None
    kind, rows = (Kind.HARD, hard) if hard else (Kind.SOFT, soft)
    return kind, [r[0] for r in rows], rows[0][1], rows[0][2]


def _looks_like_auto_reply(message: Message) -> bool:
    """RFC 3834's Auto-Submitted and the headers and subjects vacation responders use, on a
    message that is not from a mail system announcing a failure."""
    sender = parseaddr(str(message.get("from", "")))[1]
    subject = str(message.get("subject", ""))
    if message.get_content_type() == "multipart/report":
        return False  # a report (a DSN, an MDN, a Sieve rejection) is never a vacation reply
    if _DAEMON.match(sender) or _FAILURE_SUBJECT.search(subject):
        return False
    auto = str(message.get("auto-submitted", "")).strip().lower()
    if auto and auto != "no":
        return True
    if any(message.get(name) for name in ("x-autoreply", "x-autorespond", "x-autoresponse")):
        return True
    precedence = str(message.get("precedence", "")).strip().lower()
    return precedence == "auto_reply" or bool(_AUTO_SUBJECT.search(subject))


def _detectors() -> list[Callable[[], object]]:
    """flufl.bounce's detectors, most specific first."""
    try:
        from flufl.bounce._scan import _find_detectors
    except ImportError:  # a release without the list: its own scan, first finding wins
        return []
    return list(_find_detectors())


def _heuristic(message: Message, text: str) -> tuple[Kind, list[str], str, str]:
    """flufl.bounce's detectors for the formats that are not DSNs: the first to find an
    address wins (one that finds only garbage, such as an X.400 fragment, does not)."""
    from flufl.bounce import all_failures

    temporary: list[str] = []
    permanent: list[str] = []
    found = [detector().process for detector in _detectors()] or [all_failures]  # type: ignore[attr-defined]
    for process in found:
        soft, hard = process(message)
        permanent = [a for a in map(_decoded, hard) if "@" in a]
        temporary = [a for a in map(_decoded, soft) if "@" in a]
        if permanent or temporary:
            break
    addresses = permanent or temporary
    if not addresses:
        return Kind.NOT_BOUNCE, [], "", str(message.get("subject", ""))[:200]
    match = _FAILURE_STATUS.search(text)
    status = match.group(0) if match else ("5.0.0" if permanent else "4.0.0")
    if permanent:
        kind = status_kind(status) if status.startswith("5.") else Kind.HARD
    else:
        kind = Kind.SOFT
    return kind, addresses, status, str(message.get("subject", ""))[:200]


def _decoded(address: object) -> str:
    if isinstance(address, bytes):
        return address.decode("utf-8", "replace").strip().lower()
    return str(address).strip().lower()
