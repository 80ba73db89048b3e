"""Sending what waits in the outbox (digest.store.outbox): confirmation and welcome emails.

Whichever process runs drains it: every `digest serve` replica (right after a sign-up it
carried out, and every few seconds in the background) and `digest run` (on its worker). A
drain claims due entries with a lease, sends each, and then:

- the server took it: the entry is deleted, address and all;
- the server refused it for good (5xx), or it has waited too long (MAX_AGE) or been tried too
  often (MAX_ATTEMPTS): the entry is deleted, logged, and a confirmation's sign-up is taken
  back (digest.store.signups.Signups.withdraw), so nothing stays on record for an email that
  never went, and no rate-limit slot is used by it;
- it could not be sent now (4xx, no connection): it is put back, due again after a backoff
  that doubles with each attempt (BACKOFF, at most MAX_BACKOFF).

A process that dies mid-send leaves its lease to run out (`signup.send_lease`); another then
claims the entry and sends it. The message that was in flight when it died may so arrive
twice; nothing else can. The lease must outlast one send (the SMTP timeouts), or a slow send
would be taken over while it is still going.

Nothing here logs an address: an entry is named by its number and kind.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from digest.config.schema import Config
from digest.core.models import Delivery, DeliveryStatus, OutgoingMessage
from digest.mail.smtp import Mailer
from digest.store import State

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 10  # claims of one entry before it is given up
MAX_AGE = timedelta(days=1)  # an entry still unsent this long after it was queued is given up
BACKOFF = timedelta(minutes=1)  # the wait after the first temporary failure, doubled each time
MAX_BACKOFF = timedelta(hours=1)
BATCH = 20  # entries claimed at once
_ADDRESS = re.compile(r"[^\s<>\"'@]+@[^\s<>\"']+")

Outcome = Literal["sent", "refused", "later"]
Sender = Callable[[OutgoingMessage], tuple[Outcome, str]]  # one message: outcome, server reply


@dataclass(frozen=True)
class Drained:
    """What one drain did, in entries."""

    sent: int = 0
    later: int = 0
    given_up: int = 0
    lost: int = 0  # sent, but the lease had run out: another process may have sent it too

    @property
    def total(self) -> int:
        """Entries this drain claimed."""
        return self.sent + self.later + self.given_up + self.lost


def without_addresses(text: str) -> str:
    """A server's reply fit for the log: any address in it (a refusal often quotes the
    recipient) replaced by "<address>"."""
    return _ADDRESS.sub("<address>", text)


def claimant() -> str:
    """This process's name in a claim, for the log and the outbox's rows: host and pid."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}"


def lease(config: Config) -> timedelta:
    """How long a claim holds before another process may take the entry over."""
    return timedelta(seconds=config.signup.send_lease)


def backoff(attempts: int) -> timedelta:
    """The wait before trying again after `attempts` tries."""
    doublings: int = max(0, min(attempts - 1, 20))
    return min(MAX_BACKOFF, BACKOFF * (1 << doublings))


def send_by_smtp(config: Config) -> Sender:
    """Send one message on a connection of its own to the configured server."""

    def send(message: OutgoingMessage) -> tuple[Outcome, str]:
        outcomes: list[Delivery] = []
        try:
            with Mailer(config.smtp) as mailer:
                mailer.send_all([message], outcomes.extend)
        except Exception as error:  # no connection, a login refused: try again later
            return "later", str(error)
        statuses = [outcome.status for outcome in outcomes]
        reply = "; ".join(outcome.reply for outcome in outcomes)
        if statuses and all(status is DeliveryStatus.SENT for status in statuses):
            return "sent", reply
        if DeliveryStatus.FAILED in statuses:
            return "refused", reply
        return "later", reply

    return send


def drain(
    config: Config,
    open_state: Callable[[], State],
    send: Sender,
    clock: Callable[[], datetime],
    *,
    only: int | None = None,
) -> Drained:
    """Claim due entries (all, or entry `only`), send them and record what came of each."""
    sent = later = given_up = lost = 0
    with open_state() as state:
        entries = state.outbox.claim(claimant(), clock(), lease(config), limit=BATCH, only=only)
    for entry in entries:
        now = clock()
        if entry.attempts > MAX_ATTEMPTS or now - entry.created_at > MAX_AGE:
            outcome: Outcome = "refused"
            reply = f"given up after {entry.attempts - 1} attempts since {entry.created_at}"
        else:
            outcome, reply = send(entry.message)
        with open_state() as state, state.transaction():
            if outcome == "sent":
                kept = state.outbox.sent(entry)
            elif outcome == "later":
                kept = state.outbox.later(entry, now + backoff(entry.attempts))
            else:
                kept = state.outbox.drop(entry)
                if kept and entry.kind == "confirmation":
                    buckets = entry.undo.get("buckets")
                    state.signups.withdraw(
                        entry.email,
                        entry.created_at,
                        [str(b) for b in buckets] if isinstance(buckets, list) else [],
                    )
        shown = without_addresses(reply)[:300]
        if not kept:
            lost += 1
            logger.warning(
                "outbox entry %d (%s): its lease ran out before it was done (%s); another"
                " process took it over, so it may have been sent twice",
                entry.id,
                entry.kind,
                outcome,
            )
        elif outcome == "sent":
            sent += 1
        elif outcome == "later":
            later += 1
            logger.info("outbox entry %d (%s) not sent yet: %s", entry.id, entry.kind, shown)
        else:
            given_up += 1
            logger.warning(
                "outbox entry %d (%s) given up%s: %s",
                entry.id,
                entry.kind,
                ", its sign-up taken back" if entry.kind == "confirmation" else "",
                shown,
            )
    return Drained(sent, later, given_up, lost)


def drain_quietly(
    config: Config,
    open_state: Callable[[], State],
    send: Sender,
    clock: Callable[[], datetime],
    *,
    only: int | None = None,
) -> Drained:
    """`drain`, for a background thread: a failure (the state busy or unreachable) is logged
    in one line and left for the next drain, never raised."""
    try:
        return drain(config, open_state, send, clock, only=only)
    except Exception as error:
        logger.warning("the outbox could not be drained this time: %s", error)
        return Drained()
