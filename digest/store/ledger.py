"""The delivery ledger: frozen issues, the posts they carried, deliveries and schedule slots.

Deliveries are compacted once their issue is older than the retention window
(`retention.deliveries`): an issue's delivery rows become one row of counts in
`issue_counts`, which `history` reads from then on, and the bounce and complaint reports about
it, like any report older than the window, lose their address, detail and text. Compaction is
the ledger's one write to another repository's table (bounce_reports, digest.store.bounces),
done in the same transaction as the counts it keeps, so a report is never stripped uncounted.

Until then an issue's deliveries are tallied by status in `issue_tallies` (sent, failed,
pending), so `history` reads one row per issue however many readers it had. Every write that
adds, removes or changes the status of a delivery row moves its tally in the same transaction,
and takes the tally's row first (on PostgreSQL a row lock): writers of one issue's outcomes
take their locks in one order, and each sees the rows as the previous one left them. The
queue written at freeze is tallied once, by a count, when it is marked queued.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from digest.core.models import Delivery, DeliveryStatus, Post
from digest.store.backend import Backend, iso, parse_time
from digest.store.bounces import BounceReports, IssueBounces


@dataclass(frozen=True)
class StoredIssue:
    """An issue as frozen in the state when its send began."""

    id: int
    created_at: datetime
    finished_at: datetime | None
    slot_key: str | None
    subject: str
    html: str
    text: str
    post_count: int
    marker: str = ""  # the per-issue random marker in html/text; empty for 0.1.0 issues
    queued: bool = False  # every reader's delivery row is written: senders may claim them


@dataclass(frozen=True)
class Queued:
    """One pending delivery as a sender claimed it: the address, the name its To header shows,
    and which rendering it gets ("" the whole issue, else a choice of sections)."""

    email: str
    name: str
    edition: str


@dataclass(frozen=True)
class Outstanding:
    """What is left of an issue's send, as one sender sees it when it can claim nothing."""

    pending: int  # deliveries still pending, whoever holds them
    leases: tuple[tuple[str, datetime], ...]  # other senders' running leases: (claim, earliest end)


@dataclass(frozen=True)
class IssueVariant:
    """The issue as rendered for one choice of sections (a JSON list of section titles)."""

    choice: str
    subject: str
    html: str
    text: str
    marker: str
    post_count: int


@dataclass(frozen=True)
class IssueSummary:
    """One row of `digest history`."""

    issue: StoredIssue
    sent: int
    failed: int
    pending: int
    failures: tuple[Delivery, ...]  # the first failed deliveries by address, with the reply
    compacted: bool = False  # counts only: the deliveries were compacted (no addresses left)


@dataclass(frozen=True)
class Compaction:
    """What one compaction did."""

    issues: tuple[int, ...]  # issues whose deliveries became counts, oldest first
    deliveries: int  # delivery rows removed
    reports: int  # bounce and complaint reports stripped of address, detail and text
    unfinished: tuple[int, ...]  # issues older than the window left whole: their send goes on


FAILURES_LISTED = 20  # failed deliveries `history` reads per issue; the tally counts them all

_STATUSES = ("sent", "failed", "pending")


def issue_from_row(row: Any) -> StoredIssue:
    """A StoredIssue from a row holding the issues table's columns."""
    return StoredIssue(
        id=row["id"],
        created_at=datetime.fromisoformat(row["created_at"]),
        finished_at=parse_time(row["finished_at"]),
        slot_key=row["slot_key"],
        subject=row["subject"],
        html=row["html"],
        text=row["text"],
        post_count=row["post_count"],
        marker=row["marker"],
        queued=row["queued_at"] is not None,
    )


class Ledger:
    """The issues, issue_posts, deliveries and skipped_slots tables."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    # -- issues ----------------------------------------------------------------

    def create_issue(
        self,
        *,
        subject: str,
        html: str,
        text: str,
        posts: Iterable[Post],
        now: datetime,
        slot_key: str | None = None,
        marker: str = "",
        variants: Iterable[IssueVariant] = (),
    ) -> int:
        """Freeze an issue: its content, its variants and its posts, in one transaction."""
        posts = list(posts)
        with self.db.transaction():
            cursor = self.db.execute(
                "INSERT INTO issues (created_at, slot_key, subject, html, text, post_count,"
                " marker) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (iso(now), slot_key, subject, html, text, len(posts), marker),
            )
            issue_id = int(cursor.lastrowid or 0)
            self._tally(issue_id)
            self.db.executemany(
                "INSERT INTO issue_posts (issue_id, feed_url, post_key, link_key)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(issue_id, p.feed_url, p.key, p.link_key) for p in posts],
            )
            self.db.executemany(
                "INSERT INTO issue_variants (issue_id, choice, subject, html, text, marker,"
                " post_count) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (issue_id, v.choice, v.subject, v.html, v.text, v.marker, v.post_count)
                    for v in variants
                ],
            )
            return issue_id

    def variants(self, issue_id: int) -> dict[str, IssueVariant]:
        """The issue's variants by choice of sections."""
        rows = self.db.execute(
            "SELECT choice, subject, html, text, marker, post_count FROM issue_variants"
            " WHERE issue_id = ?",
            (issue_id,),
        )
        return {
            row["choice"]: IssueVariant(
                row["choice"],
                row["subject"],
                row["html"],
                row["text"],
                row["marker"],
                row["post_count"],
            )
            for row in rows
        }

    def carried(self) -> tuple[set[tuple[str, str]], set[str]]:
        """(feed_url, post_key) pairs and normalised links that some issue already carried, or
        that `digest mark-seen` recorded as if one had."""
        keys: set[tuple[str, str]] = set()
        links: set[str] = set()
        for row in self.db.execute(
            "SELECT feed_url, post_key, link_key FROM issue_posts"
            " UNION ALL SELECT feed_url, post_key, link_key FROM seen_posts"
        ):
            keys.add((row["feed_url"], row["post_key"]))
            if row["link_key"]:
                links.add(row["link_key"])
        return keys, links

    def unfinished_issue(self) -> StoredIssue | None:
        """The oldest issue whose send has not finished, to resume before anything new."""
        row = self.db.execute(
            "SELECT * FROM issues WHERE finished_at IS NULL ORDER BY id LIMIT 1"
        ).fetchone()
        return issue_from_row(row) if row else None

    def pending_count(self) -> int:
        """Deliveries still to be tried, queued or deferred by the server (a number, for the
        metrics), from the issues' tallies: one row per issue, not a scan of every delivery at
        each scrape. An issue's queue counts once it is written whole (see the module)."""
        row = self.db.execute("SELECT COALESCE(SUM(pending), 0) AS n FROM issue_tallies").fetchone()
        return int(row["n"]) if row is not None else 0

    def last_finished_at(self) -> datetime | None:
        """When the newest finished send finished, having delivered at least one message (None:
        none has): "the last successful send", for the metrics. A compacted issue's counts
        stand for its deliveries."""
        row = self.db.execute(
            "SELECT MAX(finished_at) AS at FROM issues WHERE finished_at IS NOT NULL AND ("
            " EXISTS (SELECT 1 FROM deliveries d WHERE d.issue_id = issues.id"
            " AND d.status = 'sent')"
            " OR EXISTS (SELECT 1 FROM issue_counts c WHERE c.issue_id = issues.id AND c.sent > 0))"
        ).fetchone()
        return parse_time(row["at"]) if row is not None else None

    def finish_issue(self, issue_id: int, now: datetime) -> None:
        """Mark an issue's send complete: every subscriber has a final delivery. The first
        sender to see it finished marks it; the time stays the first one."""
        self.db.execute(
            "UPDATE issues SET finished_at = ? WHERE id = ? AND finished_at IS NULL",
            (iso(now), issue_id),
        )

    def give_up_pending(self, issue_id: int, now: datetime) -> list[Delivery]:
        """Mark an issue's still-pending deliveries failed and finish it, so it stops blocking."""
        with self.db.transaction():
            self._tally(issue_id)  # first: no sender settles these rows meanwhile
            rows = self.db.execute(
                "SELECT email, reply FROM deliveries WHERE issue_id = ? AND status = 'pending'",
                (issue_id,),
            ).fetchall()
            given_up = [
                Delivery(
                    row["email"],
                    DeliveryStatus.FAILED,
                    f"gave up at the next slot; last reply: {row['reply'] or 'none'}",
                )
                for row in rows
            ]
            self.db.executemany(
                "UPDATE deliveries SET status = 'failed', reply = ?, attempts = attempts + 1,"
                " updated_at = ? WHERE issue_id = ? AND email = ? AND status = 'pending'",
                [(d.reply, iso(now), issue_id, d.email) for d in given_up],
            )
            self._tally(issue_id, failed=len(given_up), pending=-len(given_up))
            self.finish_issue(issue_id, now)
        return given_up

    def history(self, limit: int = 50) -> list[IssueSummary]:
        """Recent issues with their delivery counts, newest first: one row of tallies per
        issue, or of counts once compacted, and the first FAILURES_LISTED failed deliveries
        by address, so the time does not grow with the readers an issue had."""
        summaries = []
        issues = self.db.execute(
            "SELECT issues.*, c.sent AS c_sent, c.failed AS c_failed, c.pending AS c_pending,"
            " t.sent AS t_sent, t.failed AS t_failed, t.pending AS t_pending"
            " FROM issues LEFT JOIN issue_counts c ON c.issue_id = issues.id"
            " LEFT JOIN issue_tallies t ON t.issue_id = issues.id"
            " ORDER BY issues.id DESC LIMIT ?",
            (limit,),
        )
        for row in issues.fetchall():
            if row["c_sent"] is not None:
                summaries.append(
                    IssueSummary(
                        issue_from_row(row),
                        int(row["c_sent"]),
                        int(row["c_failed"]),
                        int(row["c_pending"]),
                        (),
                        compacted=True,
                    )
                )
                continue
            counts = {status: int(row[f"t_{status}"] or 0) for status in _STATUSES}
            failed: tuple[Delivery, ...] = ()
            if counts["failed"]:
                failed = tuple(
                    Delivery(r["email"], DeliveryStatus.FAILED, r["reply"] or "")
                    for r in self.db.execute(
                        "SELECT email, reply FROM deliveries WHERE issue_id = ?"
                        " AND status = 'failed' ORDER BY email LIMIT ?",
                        (row["id"], FAILURES_LISTED),
                    )
                )
            summaries.append(
                IssueSummary(
                    issue_from_row(row), counts["sent"], counts["failed"], counts["pending"], failed
                )
            )
        return summaries

    # -- retention -------------------------------------------------------------

    def compact(self, before: datetime, now: datetime) -> Compaction:
        """Compact every finished issue created before `before` (the retention window's
        start): its deliveries counted into `issue_counts` and deleted, the reports about it
        stripped; then strip every report received before `before`. Each issue is one
        transaction, so a compaction cut short keeps what it finished and loses nothing.

        An unfinished issue is left whole however old: resuming it needs to know who has it.
        Deleted rows are overwritten where the database can (SQLite's `secure_delete`)."""
        self.db.erase_securely()
        waiting: list[int] = []
        due: list[int] = []
        for row in self.db.execute(
            "SELECT id, created_at, finished_at FROM issues WHERE NOT EXISTS"
            " (SELECT 1 FROM issue_counts c WHERE c.issue_id = issues.id) ORDER BY id"
        ).fetchall():
            if datetime.fromisoformat(row["created_at"]) >= before:
                continue
            (due if row["finished_at"] else waiting).append(int(row["id"]))
        deliveries = reports = 0
        for issue_id in due:
            with self.db.transaction():
                deliveries += self._compact_issue(issue_id, now)
                reports += self._strip_reports("issue_id = ?", (issue_id,))
        with self.db.transaction():
            reports += self._strip_reports(
                "received_at < ? AND (issue_id IS NULL OR issue_id NOT IN"
                " (SELECT id FROM issues WHERE finished_at IS NULL))",
                (iso(before),),
            )
        return Compaction(tuple(due), deliveries, reports, tuple(waiting))

    def _compact_issue(self, issue_id: int, now: datetime) -> int:
        """One issue's deliveries as counts, inside the caller's transaction; rows removed.
        The counts take over from the issue's tallies, which go."""
        self.db.execute("DELETE FROM issue_tallies WHERE issue_id = ?", (issue_id,))
        counts = dict.fromkeys(("sent", "failed", "pending"), 0)
        for status, count in self.db.execute(
            "SELECT status, COUNT(*) FROM deliveries WHERE issue_id = ? GROUP BY status",
            (issue_id,),
        ):
            counts[status] = int(count)
        bounced = BounceReports(self.db).by_issue().get(issue_id, IssueBounces())
        self.db.execute(
            "INSERT INTO issue_counts (issue_id, sent, failed, pending, hard_bounces,"
            " soft_bounces, complaints, compacted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                issue_id,
                counts["sent"],
                counts["failed"],
                counts["pending"],
                bounced.hard,
                bounced.soft,
                bounced.complaints,
                iso(now),
            ),
        )
        return self.db.execute("DELETE FROM deliveries WHERE issue_id = ?", (issue_id,)).rowcount

    def _strip_reports(self, where: str, parameters: tuple[object, ...]) -> int:
        """Drop the address, detail and text of the reports matching `where`, keeping when,
        whence, what kind, what it did and the status code; a key that names the address (a
        provider's event id may) goes too. How many were stripped."""
        return self.db.execute(
            "UPDATE bounce_reports SET report_key = CASE WHEN email != ''"
            " AND instr(lower(report_key), email) > 0 THEN 'expired:' || id ELSE report_key END,"
            " email = '', detail = '', report = ''"
            f" WHERE ({where}) AND (email != '' OR detail != '' OR report != '')",
            parameters,
        ).rowcount

    def compacted_bounces(self) -> dict[int, IssueBounces]:
        """The bounces and complaints counted for each compacted issue when it was compacted
        (its reports no longer tell one address from another)."""
        return {
            int(row["issue_id"]): IssueBounces(
                int(row["hard_bounces"]), int(row["soft_bounces"]), int(row["complaints"])
            )
            for row in self.db.execute(
                "SELECT issue_id, hard_bounces, soft_bounces, complaints FROM issue_counts"
            )
        }

    # -- deliveries ------------------------------------------------------------

    def deliveries(self, issue_id: int) -> dict[str, Delivery]:
        """Every recorded delivery of an issue, by lower-cased address."""
        rows = self.db.execute(
            "SELECT email, status, reply FROM deliveries WHERE issue_id = ?", (issue_id,)
        )
        return {
            row["email"]: Delivery(row["email"], DeliveryStatus(row["status"]), row["reply"])
            for row in rows
        }

    def record_delivery(self, issue_id: int, delivery: Delivery, now: datetime) -> None:
        """Record one recipient's outcome, committed at once so a crash loses nothing sent;
        the issue's tally moves with it."""
        email = delivery.email.lower()
        with self.db.transaction():
            self._tally(issue_id)
            before = self.db.execute(
                "SELECT status FROM deliveries WHERE issue_id = ? AND email = ?",
                (issue_id, email),
            ).fetchone()
            self.db.execute(
                "INSERT INTO deliveries (issue_id, email, status, reply, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (issue_id, email) DO UPDATE SET"
                " status = excluded.status, reply = excluded.reply,"
                " attempts = deliveries.attempts + 1, updated_at = excluded.updated_at",
                (issue_id, email, delivery.status.value, delivery.reply, iso(now)),
            )
            moved = dict.fromkeys(_STATUSES, 0)
            moved[delivery.status.value] += 1
            if before is not None:
                moved[str(before["status"])] -= 1
            self._tally(issue_id, **moved)

    def _tally(self, issue_id: int, sent: int = 0, failed: int = 0, pending: int = 0) -> None:
        """Move the issue's tallies by these amounts, inside the caller's transaction. Called
        with none, it takes the tally's row (locked on PostgreSQL until the transaction ends)
        before the delivery rows it is about to count."""
        self.db.execute(
            "INSERT INTO issue_tallies (issue_id, sent, failed, pending) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (issue_id) DO UPDATE SET sent = issue_tallies.sent + excluded.sent,"
            " failed = issue_tallies.failed + excluded.failed,"
            " pending = issue_tallies.pending + excluded.pending",
            (issue_id, sent, failed, pending),
        )

    def tallies(self, issue_id: int) -> dict[str, int]:
        """The issue's tallies by status (what `history` shows before compaction)."""
        row = self.db.execute(
            "SELECT sent, failed, pending FROM issue_tallies WHERE issue_id = ?", (issue_id,)
        ).fetchone()
        return {status: int(row[status]) if row else 0 for status in _STATUSES}

    # -- the send queue ----------------------------------------------------------
    #
    # When an issue is frozen, one pending row per reader is written (`queue_listed`,
    # `queue_chosen`, then `drop_suppressed` and `mark_queued`), in batches. Then every sender
    # claims batches of pending rows (`claim`), sends them and records each outcome (`settle`),
    # until nothing is left to claim. A claim is a lease: `claimed_until` is when another
    # sender may take the rows over; `release` hands unsent rows back at once. A row a sender
    # settled as still pending (a temporary failure past its retries) keeps that sender's claim
    # with no lease: others may try it, the same sender does not again.

    def queue_listed(
        self, issue_id: int, readers: Sequence[tuple[str, str]], now: datetime
    ) -> None:
        """Queue readers from the subscriber file, (address, name), for the whole issue. A
        reader queued already keeps their row (the file's first entry wins); a row an earlier
        release left pending, without a rendering, is given one."""
        self.db.executemany(
            "INSERT INTO deliveries (issue_id, email, status, reply, attempts, updated_at, name,"
            " edition) VALUES (?, ?, 'pending', '', 0, ?, ?, '') ON CONFLICT (issue_id, email)"
            " DO UPDATE SET name = excluded.name, edition = excluded.edition"
            " WHERE deliveries.status = 'pending' AND deliveries.edition IS NULL",
            [(issue_id, email, iso(now), name) for email, name in readers],
        )

    def queue_chosen(
        self,
        issue_id: int,
        readers: Sequence[tuple[str, str, str | None]],
        now: datetime,
        *,
        listed_only: bool,
    ) -> None:
        """Queue readers with a choice of their own, (address, name, edition): a name given
        wins over the file's, the edition replaces the file's, and an edition of None (their
        sections had nothing new) takes them off this issue. `listed_only`: the choices readers
        in the file made on their preferences page, which bring nobody in."""
        update = (
            "UPDATE deliveries SET name = CASE WHEN ? != '' THEN ? ELSE name END, edition = ?"
            " WHERE issue_id = ? AND email = ? AND status = 'pending'"
        )
        insert = (
            "INSERT INTO deliveries (issue_id, email, status, reply, attempts, updated_at, name,"
            " edition) VALUES (?, ?, 'pending', '', 0, ?, ?, ?) ON CONFLICT (issue_id, email)"
            " DO UPDATE SET name = CASE WHEN excluded.name != '' THEN excluded.name"
            " ELSE deliveries.name END, edition = excluded.edition"
            " WHERE deliveries.status = 'pending'"
        )
        kept = [row for row in readers if row[2] is not None]
        if listed_only:
            self.db.executemany(
                update, [(name, name, edition, issue_id, email) for email, name, edition in kept]
            )
        else:
            self.db.executemany(
                insert,
                [(issue_id, email, iso(now), name, edition) for email, name, edition in kept],
            )
        self.db.executemany(
            "DELETE FROM deliveries WHERE issue_id = ? AND email = ? AND status = 'pending'",
            [(issue_id, email) for email, _, edition in readers if edition is None],
        )

    def drop_suppressed(self, issue_id: int) -> int:
        """Take suppressed readers off the issue's pending rows; how many."""
        with self.db.transaction():
            self._tally(issue_id)
            dropped = self.db.execute(
                "DELETE FROM deliveries WHERE issue_id = ? AND status = 'pending'"
                " AND email IN (SELECT email FROM suppressions)",
                (issue_id,),
            ).rowcount
            self._tally(issue_id, pending=-dropped)
        return dropped

    def mark_queued(self, issue_id: int, now: datetime) -> None:
        """Every reader's row is written: senders may claim them. The queue is tallied here,
        by one count of the issue's rows, in the caller's transaction (the one that wrote the
        queue's last rows): what was queued, and anything an earlier release left."""
        with self.db.transaction():
            self._tally(issue_id)
            counts = self.queue_counts(issue_id)
            self.db.execute(
                "UPDATE issue_tallies SET sent = ?, failed = ?, pending = ? WHERE issue_id = ?",
                (counts["sent"], counts["failed"], counts["pending"], issue_id),
            )
            self.db.execute(
                "UPDATE issues SET queued_at = ? WHERE id = ? AND queued_at IS NULL",
                (iso(now), issue_id),
            )

    def queue_counts(self, issue_id: int) -> dict[str, int]:
        """The issue's deliveries by status (sent, failed, pending)."""
        counts = dict.fromkeys(("sent", "failed", "pending"), 0)
        for row in self.db.execute(
            "SELECT status, COUNT(*) AS n FROM deliveries WHERE issue_id = ? GROUP BY status",
            (issue_id,),
        ):
            counts[str(row["status"])] = int(row["n"])
        return counts

    def claim(
        self,
        issue_id: int,
        claim: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        *,
        gone: Callable[[str], bool] | None = None,
    ) -> list[Queued]:
        """Claim up to `limit` pending rows nobody's lease holds and that this claim has not
        settled as pending, until `now + lease`, in one writing transaction (on PostgreSQL the
        rows are also locked, skipping those another transaction holds).

        A reader who left since the freeze (suppressed, or `gone`: forgotten) is taken off the
        issue here, at claim time, and not returned."""
        due = iso(now)
        with self.db.transaction():
            self._tally(issue_id)
            rows = self.db.execute(
                "SELECT email, name, edition FROM deliveries WHERE issue_id = ?"
                " AND status = 'pending' AND claimed_until <= ? AND claim != ?"
                f" LIMIT ?{self.db.skip_locked}",
                (issue_id, due, claim, limit),
            ).fetchall()
            if not rows:
                return []
            emails = [str(row["email"]) for row in rows]
            marks = ", ".join("?" * len(emails))
            left = {
                str(row["email"])
                for row in self.db.execute(
                    f"SELECT email FROM suppressions WHERE email IN ({marks})", emails
                )
            }
            if gone is not None:
                left.update(email for email in emails if gone(email))
            if left:
                gone_marks = ", ".join("?" * len(left))
                dropped = self.db.execute(
                    f"DELETE FROM deliveries WHERE issue_id = ? AND email IN ({gone_marks})"
                    " AND status = 'pending'",
                    (issue_id, *sorted(left)),
                ).rowcount
                self._tally(issue_id, pending=-dropped)
            until = iso(now + lease)
            self.db.executemany(
                "UPDATE deliveries SET claim = ?, claimed_until = ? WHERE issue_id = ?"
                " AND email = ?",
                [(claim, until, issue_id, email) for email in emails if email not in left],
            )
        return [
            Queued(str(row["email"]), str(row["name"]), str(row["edition"] or ""))
            for row in rows
            if row["email"] not in left
        ]

    def settle(
        self, issue_id: int, claim: str, deliveries: Sequence[Delivery], now: datetime
    ) -> None:
        """Record outcomes of claimed rows, in the caller's transaction: the lease ends, the
        name is dropped once the outcome is final, and a row settled as pending keeps the
        claim (see above). A row another sender settled meanwhile keeps its outcome; a row
        erased meanwhile stays gone. The tally moves by what the rows held before."""
        self._tally(issue_id)
        emails = sorted({d.email.lower() for d in deliveries})
        if not emails:
            return
        marks = ", ".join("?" * len(emails))
        held = {
            str(row["email"]): str(row["status"])
            for row in self.db.execute(
                f"SELECT email, status FROM deliveries WHERE issue_id = ? AND email IN ({marks})"
                " AND (status = 'pending' OR claim = ?)",
                (issue_id, *emails, claim),
            )
        }
        moved = dict.fromkeys(_STATUSES, 0)
        for d in deliveries:
            email = d.email.lower()
            if email in held:  # once settled here, the row is this claim's: later ones apply
                moved[held[email]] -= 1
                moved[d.status.value] += 1
                held[email] = d.status.value
        self.db.executemany(
            "UPDATE deliveries SET status = ?, reply = ?, attempts = attempts + 1,"
            " updated_at = ?, name = CASE WHEN ? = 'pending' THEN name ELSE '' END,"
            " claim = ?, claimed_until = ''"
            " WHERE issue_id = ? AND email = ? AND (status = 'pending' OR claim = ?)",
            [
                (
                    d.status.value,
                    d.reply,
                    iso(now),
                    d.status.value,
                    claim,
                    issue_id,
                    d.email.lower(),
                    claim,
                )
                for d in deliveries
            ],
        )
        self._tally(issue_id, **moved)

    def renew(self, issue_id: int, claim: str, until: datetime) -> int:
        """Extend this claim's running leases to `until`: a sender still at work on a batch
        keeps it however long the batch takes (a slow server, a low rate cap); how many."""
        return self.db.execute(
            "UPDATE deliveries SET claimed_until = ? WHERE issue_id = ? AND claim = ?"
            " AND status = 'pending' AND claimed_until != ''",
            (iso(until), issue_id, claim),
        ).rowcount

    def release(self, issue_id: int, claims: Sequence[str]) -> int:
        """Hand back the rows these claims hold and have not settled, for anyone to claim at
        once (a sender stopping, or one found gone); how many."""
        released = 0
        for claim in claims:
            released += self.db.execute(
                "UPDATE deliveries SET claim = '', claimed_until = '' WHERE issue_id = ?"
                " AND claim = ? AND status = 'pending' AND claimed_until != ''",
                (issue_id, claim),
            ).rowcount
        return released

    def outstanding(self, issue_id: int, claim: str, now: datetime) -> Outstanding:
        """How many rows are pending, and which other claims hold running leases on some."""
        row = self.db.execute(
            "SELECT COUNT(*) AS n FROM deliveries WHERE issue_id = ? AND status = 'pending'",
            (issue_id,),
        ).fetchone()
        leases = tuple(
            (str(lease["claim"]), datetime.fromisoformat(lease["ends"]))
            for lease in self.db.execute(
                "SELECT claim, MIN(claimed_until) AS ends FROM deliveries WHERE issue_id = ?"
                " AND status = 'pending' AND claimed_until > ? AND claim != ?"
                " GROUP BY claim ORDER BY claim",
                (issue_id, iso(now), claim),
            )
        )
        return Outstanding(int(row["n"]), leases)

    # -- schedule slots --------------------------------------------------------

    def issue_for_slot(self, slot_key: str) -> int | None:
        """The issue created for a schedule slot, if any."""
        row = self.db.execute("SELECT id FROM issues WHERE slot_key = ?", (slot_key,)).fetchone()
        return int(row["id"]) if row else None

    def claim_slot(self, slot_key: str, issue_id: int) -> None:
        """Attach a schedule slot to an existing (resumed) issue."""
        self.db.execute(
            "UPDATE issues SET slot_key = ? WHERE id = ? AND slot_key IS NULL", (slot_key, issue_id)
        )

    def record_skipped_slot(self, slot_key: str, now: datetime, reason: str) -> None:
        """Remember that a slot fired without an issue (nothing new), so it is not fired again."""
        self.db.execute(
            "INSERT INTO skipped_slots (slot_key, recorded_at, reason) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (slot_key, iso(now), reason),
        )

    def skipped_slots(self, limit: int = 50) -> list[tuple[str, str]]:
        """Recent slots that fired without an issue, newest first: (slot key, reason)."""
        rows = self.db.execute(
            "SELECT slot_key, reason FROM skipped_slots ORDER BY slot_key DESC LIMIT ?", (limit,)
        )
        return [(str(row["slot_key"]), str(row["reason"])) for row in rows]

    def slot_handled(self, slot_key: str) -> bool:
        """Whether a slot already produced an issue or was recorded as skipped."""
        if self.issue_for_slot(slot_key) is not None:
            return True
        row = self.db.execute("SELECT 1 FROM skipped_slots WHERE slot_key = ?", (slot_key,))
        return row.fetchone() is not None

    def latest_slot_key(self) -> str | None:
        """The newest slot with an issue or a skipped record (keys are UTC ISO, so text order)."""
        row = self.db.execute(
            "SELECT MAX(slot_key) AS k FROM (SELECT slot_key FROM issues"
            " UNION ALL SELECT slot_key FROM skipped_slots) AS slots"
        ).fetchone()
        return str(row["k"]) if row["k"] else None
