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
from email.utils import format_datetime, getaddresses, make_msgid
from functools import lru_cache
from urllib.parse import quote

from digest.config.schema import Config
from digest.core.errors import ConfigError
from digest.core.models import OutgoingMessage, RenderedIssue, Subscriber
from digest.render.personalise import display_name, personalise

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
    joined with CRLF. `rendered` is the part with its placeholders, `sample` the same part
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

        # The same blocks as DATA sends them (leading dots doubled): done once, not per message.
        self.wire_blocks = [
            dot_stuff(block) if isinstance(block, bytes) else block for block in self.blocks
        ]

    def encode(self, filled: list[str]) -> bytes:
        """The part's encoding, given its personal lines filled in for one subscriber."""
        return b"\r\n".join(
            block if isinstance(block, bytes) else _b2a_qp(filled[block].encode("utf-8"))
            for block in self.blocks
        )

    def encode_both(self, filled: list[str]) -> tuple[bytes, bytes]:
        """(encoding, the same dot-stuffed for DATA), given one subscriber's personal lines."""
        lines = [_b2a_qp(line.encode("utf-8")) for line in filled]
        plain = b"\r\n".join(
            block if isinstance(block, bytes) else lines[block] for block in self.blocks
        )
        wire = b"\r\n".join(
            block if isinstance(block, bytes) else dot_stuff(lines[block])
            for block in self.wire_blocks
        )
        return plain, wire


def dot_stuff(block: bytes) -> bytes:
    """Lines of CRLF-ended text as SMTP's DATA carries them: a leading dot doubled (RFC 5321)."""
    block = block.replace(b"\r\n.", b"\r\n..")
    return b"." + block if block.startswith(b".") else block


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
) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    """(text, html) encoded for one subscriber, personalising only the lines that need it; and
    the same two dot-stuffed for DATA."""
    html, text = template.html, template.text
    if html.usable and text.usable:
        only_personal = RenderedIssue(
            rendered.subject, html.personal_text, text.personal_text, marker=rendered.marker
        )
        html_lines, text_lines = personalise(only_personal, subscriber, url, preferences_url)
        filled_html, filled_text = html_lines.split("\n"), text_lines.split("\n")
        if len(filled_html) == len(html.personal) and len(filled_text) == len(text.personal):
            text_body, text_wire = text.encode_both(filled_text)
            html_body, html_wire = html.encode_both(filled_html)
            return (text_body, html_body), (text_wire, html_wire)
    full_html, full_text = personalise(rendered, subscriber, url, preferences_url)
    text_body, html_body = _qp(full_text), _qp(full_html)
    return (text_body, html_body), (dot_stuff(text_body), dot_stuff(html_body))


# An RFC 2047 encoded word may be 75 characters: "=?utf-8?b?" and "?=" leave 63 for base64,
# which is 45 bytes of UTF-8.
_ENCODED_WORD_BYTES = 45
_QUOTED_NAME_LIMIT = 60


def _encoded_words(text: str) -> list[str]:
    """`text` as base64 encoded words, each of whole characters and at most 75 long."""
    chunks: list[bytes] = []
    chunk = b""
    for character in text:
        encoded = character.encode("utf-8")
        if len(chunk) + len(encoded) > _ENCODED_WORD_BYTES:
            chunks.append(chunk)
            chunk = b""
        chunk += encoded
    if chunk:
        chunks.append(chunk)
    return [
        "=?utf-8?b?" + binascii.b2a_base64(piece, newline=False).decode("ascii") + "?="
        for piece in chunks
    ]


def _name_words(name: str) -> list[str]:
    """A display name as header words that read back as exactly `name` and nothing more.

    Printable ASCII goes in one quoted string, backslash-escaped. Anything else (non-ASCII, a
    long name, or text containing "=?", which some readers would decode as an encoded word
    even inside quotes) is wholly RFC 2047-encoded, so a decoder shows the literal text.
    """
    if name.isascii() and "=?" not in name and len(name) <= _QUOTED_NAME_LIMIT:
        return ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return _encoded_words(name)


def to_header(name: str, address: str) -> bytes:
    """The whole To header line for one recipient, folded, with CRLF.

    The address is the only address in it: the name goes through display_name (no control
    characters, bounded) and is then quoted or encoded as a phrase, never pasted in. A
    non-ASCII address is written as UTF-8 (RFC 6532), for messages sent with SMTPUTF8.
    """
    shown = display_name(name)
    words = [*_name_words(shown), f"<{address}>"] if shown else [address]
    lines = ["To:"]
    for word in words:
        if len(lines[-1]) + 1 + len(word) > 78 and lines[-1] != "To:":
            lines.append("")
        lines[-1] += f" {word}"
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _part_head(boundary: bytes, subtype: bytes) -> bytes:
    return (
        b"--" + boundary + b"\r\nContent-Type: text/" + subtype + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
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
    """The full message for one subscriber: placeholders filled, headers set, CRLF line endings."""
    template = _template(envelope)
    https, mailto = unsubscribe_links(envelope, token)
    preferences = (
        envelope.preferences_url_template.replace("{token}", quote(preferences_token, safe=""))
        if envelope.preferences_url_template and preferences_token
        else ""
    )
    (text_body, html_body), (text_wire, html_wire) = _bodies(
        template, envelope.rendered, subscriber, https or mailto, preferences
    )
    smtputf8 = not subscriber.email.isascii()
    unsubscribe = f"<{https}>,\r\n <{mailto}>" if https else f"<{mailto}>"
    personal = to_header(subscriber.name, subscriber.email) + (
        f"Message-ID: {bounce_message_id(envelope.reference, bounce_tag, envelope.domain)}\r\n"
        f"List-Unsubscribe: {unsubscribe}\r\n"
        + ("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" if https else "")
    ).encode("ascii")
    boundary = template.boundary
    # Header lines never begin with a dot, and each body block begins a line: the wire form is
    # the same assembly of the dot-stuffed bodies.
    head = (
        template.headers
        + personal
        + b'Content-Type: multipart/alternative; boundary="'
        + boundary
        + b'"\r\n\r\n'
    )
    plain_head, html_head = _part_head(boundary, b"plain"), _part_head(boundary, b"html")
    tail = b"\r\n--" + boundary + b"--\r\n"
    # One join each, so the large bodies are copied once.
    data, wire = (
        b"".join((head, plain_head, text, b"\r\n", html_head, html, tail))
        for text, html in ((text_body, html_body), (text_wire, html_wire))
    )
    if envelope.dkim is not None:
        signature = _dkim_header(envelope.dkim, data)
        data, wire = signature + data, dot_stuff(_crlf(signature)) + wire
    verp = f"{envelope.reference}-{bounce_tag}" if envelope.reference and bounce_tag else ""
    return OutgoingMessage(
        sender=bounce_sender(envelope.return_path, envelope.sender, verp),
        recipient=subscriber.email,
        data=data,
        smtputf8=smtputf8,
        wire=wire + b".\r\n",
    )


def _crlf(header: bytes) -> bytes:
    """A header block with CRLF line endings whatever the signer used."""
    if header.count(b"\n") == header.count(b"\r\n"):
        return header
    return header.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


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
    # The To header is ours (see to_header), not the email package's: its folding can turn a
    # name that merely looks like an encoded word into an address of its own.
    policy = email.policy.SMTPUTF8 if smtputf8 else email.policy.SMTP
    data = to_header(recipient.name, recipient.email) + message.as_bytes(policy=policy)
    if dkim_key is not None:
        data = _dkim_header(dkim_key, data) + data
    verp = f"s-{bounce_tag}" if bounce_tag else ""
    return OutgoingMessage(
        sender=bounce_sender(config.smtp.return_path, sender, verp),
        recipient=recipient.email,
        data=data,
        smtputf8=smtputf8,
    )
