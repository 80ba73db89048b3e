"""The editor's hand on the next issue: its note, the posts left out or pinned, and the approval
of a scheduled issue with every decision on it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from digest.core.models import Choice, Post
from digest.store.backend import Backend, iso, parse_time


@dataclass(frozen=True)
class Approval:
    """A scheduled issue's approval: the draft's posts, and what the approvers said."""

    slot_key: str
    requested_at: datetime
    posts: frozenset[str]  # "feed URL\npost key" of each post in the draft
    status: str  # "requested", "approved" or "held"
    decided_by: str  # an approver's address, "command line"; older records: "link (IP)"
    hold_told: bool
    decided_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """One decision on a slot's draft, as kept on record: what, who, from where and when."""

    status: str  # "approved" or "held"
    by: str
    at: datetime
    ip: str = ""  # where a link was pressed from; "" on the command line


class Editorial:
    """The editor_note, post_choices, seen_posts, approvals and approval_decisions tables."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    def note(self) -> str:
        """The note waiting for the next issue ("" when none)."""
        row = self.db.execute("SELECT text FROM editor_note WHERE id = 1").fetchone()
        return str(row["text"]) if row else ""

    def set_note(self, text: str, now: datetime) -> None:
        """Keep `text` for the next issue (blank clears it)."""
        if not text.strip():
            self.clear_note()
            return
        self.db.execute(
            "INSERT INTO editor_note (id, text, updated_at) VALUES (1, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET text = excluded.text,"
            " updated_at = excluded.updated_at",
            (text, iso(now)),
        )

    def clear_note(self) -> None:
        """Forget the note (it went out with an issue, or the editor withdrew it)."""
        self.db.execute("DELETE FROM editor_note")

    def choices(self) -> dict[tuple[str, str], Choice]:
        """Each post the editor left out or pinned, by (feed URL, post key)."""
        rows = self.db.execute("SELECT feed_url, post_key, choice FROM post_choices")
        return {(row["feed_url"], row["post_key"]): Choice(row["choice"]) for row in rows}

    def choose(self, feed_url: str, post_key: str, choice: Choice | None, now: datetime) -> None:
        """Leave a post out or pin it (`choice`), or undo either (None)."""
        if choice is None:
            self.db.execute(
                "DELETE FROM post_choices WHERE feed_url = ? AND post_key = ?", (feed_url, post_key)
            )
            return
        self.db.execute(
            "INSERT INTO post_choices (feed_url, post_key, choice, at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (feed_url, post_key) DO UPDATE SET choice = excluded.choice,"
            " at = excluded.at",
            (feed_url, post_key, choice.value, iso(now)),
        )

    def unpin(self, keys: list[tuple[str, str]]) -> None:
        """Forget the pins of posts an issue has just carried."""
        rows: list[tuple[object, ...]] = list(keys)
        self.db.executemany(
            "DELETE FROM post_choices WHERE feed_url = ? AND post_key = ? AND choice = 'pin'", rows
        )

    def mark_seen(self, posts: Iterable[Post], now: datetime) -> int:
        """Record posts as already sent (a clean start); returns how many were not yet."""
        rows: list[tuple[object, ...]] = [
            (post.feed_url, post.key, post.link_key, iso(now)) for post in posts
        ]
        with self.db.transaction():
            before = self.db.execute("SELECT COUNT(*) FROM seen_posts").fetchone()[0]
            self.db.executemany(
                "INSERT INTO seen_posts (feed_url, post_key, link_key, marked_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
            after = self.db.execute("SELECT COUNT(*) FROM seen_posts").fetchone()[0]
        return int(after) - int(before)

    def approval(self, slot_key: str | None = None) -> Approval | None:
        """The approval asked for a slot (None: the newest one), if any."""
        if slot_key is None:
            row = self.db.execute(
                "SELECT * FROM approvals ORDER BY slot_key DESC LIMIT 1"
            ).fetchone()
        else:
            row = self.db.execute(
                "SELECT * FROM approvals WHERE slot_key = ?", (slot_key,)
            ).fetchone()
        if row is None:
            return None
        return Approval(
            row["slot_key"],
            datetime.fromisoformat(row["requested_at"]),
            frozenset(json.loads(row["posts"])),
            row["status"],
            row["decided_by"],
            bool(row["hold_told"]),
            parse_time(row["decided_at"]),
        )

    def request_approval(self, slot_key: str, posts: frozenset[str], now: datetime) -> None:
        """Record a draft sent to the approvers; a new draft for the slot asks afresh."""
        self.db.execute(
            "INSERT INTO approvals (slot_key, requested_at, posts, status) VALUES (?, ?, ?,"
            " 'requested') ON CONFLICT (slot_key) DO UPDATE SET requested_at ="
            " excluded.requested_at, posts = excluded.posts, status = 'requested',"
            " decided_at = NULL, decided_by = '', hold_told = 0",
            (slot_key, iso(now), json.dumps(sorted(posts))),
        )

    def decide(self, slot_key: str, status: str, by: str, now: datetime, *, ip: str = "") -> bool:
        """Approve or hold a slot's draft, whatever was decided before (the command line's
        override), keeping the decision on record; False when no draft is waiting for it."""
        return self._decide(slot_key, status, by, now, ip, only_open=False)

    def decide_once(
        self, slot_key: str, status: str, by: str, now: datetime, *, ip: str = ""
    ) -> bool:
        """Approve or hold a slot's draft nobody has decided on yet (an approval link decides
        once); False, changing nothing, when it was decided already. The check and the write
        are one statement, so two presses at once cannot both decide."""
        return self._decide(slot_key, status, by, now, ip, only_open=True)

    def _decide(
        self, slot_key: str, status: str, by: str, now: datetime, ip: str, *, only_open: bool
    ) -> bool:
        condition = " AND status = 'requested'" if only_open else ""
        with self.db.transaction():
            cursor = self.db.execute(
                "UPDATE approvals SET status = ?, decided_at = ?, decided_by = ?"
                f" WHERE slot_key = ?{condition}",
                (status, iso(now), by, slot_key),
            )
            if cursor.rowcount == 0:
                return False
            self.db.execute(
                "INSERT INTO approval_decisions (slot_key, status, decided_by, ip, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (slot_key, status, by, ip, iso(now)),
            )
        return True

    def decisions(self, slot_key: str) -> list[Decision]:
        """Every decision on a slot's drafts, oldest first."""
        rows = self.db.execute(
            "SELECT status, decided_by, ip, at FROM approval_decisions WHERE slot_key = ?"
            " ORDER BY id",
            (slot_key,),
        )
        return [
            Decision(row["status"], row["decided_by"], datetime.fromisoformat(row["at"]), row["ip"])
            for row in rows
        ]

    def told_of_hold(self, slot_key: str) -> None:
        """Remember that the approvers were told the slot's issue is held."""
        self.db.execute("UPDATE approvals SET hold_told = 1 WHERE slot_key = ?", (slot_key,))
