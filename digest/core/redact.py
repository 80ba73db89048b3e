"""Mask credentials in URLs and known secret values before text reaches a message or a log."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters that carry credentials in feed URLs (private feeds, API gateways).
SECRET_PARAMETERS = re.compile(
    r"(?:^|[_-])(?:key|token|secret|password|passwd|pwd|auth|signature|sig|session|sid|"
    r"access[_-]?token|api[_-]?key|apikey|client[_-]?secret)$",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """The URL with any user:password@ and credential-like query values replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_PARAMETERS.search(name) for name, _ in pairs):
            query = urlencode(
                [
                    (name, MASK if SECRET_PARAMETERS.search(name) else value)
                    for name, value in pairs
                ],
                safe="*",
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret value (4 characters or more) masked."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
