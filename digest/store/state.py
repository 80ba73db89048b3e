"""The open state: one attribute per repository, and the transaction they share."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
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
        self.suppressions = Suppressions(self.db)
        self.secrets = Secrets(self.db)
        self.signups = Signups(self.db)
        self.archive = Archive(self.db)
        self.bounces = BounceReports(self.db)
        self.editorial = Editorial(self.db)
        self.previews = Previews(self.db)
        self.erasure = Erasure(self.db)
        self.parsed_feeds = ParsedFeeds(self.db)
        self.webhook_nonces = WebhookNonces(self.db)

    def __enter__(self) -> State:
        return self

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        self.close()
        if isinstance(error, sqlite3.DatabaseError) and not isinstance(
            error, sqlite3.IntegrityError
        ):
            raise explain(self.path, error) from None

    def transaction(self) -> AbstractContextManager[None]:
        """One transaction across repositories: every write inside it happens, or none does
        (an inner block joins the outer one)."""
        return self.db.transaction()

    def close(self) -> None:
        """Close the connection."""
        self.db.close()
