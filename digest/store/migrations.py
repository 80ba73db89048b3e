"""The state file's schema as numbered migrations, applied in order and recorded in user_version.

Migration 1 is the schema release 0.1.0 created (it set no user_version, so a 0.1.0 file reads
as version 0 with the tables present; its statements are all IF NOT EXISTS, so applying it to
such a file changes nothing). A fresh file runs 1..LATEST. Every pending migration runs in one
transaction with the new user_version: an upgrade happens completely or not at all.

A migration is a sequence of steps: an SQL statement, or a function of the connection for what
SQL cannot do alone (such as putting stored addresses in the canonical form, which takes IDNA).
A function step runs inside the same transaction and must not commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from digest.core.errors import StateError
from digest.store.addresses import canonicalise_stored_addresses

Step = str | Callable[[sqlite3.Connection], None]

# The public archive's issue numbers (migration 5). A number is given to an issue when it is
# frozen with the archive on; `withdrawn_at` takes it off the web for good.
ARCHIVE_MIGRATION: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS archive_issues (
    number INTEGER PRIMARY KEY,
    issue_id INTEGER NOT NULL UNIQUE REFERENCES issues (id),
    slug TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    withdrawn_at TEXT
)""",
)

# Bounce and complaint reports (migration 6): every report read, how it was classified and
# what it did; `report_key` makes processing the same report twice count once. Suppressions
# gain the reason and the issue and report behind them.
BOUNCES_MIGRATION: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS bounce_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    report_key TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    email TEXT NOT NULL DEFAULT '',
    issue_id INTEGER,
    status TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    report TEXT NOT NULL DEFAULT ''
)""",
    "CREATE INDEX IF NOT EXISTS bounce_reports_email ON bounce_reports (email, issue_id)",
    "CREATE INDEX IF NOT EXISTS bounce_reports_issue ON bounce_reports (issue_id, kind)",
    "ALTER TABLE suppressions ADD COLUMN reason TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE suppressions ADD COLUMN issue_id INTEGER",
    "ALTER TABLE suppressions ADD COLUMN report_id INTEGER",
    "CREATE INDEX IF NOT EXISTS deliveries_email ON deliveries (email, updated_at)",
)

# The editor's hand on the next issue (migration 7): a note for it only, posts left out or
# pinned, the note kept with the issue it went out in, approvals of scheduled issues, and the
# posts `digest mark-seen` counts as already sent.
EDITOR_MIGRATION: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS editor_note (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    text TEXT NOT NULL,
    updated_at TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS post_choices (
    feed_url TEXT NOT NULL,
    post_key TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('leave_out', 'pin')),
    at TEXT NOT NULL,
    PRIMARY KEY (feed_url, post_key)
)""",
    """CREATE TABLE IF NOT EXISTS issue_notes (
    issue_id INTEGER PRIMARY KEY REFERENCES issues (id),
    text TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS approvals (
    slot_key TEXT PRIMARY KEY,
    requested_at TEXT NOT NULL,
    posts TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('requested', 'approved', 'held')),
    decided_at TEXT,
    decided_by TEXT NOT NULL DEFAULT '',
    hold_told INTEGER NOT NULL DEFAULT 0
)""",
    """CREATE TABLE IF NOT EXISTS seen_posts (
    feed_url TEXT NOT NULL,
    post_key TEXT NOT NULL,
    link_key TEXT NOT NULL,
    marked_at TEXT NOT NULL,
    PRIMARY KEY (feed_url, post_key)
)""",
)

# Replays and decisions (migration 10). `webhook_nonces` remembers each signed webhook request
# digest accepted (Mailgun's token, a hash of what SendGrid signed, Postmark's event ID) for as
# long as its signature would still be accepted, so a second use is refused; rows older than that
# are pruned as new ones arrive. `approval_decisions` keeps every decision on a slot's draft, who
# made it and when, so a command-line override does not erase the decision it overrode; the
# decisions already on record are copied in.
REPLAY_MIGRATION: tuple[str, ...] = (
    """CREATE TABLE webhook_nonces (
    provider TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (provider, nonce)
)""",
    "CREATE INDEX webhook_nonces_seen ON webhook_nonces (provider, seen_at)",
    """CREATE TABLE approval_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slot_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('approved', 'held')),
    decided_by TEXT NOT NULL,
    ip TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL
)""",
    "CREATE INDEX approval_decisions_slot ON approval_decisions (slot_key, id)",
    """INSERT INTO approval_decisions (slot_key, status, decided_by, at)
    SELECT slot_key, status, decided_by, decided_at FROM approvals
    WHERE decided_at IS NOT NULL AND status IN ('approved', 'held') ORDER BY decided_at""",
)


# One person, one key (migration 11): every stored address in the canonical form
# (digest.store.addresses), rows that turn out to be one person merged. Then the preferences a
# reader in the subscriber file saved, which earlier releases kept as a confirmed sign-up (so
# that taking them off the file did not take them off the list), become `listed` rows, which
# count only while the file lists them; a sign-up the reader confirmed, or the editor added,
# stays one.
ADDRESSES_MIGRATION: tuple[Step, ...] = (
    canonicalise_stored_addresses,
    """UPDATE signups SET status = 'listed' WHERE status = 'confirmed' AND source = 'file'
    AND NOT EXISTS (SELECT 1 FROM consents c WHERE c.email = signups.email
        AND c.event IN ('confirmed', 'added'))""",
)

# Kinds of suppression, and a table nothing read (migration 12). A suppression says what made
# it in `kind` (digest.store.suppressions.SuppressionKind), so nothing classifies its wording;
# existing rows get theirs from the source and reason earlier releases wrote: "bounce"
# (a soft-bounce streak, a refusal during the send, or else a hard bounce), "complaint",
# "manual" (the command line); everything else ("one-click", "web", "preferences page") was
# the reader unsubscribing. `issue_notes` kept each issue's editor's note, which no release
# ever read back: the note went out in the issue itself, frozen in `issues`, so dropping the
# table loses nothing.
KINDS_MIGRATION: tuple[str, ...] = (
    """ALTER TABLE suppressions ADD COLUMN kind TEXT NOT NULL DEFAULT 'unsubscribe'
    CHECK (kind IN ('hard_bounce', 'soft_bounces', 'refused', 'complaint', 'unsubscribe',
        'manual'))""",
    """UPDATE suppressions SET kind = CASE
        WHEN source = 'complaint' THEN 'complaint'
        WHEN source = 'bounce' AND reason LIKE '%soft bounces in a row%' THEN 'soft_bounces'
        WHEN source = 'bounce' AND reason LIKE '%at SMTP time%' THEN 'refused'
        WHEN source = 'bounce' THEN 'hard_bounce'
        WHEN source = 'manual' THEN 'manual'
        ELSE 'unsubscribe' END""",
    "DROP TABLE issue_notes",
)


# Per-issue counts kept when an issue's deliveries are compacted (migration 13): what `digest
# history` shows of an issue once the state holds no address for it (digest.store.ledger,
# `retention.deliveries`). Bounce reports are stripped by when they arrived, hence the index.
COUNTS_MIGRATION: tuple[str, ...] = (
    """CREATE TABLE issue_counts (
    issue_id INTEGER PRIMARY KEY REFERENCES issues (id),
    sent INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    pending INTEGER NOT NULL,
    hard_bounces INTEGER NOT NULL,
    soft_bounces INTEGER NOT NULL,
    complaints INTEGER NOT NULL,
    compacted_at TEXT NOT NULL
)""",
    "CREATE INDEX bounce_reports_received ON bounce_reports (received_at)",
)

# Per-issue tallies of deliveries by status (migration 18; digest.store.ledger), kept as
# outcomes are recorded so `digest history` reads one row per issue, not every delivery. Filled
# here from the deliveries of every issue not compacted (a compacted one has issue_counts).
TALLIES_MIGRATION: tuple[str, ...] = (
    """CREATE TABLE issue_tallies (
    issue_id INTEGER PRIMARY KEY REFERENCES issues (id),
    sent INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    pending INTEGER NOT NULL DEFAULT 0
)""",
    """INSERT INTO issue_tallies (issue_id, sent, failed, pending) SELECT id,
    (SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = issues.id AND d.status = 'sent'),
    (SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = issues.id AND d.status = 'failed'),
    (SELECT COUNT(*) FROM deliveries d WHERE d.issue_id = issues.id AND d.status = 'pending')
FROM issues WHERE NOT EXISTS (SELECT 1 FROM issue_counts c WHERE c.issue_id = issues.id)""",
)

# Transactional emails waiting to be sent (migration 14; digest.store.outbox): the message as
# built, the canonical address it is for (erasure and taking a sign-up back), what to take back
# if it is never sent, and its claim: `claimed_until` is when the entry is next due.
OUTBOX_MIGRATION: tuple[str, ...] = (
    """CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    email TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    data BLOB NOT NULL,
    smtputf8 INTEGER NOT NULL DEFAULT 0,
    undo TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until TEXT NOT NULL,
    claim TEXT NOT NULL DEFAULT ''
)""",
    "CREATE INDEX outbox_due ON outbox (claimed_until)",
    "CREATE INDEX outbox_email ON outbox (email)",
)

# Click counts (migration 17; digest.store.clicks): with `tracking.clicks: aggregate`, the post
# links of an issue as frozen, numbered within it, and how often each was followed, by people
# and by link scanners apart. No reader is named anywhere.
CLICKS_MIGRATION: tuple[str, ...] = (
    """CREATE TABLE issue_links (
    issue_id INTEGER NOT NULL REFERENCES issues (id),
    link_id INTEGER NOT NULL,
    url TEXT NOT NULL,
    PRIMARY KEY (issue_id, link_id)
)""",
    """CREATE TABLE link_clicks (
    issue_id INTEGER NOT NULL,
    link_id INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('person', 'scanner')),
    clicks INTEGER NOT NULL,
    PRIMARY KEY (issue_id, link_id, kind),
    FOREIGN KEY (issue_id, link_id) REFERENCES issue_links (issue_id, link_id)
)""",
)

# What readers did through an issue's links (migration 16; digest.store.reports): one row per
# unsubscribe or preferences change, with the issue its link named (NULL for a link made before
# links named one) and when. Counts per issue only: no address, nothing to tell one reader from
# another. `report_mails` records which issue's report was queued for the editor.
REPORTS_MIGRATION: tuple[str, ...] = (
    """CREATE TABLE reader_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    issue_id INTEGER,
    kind TEXT NOT NULL,
    at TEXT NOT NULL
)""",
    "CREATE INDEX reader_events_issue ON reader_events (issue_id, kind)",
    "CREATE INDEX reader_events_at ON reader_events (at)",
    """CREATE TABLE report_mails (
    issue_id INTEGER PRIMARY KEY,
    queued_at TEXT NOT NULL
)""",
)

# Deliveries queued at freeze and claimed by senders (migration 15; digest.store.ledger): each
# pending row says which rendering its reader gets (`edition`: "" the whole issue, else a choice
# of sections; NULL on rows an earlier release wrote, which a resumed send fills in) and the name
# the To header shows until the outcome is recorded; `claim` and `claimed_until` are the lease a
# sender holds on it while it sends. `queued_at` on the issue: every reader's row is written.
QUEUE_MIGRATION: tuple[str, ...] = (
    "ALTER TABLE deliveries ADD COLUMN name TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE deliveries ADD COLUMN edition TEXT",
    "ALTER TABLE deliveries ADD COLUMN claim TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE deliveries ADD COLUMN claimed_until TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE issues ADD COLUMN queued_at TEXT",
    "CREATE INDEX deliveries_claimable ON deliveries (issue_id, status, claimed_until)",
)

MIGRATIONS: tuple[tuple[Step, ...], ...] = (
    # 1: release 0.1.0.
    (
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS feeds (
    url TEXT PRIMARY KEY,
    etag TEXT,
    last_modified TEXT,
    permanent_url TEXT,
    gone INTEGER NOT NULL DEFAULT 0,
    last_status TEXT,
    last_error TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    first_failure_at TEXT,
    last_success_at TEXT,
    newest_post_at TEXT
)""",
        """CREATE TABLE IF NOT EXISTS posts (
    feed_url TEXT NOT NULL,
    post_key TEXT NOT NULL,
    link_key TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (feed_url, post_key)
)""",
        "CREATE INDEX IF NOT EXISTS posts_link ON posts (link_key)",
        """CREATE TABLE IF NOT EXISTS issues (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    slot_key TEXT UNIQUE,
    subject TEXT NOT NULL,
    html TEXT NOT NULL,
    text TEXT NOT NULL,
    post_count INTEGER NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS issue_posts (
    issue_id INTEGER NOT NULL REFERENCES issues (id),
    feed_url TEXT NOT NULL,
    post_key TEXT NOT NULL,
    link_key TEXT NOT NULL,
    PRIMARY KEY (issue_id, feed_url, post_key)
)""",
        "CREATE INDEX IF NOT EXISTS issue_posts_link ON issue_posts (link_key)",
        """CREATE TABLE IF NOT EXISTS deliveries (
    issue_id INTEGER NOT NULL REFERENCES issues (id),
    email TEXT NOT NULL,
    status TEXT NOT NULL,
    reply TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (issue_id, email)
)""",
        """CREATE TABLE IF NOT EXISTS suppressions (
    email TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    source TEXT NOT NULL
)""",
        """CREATE TABLE IF NOT EXISTS skipped_slots (
    slot_key TEXT PRIMARY KEY,
    recorded_at TEXT NOT NULL,
    reason TEXT NOT NULL
)""",
    ),
    # 2: the random marker personalisation puts into each frozen issue.
    ("ALTER TABLE issues ADD COLUMN marker TEXT NOT NULL DEFAULT ''",),
    # 3: a feed is known by its configured URL. 0.1.0 recorded the posts of a permanently moved
    # feed under the new address once the move was remembered; copy them (and the carried
    # posts) under the configured one, keeping the earliest first-seen time. Additive only: the
    # rows under the new address stay. Skipped where the new address is a feed of its own.
    (
        """CREATE TEMP TABLE moved AS SELECT url, permanent_url FROM feeds
    WHERE permanent_url IS NOT NULL AND permanent_url != url
    AND permanent_url NOT IN (SELECT url FROM feeds)""",
        """INSERT INTO posts (feed_url, post_key, link_key, first_seen, data)
    SELECT moved.url, posts.post_key, posts.link_key, posts.first_seen,
        json_set(posts.data, '$.feed_url', moved.url)
    FROM posts JOIN moved ON posts.feed_url = moved.permanent_url WHERE true
    ON CONFLICT (feed_url, post_key) DO UPDATE SET
        first_seen = MIN(first_seen, excluded.first_seen),
        link_key = excluded.link_key, data = excluded.data""",
        """INSERT OR IGNORE INTO issue_posts (issue_id, feed_url, post_key, link_key)
    SELECT issue_posts.issue_id, moved.url, issue_posts.post_key, issue_posts.link_key
    FROM issue_posts JOIN moved ON issue_posts.feed_url = moved.permanent_url""",
        "DROP TABLE temp.moved",
    ),
    # 4: readers who sign themselves up, the consent on record for everyone, the windowed
    # counters that rate-limit confirmation emails, and the keyed hashes of forgotten people.
    (
        """CREATE TABLE signups (
    email TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    sections TEXT,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL,
    confirmed_at TEXT,
    updated_at TEXT NOT NULL
)""",
        """CREATE TABLE consents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL,
    event TEXT NOT NULL,
    at TEXT NOT NULL,
    source TEXT NOT NULL,
    page TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT '',
    consent_sha256 TEXT NOT NULL DEFAULT ''
)""",
        "CREATE INDEX consents_email ON consents (email)",
        "CREATE TABLE rate_events (bucket TEXT NOT NULL, at TEXT NOT NULL)",
        "CREATE INDEX rate_events_bucket ON rate_events (bucket, at)",
        "CREATE TABLE forgotten (address_hash TEXT PRIMARY KEY, at TEXT NOT NULL)",
        # One row per distinct choice of sections, frozen with the issue; post_count 0 means
        # that choice had nothing new.
        """CREATE TABLE issue_variants (
    issue_id INTEGER NOT NULL REFERENCES issues (id),
    choice TEXT NOT NULL,
    subject TEXT NOT NULL,
    html TEXT NOT NULL,
    text TEXT NOT NULL,
    marker TEXT NOT NULL,
    post_count INTEGER NOT NULL,
    PRIMARY KEY (issue_id, choice)
)""",
    ),
    # 5: the archive: see ARCHIVE_MIGRATION above.
    ARCHIVE_MIGRATION,
    # 6: bounces and complaints: see BOUNCES_MIGRATION above.
    BOUNCES_MIGRATION,
    # 7: the editor's controls: see EDITOR_MIGRATION above.
    EDITOR_MIGRATION,
    # 8: rendered previews, keyed by a hash of their inputs (see digest.store.previews).
    (
        """CREATE TABLE preview_cache (
    key TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    html TEXT NOT NULL,
    text TEXT NOT NULL,
    marker TEXT NOT NULL,
    warnings TEXT NOT NULL,
    at TEXT NOT NULL
)""",
    ),
    # 9: each feed's last parse, keyed by a hash of the bytes parsed (see digest.store.parsed).
    (
        """CREATE TABLE parsed_feeds (
    url TEXT PRIMARY KEY,
    parsed_key TEXT NOT NULL,
    feed_title TEXT NOT NULL,
    warning TEXT NOT NULL,
    reparse_after TEXT,
    posts TEXT NOT NULL,
    at TEXT NOT NULL
)""",
    ),
    # 10: replayed webhooks and approval decisions: see REPLAY_MIGRATION above.
    REPLAY_MIGRATION,
    # 11: one person, one key: see ADDRESSES_MIGRATION above.
    ADDRESSES_MIGRATION,
    # 12: kinds of suppression; issue_notes dropped: see KINDS_MIGRATION above.
    KINDS_MIGRATION,
    # 13: per-issue counts of compacted deliveries: see COUNTS_MIGRATION above.
    COUNTS_MIGRATION,
    # 14: transactional emails waiting to be sent: see OUTBOX_MIGRATION above.
    OUTBOX_MIGRATION,
    # 15: deliveries queued at freeze, claimed in leased batches: see QUEUE_MIGRATION above.
    QUEUE_MIGRATION,
    # 16: what readers did through an issue's links: see REPORTS_MIGRATION above.
    REPORTS_MIGRATION,
    # 17: click counts: see CLICKS_MIGRATION above.
    CLICKS_MIGRATION,
    # 18: per-issue tallies of deliveries: see TALLIES_MIGRATION above.
    TALLIES_MIGRATION,
)
LATEST = len(MIGRATIONS)
_OURS = "issues"  # a table every digest state file has had since 0.1.0


def schema_version(connection: sqlite3.Connection, path: Path) -> int:
    """The file's schema version (0: release 0.1.0 or empty); StateError if it is not ours."""
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if version == 0:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        if tables and _OURS not in tables:
            raise StateError(
                f"{path} is a SQLite database but not a digest state file; point `state:` in"
                " config.yaml at another file"
            )
    if version > LATEST:
        raise StateError(
            f"state file {path} was written by a newer digest (schema {version}, this release"
            f" knows {LATEST}); upgrade digest"
        )
    return version


def migrate(connection: sqlite3.Connection, path: Path) -> None:
    """Apply every pending migration in one transaction; nothing to do is a no-op."""
    if schema_version(connection, path) == LATEST:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(connection, path)  # again, now that no other writer can move it
        for number in range(version + 1, LATEST + 1):
            for step in MIGRATIONS[number - 1]:
                if isinstance(step, str):
                    connection.execute(step)
                else:
                    step(connection)
        connection.execute(f"PRAGMA user_version = {LATEST}")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
