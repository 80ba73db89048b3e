"""Changes to the list the operator makes on a person's request: unsubscribe, resubscribe, add
someone who asked in person, and erase everything held about someone.

Each takes an address already in the canonical form (digest.core.addresses).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from digest import store
from digest.config.schema import Config
from digest.core.errors import DigestError
from digest.readers import audience
from digest.readers.subscribers import load_subscribers
from digest.store.erasure import ErasureReport


def unsubscribe(config: Config, email: str, now: datetime) -> bool:
    """Stop all mail to email, whatever the subscriber file says; False if it already was."""
    with store.open(config) as state:
        return state.suppressions.suppress(email, now, "manual", kind=store.SuppressionKind.MANUAL)


@dataclass(frozen=True)
class Resubscribed:
    """What undoing an unsubscribe did."""

    removed: bool  # False: the address was not unsubscribed
    listed: bool  # whether the subscriber file lists it (else nothing is sent to it)


def resubscribe(config: Config, email: str) -> Resubscribed:
    """Undo the unsubscribe of email, and say whether the subscriber file lists it."""
    with store.open(config) as state:
        removed = state.suppressions.unsuppress(email)
    if not removed:
        return Resubscribed(removed=False, listed=False)
    listed = {s.email for s in load_subscribers(config.subscribers_path).subscribers}
    return Resubscribed(removed=True, listed=email in listed)


def add_in_person(
    config: Config,
    email: str,
    name: str,
    sections: Sequence[str] | None,
    source: str,
    now: datetime,
) -> bool:
    """Add someone who asked in person, confirmed, with how they consented (source); False if
    they already were. Someone who unsubscribed is refused: only they can undo that."""
    with store.open(config) as state:
        if email in state.suppressions.suppressed():
            raise DigestError(
                f"{email} unsubscribed; only they can undo that (digest resubscribe on request)"
            )
        return state.signups.add(email, name, sections or None, source, now)


def erase(config: Config, email: str, now: datetime) -> ErasureReport:
    """Erase email everywhere (a right-to-erasure request), keeping a keyed hash so it stays off
    the list; no send may record a delivery to it meanwhile, so the send lock is held."""
    with (
        store.lock(config, "send", command="subscribers forget"),
        store.open(config) as state,
    ):
        secret = state.secrets.signing_secret(config.secret)
        return audience.forget(state, email, secret, now)
