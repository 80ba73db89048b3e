"""Transactional emails waiting to be sent: the outbox, drained by whichever process runs.

A confirmation or welcome email is built, then written here in the same transaction as the
rows it belongs with (the pending sign-up, its consent and rate-limit slot; the confirmed
sign-up), so a sign-up is never on record without its email waiting, nor an email waiting for
a sign-up that is not on record. Any process using the state then sends it: `digest serve`
(any replica) and `digest run` drain it (digest.readers.outbox).

Sending is claimed with a lease: `claim` marks due entries as this claimant's until
`claimed_until`, in one writing transaction (queued behind every other on both backends), so
two processes never claim the same entry at once. The claimant sends, then deletes the entry
(`sent`), puts it back for later with a backoff (`later`), or deletes it for good (`drop`).
Each of those acts only while the claim is still the claimant's. A process that dies
mid-send leaves its lease to run out, and the entry is claimed and sent again by another: at
most the message in flight when it died can go twice. `claimed_until` doubles as the time an
entry is next due: a new entry is due at once, one put back is due after its backoff.

The outbox holds an address only until its email is sent or given up: the row is then
deleted. Erasure (digest.store.erasure) deletes a forgotten person's entries.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.core.models import OutgoingMessage
from digest.store.addresses import address_key
from digest.store.backend import Backend, iso, parse_time


@dataclass(frozen=True)
class OutboxEntry:
    """One email waiting, as claimed: what it is for, the message, and what to take back if it
    is never sent (`undo`, a small JSON object the sender understands)."""

    id: int
    kind: str  # "confirmation" or "welcome"
    email: str  # canonical address
    message: OutgoingMessage
    undo: dict[str, object]
    created_at: datetime
    attempts: int  # claims so far, this one included
    claim: str  # who holds it: "host:pid:random"


def _entry(row: object) -> OutboxEntry:
    data = dict(row)  # type: ignore[call-overload]
    created = parse_time(data["created_at"])
    assert created is not None
    undo = json.loads(data["undo"]) if data["undo"] else {}
    return OutboxEntry(
        id=int(data["id"]),
        kind=data["kind"],
        email=data["email"],
        message=OutgoingMessage(
            sender=data["sender"],
            recipient=data["recipient"],
            data=bytes(data["data"]),
            smtputf8=bool(data["smtputf8"]),
        ),
        undo=undo if isinstance(undo, dict) else {},
        created_at=created,
        attempts=int(data["attempts"]),
        claim=data["claim"],
    )


class Outbox:
    """The outbox table (SQLite migration 14, PostgreSQL migration 3)."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    def add(
        self,
        kind: str,
        email: str,
        message: OutgoingMessage,
        now: datetime,
        *,
        undo: dict[str, object] | None = None,
    ) -> int:
        """Queue one message, due at once; its entry's id. Join the caller's transaction to
        be written with the rows it belongs with."""
        cursor = self.db.execute(
            "INSERT INTO outbox (kind, email, sender, recipient, data, smtputf8, undo,"
            " created_at, attempts, claimed_until, claim)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, '')",
            (
                kind,
                address_key(email),
                message.sender,
                message.recipient,
                message.data,
                1 if message.smtputf8 else 0,
                json.dumps(undo, sort_keys=True) if undo else "",
                iso(now),
                iso(now),
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def claim(
        self,
        claimant: str,
        now: datetime,
        lease: timedelta,
        *,
        limit: int = 20,
        only: int | None = None,
    ) -> list[OutboxEntry]:
        """Claim up to `limit` due entries (or only entry `only`, if due) for `lease`, oldest
        first, for `claimant` (a name unique to this process: a random part is added). An
        entry is due when nobody's lease on it is running and its backoff has passed."""
        claim = f"{claimant}:{secrets.token_hex(6)}"[:120]
        due = iso(now)
        with self.db.transaction():
            if only is None:
                rows = self.db.execute(
                    "SELECT id FROM outbox WHERE claimed_until <= ? ORDER BY id LIMIT ?",
                    (due, limit),
                ).fetchall()
            else:
                rows = self.db.execute(
                    "SELECT id FROM outbox WHERE claimed_until <= ? AND id = ?", (due, only)
                ).fetchall()
            for row in rows:
                self.db.execute(
                    "UPDATE outbox SET claim = ?, claimed_until = ?, attempts = attempts + 1"
                    " WHERE id = ? AND claimed_until <= ?",
                    (claim, iso(now + lease), row["id"], due),
                )
            claimed = self.db.execute(
                "SELECT * FROM outbox WHERE claim = ? ORDER BY id", (claim,)
            ).fetchall()
        return [_entry(row) for row in claimed]

    def sent(self, entry: OutboxEntry) -> bool:
        """The entry's email was sent: delete it, address and all. False when the claim was
        no longer the caller's (its lease ran out and another took it)."""
        return self.drop(entry)

    def drop(self, entry: OutboxEntry) -> bool:
        """Delete a claimed entry (sent, or given up); False when the claim was no longer ours."""
        cursor = self.db.execute(
            "DELETE FROM outbox WHERE id = ? AND claim = ?", (entry.id, entry.claim)
        )
        return cursor.rowcount > 0

    def later(self, entry: OutboxEntry, due: datetime) -> bool:
        """Put a claimed entry back, due again at `due`; False when the claim was no longer ours."""
        cursor = self.db.execute(
            "UPDATE outbox SET claim = '', claimed_until = ? WHERE id = ? AND claim = ?",
            (iso(due), entry.id, entry.claim),
        )
        return cursor.rowcount > 0

    def waiting(self) -> list[tuple[int, str, str]]:
        """(id, kind, claim) of every entry still in the outbox, oldest first (no addresses)."""
        rows = self.db.execute("SELECT id, kind, claim FROM outbox ORDER BY id")
        return [(int(row["id"]), row["kind"], row["claim"]) for row in rows]

    def size(self) -> int:
        """How many emails wait in the outbox (a number, for the metrics)."""
        row = self.db.execute("SELECT COUNT(*) AS n FROM outbox").fetchone()
        return int(row["n"]) if row is not None else 0

    def oldest_queued(self) -> datetime | None:
        """When the oldest entry still in the outbox was queued (None: it is empty), for
        `digest check --health` to tell an outbox nobody drains from one briefly waiting."""
        row = self.db.execute("SELECT min(created_at) AS oldest FROM outbox").fetchone()
        return parse_time(row["oldest"]) if row is not None else None
