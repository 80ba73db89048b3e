"""The open state: one attribute per repository, and the transaction they share."""

from __future__ import annotations

from contextlib import AbstractContextManager

from digest.store.archive import Archive
from digest.store.backend import Backend
from digest.store.bounces import BounceReports
from digest.store.clicks import Clicks
from digest.store.editor import Editorial
from digest.store.erasure import Erasure
from digest.store.feeds import Feeds
from digest.store.ledger import Ledger
from digest.store.outbox import Outbox
from digest.store.parsed import ParsedFeeds
from digest.store.previews import Previews
from digest.store.reports import Reports
from digest.store.secrets import Secrets
from digest.store.signups import Signups
from digest.store.suppressions import Suppressions
from digest.store.webhooks import WebhookNonces


class State:
    """One open state (digest.store.open makes it); use as a context manager.

    Every repository works through the same backend, so a transaction spans them all. A
    failure of the database inside the `with` block, such as a page found damaged half-way,
    leaves it as the backend's one-line StateError.
    """

    def __init__(self, backend: Backend) -> None:
        self.db = backend
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
        self.outbox = Outbox(self.db)
        self.clicks = Clicks(self.db)
        self.reports = Reports(self.db)

    def __enter__(self) -> State:
        return self

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        self.close()
        explained = self.db.explain(error) if error is not None else None
        if explained is not None:
            raise explained from None

    def transaction(self) -> AbstractContextManager[None]:
        """One transaction across repositories: every write inside it happens, or none does
        (an inner block joins the outer one)."""
        return self.db.transaction()

    def close(self) -> None:
        """Close the connection."""
        self.db.close()
