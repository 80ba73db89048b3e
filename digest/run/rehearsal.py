"""Rehearsals that record nothing and use no posts up: a test send to given addresses, and a
dry run writing every subscriber's message as an .eml file."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime

from digest import store
from digest.config.schema import Config
from digest.core.models import (
    Delivery,
    SendReport,
    Subscriber,
)
from digest.issue.group import skip_reason
from digest.issue.prepare import Collection, prepare
from digest.mail.message import (
    envelope_for,
    load_dkim,
)
from digest.readers.audience import audience
from digest.readers.subscribers import load_subscribers
from digest.run.editions import (
    edition_messages,
    editions,
    messages,
    render_variants,
    signing_secret,
)
from digest.run.send import send_report

logger = logging.getLogger(__name__)


def test_send(config: Config, now: datetime, recipients: Sequence[str]) -> SendReport:
    """Send the next issue to the given addresses only; records nothing, uses no posts up."""
    from digest.mail.smtp import Mailer  # loaded by the commands that send: not by a preview

    with store.open(config, read_only=True) as state:
        prepared = prepare(config, state, now, Collection(record=False))
    if prepared.issue.post_count == 0 and config.digest.skip_if_empty:
        return SendReport(None, 0, skipped_reason="nothing new", feed_problems=prepared.problems)
    envelope = envelope_for(config, prepared.rendered, now, dkim_key=load_dkim(config))
    outcomes: list[Delivery] = []
    subscribers = [Subscriber(email=address) for address in recipients]
    secret = signing_secret(config)
    with Mailer(config.smtp) as mailer:
        mailer.send_all(messages(envelope, subscribers, secret), outcomes.extend)
    return send_report(None, prepared.issue.post_count, outcomes, prepared.problems)


def dry_run(config: Config, now: datetime) -> SendReport:
    """Build every subscriber's message and write them as .eml files; no SMTP, records nothing."""
    subscriber_list = load_subscribers(config.subscribers_path)
    secret = signing_secret(config)
    with store.open(config, read_only=True) as state:
        prepared = prepare(config, state, now, Collection(record=False))
        recipients = audience(state, subscriber_list, secret).subscribers
    reason = skip_reason(config, prepared.issue.post_count)
    if reason:
        return SendReport(
            None, prepared.issue.post_count, skipped_reason=reason, feed_problems=prepared.problems
        )
    outbox = config.resolve(config.outbox) / now.strftime("%Y-%m-%dT%H%M%S")
    outbox.mkdir(parents=True, exist_ok=True)
    variants = render_variants(config, prepared.issue, recipients)
    found, _ = editions(config, prepared.rendered, variants, recipients)
    messages = edition_messages(config, found, now, load_dkim(config), secret, now)
    recipients = tuple(s for edition in found for s in edition.subscribers)
    for number, message in enumerate(messages, start=1):
        safe = re.sub(r"[^A-Za-z0-9@._-]", "_", message.recipient)
        (outbox / f"{number:05d}-{safe}.eml").write_bytes(message.data)
    return SendReport(
        None,
        prepared.issue.post_count,
        sent=len(recipients),
        feed_problems=prepared.problems,
        outbox=str(outbox),
        skipped_subscribers=subscriber_list.invalid,
    )
