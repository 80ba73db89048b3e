"""Complaints and provider notifications that arrive by mail: ARF, feedback loops, Amazon SES.

- ARF (RFC 5965): a message/feedback-report part, or its fields sent as plain text by older
  feedback loops. Every feedback type is a reader's complaint (abuse, fraud, virus, other, and
  the opt-out and unsubscribe reports some loops send), except "not-spam" (the reader took a
  message out of the spam folder) and "auth-failure" (RFC 6591: a receiving system reporting a
  DKIM or SPF failure, which says nothing about the reader). The complained-about address is
  Original-Rcpt-To, else Removal-Recipient, else the returned message's recipient headers.
- Microsoft's older feedback loop (JMRP) returns the message with X-HmXmrOriginalRecipient.
- Amazon SES notifications (bounce, complaint, delivery), as plain JSON or inside an SNS
  envelope whose "Message" is that JSON as a string.
"""

from __future__ import annotations

import json
import re
from email.message import Message

from digest.bounces.parts import (
    Finding,
    Kind,
    decoded,
    field_blocks,
    header_addresses,
    parts,
    returned_headers,
    text_blocks,
)
from digest.bounces.reason import Failure, find_reply, find_status, is_hard, reason_of

MAX_JSON_CHARS = 256 * 1024
NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure", "dmarc"})
_ARF_LINE = re.compile(r"^feedback-type:[ \t]*[\w-]+[ \t]*$", re.IGNORECASE | re.MULTILINE)
_ARF_COMPANION = re.compile(r"^(?:user-agent|version|original-rcpt-to):", re.I | re.M)


def complaint(message: Message) -> Finding | None:
    """An ARF report or a JMRP complaint as a Finding; None when the message is neither."""
    fields: dict[str, str] = {}
    for part in parts(message):
        if part.get_content_type() == "message/feedback-report":
            for block in field_blocks(part):
                for name, value in block.items():
                    fields.setdefault(name.lower(), str(value)[:2000])
            break
    if not fields:
        for part in parts(message):
            if part.get_content_type() != "text/plain" or part.is_multipart():
                continue
            text = decoded(part, 64 * 1024)
            if _ARF_LINE.search(text) and _ARF_COMPANION.search(text):
                start = _ARF_LINE.search(text)
                assert start is not None
                for block in text_blocks(text[start.start() : start.start() + 8000])[:1]:
                    for name, value in block.items():
                        fields.setdefault(name.lower(), str(value)[:2000])
                break
    returned = returned_headers(message)
    if not fields:
        original = header_addresses(returned, "x-hmxmroriginalrecipient")
        if original:
            return Finding(Kind.COMPLAINT, tuple(original[:1]), "abuse", "abuse report (JMRP)")
        return None
    feedback_type = fields.get("feedback-type", "abuse").strip().lower()[:40] or "abuse"
    agent = " ".join(fields.get("user-agent", "").split())[:100]
    if feedback_type in NOT_COMPLAINTS:
        what = "not-spam feedback" if feedback_type == "not-spam" else "authentication report"
        return Finding(Kind.NOT_BOUNCE, (), feedback_type, f"{what} {agent}".strip(), "feedback")
    recipients = header_addresses(_as_headers(fields), "original-rcpt-to", "removal-recipient")
    if not recipients:
        recipients = header_addresses(
            returned, "x-hmxmroriginalrecipient", "to", "x-original-to", "delivered-to"
        )
    if not recipients:
        recipients = [_strip_scheme(fields.get("original-rcpt-to", ""))]
    detail = f"{feedback_type} report {agent}".strip()
    return Finding(Kind.COMPLAINT, tuple(recipients), feedback_type, detail, "feedback")


def _as_headers(fields: dict[str, str]) -> Message:
    holder = Message()
    for name in ("original-rcpt-to", "removal-recipient"):
        if name in fields:
            holder[name] = _strip_scheme(fields[name])
    return holder


def _strip_scheme(value: str) -> str:
    """'rfc822; ann@example.com' as 'ann@example.com'."""
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def ses_notification(body: str) -> Finding | None:
    """An Amazon SES notification (bounce, complaint, delivery) in a mail body, if it is one."""
    text = body.strip()
    if not text.startswith("{") or len(text) > MAX_JSON_CHARS:
        return None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("Message"), str):
            if data.get("Type") == "SubscriptionConfirmation":
                return Finding(Kind.NOT_BOUNCE, (), "", "SNS subscription confirmation")
            data = json.loads(data["Message"][:MAX_JSON_CHARS])
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    kind = str(data.get("notificationType") or data.get("eventType") or "")
    if kind == "Bounce":
        return _ses_bounce(data.get("bounce"))
    if kind == "Complaint":
        return _ses_complaint(data.get("complaint"))
    if kind == "Delivery":
        return Finding(Kind.NOT_BOUNCE, (), "", "SES delivery notification", "delivered")
    return None


_SES_SUBTYPES = {
    "NoEmail": "userunknown",
    "Suppressed": "suppressed",
    "OnAccountSuppressionList": "suppressed",
    "MailboxFull": "mailboxfull",
    "MessageTooLarge": "mesgtoobig",
    "ContentRejected": "contenterror",
    "AttachmentRejected": "securityerror",
}


def _ses_bounce(bounce: object) -> Finding | None:
    if not isinstance(bounce, dict):
        return None
    bounce_type = str(bounce.get("bounceType", ""))
    subtype = str(bounce.get("bounceSubType", ""))
    rows = bounce.get("bouncedRecipients")
    hard: list[str] = []
    soft: list[str] = []
    first = ("", "", "")
    for row in rows[:50] if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        address = str(row.get("emailAddress", ""))[:320]
        diagnostic = str(row.get("diagnosticCode", ""))[:2000]
        status = str(row.get("status", "")) or find_status(diagnostic)
        preset = _SES_SUBTYPES.get(subtype, "")
        action = "delayed" if bounce_type == "Transient" and not preset else ""
        failure = Failure(status, find_reply(diagnostic), "", diagnostic, action, preset)
        reason = reason_of(failure)
        permanent = bounce_type == "Permanent"
        chosen = hard if permanent and is_hard(reason, status or failure.reply) else soft
        chosen.append(address)
        if not first[0]:
            first = (status, reason, diagnostic)
    if not hard and not soft:
        return None
    kind = Kind.HARD if hard else Kind.SOFT
    status, reason, diagnostic = first
    detail = f"SES {bounce_type}/{subtype}: {diagnostic}".strip(": ")
    return Finding(kind, tuple(hard + soft), status, detail, reason)


def _ses_complaint(complaint: object) -> Finding | None:
    if not isinstance(complaint, dict):
        return None
    rows = complaint.get("complainedRecipients")
    recipients = [
        str(row.get("emailAddress", ""))[:320]
        for row in (rows[:50] if isinstance(rows, list) else [])
        if isinstance(row, dict)
    ]
    feedback_type = str(complaint.get("complaintFeedbackType") or "abuse").lower()[:40]
    if feedback_type in NOT_COMPLAINTS:
        return Finding(Kind.NOT_BOUNCE, (), feedback_type, "SES not-spam feedback", "feedback")
    agent = " ".join(str(complaint.get("userAgent") or "").split())[:100]
    detail = f"{feedback_type} report {agent}".strip()
    return Finding(Kind.COMPLAINT, tuple(recipients), feedback_type, detail, "feedback")
