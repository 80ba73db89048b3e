"""Erasure: a person's address taken out of every table, and the bytes verifiably gone.

This is the one module that writes to tables other repositories own: erasing a person is one
act across all of them, done in one transaction, and kept in one place so that a new table
holding personal data has one place to be added to (the check below finds it if it is not).

`digest subscribers forget` removes the address from everything that records a person:
sign-ups, consents, suppressions and emails still waiting in the outbox are deleted (the keyed
hash in `forgotten` keeps them off the list for good); deliveries and bounce reports keep
their row under the hash, so each issue's totals in `digest history` stay right, with the
server's reply and the report's text dropped; rate-limit buckets under the person's hash are
deleted, an approval decided by them (any table's `decided_by`) no longer names them, and the
preview cache is emptied. The per-issue counts of unsubscribes and preference changes
(`reader_events`, digest.store.reports) never hold an address, so they stay as they are.

Deleting a row is not enough for the bytes, and what more it takes depends on the database: the
backend does that part (digest.store.backend: `erase_securely`, `flush`, `holds_bytes`,
`rebuild`). With SQLite's `secure_delete` the freed space is
overwritten with zeros, but in WAL mode the pages that held the address stay in the database
file until a checkpoint copies the new pages over them, and the log keeps whatever it holds
until it is reset. So erasure ends with `wal_checkpoint(TRUNCATE)`, whose answer is checked: a
process reading an older snapshot (`digest serve` answering a page, a long export) holds the
checkpoint up. It is retried for a bounded time; if it still cannot finish, the erasure says so
and is not reported as done. Running it again finishes the job.

Then it checks: every table and column is searched for the address (in each form it may have
been written), and the file and its log are searched for its bytes. Published content (feed
posts, frozen issues, the editor's note) is not personal data about the reader and is left as
it is; a mention there is reported. If the bytes turn up with no row to explain them (space
freed before `secure_delete` was on, by an unsubscribe later undone, say), the file is rebuilt
with VACUUM and checked again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from digest.store.backend import Backend, iso

logger = logging.getLogger(__name__)

PATIENCE = 10.0  # seconds a checkpoint waits, all told, for readers of an older snapshot

# Tables of published content: what the feeds said, issues as frozen, the editor's words. An
# address there was written by an author, not recorded about a reader, and erasure leaves it.
CONTENT_TABLES = frozenset(
    {
        "feeds",
        "posts",
        "parsed_feeds",
        "issues",
        "issue_posts",
        "issue_variants",
        "issue_links",
        "editor_note",
        "archive_issues",
        "post_choices",
        "seen_posts",
        "skipped_slots",
    }
)
_TABLES_WITH_EMAIL = ("signups", "consents", "suppressions", "outbox")
# A delivery's status, and the column of issue_tallies that counts it.
_TALLIED = {"sent": "sent", "failed": "failed", "pending": "pending"}


@dataclass(frozen=True)
class ErasureReport:
    """What erasing one person did, and how far the erasure is verified."""

    found: bool  # something was held about the person
    checkpointed: bool  # the log was folded into the file and emptied
    in_content: tuple[str, ...] = ()  # content tables still mentioning the address
    unerased: tuple[str, ...] = ()  # "table.column" of personal data still holding it
    bytes_left: bool = False  # its bytes are in the file though no row holds them

    @property
    def complete(self) -> bool:
        """Whether nothing of the person is left in the state's files (content aside)."""
        return self.checkpointed and not self.unerased and not self.bytes_left


class Erasure:
    """Erasing one person from the open state file (see the module docstring)."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    def forget(
        self,
        forms: Sequence[str],
        hashes: Sequence[str],
        now: datetime,
        *,
        patience: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> ErasureReport:
        """Erase the address (`forms`: its canonical form first, then any form an earlier
        release wrote) everywhere, keeping `hashes[0]` (its keyed hash) in `forgotten`;
        `hashes` are the keyed hashes of every form, as rate-limit buckets may name them.
        `patience` (default PATIENCE) bounds the wait for readers of an older snapshot."""
        patience = PATIENCE if patience is None else patience
        forms = [form.lower() for form in forms]
        forgotten = f"forgotten:{hashes[0]}"
        self.db.erase_securely()
        with self.db.transaction():
            found = self._erase_rows(forms, hashes, forgotten)
            self.db.execute(
                "INSERT INTO forgotten (address_hash, at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (hashes[0], iso(now)),
            )
        in_content, unerased = self._mentions(forms)
        checkpointed = self.db.flush(patience, sleep, clock)
        bytes_left = False
        if checkpointed and self.db.holds_bytes(forms):
            logger.info("erased bytes still in %s: rebuilding it", self.db.where)
            self.db.rebuild()
            checkpointed = self.db.flush(patience, sleep, clock)
            bytes_left = checkpointed and not in_content and self.db.holds_bytes(forms)
        return ErasureReport(found > 0, checkpointed, in_content, unerased, bytes_left)

    def _erase_rows(self, forms: Sequence[str], hashes: Sequence[str], forgotten: str) -> int:
        """Delete or hash every row about the person; how many there were."""
        marks = ", ".join("?" * len(forms))
        found = 0
        for table in _TABLES_WITH_EMAIL:
            found += self.db.execute(
                f"DELETE FROM {table} WHERE email IN ({marks})", tuple(forms)
            ).rowcount
        # The tallies of the issues they had deliveries of are taken first, in issue order,
        # as every writer of deliveries takes them (digest.store.ledger).
        for row in self.db.execute(
            f"SELECT DISTINCT issue_id FROM deliveries WHERE email IN ({marks}) ORDER BY issue_id",
            tuple(forms),
        ).fetchall():
            self.db.execute(
                "UPDATE issue_tallies SET pending = pending WHERE issue_id = ?", (row["issue_id"],)
            )
        # A delivery keeps its issue and status under the hash, so the totals stay right;
        # one form at a time, skipping an issue that already has a delivery under the hash.
        for form in forms:
            found += self.db.execute(
                "UPDATE deliveries SET email = ?, reply = '' WHERE email = ? AND NOT EXISTS"
                " (SELECT 1 FROM deliveries d WHERE d.issue_id = deliveries.issue_id"
                " AND d.email = ?)",
                (forgotten, form, forgotten),
            ).rowcount
        # Left only if the same issue had them under two forms: one delivery is counted, and
        # the tally loses the other, as a count of its rows would.
        twice = self.db.execute(
            f"SELECT issue_id, status, COUNT(*) AS n FROM deliveries WHERE email IN ({marks})"
            " GROUP BY issue_id, status",
            tuple(forms),
        ).fetchall()
        self.db.execute(f"DELETE FROM deliveries WHERE email IN ({marks})", tuple(forms))
        for row in twice:
            status = _TALLIED.get(str(row["status"]))
            if status is not None:
                self.db.execute(
                    f"UPDATE issue_tallies SET {status} = {status} - ? WHERE issue_id = ?",
                    (int(row["n"]), row["issue_id"]),
                )
        found += self.db.execute(
            f"UPDATE bounce_reports SET email = ? WHERE email IN ({marks})", (forgotten, *forms)
        ).rowcount
        for form in forms:
            # The report's text and detail name the person (and may name them in a report
            # about someone else); its key may be a Message-ID carrying the address.
            self.db.execute(
                "UPDATE bounce_reports SET detail = '', report = '' WHERE email = ?"
                " OR instr(lower(detail), ?) > 0 OR instr(lower(report), ?) > 0",
                (forgotten, form, form),
            )
            self.db.execute(
                "UPDATE bounce_reports SET report_key = 'forgotten:' || id"
                " WHERE instr(lower(report_key), ?) > 0",
                (form,),
            )
            self.db.execute(
                "UPDATE suppressions SET reason = '' WHERE instr(lower(reason), ?) > 0", (form,)
            )
            self.db.execute(
                "UPDATE deliveries SET reply = '' WHERE instr(lower(reply), ?) > 0", (form,)
            )
            for table in self._tables_with("decided_by"):
                self.db.execute(
                    f"UPDATE \"{table}\" SET decided_by = 'forgotten'"
                    " WHERE instr(lower(decided_by), ?) > 0",
                    (form,),
                )
        for hashed in hashes:
            self.db.execute("DELETE FROM rate_events WHERE instr(bucket, ?) > 0", (hashed,))
        self.db.execute("DELETE FROM preview_cache")
        return found

    def _tables_with(self, column: str) -> list[str]:
        """Every table with a column of this name (an approval, or a record of decisions, names
        who decided in `decided_by`)."""
        return [table for table, columns in self.db.columns().items() if column in columns]

    def _mentions(self, forms: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(content tables, "table.column"s of anything else) whose rows still hold a form."""
        in_content: list[str] = []
        unerased: list[str] = []
        for table, columns in sorted(self.db.columns().items()):
            for column in columns:
                test = " OR ".join(f'instr(lower(CAST("{column}" AS TEXT)), ?) > 0' for _ in forms)
                row = self.db.execute(
                    f'SELECT 1 FROM "{table}" WHERE {test} LIMIT 1', tuple(forms)
                ).fetchone()
                if row is None:
                    continue
                if table in CONTENT_TABLES:
                    in_content.append(table)
                    break
                unerased.append(f"{table}.{column}")
        return tuple(in_content), tuple(unerased)
