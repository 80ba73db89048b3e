"""Readers who signed themselves up, the consent on record, rate limits and forgotten people.

Addresses are kept in the canonical form (digest.core.addresses). A sign-up is `pending` until its
confirmation link is used, then `confirmed`. A reader in the editor's subscriber file who
saves their preferences gets a `listed` row: their name and sections, which count only while
the file lists them (it is no sign-up). Every step that bears on consent is a row in
`consents` (submitted, confirmed, added by the editor, listed in the subscriber file,
preferences changed, subscribed again after unsubscribing), so an organisation can show when
and how each person agreed.

Rate limits are a sliding-window log: each confirmation email sent is a row (bucket, time),
and a new one is allowed only while every bucket it touches has fewer than its limit of rows
inside its window. Exact, needs no clock other than the `now` passed in, and shared by every
process using the state file; sign-up volumes are small, so rows older than a day are simply
deleted as new ones arrive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.core.models import Subscriber
from digest.store.addresses import address_key
from digest.store.backend import Backend, iso, parse_time

RATE_LOG_KEPT = timedelta(days=1)


@dataclass(frozen=True)
class Signup:
    """One reader who used the sign-up form (or was added by the editor)."""

    email: str
    name: str
    status: str  # "pending", "confirmed", or "listed" (preferences of a reader in the file)
    sections: tuple[str, ...] | None  # None: every section
    source: str
    created_at: datetime
    confirmed_at: datetime | None


@dataclass(frozen=True)
class ConsentEvent:
    """One step on record: what happened, when, from where, and which consent text was shown."""

    event: str
    at: datetime
    source: str
    page: str
    ip: str
    consent_sha256: str


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` events in `bucket` within `window`."""

    bucket: str
    window: timedelta
    limit: int


def _sections_text(sections: Sequence[str] | None) -> str | None:
    return None if sections is None else json.dumps(list(sections))


# Addresses read or written at once when a list is streamed.
_CHUNK = 500


def _sections(stored: str | None) -> tuple[str, ...] | None:
    sections = json.loads(stored) if stored is not None else None
    return tuple(sections) if sections is not None else None


def _signup(row: object) -> Signup:
    data = dict(row)  # type: ignore[call-overload]
    created = parse_time(data["created_at"])
    assert created is not None
    return Signup(
        email=data["email"],
        name=data["name"],
        status=data["status"],
        sections=_sections(data["sections"]),
        source=data["source"],
        created_at=created,
        confirmed_at=parse_time(data["confirmed_at"]),
    )


class Signups:
    """The signups, consents, rate_events and forgotten tables."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    def _consent(
        self,
        email: str,
        event: str,
        now: datetime,
        source: str,
        *,
        page: str = "",
        ip: str = "",
        consent_sha256: str = "",
    ) -> None:
        self.db.execute(
            "INSERT INTO consents (email, event, at, source, page, ip, consent_sha256)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (address_key(email), event, iso(now), source, page[:500], ip[:64], consent_sha256),
        )

    def signup(self, email: str) -> Signup | None:
        """The sign-up for an address, if there is one."""
        row = self.db.execute(
            "SELECT * FROM signups WHERE email = ?", (address_key(email),)
        ).fetchone()
        return _signup(row) if row else None

    def request(
        self,
        email: str,
        name: str,
        sections: Sequence[str] | None,
        now: datetime,
        *,
        page: str,
        ip: str,
        consent_sha256: str,
    ) -> str:
        """Record a submitted form; the status before it: "new", "pending", "listed" or
        "confirmed".

        A confirmed subscriber's details are left alone (the form is anonymous: whoever
        submits it may not be them); their own preferences link changes them. So are the
        choices a reader in the subscriber file made on their preferences page: the submission
        is on record, and confirming it makes them a sign-up with those choices.
        """
        email = address_key(email)
        with self.db.transaction():
            existing = self.signup(email)
            if existing is not None and existing.status == "confirmed":
                return "confirmed"
            if existing is not None and existing.status == "listed":
                self._consent(
                    email, "submitted", now, "form", page=page, ip=ip, consent_sha256=consent_sha256
                )
                return "listed"
            self.db.execute(
                "INSERT INTO signups (email, name, status, sections, source, created_at,"
                " updated_at) VALUES (?, ?, 'pending', ?, 'form', ?, ?)"
                " ON CONFLICT (email) DO UPDATE SET name = excluded.name,"
                " sections = excluded.sections, updated_at = excluded.updated_at",
                (email, name, _sections_text(sections), iso(now), iso(now)),
            )
            self._consent(
                email, "submitted", now, "form", page=page, ip=ip, consent_sha256=consent_sha256
            )
        return "new" if existing is None else existing.status

    def withdraw(self, email: str, at: datetime, buckets: Sequence[str]) -> None:
        """Take back a submission recorded at `at` whose confirmation email was never sent:
        its consent row, its rate-limit slots (`buckets`), and the pending sign-up it created,
        unless something changed it since. A pending sign-up it only updated stays as it was
        (its earlier confirmation link still works)."""
        email = address_key(email)
        with self.db.transaction():
            self.db.execute(
                "DELETE FROM consents WHERE email = ? AND event = 'submitted' AND at = ?",
                (email, iso(at)),
            )
            self.db.execute(
                "DELETE FROM signups WHERE email = ? AND status = 'pending' AND created_at = ?"
                " AND updated_at = ?",
                (email, iso(at), iso(at)),
            )
            for bucket in sorted(set(buckets)):
                self.db.execute(
                    "DELETE FROM rate_events WHERE bucket = ? AND at = ?", (bucket, iso(at))
                )

    def confirm(self, email: str, now: datetime, *, page: str = "", ip: str = "") -> str:
        """Confirm a pending sign-up: "confirmed", "already" (harmless) or "unknown"."""
        email = address_key(email)
        with self.db.transaction():
            existing = self.signup(email)
            if existing is None:
                return "unknown"
            if existing.status == "confirmed":
                return "already"
            self.db.execute(
                "UPDATE signups SET status = 'confirmed', confirmed_at = ?, updated_at = ?"
                " WHERE email = ?",
                (iso(now), iso(now), email),
            )
            self._consent(email, "confirmed", now, "form", page=page, ip=ip)
        return "confirmed"

    def add(
        self, email: str, name: str, sections: Sequence[str] | None, source: str, now: datetime
    ) -> bool:
        """The editor adds someone, confirmed, with the stated source; False if already there."""
        email = address_key(email)
        with self.db.transaction():
            cursor = self.db.execute(
                "INSERT INTO signups (email, name, status, sections, source, created_at,"
                " confirmed_at, updated_at) VALUES (?, ?, 'confirmed', ?, ?, ?, ?, ?)"
                " ON CONFLICT (email) DO UPDATE SET status = 'confirmed', name = excluded.name,"
                " source = excluded.source, confirmed_at = excluded.confirmed_at,"
                " updated_at = excluded.updated_at WHERE signups.status != 'confirmed'",
                (email, name, _sections_text(sections), source, iso(now), iso(now), iso(now)),
            )
            if cursor.rowcount:
                self._consent(email, "added", now, source)
        return cursor.rowcount > 0

    def update_preferences(
        self,
        email: str,
        name: str,
        sections: Sequence[str] | None,
        now: datetime,
        *,
        listed: bool,
        ip: str = "",
    ) -> bool:
        """Change a subscriber's name and sections; False, changing nothing, for anyone else.

        A confirmed sign-up is updated. A reader in the subscriber file (`listed`) gets a
        `listed` row: their choices, which apply only while the file lists them, so removing
        them from the file still removes them. Nobody else is a subscriber: a preferences link
        never creates a person.
        """
        email = address_key(email)
        with self.db.transaction():
            existing = self.signup(email)
            if existing is None and listed:
                self.db.execute(
                    "INSERT INTO signups (email, name, status, sections, source, created_at,"
                    " updated_at) VALUES (?, ?, 'listed', ?, 'file', ?, ?)",
                    (email, name, _sections_text(sections), iso(now), iso(now)),
                )
            elif existing is not None and existing.status == "confirmed":
                self.db.execute(
                    "UPDATE signups SET name = ?, sections = ?, updated_at = ? WHERE email = ?",
                    (name, _sections_text(sections), iso(now), email),
                )
            elif existing is not None and listed:
                # A pending sign-up of a listed reader becomes their `listed` row: the choices
                # apply while the file lists them, and the confirmation link still works.
                self.db.execute(
                    "UPDATE signups SET name = ?, sections = ?, status = 'listed', updated_at = ?"
                    " WHERE email = ?",
                    (name, _sections_text(sections), iso(now), email),
                )
            else:
                return False
            self._consent(email, "preferences", now, "preferences page", ip=ip)
        return True

    def resubscribed(
        self, email: str, now: datetime, source: str, *, page: str, ip: str, consent_sha256: str
    ) -> None:
        """Put on record that a reader subscribed again from the page that unsubscribed them:
        a fresh consent, with the page it was given on and the consent sentence shown."""
        self._consent(
            address_key(email),
            "resubscribed",
            now,
            source,
            page=page,
            ip=ip,
            consent_sha256=consent_sha256,
        )

    def drop_pending(self, email: str) -> bool:
        """Drop a sign-up still awaiting confirmation (its confirmation bounced)."""
        cursor = self.db.execute(
            "DELETE FROM signups WHERE email = ? AND status = 'pending'", (address_key(email),)
        )
        return cursor.rowcount > 0

    def listed_preferences(self) -> list[Subscriber]:
        """The choices readers in the subscriber file made on their preferences page."""
        rows = self.db.execute("SELECT * FROM signups WHERE status = 'listed' ORDER BY email")
        return [
            Subscriber(email=s.email, name=s.name, sections=s.sections) for s in map(_signup, rows)
        ]

    def confirmed(self) -> list[Subscriber]:
        """Every confirmed sign-up as a subscriber, in sign-up order."""
        rows = self.db.execute(
            "SELECT * FROM signups WHERE status = 'confirmed' ORDER BY created_at, email"
        )
        return [
            Subscriber(email=s.email, name=s.name, sections=s.sections) for s in map(_signup, rows)
        ]

    def signups(self) -> list[Signup]:
        """Every sign-up, pending and confirmed, oldest first."""
        rows = self.db.execute("SELECT * FROM signups ORDER BY created_at, email")
        return [_signup(row) for row in rows]

    def record_listed(self, emails: Iterable[str], now: datetime) -> int:
        """Put on record, once, that these addresses came from the editor's subscriber file.
        Read and written a chunk at a time, so a long list never sits in memory whole."""
        recorded = 0
        chunk: list[str] = []
        for email in emails:
            chunk.append(address_key(email))
            if len(chunk) >= _CHUNK:
                recorded += self._record_listed_chunk(chunk, now)
                chunk = []
        return recorded + (self._record_listed_chunk(chunk, now) if chunk else 0)

    def _record_listed_chunk(self, emails: Sequence[str], now: datetime) -> int:
        wanted = set(emails)
        marks = ", ".join("?" * len(wanted))
        listed = {
            row["email"]
            for row in self.db.execute(
                "SELECT DISTINCT email FROM consents WHERE event = 'listed'"
                f" AND email IN ({marks})",
                sorted(wanted),
            )
        }
        new = sorted(wanted - listed)
        with self.db.transaction():
            for email in new:
                self._consent(email, "listed", now, "file")
        return len(new)

    def confirmed_batches(self, size: int = _CHUNK) -> Iterator[list[Subscriber]]:
        """Every confirmed sign-up as a subscriber, `size` at a time in address order, read a
        page at a time (never the whole list at once)."""
        after = ""
        while True:
            rows = self.db.execute(
                "SELECT * FROM signups WHERE status = 'confirmed' AND email > ?"
                " ORDER BY email LIMIT ?",
                (after, size),
            ).fetchall()
            if not rows:
                return
            batch = [
                Subscriber(email=s.email, name=s.name, sections=s.sections)
                for s in map(_signup, rows)
            ]
            yield batch
            after = batch[-1].email

    def chosen_sections(self) -> set[tuple[str, ...] | None]:
        """Every distinct choice of sections a reader who may get the next issue has made
        (confirmed sign-ups, and readers in the file who chose on their preferences page),
        suppressed readers left out: the renderings an issue may need."""
        rows = self.db.execute(
            "SELECT DISTINCT sections FROM signups WHERE status IN ('confirmed', 'listed')"
            " AND email NOT IN (SELECT email FROM suppressions)"
        )
        return {_sections(row["sections"]) for row in rows}

    def consents(self, email: str) -> list[ConsentEvent]:
        """Everything on record about one address's consent, oldest first."""
        rows = self.db.execute(
            "SELECT * FROM consents WHERE email = ? ORDER BY at, id", (address_key(email),)
        )
        return [
            ConsentEvent(
                event=row["event"],
                at=datetime.fromisoformat(row["at"]),
                source=row["source"],
                page=row["page"],
                ip=row["ip"],
                consent_sha256=row["consent_sha256"],
            )
            for row in rows
        ]

    def known_addresses(self) -> set[str]:
        """Every address with a sign-up or anything on record."""
        rows = self.db.execute("SELECT email FROM signups UNION SELECT email FROM consents")
        return {row["email"] for row in rows}

    def delivery_counts(self) -> dict[str, dict[str, int]]:
        """Per address, how many deliveries ended in each status."""
        counts: dict[str, dict[str, int]] = {}
        rows = self.db.execute(
            "SELECT email, status, COUNT(*) AS n FROM deliveries GROUP BY email, status"
        )
        for row in rows:
            counts.setdefault(row["email"], {})[row["status"]] = row["n"]
        return counts

    # -- rate limits -----------------------------------------------------------

    def fits(self, limits: Sequence[RateLimit], now: datetime) -> bool:
        """Whether one more event fits every limit; nothing is recorded."""
        for limit in limits:
            since = iso(now - limit.window)
            row = self.db.execute(
                "SELECT COUNT(*) AS n FROM rate_events WHERE bucket = ? AND at > ?",
                (limit.bucket, since),
            ).fetchone()
            if row["n"] >= limit.limit:
                return False
        return True

    def allow(self, limits: Sequence[RateLimit], now: datetime) -> bool:
        """Whether one more event fits every limit; if so it is recorded, atomically."""
        with self.db.transaction():
            if not self.fits(limits, now):
                return False
            self.db.execute("DELETE FROM rate_events WHERE at <= ?", (iso(now - RATE_LOG_KEPT),))
            for bucket in sorted({limit.bucket for limit in limits}):
                self.db.execute(
                    "INSERT INTO rate_events (bucket, at) VALUES (?, ?)", (bucket, iso(now))
                )
        return True

    # -- forgotten people (the erasure itself is digest.store.erasure) -----------

    def forgotten(self) -> set[str]:
        """The keyed hashes of everyone forgotten."""
        return {
            row["address_hash"] for row in self.db.execute("SELECT address_hash FROM forgotten")
        }

    def unforget(self, hashed: str) -> bool:
        """Drop a forgotten person's hash (they signed up again, of their own accord)."""
        cursor = self.db.execute("DELETE FROM forgotten WHERE address_hash = ?", (hashed,))
        return cursor.rowcount > 0
