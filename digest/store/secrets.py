"""The token-signing secret: DIGEST_SECRET, else config.yaml's, else one kept in the state."""

from __future__ import annotations

import os
import secrets

from digest.core.errors import StateError
from digest.store.backend import Backend

SECRET_ENVIRONMENT_VARIABLE = "DIGEST_SECRET"


def configured_secret(configured: str | None) -> str | None:
    """DIGEST_SECRET, else `configured` (config.yaml's secret); None when neither is set."""
    return os.environ.get(SECRET_ENVIRONMENT_VARIABLE) or configured


class Secrets:
    """The meta table's generated secret."""

    def __init__(self, db: Backend) -> None:
        self.db = db

    def secret(self) -> str:
        """The secret kept in the state, generated (32 random bytes) on first use."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
        if row:
            return str(row["value"])
        if self.db.read_only:
            raise StateError(
                f"state {self.db.where} has no signing secret yet; run a writing command"
                " (digest send) first, or set DIGEST_SECRET"
            )
        with self.db.transaction():
            row = self.db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
            if row:
                return str(row["value"])
            value = secrets.token_urlsafe(32)
            self.db.execute("INSERT INTO meta (key, value) VALUES ('secret', ?)", (value,))
            return value

    def signing_secret(self, configured: str | None) -> str:
        """DIGEST_SECRET, else `configured` (config.yaml's secret), else the kept one."""
        return configured_secret(configured) or self.secret()
