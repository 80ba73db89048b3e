"""Where the state is: a SQLite file (a path) or a PostgreSQL database (a URL).

config.yaml's `state:` takes either. A value starting `postgresql://` or `postgres://` names a
PostgreSQL database shared by every machine that runs digest against it; anything else is a
path to a SQLite file. A URL may carry a password: `DatabaseURL` keeps it for connecting and
shows it masked everywhere else (its str and repr), so no message or log line holds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from digest.core.redact import MASK

SCHEMES = ("postgresql", "postgres")
# user:password@ after the scheme (the password runs to the last @ of the authority).
_PASSWORD = re.compile(r"^([a-zA-Z]+://[^:/@?#]*:)[^/?#]*@")
_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


@dataclass(frozen=True)
class DatabaseURL:
    """A PostgreSQL database's URL as config.yaml gave it (libpq's URI form)."""

    url: str = field(repr=False)

    @property
    def password(self) -> str:
        """The password in the URL, or "" when it has none (or the URL cannot be read)."""
        try:
            return unquote(urlsplit(self.url).password or "")
        except ValueError:
            return ""

    @property
    def masked(self) -> str:
        """The URL with its password replaced by ***: what messages and logs show."""
        masked = _PASSWORD.sub(rf"\1{MASK}@", self.url, count=1)
        return _PASSWORD_PARAMETER.sub(rf"\1{MASK}", masked)

    @property
    def database(self) -> str:
        """The database's name (the URL's path), "" when it names none."""
        try:
            return unquote(urlsplit(self.url).path.lstrip("/"))
        except ValueError:
            return ""

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"DatabaseURL({self.masked!r})"


StateLocation = Path | DatabaseURL


def is_database_url(text: str) -> bool:
    """Whether config.yaml's `state:` names a PostgreSQL database rather than a file."""
    scheme, separator, _ = text.partition("://")
    return bool(separator) and scheme.lower() in SCHEMES


def database_url(text: str) -> DatabaseURL:
    """`text` as a DatabaseURL; ValueError (the password masked) when it cannot be one."""
    url = DatabaseURL(text.strip())
    try:
        parts = urlsplit(url.url)
        parts.port  # noqa: B018 - a port that is no number raises here
    except ValueError:
        raise ValueError(
            f"{url.masked!r} is not a PostgreSQL URL; expected postgresql://user@host:port/database"
        ) from None
    if not url.database or "/" in url.database:
        raise ValueError(
            f"{url.masked!r} names no database; expected postgresql://user@host:port/database"
        )
    return url
