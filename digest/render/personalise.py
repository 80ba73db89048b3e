"""Per-subscriber placeholders in a rendered issue, and filling them in for one subscriber."""

from __future__ import annotations

import html as html_lib
import re
import secrets
import unicodedata
from dataclasses import replace
from functools import cache

from digest.core.models import RenderedIssue, Subscriber

# Per-subscriber placeholders. An issue rendered now marks them with its own random marker,
# drawn after the feeds were read, so no feed text or config string can contain one:
# personalisation fills only what the templates put there. Issues frozen by 0.1.0 (marker "")
# keep these fixed forms.
NAME_PLACEHOLDER = "%%DIGEST_NAME%%"
EMAIL_PLACEHOLDER = "%%DIGEST_EMAIL%%"
UNSUBSCRIBE_PLACEHOLDER = "%%DIGEST_UNSUBSCRIBE_URL%%"
RECIPIENT_PLACEHOLDER = "%%DIGEST_RECIPIENT%%"
PLACEHOLDER_FIELDS = ("NAME", "EMAIL", "RECIPIENT", "UNSUBSCRIBE_URL", "PREFERENCES_URL")
MARKER_BYTES = 16
NAME_LIMIT = 100  # characters of a reader's name that digest shows anywhere

# Kept out of names: control and format characters (bidi overrides and isolates, zero-width
# and invisible ones, the BOM), lone surrogates and unassigned code points. Whitespace of any
# kind (CR, LF, tab, NBSP, U+2028) becomes one space first. Zero-width (non-)joiners stay:
# several scripts and emoji need them.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
_JOINERS = frozenset({"\u200c", "\u200d"})


def display_name(text: str, limit: int = NAME_LIMIT) -> str:
    """A reader's name as digest shows it (To headers, the greeting): one line of visible text.

    A name is what a reader typed or an editor listed, so it is only ever text: no character
    in it can end a header, start another or hide what follows it, however it is later
    quoted or encoded; and it is at most `limit` characters, with whitespace runs as one space.
    """
    if text.isascii() and text.isprintable():
        return " ".join(text.split())[:limit].strip()
    kept = "".join(
        " "
        if character.isspace()
        else character
        if character in _JOINERS or unicodedata.category(character) not in _DROPPED_CATEGORIES
        else ""
        for character in text
    )
    return " ".join(kept.split())[:limit].strip()


def new_marker() -> str:
    """A fresh random marker for one issue's per-subscriber placeholders (128 bits, hex)."""
    return secrets.token_hex(MARKER_BYTES)


def placeholder(marker: str, field: str) -> str:
    """The text standing for one per-subscriber `field` in an issue rendered with `marker`."""
    if field not in PLACEHOLDER_FIELDS:
        raise ValueError(f"unknown per-subscriber field {field!r}")
    return f"%%DIGEST_{field}_{marker}%%" if marker else f"%%DIGEST_{field}%%"


@cache
def _placeholder_pattern(marker: str) -> re.Pattern[str]:
    return re.compile(
        "|".join(re.escape(placeholder(marker, field)) for field in PLACEHOLDER_FIELDS)
    )


def personalise(
    rendered: RenderedIssue,
    subscriber: Subscriber,
    unsubscribe_url: str,
    preferences_url: str = "",
) -> tuple[str, str]:
    """(html, text) for one subscriber: the issue's own placeholders filled in, escaped in the
    HTML."""
    name = display_name(subscriber.name)
    email = subscriber.email.strip()
    marker = rendered.marker
    values = {
        placeholder(marker, "NAME"): name,
        placeholder(marker, "EMAIL"): email,
        placeholder(marker, "RECIPIENT"): f"{name} ({email})" if name else email,
        placeholder(marker, "UNSUBSCRIBE_URL"): unsubscribe_url.strip(),
        placeholder(marker, "PREFERENCES_URL"): preferences_url.strip(),
    }
    escaped = {key: html_lib.escape(value, quote=True) for key, value in values.items()}
    pattern = _placeholder_pattern(marker)
    html = pattern.sub(lambda m: escaped[m.group(0)], rendered.html)
    text = pattern.sub(lambda m: values[m.group(0)], rendered.text)
    return html, text


def issue_url_placeholder(marker: str) -> str:
    """The text standing for the issue's own web page in an issue rendered with `marker`.

    It is filled once per issue, not per subscriber: at freeze time with the issue's archive
    URL (see stamp_issue_url), or with the preview's address for previews and test sends.
    """
    return f"%%DIGEST_ISSUE_URL_{marker}%%" if marker else "%%DIGEST_ISSUE_URL%%"


def stamp_issue_url(rendered: RenderedIssue, url: str) -> RenderedIssue:
    """The issue with its "view in browser" placeholder filled with `url` (escaped in the HTML)."""
    placeholder = issue_url_placeholder(rendered.marker)
    return replace(
        rendered,
        html=rendered.html.replace(placeholder, html_lib.escape(url.strip(), quote=True)),
        text=rendered.text.replace(placeholder, url.strip()),
    )


_PARAGRAPH = r"<p\b[^>]*>(?:(?!</?p\b).)*?{placeholder}(?:(?!</?p\b).)*?</p>"
_LINK = r"(<a\b[^>]*\bhref=\"){placeholder}[^\"]*(\"[^>]*>).*?(</a>)"


def depersonalise(rendered: RenderedIssue, subscribe_url: str, subscribe_label: str) -> str:
    """The frozen HTML with every per-subscriber placeholder gone, for the public web copy.

    A frozen issue holds no personal data, only placeholders, so filling every placeholder with a
    neutral value leaves nothing personal: paragraphs naming the recipient ("This email was sent to
    ...") are dropped, the unsubscribe link becomes a Subscribe link, the preferences link goes,
    and any placeholder left over is emptied (the unsubscribe URL's becomes the subscribe URL).
    """
    marker = rendered.marker
    html = rendered.html
    url, label = html_lib.escape(subscribe_url, quote=True), html_lib.escape(subscribe_label)
    unsubscribe = re.escape(placeholder(marker, "UNSUBSCRIBE_URL"))
    html = re.sub(  # the link keeps its tag's other attributes (the inlined style)
        _LINK.format(placeholder=unsubscribe),
        lambda m: f"{m.group(1)}{url}{m.group(2)}{label}{m.group(3)}",
        html,
        flags=re.S,
    )
    preferences = re.escape(placeholder(marker, "PREFERENCES_URL"))
    html = re.sub(rf"(?: · )?{_LINK.format(placeholder=preferences)}", "", html, flags=re.S)
    for field in ("RECIPIENT", "EMAIL"):
        pattern = _PARAGRAPH.format(placeholder=re.escape(placeholder(marker, field)))
        html = re.sub(pattern, "", html, flags=re.S | re.I)
    values = {
        placeholder(marker, "NAME"): "",
        placeholder(marker, "EMAIL"): "",
        placeholder(marker, "RECIPIENT"): "",
        placeholder(marker, "UNSUBSCRIBE_URL"): html_lib.escape(subscribe_url, quote=True),
        placeholder(marker, "PREFERENCES_URL"): "",
    }
    html = _placeholder_pattern(marker).sub(lambda m: values[m.group(0)], html)
    return html.replace(issue_url_placeholder(marker), "")
