"""Addresses as the state keeps them: every one in the canonical form (digest.core.addresses).

Releases before the canonical form kept an address as it came: the subscriber file's local part
as written and, for non-ASCII input, a Unicode domain; the command line a Unicode domain; the
sign-up form an ASCII address as typed. Migration 11 (`canonicalise_stored_addresses`) rewrites
every address column of such a state to the canonical form, so that plain SQL equality matches
a person however they were first written down. Where two rows turn out to be one person, they
become one row, keeping what matters (see each table below).

One thing cannot be rewritten: the keyed hashes of forgotten people (`forgotten`, and the hashed
deliveries and rate-limit buckets), since the address is gone. An earlier release hashed the
lower-cased address with a Unicode domain, so `earlier_forms` gives that form too, and whoever
checks a hash checks both.
"""

from __future__ import annotations

import logging
import sqlite3
from functools import lru_cache

from digest.core.addresses import canonical_or_none

logger = logging.getLogger(__name__)

# How good a row is when two rows of a table turn out to be one person: the higher wins.
_SIGNUP_RANK = "CASE status WHEN 'confirmed' THEN 2 WHEN 'listed' THEN 1 ELSE 0 END"
_DELIVERY_RANK = "CASE status WHEN 'sent' THEN 2 WHEN 'failed' THEN 1 ELSE 0 END"


@lru_cache(maxsize=1024)
def earlier_forms(address: str) -> tuple[str, ...]:
    """The canonical address and, when its domain is internationalised, the same address with a
    Unicode domain: the form earlier releases kept (and hashed) for it."""
    local, _, domain = address.rpartition("@")
    if "xn--" not in domain:
        return (address,)
    from email_validator import EmailNotValidError, validate_email

    try:
        unicode_domain = validate_email(address, check_deliverability=False).domain.lower()
    except EmailNotValidError:
        return (address,)
    if unicode_domain == domain:
        return (address,)
    return (address, f"{local}@{unicode_domain}")


def address_key(email: str) -> str:
    """The form an address is stored and looked up under: the canonical form.

    Callers pass canonical addresses already; this is the store's own guard for the few that
    come back from older links (a confirmation token issued before an upgrade may carry a
    Unicode domain), so a lookup matches the row the upgrade rewrote. An ASCII address needs
    only lower-casing; text that is no address is kept lower-cased.
    """
    if email.isascii():
        return email.lower()
    return canonical_or_none(email) or email.lower()


def _needs_canonical(stored: str) -> bool:
    """Whether a stored value may not be canonical. An ASCII lower-case string is either an
    address already in the canonical form or no address at all (a forgotten person's hash), so
    only the others are checked."""
    return not (stored.isascii() and stored == stored.lower())


def _changes(connection: sqlite3.Connection) -> dict[str, str]:
    """Each stored address whose canonical form differs from it, with that form."""
    stored = connection.execute(
        "SELECT email FROM signups UNION SELECT email FROM consents"
        " UNION SELECT email FROM suppressions UNION SELECT email FROM deliveries"
        " UNION SELECT email FROM bounce_reports"
    )
    changes = {}
    for (email,) in stored:
        if isinstance(email, str) and _needs_canonical(email):
            canonical = canonical_or_none(email)
            if canonical is not None and canonical != email:
                changes[email] = canonical
    return changes


def canonicalise_stored_addresses(connection: sqlite3.Connection) -> None:
    """Migration 11: every stored address in the canonical form, one row per person.

    Run inside the migration's transaction. Values that are not addresses (a forgotten
    person's `forgotten:` hash) are left as they are.
    """
    changes = _changes(connection)
    for stored, canonical in changes.items():
        _merge_signup(connection, stored, canonical)
        _merge_suppression(connection, stored, canonical)
        _merge_deliveries(connection, stored, canonical)
        for table in ("consents", "bounce_reports"):
            connection.execute(f"UPDATE {table} SET email = ? WHERE email = ?", (canonical, stored))
    if changes:
        logger.info("state: %d stored addresses rewritten in the canonical form", len(changes))


def _merge_signup(connection: sqlite3.Connection, stored: str, canonical: str) -> None:
    """A confirmed sign-up wins over preferences kept for a listed reader, which win over a
    pending one; then the latest change. The earliest sign-up time is kept."""
    rows = connection.execute(
        f"SELECT email, created_at FROM signups WHERE email IN (?, ?)"
        f" ORDER BY {_SIGNUP_RANK} DESC, updated_at DESC, email = ? DESC",
        (stored, canonical, canonical),
    ).fetchall()
    if not rows:
        return
    winner = rows[0][0]
    first = min(str(row[1]) for row in rows)
    for row in rows[1:]:
        connection.execute("DELETE FROM signups WHERE email = ?", (row[0],))
    connection.execute(
        "UPDATE signups SET email = ?, created_at = ? WHERE email = ?", (canonical, first, winner)
    )


def _merge_suppression(connection: sqlite3.Connection, stored: str, canonical: str) -> None:
    """The first suppression stands, with its source and reason."""
    rows = connection.execute(
        "SELECT email FROM suppressions WHERE email IN (?, ?) ORDER BY created_at, email = ? DESC",
        (stored, canonical, canonical),
    ).fetchall()
    if not rows:
        return
    for row in rows[1:]:
        connection.execute("DELETE FROM suppressions WHERE email = ?", (row[0],))
    connection.execute("UPDATE suppressions SET email = ? WHERE email = ?", (canonical, rows[0][0]))


def _merge_deliveries(connection: sqlite3.Connection, stored: str, canonical: str) -> None:
    """Per issue: a delivery the server accepted wins over a failed one, over a pending one;
    the attempts are added up. Two copies of one issue to one mailbox count once."""
    issues = connection.execute(
        "SELECT DISTINCT issue_id FROM deliveries WHERE email = ?", (stored,)
    ).fetchall()
    for (issue_id,) in issues:
        rows = connection.execute(
            f"SELECT email, attempts FROM deliveries WHERE issue_id = ? AND email IN (?, ?)"
            f" ORDER BY {_DELIVERY_RANK} DESC, updated_at DESC, email = ? DESC",
            (issue_id, stored, canonical, canonical),
        ).fetchall()
        winner = rows[0][0]
        attempts = sum(int(row[1]) for row in rows)
        for row in rows[1:]:
            connection.execute(
                "DELETE FROM deliveries WHERE issue_id = ? AND email = ?", (issue_id, row[0])
            )
        connection.execute(
            "UPDATE deliveries SET email = ?, attempts = ? WHERE issue_id = ? AND email = ?",
            (canonical, attempts, issue_id, winner),
        )
