"""Click redirects: the signed path a tracked post link goes through, and telling a link
scanner's request from a person's.

With `tracking.clicks: aggregate`, each post link in a sent issue points at the public app's
`/r/ISSUE/LINK/SIGNATURE` instead of at the post. The path names the issue (its id in the
state) and the link (its number within the issue, 1 upwards), never the reader: every copy of
an issue carries the same redirects, so a click can be counted but not tied to anyone. Where a
link goes is not in the path at all: the state keeps (issue, link, URL) as written when the
issue was frozen, so the redirect can only lead to a URL digest itself sent.

The signature is an HMAC-SHA256 over "ISSUE/LINK" with a key derived from the signing secret
for this one purpose (so no other token can be passed off as one), cut to 96 bits: too many
to guess, short enough to keep links short. Anything else under /r/ is refused before the
state is read.

Scanners: security gateways (Barracuda, Proofpoint, Mimecast, Microsoft's Safe Links and
Defender, Gmail's content sampling) follow every link of a message as it arrives, and chat
apps fetch a link to show its preview. Those that name themselves are known by a fragment of
their User-Agent (SCANNER_AGENTS); a HEAD request or a missing User-Agent is never a person
with a browser. Gateways that pose as a browser are caught only by timing, which the store
judges (a request within `tracking.scanner_seconds` of a delivery of the issue).

This module imports nothing of digest's: the secret is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

REDIRECT_PREFIX = "/r/"
MAX_REDIRECT_PATH = 64  # characters; a redirect digest makes is at most 43
MAX_AGENT = 512  # characters of a User-Agent looked at
_SIGNATURE_BYTES = 12
_KEY_LABEL = b"digest click redirect 1"
_PATH = re.compile(r"/r/([1-9][0-9]{0,15})/([1-9][0-9]{0,5})/([A-Za-z0-9_-]{16})")

# Fragments of the User-Agent of programs that fetch links in mail on a reader's behalf, in
# lower case. Sources: deliverability write-ups of the link checks email gateways make, which
# report Barracuda's and Proofpoint's names in the User-Agent (Mimecast's is listed for the
# same reason: no browser carries a gateway's name); Microsoft's BingPreview and the Office
# clients' "existence discovery" and ms-office requests (Safe Links, Outlook); Gmail's
# content sampling and image proxy; the link-preview fetchers of chat and social apps, which
# name themselves; and HTTP libraries and headless browsers no reader browses with. A scanner
# posing as a browser is caught only by its timing.
SCANNER_AGENTS: tuple[str, ...] = (
    # email security gateways
    "barracuda",
    "proofpoint",
    "mimecast",
    # Microsoft: Safe Links, Defender and Office's own link checks
    "bingpreview",
    "ms-office",
    "microsoft office existence discovery",
    # Google
    "gmail-content-sampling",
    "googleimageproxy",
    # link previews in chat and social apps
    "slackbot",
    "twitterbot",
    "discordbot",
    "telegrambot",
    "linkedinbot",
    "facebookexternalhit",
    "whatsapp",
    "skypeuripreview",
    # crawlers and HTTP libraries
    "googlebot",
    "bingbot",
    "headlesschrome",
    "python-requests",
    "python-httpx",
    "go-http-client",
    "curl/",
    "wget/",
)


def _key(secret: str) -> bytes:
    """The redirects' own key, derived from the signing secret."""
    return hmac.new(secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()


def link_signature(secret: str, issue_id: int, link_id: int) -> str:
    """The 16 base64url characters that sign the redirect for one link of one issue."""
    message = f"{issue_id}/{link_id}".encode("ascii")
    digest = hmac.new(_key(secret), message, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def redirect_path(secret: str, issue_id: int, link_id: int) -> str:
    """The path of one link's redirect on the public app, e.g. /r/12/3/SIGNATURE."""
    if issue_id < 1 or link_id < 1:
        raise ValueError("issue and link numbers start at 1")
    return f"{REDIRECT_PREFIX}{issue_id}/{link_id}/{link_signature(secret, issue_id, link_id)}"


def read_redirect_path(secret: str, path: str) -> tuple[int, int] | None:
    """(issue, link) of a redirect path this secret signed; None for anything else: too long,
    malformed, or a signature that does not match (compared in constant time)."""
    if len(path) > MAX_REDIRECT_PATH:
        return None
    match = _PATH.fullmatch(path)
    if match is None:
        return None
    issue_id, link_id = int(match.group(1)), int(match.group(2))
    if not hmac.compare_digest(match.group(3), link_signature(secret, issue_id, link_id)):
        return None
    return issue_id, link_id


def scanner_reason(method: str, user_agent: str) -> str:
    """Why a request looks like a program rather than a person following a link ("" when
    nothing says so): a HEAD request, no User-Agent, or one naming a known scanner."""
    if method.upper() == "HEAD":
        return "HEAD request"
    agent = user_agent[:MAX_AGENT].strip().lower()
    if not agent:
        return "no User-Agent"
    for fragment in SCANNER_AGENTS:
        if fragment in agent:
            return f"User-Agent names {fragment}"
    return ""
