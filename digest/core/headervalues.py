"""Check config values that end up in mail or HTTP headers, so none can add or break a header.

Each function returns the value unchanged or raises ValueError with a sentence an editor can
act on; config validators turn that into `file:line: key: problem`. The rules:

- no value may hold a control character (CR, LF, NUL, tab, DEL, C1, U+2028/2029): CR and LF
  are how a value would start a header of its own, the rest break or smuggle through parsers;
- text must be encodable (no lone surrogates); non-ASCII text is fine where the message
  builder encodes it (display names, the title, the subject);
- addresses are checked with email-validator and must be ASCII (the xn-- form for an
  internationalised domain), because the sender and the unsubscribe address are used for
  every subscriber, also those whose servers do not speak SMTPUTF8;
- a display name is allowed where a header takes one (`from`, `reply_to`): `Org <a@b.org>`;
  a name with a comma must be quoted, or it would read as two addresses;
- URLs that go in List-Unsubscribe must be printable ASCII without spaces, commas or angle
  brackets (percent-encode them).
"""

from __future__ import annotations

import email.policy
import re
from email.message import EmailMessage

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_NAMES = {"\r": "a carriage return (CR)", "\n": "a line break (LF)", "\x00": "a NUL byte"}
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*$"
)
MAX_HEADER_TEXT = 900  # below SMTP's 998-character line limit, with room for the header name


def one_line(value: str) -> str:
    """`value` if it is encodable text on one line without control characters."""
    match = _CONTROL.search(value)
    if match:
        character = match.group()
        name = _CONTROL_NAMES.get(character, f"the control character U+{ord(character):04X}")
        raise ValueError(
            f"contains {name}, which could break or add a mail header; write it on one line"
            " with no control characters"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains characters that cannot be encoded (a lone surrogate)") from None
    if len(value) > MAX_HEADER_TEXT:
        raise ValueError(f"is longer than {MAX_HEADER_TEXT} characters; shorten it")
    return value


def header_text(value: str) -> str:
    """Free text for a header (title, subject): one line, not blank."""
    one_line(value)
    if not value.strip():
        raise ValueError("is empty; write some text")
    return value


def mailbox(value: str, *, allow_name: bool) -> str:
    """An address, or with `allow_name` also `Name <address>`, safe to use as a header."""
    from email_validator import EmailNotValidError, validate_email

    one_line(value)
    message = EmailMessage(policy=email.policy.SMTP)
    try:
        message["From"] = value
        parsed = message["From"]
        addresses = parsed.addresses
        defects = parsed.defects
    except (ValueError, TypeError, IndexError):
        addresses, defects = (), ("unparsable",)
    example = '"Name" <news@example.org>' if allow_name else "news@example.org"
    if len(addresses) != 1 or defects:
        hint = "; put a name with a comma in double quotes" if "," in value and allow_name else ""
        raise ValueError(f"expected one address such as {example}, got {value!r}{hint}")
    address = addresses[0]
    if address.display_name and not allow_name:
        raise ValueError(f"expected a bare address such as {example}, without a name")
    spec = address.addr_spec
    try:
        checked = validate_email(spec, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"{spec!r} is not a valid email address: {error}") from None
    if not spec.isascii():
        ascii_form = f"; write it as {checked.ascii_email}" if checked.ascii_email else ""
        raise ValueError(
            f"{spec!r} is not an ASCII address, which not every mail server accepts{ascii_form}"
        )
    try:
        message.as_bytes()
    except (ValueError, UnicodeError) as error:
        raise ValueError(f"cannot be written as a mail header: {error}") from None
    return value


def header_url(value: str) -> str:
    """A URL that goes inside <...> in List-Unsubscribe: printable ASCII, no spaces or commas."""
    one_line(value)
    if not value.isascii():
        raise ValueError(
            "contains non-ASCII characters; percent-encode the path and write the domain in"
            " its xn-- form"
        )
    for character, name in ((" ", "a space"), (",", "a comma"), ("<", "<"), (">", ">")):
        if character in value:
            raise ValueError(f"contains {name}; percent-encode it")
    return value


def dns_name(value: str) -> str:
    """A DNS name or label such as a DKIM selector or signing domain, in ASCII."""
    if not _DNS_NAME.match(value):
        raise ValueError(
            f"expected a DNS name such as example.org (ASCII letters, digits, hyphens and"
            f" dots), got {value!r}"
        )
    return value


def printable_ascii(value: str) -> str:
    """Text for an HTTP header such as User-Agent: printable ASCII only."""
    one_line(value)
    if not value.isascii():
        raise ValueError("must be ASCII: HTTP headers carry no other characters")
    return value
