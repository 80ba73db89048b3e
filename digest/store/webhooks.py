"""Signed webhook requests already accepted, so that a second use of one is refused.

A provider's signature proves who made a request, not that it is the first time it arrives: a
captured request stays correctly signed for as long as its timestamp is accepted. Each accepted
request leaves its nonce here (Mailgun's signed token, a hash of the bytes SendGrid signed,
Postmark's event ID), written in the same transaction as the events it carried, so a request
that fails half-way leaves nothing behind and its provider's retry is still accepted. The state
file is shared by every process serving webhooks, so a replay to another worker is refused too.
A nonce is kept as long as its request could still be accepted, then pruned.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from digest.store.backend import Backend, iso

MAX_NONCE = 200  # characters of a nonce kept; callers pass a hash or a short provider id


class WebhookNonces:
    """The webhook_nonces table (migration 10)."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    def remember(self, provider: str, nonce: str, now: datetime, keep: timedelta) -> bool:
        """Record a request's nonce; False when it was recorded before (a replay). Nonces of the
        provider older than `keep` are pruned first: by then their requests are refused as
        stale, so forgetting them lets nothing through."""
        if not nonce or len(nonce) > MAX_NONCE:
            raise ValueError("a webhook nonce must be 1 to 200 characters")
        self.db.execute(
            "DELETE FROM webhook_nonces WHERE provider = ? AND seen_at < ?",
            (provider, iso(now - keep)),
        )
        cursor = self.db.execute(
            "INSERT INTO webhook_nonces (provider, nonce, seen_at) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (provider, nonce, iso(now)),
        )
        return cursor.rowcount > 0

    def count(self, provider: str) -> int:
        """How many nonces of the provider are remembered."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM webhook_nonces WHERE provider = ?", (provider,)
        ).fetchone()
        return int(row[0])
