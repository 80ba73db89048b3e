"""Per-subscriber slots in a rendered issue, and filling them in for one subscriber."""

from __future__ import annotations

import html as html_lib
import re
import secrets
from functools import cache

from digest.models import RenderedIssue, Subscriber

# Per-subscriber slots. An issue rendered now marks them with its own random marker, drawn after
# the feeds were read, so no feed text or config string can contain one: personalisation fills
# only what the templates put there. Issues frozen by 0.1.0 (marker "") keep these fixed forms.
NAME_PLACEHOLDER = "%%DIGEST_NAME%%"
EMAIL_PLACEHOLDER = "%%DIGEST_EMAIL%%"
UNSUBSCRIBE_PLACEHOLDER = "%%DIGEST_UNSUBSCRIBE_URL%%"
RECIPIENT_PLACEHOLDER = "%%DIGEST_RECIPIENT%%"
SLOT_FIELDS = ("NAME", "EMAIL", "RECIPIENT", "UNSUBSCRIBE_URL", "PREFERENCES_URL")
MARKER_BYTES = 16


def new_marker() -> str:
    """A fresh random marker for one issue's per-subscriber slots (128 bits, hex)."""
    return secrets.token_hex(MARKER_BYTES)


def slot(marker: str, field: str) -> str:
    """The text standing for one per-subscriber `field` in an issue rendered with `marker`."""
    if field not in SLOT_FIELDS:
        raise ValueError(f"unknown per-subscriber field {field!r}")
    return f"%%DIGEST_{field}_{marker}%%" if marker else f"%%DIGEST_{field}%%"


@cache
def _slot_pattern(marker: str) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(slot(marker, field)) for field in SLOT_FIELDS))


def personalise(
    rendered: RenderedIssue,
    subscriber: Subscriber,
    unsubscribe_url: str,
    preferences_url: str = "",
) -> tuple[str, str]:
    """(html, text) for one subscriber: the issue's own slots filled in, escaped in the HTML."""
    name = " ".join(subscriber.name.split())
    email = subscriber.email.strip()
    marker = rendered.marker
    values = {
        slot(marker, "NAME"): name,
        slot(marker, "EMAIL"): email,
        slot(marker, "RECIPIENT"): f"{name} ({email})" if name else email,
        slot(marker, "UNSUBSCRIBE_URL"): unsubscribe_url.strip(),
        slot(marker, "PREFERENCES_URL"): preferences_url.strip(),
    }
    escaped = {key: html_lib.escape(value, quote=True) for key, value in values.items()}
    pattern = _slot_pattern(marker)
    html = pattern.sub(lambda m: escaped[m.group(0)], rendered.html)
    text = pattern.sub(lambda m: values[m.group(0)], rendered.text)
    return html, text
