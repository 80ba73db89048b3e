"""The SQLite state behind one data-access layer: all of digest's SQL lives in this package.

`db` opens the file (owner-only, read-only when asked) and `migrations` upgrades its schema;
the repositories are `feeds` (feeds and posts), `ledger` (issues, deliveries, schedule slots),
`suppressions` and `secrets`. `State` opens a file and exposes them.
"""

from __future__ import annotations

from digest.store.feeds import FeedRecord
from digest.store.ledger import IssueSummary, StoredIssue
from digest.store.secrets import SECRET_ENVIRONMENT_VARIABLE, configured_secret
from digest.store.state import State

__all__ = [
    "SECRET_ENVIRONMENT_VARIABLE",
    "FeedRecord",
    "IssueSummary",
    "State",
    "StoredIssue",
    "configured_secret",
]
