"""One canonical form for an email address, used wherever an address enters digest.

An address reaches digest from the subscriber file, the sign-up form, the command line, bounce
reports, provider webhooks and unsubscribe links. Each of those must name the same person by the
same string, or an unsubscribe, a suppression, an erasure or the de-duplication of the list
silently misses them. So every entry point calls `canonical_address` once, and everything after
it (the state, tokens, the audience) compares canonical strings only.

The canonical form, decided once:

- Unicode text is NFC-normalised (email-validator does this).
- The whole address is lower-cased. RFC 5321 lets a mail system treat local parts as
  case-sensitive, but virtually none does, and a list that could hold "Ann@" and "ann@" as two
  people is the greater harm.
- The domain is in its ASCII form: an internationalised domain becomes its IDNA A-label
  (`xn--...`, UTS #46 as email-validator applies it). A reader who types `erin@bücher.example`
  and one who types `erin@xn--bcher-kva.example` are one person. An address with an ASCII local
  part is then plain ASCII and needs no SMTPUTF8; only a non-ASCII local part does.

`canonical_address` raises `AddressError` with a plain sentence for anything that is not an
address. `canonical_or_none` is for untrusted text (bounce reports, webhooks) where a bad value
is simply not an address.
"""

from __future__ import annotations

from functools import lru_cache

MAX_ADDRESS_LENGTH = 254  # RFC 5321's limit on a forward path, less its angle brackets


class AddressError(ValueError):
    """The text is not an email address; the message says why in plain words."""


@lru_cache(maxsize=4096)
def canonical_address(text: str) -> str:
    """The address in digest's canonical form (see the module docstring), or AddressError."""
    from email_validator import EmailNotValidError, validate_email

    candidate = text.strip()
    if not candidate:
        raise AddressError("no email address given")
    if any(ord(character) < 32 or ord(character) == 127 for character in candidate):
        raise AddressError("an email address cannot contain control characters")
    if len(candidate) > 4 * MAX_ADDRESS_LENGTH:
        raise AddressError("that is too long to be an email address")
    try:
        checked = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as error:
        raise AddressError(str(error)) from None
    local = checked.local_part.lower()
    domain = checked.ascii_domain.lower()
    address = f"{local}@{domain}"
    if len(address.encode("utf-8")) > MAX_ADDRESS_LENGTH:
        raise AddressError("that is too long to be an email address")
    return address


def canonical_or_none(text: object) -> str | None:
    """The canonical form of untrusted text, or None when it is not an email address."""
    if not isinstance(text, str):
        return None
    try:
        return canonical_address(text)
    except AddressError:
        return None


def needs_smtputf8(address: str) -> bool:
    """Whether a canonical address can only be sent with SMTPUTF8 (a non-ASCII local part)."""
    return not address.isascii()
