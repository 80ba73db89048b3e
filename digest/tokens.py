"""Per-subscriber unsubscribe tokens: the address, signed with HMAC-SHA256."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

_SIGNATURE_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, address: str) -> bytes:
    digest = hmac.new(secret.encode("utf-8"), address.lower().encode("utf-8"), hashlib.sha256)
    return digest.digest()[:_SIGNATURE_BYTES]


def make_token(secret: str, address: str) -> str:
    """A URL-safe token naming the address, which only the secret's holder can produce."""
    return f"{_b64(address.lower().encode('utf-8'))}.{_b64(_signature(secret, address))}"


def verify_token(secret: str, token: str) -> str | None:
    """The address a token names, or None when it is malformed or not signed with this secret."""
    encoded, _, signature = token.partition(".")
    if not encoded or not signature or len(token) > 1024:
        return None
    try:
        address = _unb64(encoded).decode("utf-8")
        given = _unb64(signature)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(given, _signature(secret, address)):
        return None
    return address
