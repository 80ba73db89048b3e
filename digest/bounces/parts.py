"""The parts of a report message as the readers need them, and what reading one found.

A report is anyone's mail, so every walk here is bounded (parts, bytes, lines) and every
decoding is lenient: an unknown charset or broken base64 gives replacement characters, never an
exception. The notice is the human-readable text of the report, never the returned message's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses
from enum import StrEnum

MAX_PARTS = 200
MAX_PART_BYTES = 2 * 1024 * 1024
MAX_NOTICE_CHARS = 64 * 1024
_RETURNED_TYPES = frozenset({"message/rfc822", "text/rfc822-headers", "message/global"})
_STATUS_TYPES = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "message/feedback-report"}
)
_RETURNED_HEADER_TYPES = frozenset({"text/rfc822-headers", "message/global-headers"})


class Kind(StrEnum):
    """What a report turned out to be."""

    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto_reply"
    NOT_BOUNCE = "not_bounce"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Finding:
    """What one reader made of a report: its kind, the addresses, the status and reason."""

    kind: Kind
    recipients: tuple[str, ...] = ()
    status: str = ""  # e.g. "5.1.1"; the feedback type for a complaint
    detail: str = ""
    reason: str = ""  # e.g. "userunknown", "mailboxfull", "feedback", "delivered"
    extra: dict[str, str] = field(default_factory=dict, compare=False)


def parts(message: Message) -> list[Message]:
    """Every part of the message, the message first, at most MAX_PARTS."""
    return [part for _, part in zip(range(MAX_PARTS), message.walk(), strict=False)]


def decoded(part: Message, limit: int = MAX_PART_BYTES) -> str:
    """A leaf part's text, transfer-decoded and charset-decoded, leniently."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw[:limit] if isinstance(raw, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload[:limit].decode(charset, "replace")
    except (LookupError, ValueError):
        return payload[:limit].decode("utf-8", "replace")


def _leaves(message: Message) -> list[Message]:
    """The text leaves a reader sees as the notice: not inside a returned message, nor the
    machine-readable report parts."""
    found: list[Message] = []
    stack = [message]
    seen = 0
    while stack and seen < MAX_PARTS:
        part = stack.pop()
        seen += 1
        kind = part.get_content_type()
        if part is not message and (kind in _RETURNED_TYPES or kind in _STATUS_TYPES):
            continue
        if part.is_multipart():
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend(reversed([c for c in children if isinstance(c, Message)]))
            continue
        if part.get_content_maintype() == "text" or (part is message and kind == "text/plain"):
            found.append(part)
    return found


def notice_text(message: Message) -> str:
    """The report's human-readable text: its text/plain parts (else its HTML as text), outside
    any returned message, at most MAX_NOTICE_CHARS."""
    leaves = _leaves(message)
    plain = [p for p in leaves if p.get_content_type() == "text/plain"]
    if plain:
        text = "\n".join(decoded(p, MAX_NOTICE_CHARS * 2) for p in plain)
    else:
        from digest.render.htmltext import html_to_text

        html = [p for p in leaves if p.get_content_type() == "text/html"]
        text = "\n".join(html_to_text(decoded(p, MAX_NOTICE_CHARS * 2)) for p in html)
    return text[:MAX_NOTICE_CHARS]


def returned_headers(message: Message) -> Message | None:
    """The headers of the returned message: a message/rfc822 part or text/rfc822-headers."""
    for part in parts(message)[1:]:
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
            if isinstance(payload, str):
                return HeaderParser().parsestr(payload[:MAX_NOTICE_CHARS])
        elif kind in _RETURNED_HEADER_TYPES:
            return HeaderParser().parsestr(decoded(part, MAX_NOTICE_CHARS))
    return None


def header_addresses(message: Message | None, *names: str) -> list[str]:
    """The addresses in the named headers, as written (not yet canonical)."""
    if message is None:
        return []
    values: list[str] = []
    for name in names:
        try:
            values.extend(str(value)[:2000] for value in message.get_all(name, []))
        except Exception:  # a malformed header is the sender's problem, never ours
            continue
    return [address for _, address in getaddresses(values) if "@" in address][:50]


def header(message: Message | None, name: str) -> str:
    """One header's value as text ('' when absent or unreadable)."""
    if message is None:
        return ""
    try:
        return str(message.get(name, "") or "")[:2000]
    except Exception:  # a malformed header is the sender's problem, never ours
        return ""


def field_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        # message/delivery-status parses as a list of blocks; any other message/* type (RFC
        # 6533's message/global-delivery-status) as one message whose body holds the rest.
        blocks: list[Message] = []
        for block in payload[:MAX_PARTS]:
            if isinstance(block, Message):
                blocks.append(block)
                rest = block.get_payload(decode=True)  # bytes, so UTF-8 stays UTF-8
                if isinstance(rest, bytes) and rest.strip():
                    text = rest[: MAX_NOTICE_CHARS * 2].decode("utf-8", "replace")
                    blocks.extend(text_blocks(text))
        return blocks[:MAX_PARTS]
    text = decoded(part, MAX_NOTICE_CHARS) if isinstance(payload, str) else ""
    return text_blocks(text)


def unescaped(text: str) -> str:
    """Text the parser kept as escaped bytes (UTF-8 in a header or an RFC 6533 part) as the
    characters they are."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return text


def text_blocks(text: str) -> list[Message]:
    """Header-like blocks of text separated by blank lines, parsed as headers."""
    blocks = text.replace("\r\n", "\n").split("\n\n")[:MAX_PARTS]
    return [HeaderParser().parsestr(block.strip("\n") + "\n") for block in blocks if block.strip()]
