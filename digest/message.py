"""Build one subscriber's MIME message from the once-rendered issue: pure, no I/O."""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from urllib.parse import quote

from digest.config import Config
from digest.models import ConfigError, RenderedIssue, Subscriber
from digest.render import personalise


@dataclass(frozen=True)
class OutgoingMessage:
    """One message ready for the SMTP server: envelope and the exact bytes."""

    sender: str
    recipient: str
    data: bytes
    smtputf8: bool = False


@dataclass(frozen=True)
class IssueEnvelope:
    """Everything about the issue's messages that is the same for every subscriber."""

    rendered: RenderedIssue
    from_header: str
    sender: str
    domain: str
    reply_to: str | None
    list_id: str
    unsubscribe_url_template: str | None
    unsubscribe_mailto: str
    date: datetime


def sender_address(from_header: str) -> str:
    """The bare address in a From header such as 'Org <digest@example.org>'."""
    pairs = getaddresses([from_header])
    address = pairs[0][1] if pairs else ""
    if "@" not in address:
        raise ConfigError(f"newsletter.from: expected 'Name <address@domain>', got {from_header!r}")
    return address


def list_id(title: str, domain: str) -> str:
    """An RFC 2919 List-Id: a readable phrase and a dot-atom identifier under our domain."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "digest"
    phrase = re.sub(r'["\\\r\n]', "", title)[:60]
    return f'"{phrase}" <{slug}.{domain}>'


def envelope_for(config: Config, rendered: RenderedIssue, now: datetime) -> IssueEnvelope:
    """Work out the per-issue headers once."""
    newsletter = config.newsletter
    sender = sender_address(newsletter.from_address)
    domain = sender.rsplit("@", 1)[1].lower()
    return IssueEnvelope(
        rendered=rendered,
        from_header=newsletter.from_address,
        sender=sender,
        domain=domain,
        reply_to=newsletter.reply_to,
        list_id=list_id(newsletter.title, domain),
        unsubscribe_url_template=newsletter.unsubscribe_url,
        unsubscribe_mailto=newsletter.unsubscribe_mailto or sender,
        date=now,
    )


def unsubscribe_links(envelope: IssueEnvelope, token: str) -> tuple[str | None, str]:
    """(one-click https URL or None, mailto URL) for one subscriber."""
    https = (
        envelope.unsubscribe_url_template.replace("{token}", quote(token, safe=""))
        if envelope.unsubscribe_url_template
        else None
    )
    mailto = f"mailto:{envelope.unsubscribe_mailto}?subject={quote('unsubscribe ' + token)}"
    return https, mailto


def build_message(envelope: IssueEnvelope, subscriber: Subscriber, token: str) -> OutgoingMessage:
    """The full message for one subscriber: placeholders filled, headers set, CRLF line endings."""
    https, mailto = unsubscribe_links(envelope, token)
    html, text = personalise(envelope.rendered, subscriber, https or mailto)
    message = EmailMessage()
    message["From"] = envelope.from_header
    message["To"] = (
        Address(display_name=subscriber.name, addr_spec=subscriber.email)
        if subscriber.name
        else subscriber.email
    )
    message["Subject"] = " ".join(envelope.rendered.subject.split())
    message["Date"] = format_datetime(envelope.date)
    message["Message-ID"] = make_msgid(domain=envelope.domain)
    if envelope.reply_to:
        message["Reply-To"] = envelope.reply_to
    message["List-Id"] = envelope.list_id
    if https:
        message["List-Unsubscribe"] = f"<{https}>, <{mailto}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    else:
        message["List-Unsubscribe"] = f"<{mailto}>"
    message["Precedence"] = "bulk"
    message.set_content(text, subtype="plain", cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    smtputf8 = not subscriber.email.isascii()
    policy = email.policy.SMTPUTF8 if smtputf8 else email.policy.SMTP
    return OutgoingMessage(
        sender=envelope.sender,
        recipient=subscriber.email,
        data=message.as_bytes(policy=policy),
        smtputf8=smtputf8,
    )
