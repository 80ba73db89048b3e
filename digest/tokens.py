"""Signed tokens for links in mail: the address, what the link is for, and until when.

Two forms:

- Unsubscribe tokens (`make_token`), the form 0.1.0 put in every message: the address and an
  HMAC-SHA256 over it. They never expire, because a List-Unsubscribe link in an old message must
  keep working (RFC 8058), and they are only ever accepted for unsubscribing.
- Purpose tokens (`make_purpose_token`) for everything else (confirming a sign-up, the
  preferences page): the signature covers the purpose, the address and the expiry time, so a
  token made for one purpose is refused for another and a late one is refused.

The secret is passed in: this module imports nothing of digest's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

_SIGNATURE_BYTES = 16
MAX_TOKEN_LENGTH = 1024
_PURPOSE_PREFIX = "p1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, address: str) -> bytes:
    digest = hmac.new(secret.encode("utf-8"), address.lower().encode("utf-8"), hashlib.sha256)
    return digest.digest()[:_SIGNATURE_BYTES]


def make_token(secret: str, address: str) -> str:
    """A URL-safe unsubscribe token naming the address, which only the secret's holder can make."""
    return f"{_b64(address.lower().encode('utf-8'))}.{_b64(_signature(secret, address))}"


def verify_token(secret: str, token: str) -> str | None:
    """The address an unsubscribe token names, or None when it is malformed or not ours."""
    encoded, _, signature = token.partition(".")
    if not encoded or not signature or len(token) > MAX_TOKEN_LENGTH or "." in signature:
        return None
    try:
        address = _unb64(encoded).decode("utf-8")
        given = _unb64(signature)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(given, _signature(secret, address)):
        return None
    return address


@dataclass(frozen=True)
class TokenCheck:
    """What checking a purpose token found: the address, or why it was refused."""

    address: str | None
    problem: str = ""  # "", "invalid" or "expired"


def _purpose_signature(secret: str, purpose: str, address: str, expires: int) -> bytes:
    message = f"digest-token\0{purpose}\0{address.lower()}\0{expires}".encode()
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256)
    return digest.digest()[:_SIGNATURE_BYTES]


APPROVAL_PURPOSE = "approval"  # the purpose of an approver's Approve / Hold link


def make_purpose_token(secret: str, purpose: str, address: str, expires: datetime) -> str:
    """A URL-safe token for one purpose (e.g. "confirm"), good until `expires`."""
    if expires.tzinfo is None:
        raise ValueError("a token's expiry must be timezone-aware")
    seconds = int(expires.timestamp())
    signature = _purpose_signature(secret, purpose, address, seconds)
    encoded = _b64(address.lower().encode("utf-8"))
    return f"{_PURPOSE_PREFIX}.{encoded}.{seconds}.{_b64(signature)}"


def check_purpose_token(secret: str, purpose: str, token: str, now: datetime) -> TokenCheck:
    """The address a purpose token names, if it is ours, for `purpose` and not yet expired."""
    parts = token.split(".")
    if len(token) > MAX_TOKEN_LENGTH or len(parts) != 4 or parts[0] != _PURPOSE_PREFIX:
        return TokenCheck(None, "invalid")
    _, encoded, seconds_text, signature = parts
    if not seconds_text.isdigit() or len(seconds_text) > 12:
        return TokenCheck(None, "invalid")
    try:
        address = _unb64(encoded).decode("utf-8")
        given = _unb64(signature)
    except (binascii.Error, ValueError):
        return TokenCheck(None, "invalid")
    expected = _purpose_signature(secret, purpose, address, int(seconds_text))
    if not hmac.compare_digest(given, expected):
        return TokenCheck(None, "invalid")
    if now >= datetime.fromtimestamp(int(seconds_text), UTC):
        return TokenCheck(None, "expired")
    return TokenCheck(address)


def address_hash(secret: str, address: str) -> str:
    """A keyed hash standing for an address once its owner asked to be forgotten."""
    digest = hmac.new(
        secret.encode("utf-8"), b"digest-forgotten\0" + address.lower().encode("utf-8"), "sha256"
    )
    return digest.hexdigest()


# Bounce identifiers: a delivery is named by a reference (the number, or "s" for the
# sign-up mail) and a tag, an HMAC over the reference and the address, so a bounce can be tied
# to the delivery it reports and a forged one cannot name a delivery that never happened.
TAG_LENGTH = 16
TRANSACTIONAL_REFERENCE = "s"


def delivery_tag(secret: str, reference: str, address: str) -> str:
    """16 lower-case base32 characters naming one delivery of `reference` to `address`."""
    message = f"digest-bounce\0{reference}\0{address.lower()}".encode()
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:TAG_LENGTH]


def tag_matches(secret: str, reference: str, address: str, tag: str) -> bool:
    """Whether `tag` is the one made for this delivery."""
    return hmac.compare_digest(delivery_tag(secret, reference, address), tag.lower())
