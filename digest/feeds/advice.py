"""What an editor should do about a feed: the one wording for sends, `digest check` and health."""

from __future__ import annotations

from datetime import datetime

from digest.core.redact import redact_url


def feed_label(name: str, url: str) -> str:
    """A feed as named in config.yaml, its URL without credentials."""
    return f"feed {name!r} ({redact_url(url)})"


def feed_advice(
    *,
    permanent_url: str | None = None,
    gone: bool = False,
    error: str | None = None,
    failures: int = 0,
    first_failure_at: datetime | None = None,
    warning: str | None = None,
) -> tuple[str, ...]:
    """Short phrases, most urgent first: moved, gone or the error, how long failing, warnings.

    A gone feed's error says nothing the "gone" advice does not, so it is left out.
    """
    phrases: list[str] = []
    if permanent_url:
        phrases.append(f"moved permanently to {redact_url(permanent_url)}: update config.yaml")
    if gone:
        phrases.append("gone: remove this feed")
    elif error:
        phrases.append(error)
    if not gone and failures and first_failure_at is not None:
        attempts = "1 attempt" if failures == 1 else f"{failures} attempts"
        phrases.append(f"failing since {first_failure_at:%Y-%m-%d} ({attempts})")
    if warning:
        phrases.append(warning)
    return tuple(phrases)
