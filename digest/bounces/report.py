"""Read one bounce or complaint report: what kind it is, whom it names, and which delivery.

Untrusted input: the message is cut at MAX_REPORT_BYTES, every failure inside the readers is
caught, and the result is always a Report (kind "unreadable" at worst). In order:

1. an auto-reply by its subject (RFC 3834's "Auto:", "Automatic reply", out-of-office);
2. Amazon SES notifications (JSON, plain or in an SNS envelope) and complaints (ARF, RFC 5965,
   and Microsoft's older feedback loop): digest.bounces.feedback;
3. DSNs (RFC 3464, and RFC 6533's message/global-delivery-status): each recipient's action,
   status and diagnostic; a DSN reporting only deliveries or relays is not a bounce;
4. read receipts (MDNs) and other success notices, which are not bounces;
5. notices in prose from a mail system (digest.bounces.prose), else flufl.bounce's detectors for
   the address;
6. auto-replies by their headers; anything else is not a report.

Whether a failure is hard or soft follows Sisimai's rule (digest.bounces.reason): only an address
or domain that does not exist, a mailbox that has moved, or a host that accepts no mail is
hard. Every recipient is put in digest's canonical form (digest.core.addresses): a "recipient" that
is not an address, such as a pipe command or a fragment of JSON, is never recorded.
"""

from __future__ import annotations

import email
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from email.utils import parseaddr

from digest.bounces.parts import (
    Finding,
    Kind,
    decoded,
    field_blocks,
    header,
    header_addresses,
    notice_text,
    parts,
    returned_headers,
    text_blocks,
    unescaped,
)
from digest.bounces.reason import (
    Failure,
    find_command,
    find_reply,
    find_status,
    implied_command,
    is_hard,
    reason_of,
)
from digest.core.addresses import canonical_or_none
from digest.core.tokens import TAG_LENGTH

__all__ = [
    "MAX_REPORT_BYTES",
    "MESSAGE_ID_PATTERN",
    "VERP_PATTERN",
    "Kind",
    "Report",
    "classify",
    "permanent_refusal",
    "read_report",
    "report_key",
    "status_kind",
]

logger = logging.getLogger(__name__)

MAX_REPORT_BYTES = 2 * 1024 * 1024
FLUFL_BYTES = 64 * 1024  # of a message flufl.bounce's detectors are given
_MAX_RECIPIENTS = 50
_REFERENCE = r"(\d{1,12}|s)"
# bounces+12-abcdefghijklmnop@example.org: the VERP token in an envelope address.
VERP_PATTERN = re.compile(rf"\+{_REFERENCE}-([a-z2-7]{{{TAG_LENGTH}}})@", re.IGNORECASE)
# <d12.abcdefghijklmnop.0123456789ab@example.org>: a Message-ID digest made.
MESSAGE_ID_PATTERN = re.compile(
    rf"<d{_REFERENCE}\.([a-z2-7]{{{TAG_LENGTH}}})\.[0-9a-f]{{12}}@", re.IGNORECASE
)
_NO_SUCH_USER = re.compile(r"\b5\.1\.1\b|\b5\.1\.10\b|\b5\.2\.1\b")
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[ _-]?(?:reply|response|antwort|svar|risposta|respuesta)|auto:|"
    r"automatische antwort|r[ée]ponse automatique|risposta automatica|respuesta autom[áa]tica|"
    r"out of (?:the )?office|abwesenheit|absence|vacation|away from|on leave|"
    r"fuera de la oficina|afwezig|autosvar|不在|自動応答|自动回复)",
    re.IGNORECASE,
)
_FAILURE_SUBJECT = re.compile(
    r"undeliver|deliver(?:y|ed)? (?:status|failure|failed|has failed|notification|problem)|"
    r"returned mail|mail delivery|failure notice|non[- ]?delivery|could not be delivered|"
    r"unable to deliver|message not delivered|not delivered|bounce|reject|mail system error|"
    r"delivery fail|failed delivery|mail failure|message frozen|^warning: message|"
    r"non remis|non recapitabile|unzustellbar|nicht zustellbar|no entregado|"
    r"onbestelbaar|error sending|delivery report|returned to sender|undelivered",
    re.IGNORECASE,
)
_DAEMON = re.compile(
    r"^(?:mailer-daemon|postmaster|mail-daemon|mailerdaemon|mailer_daemon|mdaemon|"
    r"mail-delivery|maildelivery|noreply-dmarc|bounce[s]?|nobody|root)@",
    re.IGNORECASE,
)
_DAEMON_NAME = re.compile(
    r"mail delivery (?:system|subsystem|service)|mailer.daemon|postmaster|mail administrator|"
    r"mail system|delivery status",
    re.IGNORECASE,
)
_NOTICE_MARKS = re.compile(
    r"this is the (?:qmail-send|mail system|mailer-daemon|postfix|deliver program|"
    r"dragonfly mail agent|mail delivery)|could not be delivered|"
    r"was not delivered|were not delivered|delivery has failed|delivery failed|"
    r"delivery to the following recipients? (?:failed|has been delayed|was)|"
    r"undeliverable|permanent (?:fatal )?error|temporary error|unable to deliver|"
    r"did not reach|couldn't be delivered|wasn't able to deliver|message you sent|"
    r"following address(?:es)?(?: had)? (?:failed|permanent|delivery problems)|"
    r"not delivered to|failed to deliver|delivery problem|non-delivery|returned mail|"
    r"has been delayed|delivery attempts will continue|mail delivery software",
    re.IGNORECASE,
)
_SUCCESS_SUBJECT = re.compile(
    r"^\s*(?:delivered:|relayed:|read:|read receipt|return receipt|gelesen:|lu\s?:|"
    r"delivery status notification \((?:success|relay)\)|successful mail delivery|"
    r"delivery receipt|delivery notification: delivery has succeeded|"
    r"zugestellt:|remis\s?:|consegnato:|entregado:)",
    re.IGNORECASE,
)
_SUCCESS_TEXT = re.compile(
    r"your message has been delivered to the following recipients|"
    r"delivery to (?:the following|these) recipients (?:or groups )?(?:is complete|succeeded)|"
    r"was successfully delivered|has been successfully delivered|successfully relayed|"
    r"this is a delivery receipt|message was delivered|your message was read|"
    r"was read on|delivery was successful",
    re.IGNORECASE,
)
_FAILED_ACTIONS = ("fail", "error", "undeliver", "bounce", "reject", "abort")
_SUCCESS_ACTIONS = ("deliver", "relay", "expand")


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
    reason: str = ""  # why it failed, in Sisimai's words: userunknown, mailboxfull...

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


def status_kind(status: str, text: str = "") -> Kind:
    """A status code (and the error text, if any) as a bounce kind, by Sisimai's rule: hard
    only when it says the address or domain does not exist, the mailbox has moved, or the
    host accepts no mail; a full mailbox, a policy refusal and 4.x.x are soft."""
    reason = reason_of(Failure(status=status, reply=find_reply(text), text=text))
    return Kind.HARD if is_hard(reason, status) else Kind.SOFT


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
        found = classify(message, data)
    except Exception as error:  # a reader tripping over a strange message is not a crash
        logger.info("report could not be classified: %r", error)
        return Report(Kind.UNREADABLE, key, detail=repr(error)[:200], text=text)
    return Report(
        found.kind,
        key,
        _canonical(found.recipients) if found.kind is not Kind.NOT_BOUNCE else (),
        found.status[:40],
        " ".join(found.detail.split())[:500],
        tokens,
        message_ids,
        text,
        found.reason,
    )


def _canonical(addresses: Iterable[str]) -> tuple[str, ...]:
    """The addresses in canonical form, in order, once each; anything else dropped."""
    found: dict[str, None] = {}
    for address in addresses:
        canonical = canonical_or_none(str(address).strip().strip("<>\"'").strip())
        if canonical is not None:
            found[canonical] = None
    return tuple(found)[:_MAX_RECIPIENTS]


def _identifiers(
    message: Message, text: str
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """VERP tokens and digest Message-IDs anywhere in the report: its own headers, the
    delivery-status part, the returned message or its headers, in raw or decoded form."""
    haystacks = [text]
    for part in parts(message):
        if not part.is_multipart() and part.get_content_maintype() in ("text", "message"):
            haystacks.append(decoded(part))
    tokens: dict[tuple[str, str], None] = {}
    ids: dict[tuple[str, str], None] = {}
    for haystack in haystacks:
        for match in VERP_PATTERN.finditer(haystack):
            tokens[(match.group(1).lower(), match.group(2).lower())] = None
        for match in MESSAGE_ID_PATTERN.finditer(haystack):
            ids[(match.group(1).lower(), match.group(2).lower())] = None
    return tuple(tokens)[:_MAX_RECIPIENTS], tuple(ids)[:_MAX_RECIPIENTS]


def classify(message: Message, data: bytes = b"") -> Finding:
    """What the parsed message is (`data`, if given, is the message as received), by the
    readers in the module's order."""
    from digest.bounces.feedback import complaint, ses_notification

    subject = " ".join(header(message, "subject").split())
    if _AUTO_SUBJECT.search(subject) and not _FAILURE_SUBJECT.search(subject):
        return Finding(Kind.AUTO_REPLY, (), "", subject[:200], "vacation")
    notice = notice_text(message)
    ses = ses_notification(notice) if notice.lstrip().startswith("{") else None
    if ses is not None:
        return ses
    found = complaint(message)
    if found is not None:
        return found
    found = _dsn(message, notice)
    if found is not None:
        return found
    if _is_success_notice(message, subject, notice):
        return Finding(Kind.NOT_BOUNCE, (), "", f"a success or read notice: {subject}"[:200])
    if _looks_like_failure(message, subject, notice):
        found = _prose(message, notice, data)
        if found is not None:
            return found
    if _looks_like_auto_reply(message, subject):
        return Finding(Kind.AUTO_REPLY, (), "", subject[:200], "vacation")
    return Finding(Kind.NOT_BOUNCE, (), "", subject[:200])


def _own_addresses(message: Message, returned: Message | None) -> frozenset[str]:
    """Addresses in a report that are never its failed recipient: its own sender and
    addressee, and the returned message's sender."""
    mine = header_addresses(message, "from", "to", "cc", "reply-to", "return-path", "sender")
    theirs = header_addresses(returned, "from", "sender", "reply-to", "return-path", "errors-to")
    return frozenset(address.lower() for address in (*mine, *theirs))


def _failed_header(message: Message) -> list[str]:
    return header_addresses(message, "x-failed-recipients")


def _dsn(message: Message, notice: str) -> Finding | None:
    """A DSN's failed or delayed recipients; NOT_BOUNCE when it reports only successes; None
    when it holds no delivery-status fields."""
    blocks: list[Message] = []
    for part in parts(message):
        kind = part.get_content_type()
        if kind in ("message/delivery-status", "message/global-delivery-status"):
            blocks.extend(field_blocks(part))
    if not blocks and header(message, "content-type").lower().find("delivery-status") >= 0:
        for part in parts(message)[1:]:
            if part.get_content_type() == "text/plain":
                text = decoded(part, 64 * 1024)
                if re.search(r"^(?:final|original)-recipient:", text, re.I | re.M):
                    blocks.extend(text_blocks(text))
    rows = [block for block in blocks if block.get("final-recipient") or block.get("action")]
    if not rows:
        return None
    from digest.bounces.prose import failures

    returned = returned_headers(message)
    prose = {
        f.address: f
        for f in failures(notice, _own_addresses(message, returned), tuple(_failed_header(message)))
    }
    hard: list[tuple[str, str, str, str]] = []
    soft: list[tuple[str, str, str, str]] = []
    successes = 0
    for block in rows:
        addresses = [
            _dsn_address(block.get("final-recipient")),
            _dsn_address(block.get("original-recipient")),
            _dsn_address(block.get("x-actual-recipient")),
        ]
        addresses = [a for a in addresses if a]
        action = " ".join(str(block.get("action", "")).lower().split())
        status_field = find_status(str(block.get("status", "")))
        diagnostic = " ".join(str(block.get("diagnostic-code", "")).split())
        kind_of_code, _, diagnostic_text = diagnostic.partition(";")
        if not _:
            diagnostic_text, kind_of_code = diagnostic, ""
        status = _preferred_status(status_field, diagnostic_text)
        if action.startswith(_SUCCESS_ACTIONS) or (not action and status.startswith("2.")):
            successes += 1
            continue
        if not addresses:
            continue
        failing = action.startswith(_FAILED_ACTIONS) or action.startswith("delay")
        if not failing and not status.startswith(("4.", "5.")):
            continue
        said = prose.get(addresses[0].lower())
        text = diagnostic_text.strip() or (said.text if said else notice[:2000])
        failure = Failure(
            status=status,
            reply=find_reply(text),
            command=find_command(text)
            or find_command(said.text if said else "")
            or implied_command(text, status),
            text=text,
            action=action,
            preset=said.preset if said else "",
            unix=kind_of_code.strip().lower().startswith("x-unix"),
        )
        reason = reason_of(failure)
        if reason == "delivered":
            successes += 1
            continue
        status = status or ("4.0.0" if action.startswith("delay") else "5.0.0")
        hard_one = not action.startswith("delay") and is_hard(reason, status or failure.reply)
        for address in addresses:
            (hard if hard_one else soft).append((address, status, reason, text))
    if not hard and not soft:
        if successes:
            return Finding(Kind.NOT_BOUNCE, (), "2.0.0", "a delivery success notice", "delivered")
        return None
    return _chosen(hard, soft)


def _chosen(
    hard: list[tuple[str, str, str, str]], soft: list[tuple[str, str, str, str]]
) -> Finding:
    """One finding for several recipients: hard if any is (those first), else soft."""
    kind, chosen = (Kind.HARD, hard) if hard else (Kind.SOFT, soft)
    ordered = [row[0] for row in chosen] + [row[0] for row in (soft if hard else [])]
    _, status, reason, text = chosen[0]
    return Finding(kind, tuple(ordered), status, f"{reason}: {' '.join(text.split())}", reason)


def _dsn_address(value: object) -> str:
    """The address in a DSN recipient field such as 'rfc822; ann@example.com'; '' for a
    program or file ('X-Unix; |/usr/bin/procmail')."""
    text = unescaped(str(value or "")).strip()
    if ";" in text:
        address_type, _, text = text.partition(";")
        if address_type.strip().lower() not in ("rfc822", "utf-8", "utf8", "x-unix", ""):
            return ""
    text = text.strip()
    if text.startswith(("|", "/")):
        return ""
    return parseaddr(text)[1].strip() or text.strip("<> ")


def _preferred_status(status: str, diagnostic: str) -> str:
    """The Status field, unless it is missing or only a class (x.0.0) and the diagnostic
    gives a more telling code of the same class."""
    said = find_status(diagnostic)
    if not status:
        return said
    if status.endswith(".0.0") and said and said[0] == status[0] and not said.endswith(".0.0"):
        return said
    return status


def _disposition(message: Message) -> str | None:
    """An MDN's Disposition field (RFC 8098), lower-case; None for a message that is no MDN."""
    for part in parts(message):
        if part.get_content_type() == "message/disposition-notification":
            for block in field_blocks(part):
                if block.get("disposition"):
                    return " ".join(str(block.get("disposition")).lower().split())[:200]
            return ""
    if "disposition-notification" in header(message, "content-type").lower():
        return ""
    return None


def _is_success_notice(message: Message, subject: str, notice: str) -> bool:
    """A read receipt (MDN) or a 'delivered'/'relayed' notice: not a bounce. An MDN saying
    the message was deleted or refused unread (a Sieve reject) is a failure notice."""
    disposition = _disposition(message)
    if disposition is not None:
        return not re.search(r"deleted|denied|failed|error|reject", disposition)
    if _SUCCESS_SUBJECT.search(subject):
        return not _FAILURE_SUBJECT.search(subject)
    return bool(_SUCCESS_TEXT.search(notice[:4000])) and not _NOTICE_MARKS.search(notice[:4000])


def _looks_like_failure(message: Message, subject: str, notice: str) -> bool:
    """Whether the message is a mail system's failure notice rather than anyone's mail."""
    sender = parseaddr(header(message, "from"))
    if _DAEMON.match(sender[1]) or _DAEMON_NAME.search(sender[0]):
        return True
    if _FAILURE_SUBJECT.search(subject) or _failed_header(message):
        return True
    if _REPLY_SUBJECT.match(subject):
        return False  # a person answering or passing on mail, whatever it says of delivery
    return bool(_NOTICE_MARKS.search(notice[:8000]))


# "Re: ...", "Fwd: ...": a person's reply or forward, never a mail system's notice.
_REPLY_SUBJECT = re.compile(r"^\s*(?:re|fwd?|aw|wg|sv|vs|antw|rif|tr)\s?:", re.IGNORECASE)


def _prose(message: Message, notice_whole: str, data: bytes) -> Finding | None:
    """A notice in prose: its failed addresses and the reason it gives for each."""
    from digest.bounces.prose import failures, notice_of

    returned = returned_headers(message)
    own = _own_addresses(message, returned)
    notice = notice_of(notice_whole)
    fallback = (
        *_failed_header(message),
        *header_addresses(returned, "to", "x-original-to", "delivered-to"),
        *_returned_to_in_text(notice_whole),
    )
    found = failures(notice, own, tuple(fallback))
    if not found:
        addresses = _flufl_addresses(_bounded(message, data))
        if addresses:
            failure = Failure(text=notice[:2000], command=find_command(notice[:2000]))
            return _kind_of([(address, failure) for address in addresses])
        found = failures(notice, own, loose=True)
    if not found:
        return None
    delayed = "delay" if _delayed(header(message, "subject"), notice) else ""
    rows = []
    for said in found:
        status = find_status(said.text) or find_status(notice[:4000])
        failure = Failure(
            status=status,
            reply=find_reply(said.text),
            command=find_command(said.text) or implied_command(said.text, status),
            text=said.text,
            action=delayed,
            preset=said.preset,
        )
        rows.append((said.address, failure))
    return _kind_of(rows)


_DELAYED = re.compile(
    r"delivery (?:status notification \(delay\)|delayed)|has been delayed|^warning: message|"
    r"delivery attempts will continue|will (?:continue to )?retry|still trying|"
    r"not yet been delivered|message delayed|delayed mail|temporary (?:error|failure)",
    re.IGNORECASE | re.MULTILINE,
)


def _delayed(subject: str, notice: str) -> bool:
    """Whether the notice says delivery is still being tried (a warning, not a failure)."""
    return bool(_DELAYED.search(subject) or _DELAYED.search(notice[:4000]))


_RETURNED_TO = re.compile(r"^[ \t]*to:[ \t]*(.{3,300})$", re.IGNORECASE | re.MULTILINE)


def _returned_to_in_text(text: str) -> list[str]:
    """The To: of a returned message quoted as text after the notice, if any."""
    from email.utils import getaddresses

    found: list[str] = []
    for match in _RETURNED_TO.finditer(text[:MAX_REPORT_BYTES]):
        found.extend(address for _, address in getaddresses([match.group(1)]) if "@" in address)
        if len(found) >= 5:
            break
    return found


def _kind_of(rows: list[tuple[str, Failure]]) -> Finding:
    hard: list[tuple[str, str, str, str]] = []
    soft: list[tuple[str, str, str, str]] = []
    for address, failure in rows:
        reason = reason_of(failure)
        status = failure.status or ("4.0.0" if failure.action else "5.0.0")
        hard_one = not failure.action and is_hard(reason, failure.status or failure.reply)
        (hard if hard_one else soft).append((address, status, reason, failure.text[:300]))
    return _chosen(hard, soft)


def _looks_like_auto_reply(message: Message, subject: str) -> bool:
    """RFC 3834's Auto-Submitted and the headers and subjects vacation responders use, on a
    message that is not from a mail system announcing a failure."""
    sender = parseaddr(header(message, "from"))[1]
    if message.get_content_type() == "multipart/report":
        return False  # a report (a DSN, an MDN, a Sieve rejection) is never a vacation reply
    if _DAEMON.match(sender) or _FAILURE_SUBJECT.search(subject):
        return False
    auto = header(message, "auto-submitted").strip().lower()
    if auto and auto != "no":
        return True
    names = ("x-autoreply", "x-autorespond", "x-autoresponse", "x-autoresponder")
    if any(header(message, name) for name in names):
        return True
    if header(message, "x-apple-action").lower() == "vacation":
        return True
    precedence = header(message, "precedence").strip().lower()
    return precedence == "auto_reply" or bool(_AUTO_SUBJECT.search(subject))


def _detectors() -> list[Callable[[], object]]:
    """flufl.bounce's detectors, most specific first."""
    try:
        from flufl.bounce._scan import _find_detectors
    except ImportError:  # a release without the list: its own scan, first finding wins
        return []
    return list(_find_detectors())


def _bounded(message: Message, data: bytes) -> Message:
    """The message, or when it is longer than FLUFL_BYTES its first FLUFL_BYTES parsed again:
    flufl.bounce's detectors scan line by line, slowly, and a notice says what it has to say
    first."""
    if not data or len(data) <= FLUFL_BYTES:
        return message
    return email.message_from_bytes(data[:FLUFL_BYTES])


def _flufl_addresses(message: Message) -> list[str]:
    """flufl.bounce's detectors, for a notice no reader here understood: the first that
    finds an address wins (garbage such as an X.400 fragment is dropped later)."""
    from flufl.bounce import all_failures

    found = [detector().process for detector in _detectors()] or [all_failures]  # type: ignore[attr-defined]
    for process in found:
        try:
            temporary, permanent = process(message)
        except Exception:  # one detector's trouble is not the report's
            continue
        addresses = [_text(a) for a in (*permanent, *temporary)]
        addresses = [a for a in addresses if canonical_or_none(a)]
        if addresses:
            return addresses
    return []


def _text(address: object) -> str:
    if isinstance(address, bytes):
        return address.decode("utf-8", "replace").strip()
    return str(address).strip()
