"""Every way an address could show up readably in a URL, and the URLs in a received message."""

from __future__ import annotations

import base64
import html
import re
from urllib.parse import quote, quote_plus, unquote

from tests.support.smtpserver import Received

_URL = re.compile(r"(?:https?|mailto):[^\s\"'<>]+", re.IGNORECASE)


def encodings_of(address: str) -> list[str]:
    """The address plain, percent-encoded, and in base64, base64url, base32 and hex, each
    as it would appear inside a longer encoded value (any byte alignment, padding stripped)."""
    raw = address.encode("utf-8")
    found = {address, quote(address, safe=""), quote_plus(address), quote(address), raw.hex()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode, base64.b32encode):
        for start in range(3):
            text = encode(raw[start:]).decode("ascii").rstrip("=")
            found.add(text[:-4] if len(text) > 8 else text)
    return sorted(found)


def urls_in(received: Received) -> list[str]:
    """Every URL in a message: in its headers (List-Unsubscribe) and its decoded parts."""
    message = received.message
    texts = [str(value) for value in message.values()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            content = part.get_content()
            texts.append(
                html.unescape(content) if part.get_content_subtype() == "html" else content
            )
    return sorted({url for text in texts for url in _URL.findall(text)})


def readable_in(url: str, address: str) -> str:
    """The encoding of `address` that `url` shows, or "" when it shows none."""
    haystacks = (url.lower(), unquote(url).lower())
    for encoded in encodings_of(address):
        if any(encoded.lower() in haystack for haystack in haystacks):
            return encoded
    return ""
