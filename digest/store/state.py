"""The open state file: its repositories, and the method names the pipeline has always used."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from digest.store.archive import Archive
from digest.store.bounces import BounceReports
from digest.store.db import Database, explain, open_database
from digest.store.editor import Editorial
from digest.store.erasure import Erasure
from digest.store.feeds import Feeds
from digest.store.ledger import Ledger
from digest.store.parsed import ParsedFeeds
from digest.store.previews import Previews
from digest.store.secrets import Secrets
from digest.store.signups import Signups
from digest.store.suppressions import Suppressions
from digest.store.webhooks import WebhookNonces


class State:
    """One open state file; use as a context manager.

    `read_only` opens it without writing anything (see digest.store.db). Any SQLite failure
    inside the `with` block, such as a page found damaged half-way, leaves it as a one-line
    StateError naming the file.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.db: Database = open_database(path, read_only=read_only)
        self.feeds = Feeds(self.db)
        self.ledger = Ledger(self.db)
        self.suppression_list = Suppressions(self.db)
        self.secrets = Secrets(self.db)
        self.signups = Signups(self.db)
        self.archive = Archive(self.db)
        self.bounces = BounceReports(self.db)
        self.editorial = Editorial(self.db)
        self.previews = Previews(self.db)
        self.erasure = Erasure(self.db)
        self.parsed_feeds = ParsedFeeds(self.db)
        self.webhook_nonces = WebhookNonces(self.db)
        self.transaction = self.db.transaction
        # Feeds and posts.
        self.feed = self.feeds.feed
        self.record_fetch = self.feeds.record_fetch
        self.stored_posts = self.feeds.stored_posts
        self.first_seen = self.feeds.first_seen
        # The ledger.
        self.create_issue = self.ledger.create_issue
        self.carried = self.ledger.carried
        self.unfinished_issue = self.ledger.unfinished_issue
        self.variants = self.ledger.variants
        self.finish_issue = self.ledger.finish_issue
        self.give_up_pending = self.ledger.give_up_pending
        self.history = self.ledger.history
        self.deliveries = self.ledger.deliveries
        self.record_delivery = self.ledger.record_delivery
        self.issue_for_slot = self.ledger.issue_for_slot
        self.claim_slot = self.ledger.claim_slot
        self.record_skipped_slot = self.ledger.record_skipped_slot
        self.slot_handled = self.ledger.slot_handled
        self.skipped_slots = self.ledger.skipped_slots
        self.latest_slot_key = self.ledger.latest_slot_key
        # Suppressions and the secret.
        self.suppress = self.suppression_list.suppress
        self.unsuppress = self.suppression_list.unsuppress
        self.suppressed = self.suppression_list.suppressed
        self.suppressions = self.suppression_list.suppressions
        self.secret = self.secrets.secret
        self.signing_secret = self.secrets.signing_secret

    def __enter__(self) -> State:
        return self

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        self.close()
        if isinstance(error, sqlite3.DatabaseError) and not isinstance(
            error, sqlite3.IntegrityError
        ):
            raise explain(self.path, error) from None

    def close(self) -> None:
        """Close the connection."""
        self.db.close()
