"""Build one subscriber's MIME message from the once-rendered issue: pure, no network.

Everything that is the same for every subscriber (headers, MIME structure, and the
quoted-printable encoding of every line that does not change) is worked out once per issue;
each message then only encodes the few lines that carry per-subscriber values and joins bytes.
That keeps a 10,000-subscriber send bound by the mail server, not by Python's email package.
"""

from __future__ import annotations

import binascii
import email.policy
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, getaddresses, make_msgid
from functools import lru_cache
from urllib.parse import quote

from digest.config import Config
from digest.errors import ConfigError
from digest.models import OutgoingMessage, RenderedIssue, Subscriber
from digest.personalise import personalise

# Headers a DKIM signature covers: the ones a reader sees, plus the list headers that an
# unsubscribe button depends on (RFC 8058 section 4 asks for List-Unsubscribe and
# List-Unsubscribe-Post to be signed).
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
)
_NAME_LIMIT = 100


@dataclass(frozen=True)
class DkimKey:
    """What DKIM signing needs: the private key and where its public half is published."""

    selector: str
    domain: str
    private_key: bytes


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
    dkim: DkimKey | None = None
    preferences_url_template: str | None = None  # with {token}; None when sign-up is off
    return_path: str | None = None  # smtp.return_path, perhaps with {token}
    reference: str = ""  # the issue's number once frozen: Message-IDs and VERP tokens name it


def bounce_sender(return_path: str | None, default: str, token: str) -> str:
    """The envelope sender: smtp.return_path with the VERP token filled in, else `default`."""
    if not return_path:
        return default
    if not token:
        return return_path.replace("+{token}", "").replace("-{token}", "").replace("{token}", "")
    return return_path.replace("{token}", token)


def bounce_message_id(reference: str, tag: str, domain: str) -> str:
    """A Message-ID naming the delivery (its reference and tag), unique per message."""
    if not reference or not tag:
        return make_msgid(domain=domain)
    return f"<d{reference}.{tag}.{secrets.token_hex(6)}@{domain}>"


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


def load_dkim(config: Config) -> DkimKey | None:
    """The DKIM key named in smtp.dkim, checked by signing a test message; None when unset."""
    settings = config.smtp.dkim
    if settings is None:
        return None
    path = config.resolve(settings.key_file)
    try:
        private_key = path.read_bytes()
    except OSError as error:
        raise ConfigError(
            f"{config.source}: smtp.dkim.key_file: cannot read {path}: {error.strerror}"
        ) from None
    key = DkimKey(settings.selector, settings.domain, private_key)
    import dkim  # only when signing: it pulls in a DNS resolver

    try:
        _dkim_header(key, b"From: a@example.org\r\nSubject: test\r\n\r\nbody\r\n")
    except dkim.DKIMException as error:
        raise ConfigError(
            f"{config.source}: smtp.dkim.key_file: {path} is not a usable private key: {error}"
            " (expected an RSA key in PEM format)"
        ) from None
    return key


def envelope_for(
    config: Config,
    rendered: RenderedIssue,
    now: datetime,
    *,
    dkim_key: DkimKey | None = None,
    reference: str = "",
) -> IssueEnvelope:
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
        dkim=dkim_key,
        preferences_url_template=f"{config.public_url}/preferences?token={{token}}"
        if config.signup.enabled and config.public_url
        else None,
        return_path=config.smtp.return_path,
        reference=reference,
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


def _b2a_qp(data: bytes) -> bytes:
    """binascii's quoted-printable (fast, in C), with its one slip fixed: an encoded trailing
    space or tab can push a line to 77 characters; RFC 2045 allows 76."""
    # The CRLF appended (and removed) makes binascii use CRLF for soft line breaks too.
    encoded = binascii.b2a_qp(data + b"\r\n", istext=True)[:-2]
    if (
        b"=20\r\n" not in encoded
        and b"=09\r\n" not in encoded
        and not encoded.endswith((b"=20", b"=09"))
    ):
        return encoded
    lines = encoded.split(b"\r\n")
    return b"\r\n".join(
        line if len(line) <= 76 else line[:-3] + b"=\r\n" + line[-3:] for line in lines
    )


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line breaks."""
    return _b2a_qp("\r\n".join(_lines(text)).encode("utf-8"))


class EncodedBody:
    """A text part quoted-printable encoded once; per message only its personal lines change.

    Quoted-printable encodes each line on its own, so a part's encoding is its lines' encodings
    joined with CRLF. `rendered` is the part with its slots, `sample` the same part
    personalised with probe values: lines where the probe shows up are personal, the rest
    are encoded here once. Per subscriber only the personal lines are filled in and encoded.
    When the two do not line up (personalise changed more than the marked lines), `usable` is
    False and callers encode the whole personalised part instead.
    """

    def __init__(self, rendered: str, sample: str, probe: str) -> None:
        rendered_lines = _lines(rendered)
        sample_lines = _lines(sample)
        self.usable = len(rendered_lines) == len(sample_lines)
        self.personal: list[str] = []
        self.blocks: list[bytes | int] = []
        static: list[str] = []
        for line, filled in zip(rendered_lines, sample_lines, strict=False):
            if probe in filled:
                if static:
                    self.blocks.append(_b2a_qp("\r\n".join(static).encode("utf-8")))
                    static = []
                self.blocks.append(len(self.personal))
                self.personal.append(line)
            elif line == filled:
                static.append(line)
            else:
                self.usable = False
        if static:
            self.blocks.append(_b2a_qp("\r\n".join(static).encode("utf-8")))
        self.personal_text = "\n".join(self.personal)

    def encode(self, filled: list[str]) -> bytes:
        """The part's encoding, given its personal lines filled in for one subscriber."""
        return b"\r\n".join(
            block if isinstance(block, bytes) else _b2a_qp(filled[block].encode("utf-8"))
            for block in self.blocks
        )


def _lines(text: str) -> list[str]:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


@dataclass(frozen=True)
class _IssueTemplate:
    headers: bytes
    boundary: bytes
    text: EncodedBody
    html: EncodedBody


def _fold_header(name: str, value: str) -> bytes:
    policy = email.policy.SMTP
    message = EmailMessage(policy=policy)
    message[name] = value
    return message.as_bytes(policy=policy).split(b"\r\n\r\n", 1)[0] + b"\r\n"


@lru_cache(maxsize=4)
def _template(envelope: IssueEnvelope) -> _IssueTemplate:
    """The per-issue work: fixed headers folded, bodies encoded, MIME boundary chosen."""
    headers = b"".join(
        _fold_header(name, value)
        for name, value in (
            ("From", envelope.from_header),
            ("Subject", " ".join(envelope.rendered.subject.split())),
            ("Date", format_datetime(envelope.date)),
            ("Reply-To", envelope.reply_to),
            ("List-Id", envelope.list_id),
            ("Precedence", "bulk"),
            ("MIME-Version", "1.0"),
        )
        if value
    )
    # Quoted-printable output never contains "==", so this boundary cannot occur in a body.
    boundary = f"=={secrets.token_hex(12)}==".encode("ascii")
    probe = secrets.token_hex(8)
    sample = Subscriber(email=f"m{probe}@example.invalid", name=f"N{probe}")
    rendered = envelope.rendered
    html, text = personalise(
        rendered, sample, f"https://example.invalid/{probe}", f"https://example.invalid/p{probe}"
    )
    return _IssueTemplate(
        headers=headers,
        boundary=boundary,
        text=EncodedBody(rendered.text, text, probe),
        html=EncodedBody(rendered.html, html, probe),
    )


def _bodies(
    template: _IssueTemplate,
    rendered: RenderedIssue,
    subscriber: Subscriber,
    url: str,
    preferences_url: str,
) -> tuple[bytes, bytes]:
    """(text, html) encoded for one subscriber, personalising only the lines that need it."""
    html, text = template.html, template.text
    if html.usable and text.usable:
        only_personal = RenderedIssue(
            rendered.subject, html.personal_text, text.personal_text, marker=rendered.marker
        )
        html_lines, text_lines = personalise(only_personal, subscriber, url, preferences_url)
        filled_html, filled_text = html_lines.split("\n"), text_lines.split("\n")
        if len(filled_html) == len(html.personal) and len(filled_text) == len(text.personal):
            return text.encode(filled_text), html.encode(filled_html)
    full_html, full_text = personalise(rendered, subscriber, url, preferences_url)
    return _qp(full_text), _qp(full_html)


def _to_header(subscriber: Subscriber, smtputf8: bool) -> bytes:
    name = " ".join(subscriber.name.split())[:_NAME_LIMIT].strip()
    address = f"<{subscriber.email}>"
    if not name:
        phrase = ""
    elif smtputf8:
        # RFC 6532: with SMTPUTF8 the header may carry UTF-8 as is.
        phrase = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        phrase = formataddr((name, "x@x"), charset="utf-8")[: -len(" <x@x>")]
    line = f"To: {phrase} {address}" if phrase else f"To: {subscriber.email}"
    if len(line) > 78 and phrase:
        line = f"To: {phrase}\r\n {address}"
    return f"{line}\r\n".encode() if smtputf8 else f"{line}\r\n".encode("ascii")


def _part(boundary: bytes, subtype: bytes, body: bytes) -> bytes:
    return (
        b"--" + boundary + b"\r\nContent-Type: text/" + subtype + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body
    )


def _dkim_header(key: DkimKey, data: bytes) -> bytes:
    import dkim

    present = {
        line.split(b":", 1)[0].strip().lower() for line in data.split(b"\r\n\r\n")[0].split(b"\r\n")
    }
    return bytes(
        dkim.sign(
            data,
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[name for name in SIGNED_HEADERS if name in present],
        )
    )


def build_message(
    envelope: IssueEnvelope,
    subscriber: Subscriber,
    token: str,
    preferences_token: str = "",
    bounce_tag: str = "",
) -> OutgoingMessage:
    """The full message for one subscriber: slots filled, headers set, CRLF line endings."""
    template = _template(envelope)
    https, mailto = unsubscribe_links(envelope, token)
    preferences = (
        envelope.preferences_url_template.replace("{token}", quote(preferences_token, safe=""))
        if envelope.preferences_url_template and preferences_token
        else ""
    )
    text_body, html_body = _bodies(
        template, envelope.rendered, subscriber, https or mailto, preferences
    )
    smtputf8 = not subscriber.email.isascii()
    unsubscribe = f"<{https}>,\r\n <{mailto}>" if https else f"<{mailto}>"
    personal = _to_header(subscriber, smtputf8) + (
        f"Message-ID: {bounce_message_id(envelope.reference, bounce_tag, envelope.domain)}\r\n"
        f"List-Unsubscribe: {unsubscribe}\r\n"
        + ("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" if https else "")
    ).encode("ascii")
    boundary = template.boundary
    data = b"".join(
        (
            template.headers,
            personal,
            b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n',
            _part(boundary, b"plain", text_body),
            b"\r\n",
            _part(boundary, b"html", html_body),
            b"\r\n--" + boundary + b"--\r\n",
        )
    )
    if envelope.dkim is not None:
        data = _dkim_header(envelope.dkim, data) + data
    verp = f"{envelope.reference}-{bounce_tag}" if envelope.reference and bounce_tag else ""
    return OutgoingMessage(
        sender=bounce_sender(envelope.return_path, envelope.sender, verp),
        recipient=subscriber.email,
        data=data,
        smtputf8=smtputf8,
    )


def transactional_message(
    config: Config,
    recipient: Subscriber,
    subject: str,
    text: str,
    html: str,
    now: datetime,
    dkim_key: DkimKey | None,
    bounce_tag: str = "",
) -> OutgoingMessage:
    """A one-off message to one person (a sign-up confirmation, a welcome): the newsletter's
    sender and DKIM signature, but no List-Unsubscribe, since it is not a mailing. With
    `bounce_tag` (the tag for reference "s") its Message-ID and VERP sender name it."""
    newsletter = config.newsletter
    sender = sender_address(newsletter.from_address)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = newsletter.from_address
    smtputf8 = not recipient.email.isascii()
    name = " ".join(recipient.name.split())[:_NAME_LIMIT]
    message["To"] = formataddr((name, recipient.email)) if name else recipient.email
    message["Subject"] = " ".join(subject.split())
    message["Date"] = format_datetime(now)
    message["Message-ID"] = bounce_message_id(
        "s" if bounce_tag else "", bounce_tag, sender.rsplit("@", 1)[1].lower()
    )
    if newsletter.reply_to:
        message["Reply-To"] = newsletter.reply_to
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    policy = email.policy.SMTPUTF8 if smtputf8 else email.policy.SMTP
    data = message.as_bytes(policy=policy)
    if dkim_key is not None:
        data = _dkim_header(dkim_key, data) + data
    verp = f"s-{bounce_tag}" if bounce_tag else ""
    return OutgoingMessage(
        sender=bounce_sender(config.smtp.return_path, sender, verp),
        recipient=recipient.email,
        data=data,
        smtputf8=smtputf8,
    )
