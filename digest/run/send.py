"""The real, resumable send: freeze the issue, then hand each subscriber's message to SMTP,
recording every delivery as the server answers."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from digest import store
from digest.archive import pages as archive
from digest.config.schema import Config
from digest.core import counters
from digest.core.errors import DigestError
from digest.core.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    RenderedIssue,
    SendReport,
)
from digest.issue.group import only_sections, skip_reason
from digest.issue.prepare import Collection, Prepared, prepare
from digest.mail.message import (
    envelope_for,
    load_dkim,
)
from digest.readers.audience import audience, record_file_consent
from digest.readers.subscribers import load_subscribers
from digest.render.links import post_links, redirect_urls, track_links
from digest.render.personalise import stamp_issue_url
from digest.run.editions import build_one, edition_messages, editions, render_variants
from digest.store import IssueVariant, State, SuppressionKind

logger = logging.getLogger(__name__)

# How a delivery's status is counted in digest_messages_total.
OUTCOMES = {
    DeliveryStatus.SENT: "sent",
    DeliveryStatus.FAILED: "failed",
    DeliveryStatus.PENDING: "deferred",
}


class Progress(Protocol):
    """Told how many messages a send will try, then each final outcome as it is recorded."""

    def start(self, total: int, already_done: int) -> None:
        """`total` messages to send now; `already_done` had a final outcome before (a resume)."""

    def advance(self, delivery: Delivery) -> None:
        """One more recipient settled: sent, failed, or left pending."""


@dataclass(frozen=True)
class GateAnswer:
    """A gate's answer on a new issue: send `prepared` (the issue as built, or narrowed to what
    was approved), or, when `held` says why, hold it back."""

    prepared: Prepared
    held: str = ""


Gate = Callable[[State, Prepared], GateAnswer]


def refused_for_good(state: State, issue_id: int, delivery: Delivery, now: datetime) -> None:
    """Suppress an address the server refused as non-existent or disabled (5.1.1, 5.1.10,
    5.2.1) during the send, as a hard bounce would, so the next issue does not try it."""
    from digest.bounces.report import permanent_refusal

    reason = permanent_refusal(delivery.reply)
    if reason:
        state.suppressions.suppress(
            delivery.email,
            now,
            source="bounce",
            kind=SuppressionKind.REFUSED,
            reason=f"{reason} at SMTP time: {delivery.reply[:200]}",
            issue_id=issue_id,
            report_id=None,
        )


def _variant_record(issue: Issue, choice: str, variant: RenderedIssue | None) -> IssueVariant:
    """A variant as frozen with its issue; post_count 0 marks a choice with nothing new."""
    if variant is None:
        return IssueVariant(choice, "", "", "", "", 0)
    count = only_sections(issue, frozenset(json.loads(choice))).post_count
    return IssueVariant(choice, variant.subject, variant.html, variant.text, variant.marker, count)


def send_report(
    issue_id: int | None,
    post_count: int,
    outcomes: Sequence[Delivery],
    problems: tuple[str, ...],
    *,
    resumed: bool = False,
) -> SendReport:
    counts = {status: 0 for status in DeliveryStatus}
    for outcome in outcomes:
        counts[outcome.status] += 1
    return SendReport(
        issue_id,
        post_count,
        sent=counts[DeliveryStatus.SENT],
        failed=counts[DeliveryStatus.FAILED],
        pending=counts[DeliveryStatus.PENDING],
        resumed=resumed,
        feed_problems=problems,
    )


def _freeze(
    config: Config,
    state: State,
    prepared: Prepared,
    variants: dict[str, RenderedIssue | None],
    now: datetime,
    slot_key: str | None,
) -> tuple[int, RenderedIssue, dict[str, RenderedIssue | None]]:
    """Freeze a new issue and its variants; with the archive on, number it and put its page's
    URL into every rendering, and with tracking.clicks on, number and keep its post links, in
    the same transaction."""
    rendered = prepared.rendered
    with state.transaction():
        number, slug = state.archive.next_number(), archive.issue_slug(rendered.subject)
        if config.archive.enabled:
            url = archive.issue_url(config, number, slug)
            rendered = stamp_issue_url(rendered, url)
            variants = {
                choice: stamp_issue_url(variant, url) if variant else None
                for choice, variant in variants.items()
            }
        issue_id = state.ledger.create_issue(
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            posts=prepared.issue.posts,
            now=now,
            slot_key=slot_key,
            marker=rendered.marker,
            variants=[
                _variant_record(prepared.issue, choice, variant)
                for choice, variant in variants.items()
            ],
        )
        if config.tracking.enabled:
            state.clicks.record_links(issue_id, post_links(prepared.issue))
        # The note and the pins were for this issue only; left-out posts stay left out.
        state.editorial.clear_note()
        state.editorial.unpin([(post.feed_url, post.key) for post in prepared.issue.posts])
        if config.archive.enabled:
            state.archive.publish(issue_id, number, slug, archive.summary_of(prepared.issue))
    return issue_id, rendered, variants


def _tracked(
    config: Config,
    state: State,
    secret: str,
    issue_id: int,
    rendered: RenderedIssue,
    variants: dict[str, RenderedIssue | None],
) -> tuple[RenderedIssue, dict[str, RenderedIssue | None]]:
    """The renderings as they go out: with tracking.clicks on, each post link recorded for the
    issue at its freeze points at its redirect (digest.render.links). The stored issue keeps
    the straight links, and a resumed send tracks the same links the same way. An issue frozen
    with tracking off has no links recorded and goes out untracked to the end."""
    if not config.tracking.enabled or config.public_url is None:
        return rendered, variants
    links = state.clicks.links(issue_id)
    redirects = redirect_urls(config.public_url, secret, issue_id, links)
    return track_links(rendered, redirects), {
        choice: track_links(variant, redirects) if variant else None
        for choice, variant in variants.items()
    }


def _write_archive(config: Config, now: datetime) -> None:
    """After a real send, rewrite the static archive (archive.out_dir) if one is configured."""
    if not (config.archive.enabled and config.archive.out_dir):
        return
    from digest.archive.files import publish

    try:
        publish(config, config.resolve(config.archive.out_dir), now)
    except DigestError as error:
        logger.warning("the static archive was not updated: %s", error)


def _compact(config: Config, now: datetime) -> None:
    """After a real send, compact deliveries older than `retention.deliveries` (a failure is
    logged: the issue is sent, and the next send or `digest compact` tries again)."""
    from digest.run.retention import compact

    try:
        compact(config, now)
    except DigestError as error:
        logger.warning("deliveries were not compacted: %s", error)


def send(
    config: Config,
    now: datetime,
    *,
    slot_key: str | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    clock: Callable[[], datetime] | None = None,
    gate: Gate | None = None,
) -> SendReport:
    """The real send: resume an unfinished issue first, else freeze and send a new one.

    `gate` (the scheduler's approval check) sees a new issue once it is built and may hold it
    back by saying why; nothing is frozen or recorded then, so the slot can be tried again. Or
    it may narrow the issue (to the posts an approver saw): only the posts sent are recorded as
    carried, so the others wait for the next issue.

    Order matters for the guarantees: the subscribers and the DKIM key are read and the send
    lock is taken first (no two sends overlap), the SMTP connection is opened before anything is
    frozen or recorded (a wrong host or password changes nothing), the issue is rendered and one
    message built from it before it is frozen (a template, header or signing mistake leaves no
    unfinished issue and uses no posts up), then the issue is frozen and each delivery is
    recorded, committed, as the server accepts or refuses it. Subscribers with a sent or failed
    delivery are skipped, so a resumed issue reaches only those it had not reached yet.
    """
    from digest.mail.smtp import Mailer  # loaded by the commands that send: not by a preview

    subscriber_list = load_subscribers(config.subscribers_path)
    dkim_key = load_dkim(config)
    with (
        store.lock(config, "send", command="send"),
        store.open(config) as state,
        Mailer(config.smtp) as mailer,
    ):
        secret = state.secrets.signing_secret(config.secret)
        merged = audience(state, subscriber_list, secret)
        record_file_consent(state, subscriber_list, now)
        stored = state.ledger.unfinished_issue()
        problems: tuple[str, ...] = ()
        variants: dict[str, RenderedIssue | None]
        if stored is not None:
            logger.info(
                "resuming issue %d from %s",
                stored.id,
                stored.created_at.isoformat(),
                extra={"issue": stored.id, "event": "issue resumed"},
            )
            if slot_key:
                state.ledger.claim_slot(slot_key, stored.id)
            issue_id, post_count, resumed = stored.id, stored.post_count, True
            rendered = RenderedIssue(stored.subject, stored.html, stored.text, marker=stored.marker)
            variants = {
                choice: RenderedIssue(v.subject, v.html, v.text, marker=v.marker)
                if v.post_count
                else None
                for choice, v in state.ledger.variants(stored.id).items()
            }
            issue_date = stored.created_at
        else:
            prepared = prepare(config, state, now, Collection(record=True, stop=stop))
            problems = prepared.problems
            reason = skip_reason(config, prepared.issue.post_count)
            if reason:
                if slot_key:
                    state.ledger.record_skipped_slot(slot_key, now, reason)
                logger.info("nothing sent: %s", reason, extra={"event": "issue skipped"})
                return SendReport(
                    None, prepared.issue.post_count, skipped_reason=reason, feed_problems=problems
                )
            answer = gate(state, prepared) if gate else GateAnswer(prepared)
            if answer.held:
                return SendReport(
                    None,
                    prepared.issue.post_count,
                    skipped_reason=answer.held,
                    held=True,
                    feed_problems=problems,
                )
            prepared = answer.prepared
            rendered = prepared.rendered
            variants = render_variants(config, prepared.issue, merged.subscribers)
            for edition in [rendered, *(variant for variant in variants.values() if variant)]:
                envelope = envelope_for(config, edition, now, dkim_key=dkim_key)
                build_one(envelope, merged.subscribers, secret)
            issue_id, rendered, variants = _freeze(config, state, prepared, variants, now, slot_key)
            post_count, resumed, issue_date = prepared.issue.post_count, False, now
        rendered, variants = _tracked(config, state, secret, issue_id, rendered, variants)
        done = {
            address
            for address, delivery in state.ledger.deliveries(issue_id).items()
            if delivery.status is not DeliveryStatus.PENDING
        }
        remaining = [s for s in merged.subscribers if s.email.lower() not in done]
        found, _ = editions(config, rendered, variants, remaining)
        recipients = [s for edition in found for s in edition.subscribers]
        counts = {status: 0 for status in DeliveryStatus}
        if progress is not None:
            progress.start(len(recipients), len(done))

        def record(deliveries: Sequence[Delivery]) -> None:
            # Called on this thread only (the SQLite connection never crosses threads), with
            # the outcomes that arrived together: one commit for them all.
            when = clock() if clock else now
            with state.transaction():
                for delivery in deliveries:
                    state.ledger.record_delivery(issue_id, delivery, when)
                    if delivery.status is DeliveryStatus.FAILED:
                        refused_for_good(state, issue_id, delivery, when)
            for delivery in deliveries:
                counts[delivery.status] += 1
                counters.count(counters.MESSAGES, outcome=OUTCOMES[delivery.status])
                if progress is not None:
                    progress.advance(delivery)
                if delivery.status is DeliveryStatus.FAILED:
                    logger.info(
                        "issue %d: %s failed: %s",
                        issue_id,
                        delivery.email,
                        delivery.reply,
                        extra={"issue": issue_id, "event": "delivery failed"},
                    )

        messages = edition_messages(config, found, issue_date, dkim_key, secret, now, str(issue_id))
        mailer.send_all(messages, record, stop)
        handled = sum(counts.values())
        if not counts[DeliveryStatus.PENDING] and handled == len(recipients):
            state.ledger.finish_issue(issue_id, clock() if clock else now)
        logger.info(
            "issue %d: %d delivered, %d failed, %d pending",
            issue_id,
            counts[DeliveryStatus.SENT],
            counts[DeliveryStatus.FAILED],
            counts[DeliveryStatus.PENDING] + len(recipients) - handled,
            extra={"issue": issue_id, "event": "issue sent"},
        )
    _write_archive(config, clock() if clock else now)
    _compact(config, now)
    return SendReport(
        issue_id,
        post_count,
        sent=counts[DeliveryStatus.SENT],
        failed=counts[DeliveryStatus.FAILED],
        pending=counts[DeliveryStatus.PENDING] + len(recipients) - handled,
        resumed=resumed,
        feed_problems=problems,
        skipped_subscribers=subscriber_list.invalid,
    )
