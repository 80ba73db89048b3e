"""The SQLite state behind one data-access layer: all of digest's SQL lives in this package.

`db` opens the file (owner-only, read-only when asked) and `migrations` upgrades its schema;
the repositories are `feeds` (feeds and posts), `ledger` (issues, deliveries, schedule slots),
`suppressions`, `secrets`, `bounces`, `signups` (sign-ups, consent, rate limits, forgotten
people), `editor` (the next issue's note, posts left out or pinned, approvals and the decisions
on them, posts marked seen) and `webhooks` (the signed webhook requests already accepted).
`State` opens a file and exposes them.
"""

from __future__ import annotations

from digest.store.feeds import FeedRecord
from digest.store.ledger import IssueSummary, IssueVariant, StoredIssue
from digest.store.secrets import SECRET_ENVIRONMENT_VARIABLE, configured_secret
from digest.store.signups import ConsentEvent, RateLimit, Signup
from digest.store.state import State

__all__ = [
    "SECRET_ENVIRONMENT_VARIABLE",
    "ConsentEvent",
    "FeedRecord",
    "IssueSummary",
    "IssueVariant",
    "RateLimit",
    "Signup",
    "State",
    "StoredIssue",
    "configured_secret",
]
