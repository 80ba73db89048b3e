"""Who gets the next issue: the editor's file merged with confirmed sign-ups, minus suppressions.

The file keeps working as it always has; a confirmed sign-up adds to it. When an address is in
both, the sign-up's name and sections win. A reader in the file who chose a name or sections
on the preferences page gets those while the file lists them; off the file, off the list. The
suppression list wins over both, and so does erasure: a forgotten person's keyed hash stays on
record, so the file cannot bring them back. Also here: the export of everything held about each
person, erasure, and the counts `digest subscribers` shows.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from digest.config.schema import Config
from digest.core.models import RenderedIssue, Subscriber, SubscriberList
from digest.core.tokens import address_hash
from digest.readers.subscribers import stream_subscribers
from digest.store import State
from digest.store.addresses import earlier_forms
from digest.store.erasure import ErasureReport

logger = logging.getLogger(__name__)

# Readers written to the send queue per transaction.
QUEUE_BATCH = 500


def section_titles(config: Config) -> list[str]:
    """The sections an issue can have, in config order (feeds sharing a heading share one)."""
    return list(dict.fromkeys(feed.heading for feed in config.feeds))


def section_choice(config: Config, subscriber: Subscriber) -> str:
    """A key for the sections a subscriber gets: "" for all, else a JSON list in config order."""
    if not config.newsletter.choosable_sections or subscriber.sections is None:
        return ""
    titles = section_titles(config)
    chosen = [title for title in titles if title in subscriber.sections]
    return "" if len(chosen) == len(titles) else json.dumps(chosen)


@dataclass(frozen=True)
class Audience:
    """The merged list and what was left out of it, and why."""

    subscribers: tuple[Subscriber, ...]
    suppressed: int
    forgotten: int


def merge(
    listed: Sequence[Subscriber],
    signed_up: Sequence[Subscriber],
    suppressed: set[str],
    forgotten: set[str],
    secret: str,
    preferences: Sequence[Subscriber] = (),
) -> Audience:
    """File entries then sign-ups, one per address, without suppressed or forgotten people.

    `preferences` are the choices readers in the file made on their preferences page: they
    apply to those the file still lists, and bring nobody else in.
    """
    by_address: dict[str, Subscriber] = {}
    for subscriber in listed:
        by_address.setdefault(subscriber.email.lower(), subscriber)
    for chosen in preferences:
        key = chosen.email.lower()
        in_file = by_address.get(key)
        if in_file is not None:
            by_address[key] = Subscriber(
                in_file.email, chosen.name or in_file.name, chosen.sections
            )
    for subscriber in signed_up:
        key = subscriber.email.lower()
        known = by_address.get(key)
        name = subscriber.name or (known.name if known else "")
        by_address[key] = Subscriber(
            email=known.email if known else subscriber.email,
            name=name,
            sections=subscriber.sections,
        )
    kept: list[Subscriber] = []
    counts: Counter[str] = Counter()
    for key, subscriber in by_address.items():
        if key in suppressed:
            counts["suppressed"] += 1
        elif forgotten and is_forgotten(key, forgotten, secret):
            counts["forgotten"] += 1
        else:
            kept.append(subscriber)
    return Audience(tuple(kept), counts["suppressed"], counts["forgotten"])


def forgotten_hashes(secret: str, address: str) -> tuple[str, ...]:
    """The keyed hashes that stand for a forgotten address: of its canonical form, and of the
    form an earlier release hashed (a Unicode domain), which no upgrade can rewrite."""
    return tuple(address_hash(secret, form) for form in earlier_forms(address))


def is_forgotten(address: str, forgotten: set[str], secret: str) -> bool:
    """Whether a canonical address is among the forgotten (`forgotten` holds their hashes)."""
    return any(hashed in forgotten for hashed in forgotten_hashes(secret, address))


def forgetting_secret(state: State, configured: str | None) -> str:
    """The secret forgotten addresses were hashed with; "" when nobody has been forgotten, so a
    read-only command need not create a secret to count the list."""
    if not state.signups.forgotten():
        return ""
    return state.secrets.signing_secret(configured)


def audience(state: State, listed: SubscriberList, secret: str) -> Audience:
    """Everyone the next issue goes to, from the file and the state."""
    return merge(
        listed.subscribers,
        state.signups.confirmed(),
        state.suppressions.suppressed(),
        state.signups.forgotten(),
        secret,
        state.signups.listed_preferences(),
    )


def edition_of(
    config: Config, subscriber: Subscriber, variants: dict[str, RenderedIssue | None]
) -> str | None:
    """Which rendering a reader gets: "" the whole issue, else their choice of sections; None
    when their sections had nothing new and signup.empty_choice is "skip". A choice with no
    frozen variant (preferences changed while an issue was being sent) gets the whole issue."""
    choice = section_choice(config, subscriber)
    if not choice or choice not in variants:
        return ""
    if variants[choice] is not None:
        return choice
    return "" if config.signup.empty_choice == "send_all" else None


def chosen_choices(config: Config, state: State) -> set[str]:
    """The distinct choices of sections (as section_choice keys, "" left out) among readers
    who may get the next issue: the variants an issue is rendered in."""
    return {
        section_choice(config, Subscriber("reader@example.org", "", sections))
        for sections in state.signups.chosen_sections()
    } - {""}


@dataclass(frozen=True)
class Queueing:
    """What writing an issue's queue found: the file's rows skipped (with why)."""

    invalid: tuple[str, ...]


def queue_audience(
    config: Config,
    state: State,
    issue_id: int,
    secret: str,
    variants: dict[str, RenderedIssue | None],
    now: datetime,
    *,
    batch: int = QUEUE_BATCH,
) -> Queueing:
    """Write one pending delivery per reader of a frozen issue, with the rendering each gets:
    everyone the next issue goes to (see `merge`: file, then preferences, then sign-ups; minus
    suppressed and forgotten people), streamed `batch` at a time from the subscriber file and
    the sign-ups, each batch its own transaction, so a list of any length takes little memory
    and other writers are never held up long. The file's addresses are put on record (consent
    source "file") on the way. Rows already settled are left alone, so an interrupted queue
    (or one an earlier release began) is completed by running it again; the issue is marked
    queued at the end."""
    forgotten = state.signups.forgotten()

    def kept(address: str) -> bool:
        return not (forgotten and is_forgotten(address, forgotten, secret))

    invalid: list[str] = []
    chunk: list[Subscriber] = []

    def write(listed: list[Subscriber]) -> None:
        with state.transaction():
            state.ledger.queue_listed(
                issue_id, [(s.email, s.name) for s in listed if kept(s.email)], now
            )
            state.signups.record_listed((s.email for s in listed), now)

    for subscriber in stream_subscribers(config.subscribers_path, invalid):
        chunk.append(subscriber)
        if len(chunk) >= batch:
            write(chunk)
            chunk = []
    if chunk:
        write(chunk)
    with state.transaction():
        state.ledger.queue_chosen(
            issue_id,
            [
                (s.email, s.name, edition_of(config, s, variants))
                for s in state.signups.listed_preferences()
            ],
            now,
            listed_only=True,
        )
    for signed_up in state.signups.confirmed_batches(batch):
        with state.transaction():
            state.ledger.queue_chosen(
                issue_id,
                [
                    (s.email, s.name, edition_of(config, s, variants))
                    for s in signed_up
                    if kept(s.email)
                ],
                now,
                listed_only=False,
            )
    with state.transaction():
        state.ledger.drop_suppressed(issue_id)
        state.ledger.mark_queued(issue_id, now)
    for problem in invalid:
        logger.info("skipping subscriber %s", problem)
    return Queueing(tuple(invalid))


def export(state: State, listed: SubscriberList) -> list[dict[str, Any]]:
    """Everything held about each person: details, status, sections, consent, deliveries."""
    signups = {signup.email: signup for signup in state.signups.signups()}
    in_file = {s.email.lower(): s for s in listed.subscribers}
    suppressions = {s.email: (s.at, s.source) for s in state.suppressions.all()}
    deliveries = state.signups.delivery_counts()
    addresses = sorted(
        set(signups) | set(in_file) | set(suppressions) | state.signups.known_addresses()
    )
    people = []
    for email in addresses:
        signup = signups.get(email)
        listed_entry = in_file.get(email)
        suppression = suppressions.get(email)
        people.append(
            {
                "email": email,
                "name": (signup.name if signup else "")
                or (listed_entry.name if listed_entry else ""),
                "in_subscriber_file": listed_entry is not None,
                "signup_status": signup.status if signup else None,
                "signup_source": signup.source if signup else None,
                "sections": list(signup.sections) if signup and signup.sections else None,
                "signed_up_at": signup.created_at.isoformat() if signup else None,
                "confirmed_at": signup.confirmed_at.isoformat()
                if signup and signup.confirmed_at
                else None,
                "unsubscribed_at": suppression[0].isoformat() if suppression else None,
                "unsubscribed_by": suppression[1] if suppression else None,
                "consent": [
                    {
                        "event": event.event,
                        "at": event.at.isoformat(),
                        "source": event.source,
                        "page": event.page,
                        "ip": event.ip,
                        "consent_text_sha256": event.consent_sha256,
                    }
                    for event in state.signups.consents(email)
                ],
                "deliveries": deliveries.get(email, {}),
            }
        )
    return people


def forget(
    state: State, address: str, secret: str, now: datetime, *, patience: float | None = None
) -> ErasureReport:
    """Erase a person (a canonical address) everywhere, keeping only a keyed hash so they stay
    off the list, and check that their bytes are gone (see digest.store.erasure)."""
    return state.erasure.forget(
        earlier_forms(address), forgotten_hashes(secret, address), now, patience=patience
    )


@dataclass(frozen=True)
class Counts:
    """What `digest subscribers` reports."""

    in_file: int
    pending: int
    confirmed: int
    suppressed: int
    forgotten: int
    receiving: int
    by_section: dict[str, int]


def counts(state: State, listed: SubscriberList, secret: str, sections: Sequence[str]) -> Counts:
    """Counts of the list: file, pending and confirmed sign-ups, suppressed, and by section."""
    signups = state.signups.signups()
    merged = audience(state, listed, secret)
    by_section = {
        section: sum(1 for s in merged.subscribers if s.sections is None or section in s.sections)
        for section in sections
    }
    return Counts(
        in_file=len(listed.subscribers),
        pending=sum(1 for s in signups if s.status == "pending"),
        confirmed=sum(1 for s in signups if s.status == "confirmed"),
        suppressed=len(state.suppressions.suppressed()),
        forgotten=len(state.signups.forgotten()),
        receiving=len(merged.subscribers),
        by_section=by_section,
    )


EXPORT_COLUMNS = (
    "email",
    "name",
    "in_subscriber_file",
    "signup_status",
    "signup_source",
    "sections",
    "signed_up_at",
    "confirmed_at",
    "unsubscribed_at",
    "unsubscribed_by",
    "consent",
    "deliveries",
)


def export_text(people: list[dict[str, Any]], output_format: str) -> str:
    """The export as JSON (a list of people) or CSV (one row each; nested parts as JSON)."""
    if output_format == "json":
        return json.dumps(people, indent=2, ensure_ascii=False) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for person in people:
        row = dict(person)
        row["sections"] = ";".join(person["sections"] or [])
        row["consent"] = json.dumps(person["consent"], ensure_ascii=False)
        row["deliveries"] = json.dumps(person["deliveries"])
        writer.writerow(row)
    return buffer.getvalue()
