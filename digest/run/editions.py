"""Editions and their messages: subscribers grouped by the rendering they get (one per
distinct choice of sections), and each subscriber's message built only when the mailer is
ready for it, with its own unsubscribe and preferences tokens."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest import store
from digest.config.schema import Config
from digest.core.models import (
    Issue,
    OutgoingMessage,
    RenderedIssue,
    Subscriber,
)
from digest.core.tokens import delivery_tag, make_purpose_token, make_token
from digest.issue.group import only_sections
from digest.issue.prepare import render_issue
from digest.mail.message import (
    DkimKey,
    IssueEnvelope,
    build_message,
    envelope_for,
)
from digest.readers.audience import section_choice
from digest.store import configured_secret

logger = logging.getLogger(__name__)


PREVIEW_SUBSCRIBER = Subscriber(email="reader@example.org", name="Sample Reader")


def signing_secret(config: Config) -> str:
    """The token secret; without one configured, a first test send or dry run creates the
    state file to keep it in, so its unsubscribe links work like a real send's."""
    configured = configured_secret(config.secret)
    if configured:
        return configured
    with store.open(config) as state:
        return state.secrets.secret()


def message_for(
    envelope: IssueEnvelope,
    subscriber: Subscriber,
    secret: str,
    preferences_expire: datetime | None = None,
) -> OutgoingMessage:
    """One subscriber's message, with their unsubscribe, preferences and delivery tokens.

    A frozen issue's links name it, so an unsubscribe or a preferences change made through them
    is counted against it (digest report); a rehearsal's links name none."""
    issue = int(envelope.reference) if envelope.reference.isdigit() else None
    offer_preferences = envelope.preferences_url_template is not None and preferences_expire
    preferences = (
        make_purpose_token(secret, "preferences", subscriber.email, preferences_expire, issue)
        if offer_preferences and preferences_expire
        else ""
    )
    tag = delivery_tag(secret, envelope.reference, subscriber.email) if envelope.reference else ""
    return build_message(
        envelope, subscriber, make_token(secret, subscriber.email, issue), preferences, tag
    )


def messages(
    envelope: IssueEnvelope,
    subscribers: Iterable[Subscriber],
    secret: str,
    preferences_expire: datetime | None = None,
) -> Iterator[OutgoingMessage]:
    """Each subscriber's message, built only when the mailer is ready for it."""
    for subscriber in subscribers:
        yield message_for(envelope, subscriber, secret, preferences_expire)


@dataclass(frozen=True)
class Edition:
    """One rendering of the issue and the subscribers who get it."""

    rendered: RenderedIssue
    subscribers: tuple[Subscriber, ...]


def render_variants(
    config: Config, issue: Issue, subscribers: Iterable[Subscriber]
) -> dict[str, RenderedIssue | None]:
    """The issue rendered once per distinct choice of sections (None: nothing new in them)."""
    return render_choices(config, issue, {section_choice(config, s) for s in subscribers})


def render_choices(
    config: Config, issue: Issue, choices: Iterable[str]
) -> dict[str, RenderedIssue | None]:
    """The issue rendered once per choice of sections, "" (the whole issue) left out."""
    variants: dict[str, RenderedIssue | None] = {}
    for choice in sorted(set(choices) - {""}):
        part = only_sections(issue, frozenset(json.loads(choice)))
        variants[choice] = render_issue(part, config) if part.post_count else None
    return variants


def editions(
    config: Config,
    rendered: RenderedIssue,
    variants: dict[str, RenderedIssue | None],
    subscribers: Iterable[Subscriber],
) -> tuple[list[Edition], int]:
    """Subscribers grouped by the rendering they get, whole issue first; and how many get
    nothing this time because their sections had nothing new (signup.empty_choice: skip).

    A choice with no frozen variant (preferences changed while an issue was being sent) gets
    the whole issue.
    """
    groups: dict[str, list[Subscriber]] = {}
    for subscriber in subscribers:
        groups.setdefault(section_choice(config, subscriber), []).append(subscriber)
    whole = list(groups.pop("", []))
    found: list[Edition] = []
    skipped = 0
    for choice, members in sorted(groups.items()):
        if choice not in variants:
            whole.extend(members)
            continue
        variant = variants[choice]
        if variant is not None:
            found.append(Edition(variant, tuple(members)))
        elif config.signup.empty_choice == "send_all":
            whole.extend(members)
        else:
            skipped += len(members)
    if whole:
        found.insert(0, Edition(rendered, tuple(whole)))
    return found, skipped


def edition_messages(
    config: Config,
    found: Sequence[Edition],
    date: datetime,
    dkim_key: DkimKey | None,
    secret: str,
    now: datetime,
    reference: str = "",
) -> Iterator[OutgoingMessage]:
    """Every edition's messages, one edition after the other; `reference` is the issue's
    number once it is frozen, for the Message-IDs and VERP senders bounces are tied by."""
    expire = now + timedelta(seconds=config.signup.preferences_valid_for)
    for edition in found:
        envelope = envelope_for(
            config, edition.rendered, date, dkim_key=dkim_key, reference=reference
        )
        yield from messages(envelope, edition.subscribers, secret, expire)


def build_one(envelope: IssueEnvelope, subscribers: Sequence[Subscriber], secret: str) -> None:
    """Build one subscriber's message (signed, if DKIM is set) and throw it away, so a header,
    template or signing problem stops the send before the issue is frozen, not after."""
    sample = subscribers[0] if subscribers else PREVIEW_SUBSCRIBER
    next(messages(envelope, [sample], secret))
