"""The real, resumable send: freeze the issue, then hand each subscriber's message to SMTP,
recording every delivery as the server answers."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from digest import store
from digest.archive import pages as archive
from digest.config.schema import Config
from digest.core import counters
from digest.core.errors import DigestError, LockHeld
from digest.core.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    OutgoingMessage,
    RenderedIssue,
    SendReport,
    Subscriber,
)
from digest.issue.group import only_sections, skip_reason
from digest.issue.prepare import Collection, Prepared, prepare
from digest.mail.message import (
    DkimKey,
    envelope_for,
    load_dkim,
)
from digest.readers.audience import chosen_choices, is_forgotten, queue_audience
from digest.readers.subscribers import check_subscriber_file
from digest.render.links import post_links, redirect_urls, track_links
from digest.render.personalise import stamp_issue_url
from digest.run.editions import build_one, message_for, render_choices
from digest.store import IssueVariant, State, StoredIssue, SuppressionKind

if TYPE_CHECKING:
    from digest.mail.smtp import Mailer

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


# Seconds between looks at other senders' leases while they hold the last pending rows.
_SENDER_POLL = 1.0
# Seconds between looks at an issue another sender is still queueing, before joining it.
_QUEUE_POLL = 0.5
# Seconds a sender waits, while another holds the send lock, for it to freeze an issue to join.
_PREPARE_WAIT = 60.0


def _wall_clock() -> datetime:
    """The real time, for leases: they are compared across processes and hosts, so they run
    on the real clock, never on a shifted one (a rehearsal's or a test's `clock`)."""
    return datetime.now(UTC)


def _sender_claim() -> str:
    """This sender's claim on the rows it sends: host, pid and a random part (the part its
    liveness lock is named after)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"[-120:]


def _sender_lock(claim: str) -> str:
    """The name of the lock a sender holds while it sends, from its claim."""
    return "sender-" + claim.rsplit(":", 1)[-1]


def _forgotten(forgotten: set[str], secret: str) -> Callable[[str], bool]:
    """Whether an address is among those forgotten (their keyed hashes), as of now."""
    return lambda address: bool(forgotten) and is_forgotten(address, forgotten, secret)


def _lead_or_join(
    config: Config, stop: threading.Event | None, stack: ExitStack, *, join: bool
) -> StoredIssue | None:
    """Take the send lock (None: this sender leads: it resumes or freezes the issue), or, when
    another sender holds it while an issue is being sent, join that issue (returned) without
    it. An issue still being queued is waited for, and so, for up to _PREPARE_WAIT, is one
    not frozen yet (two senders started together: one prepares the issue, the other joins
    it); then LockHeld as always. With `join`, LockHeld at once when no issue is unfinished."""
    deadline = time.monotonic() + _PREPARE_WAIT
    while True:
        try:
            stack.enter_context(store.lock(config, "send", command="send"))
            return None
        except LockHeld:
            with store.open(config) as state:
                stored = state.ledger.unfinished_issue()
            if stored is None and (join or time.monotonic() >= deadline):
                raise
            if stored is not None and stored.queued:
                logger.info(
                    "joining the send of issue %d",
                    stored.id,
                    extra={"issue": stored.id, "event": "send joined"},
                )
                return stored
            if stop is not None and stop.wait(_QUEUE_POLL):
                raise
            if stop is None:
                time.sleep(_QUEUE_POLL)


@dataclass(frozen=True)
class _Issue:
    """The issue being sent, as every sender needs it."""

    id: int
    rendered: RenderedIssue
    variants: dict[str, RenderedIssue | None]
    date: datetime


def _deliver(
    config: Config,
    state: State,
    mailer: Mailer,
    issue: _Issue,
    *,
    dkim_key: DkimKey | None,
    secret: str,
    now: datetime,
    at: Callable[[], datetime],
    stop: threading.Event | None,
    progress: Progress | None,
) -> dict[DeliveryStatus, int]:
    """Claim batches of the issue's pending deliveries and send them until none is left to
    claim; outcomes are recorded as the server answers. When what is left is leased by other
    senders, wait for them, taking over at once the rows of one that has gone (its lock is
    free) and, when a lease runs out, its rows. This sender renews its own lease as outcomes
    come, so a slow batch stays its own. Rows claimed but not sent are handed back on
    the way out. This sender's counts of outcomes."""
    claim = _sender_claim()
    lease = timedelta(seconds=config.smtp.lease)
    reference = str(issue.id)
    rendered, variants = _tracked(config, state, secret, issue.id, issue.rendered, issue.variants)
    envelopes = {
        choice: envelope_for(config, rendering, issue.date, dkim_key=dkim_key, reference=reference)
        for choice, rendering in [("", rendered), *variants.items()]
        if rendering is not None
    }
    expire = now + timedelta(seconds=config.signup.preferences_valid_for)
    counts = {status: 0 for status in DeliveryStatus}
    renewed = [_wall_clock()]

    def record(deliveries: Sequence[Delivery]) -> None:
        # Called on this thread only (the SQLite connection never crosses threads), with
        # the outcomes that arrived together: one commit for them all. A third of the lease
        # after the last renewal, the batch's lease is renewed with them.
        when = at()
        wall = _wall_clock()
        with state.transaction():
            state.ledger.settle(issue.id, claim, deliveries, when)
            if wall - renewed[0] >= lease / 3:
                state.ledger.renew(issue.id, claim, wall + lease)
                renewed[0] = wall
            for delivery in deliveries:
                if delivery.status is DeliveryStatus.FAILED:
                    refused_for_good(state, issue.id, delivery, when)
        for delivery in deliveries:
            counts[delivery.status] += 1
            counters.count(counters.MESSAGES, outcome=OUTCOMES[delivery.status])
            if progress is not None:
                progress.advance(delivery)
            if delivery.status is DeliveryStatus.FAILED:
                logger.info(
                    "issue %d: %s failed: %s",
                    issue.id,
                    delivery.email,
                    delivery.reply,
                    extra={"issue": issue.id, "event": "delivery failed"},
                )

    def claimed() -> Iterator[OutgoingMessage]:
        # Drawn by the mailer as connections come free: one batch claimed at a time.
        while not (stop is not None and stop.is_set()):
            batch = state.ledger.claim(
                issue.id,
                claim,
                _wall_clock(),
                lease,
                config.smtp.batch,
                gone=_forgotten(state.signups.forgotten(), secret),
            )
            if not batch:
                return
            for row in batch:
                envelope = envelopes.get(row.edition, envelopes[""])
                yield message_for(envelope, Subscriber(row.email, row.name), secret, expire)

    with store.lock(config, _sender_lock(claim), command="send", transient=True):
        if progress is not None:
            known = state.ledger.queue_counts(issue.id)
            progress.start(known["pending"], known["sent"] + known["failed"])
        try:
            while True:
                mailer.send_all(claimed(), record, stop)
                if stop is not None and stop.is_set():
                    break
                left = state.ledger.outstanding(issue.id, claim, _wall_clock())
                if not left.leases:
                    break
                gone = [c for c, _ in left.leases if store.lock_is_free(config, _sender_lock(c))]
                if gone:
                    handed = state.ledger.release(issue.id, gone)
                    logger.info(
                        "issue %d: %d deliveries taken over from %d senders gone",
                        issue.id,
                        handed,
                        len(gone),
                        extra={"issue": issue.id, "event": "deliveries taken over"},
                    )
                    continue
                until = min(end for _, end in left.leases)
                wait = min(max((until - _wall_clock()).total_seconds(), 0.05), _SENDER_POLL)
                if stop is not None:
                    if stop.wait(wait):
                        break
                else:
                    time.sleep(wait)
        finally:
            state.ledger.release(issue.id, [claim])
    return counts


def send(
    config: Config,
    now: datetime,
    *,
    slot_key: str | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    clock: Callable[[], datetime] | None = None,
    gate: Gate | None = None,
    join: bool = False,
) -> SendReport:
    """The real send: resume an unfinished issue first, else freeze and send a new one; or,
    while another sender sends an issue, join it. With `join`, only help send an issue being
    sent (or resume one unfinished): never freeze a new one.

    `gate` (the scheduler's approval check) sees a new issue once it is built and may hold it
    back by saying why; nothing is frozen or recorded then, so the slot can be tried again. Or
    it may narrow the issue (to the posts an approver saw): only the posts sent are recorded as
    carried, so the others wait for the next issue.

    Order matters for the guarantees: the subscriber file is read through and the DKIM key
    read, and the send lock is taken first (one sender freezes; another started meanwhile
    joins the issue being sent instead), the SMTP connection is opened before anything is
    frozen or recorded (a wrong host or password changes nothing), the issue is rendered and
    one message built from it before it is frozen (a template, header or signing mistake
    leaves no unfinished issue and uses no posts up). Then the issue is frozen, and one pending
    delivery per reader is written, streamed from the file and the sign-ups in batches
    (digest.readers.audience.queue_audience). Every sender then claims batches of pending
    deliveries with a lease (smtp.batch, smtp.lease), sends them and records each outcome,
    committed, as the server accepts or refuses it, until none is left; a reader who left
    since the freeze is dropped when their batch is claimed. A resumed issue reaches only those
    it had not reached yet; the issue is finished once no delivery is pending. Memory stays
    flat however long the list: no sender holds more than a batch.
    """
    from digest.mail.smtp import Mailer  # loaded by the commands that send: not by a preview

    check_subscriber_file(config.subscribers_path)
    dkim_key = load_dkim(config)
    at = clock if clock is not None else (lambda: now)
    with ExitStack() as stack:
        try:
            joined = _lead_or_join(config, stop, stack, join=join)
        except LockHeld:
            if join:  # another process holds the lock, but sends nothing to help with
                return SendReport(None, 0, skipped_reason="no issue is being sent")
            raise
        state = stack.enter_context(store.open(config))
        mailer = stack.enter_context(Mailer(config.smtp))
        secret = state.secrets.signing_secret(config.secret)
        stored = state.ledger.unfinished_issue()
        problems: tuple[str, ...] = ()
        invalid: tuple[str, ...] = ()
        variants: dict[str, RenderedIssue | None]
        if joined is not None and (stored is None or stored.id != joined.id):
            return SendReport(joined.id, joined.post_count, resumed=True)
        if stored is None and join:
            return SendReport(None, 0, skipped_reason="no issue is being sent")
        if stored is not None:
            if joined is None:
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
            if not stored.queued:
                invalid = queue_audience(config, state, issue_id, secret, variants, now).invalid
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
            variants = render_choices(config, prepared.issue, chosen_choices(config, state))
            for edition in [rendered, *(variant for variant in variants.values() if variant)]:
                envelope = envelope_for(config, edition, now, dkim_key=dkim_key)
                build_one(envelope, (), secret)
            issue_id, rendered, variants = _freeze(config, state, prepared, variants, now, slot_key)
            post_count, resumed, issue_date = prepared.issue.post_count, False, now
            invalid = queue_audience(config, state, issue_id, secret, variants, now).invalid
        counts = _deliver(
            config,
            state,
            mailer,
            _Issue(issue_id, rendered, variants, issue_date),
            dkim_key=dkim_key,
            secret=secret,
            now=now,
            at=at,
            stop=stop,
            progress=progress,
        )
        pending = state.ledger.queue_counts(issue_id)["pending"]
        if not pending:
            state.ledger.finish_issue(issue_id, at())
        logger.info(
            "issue %d: %d delivered, %d failed, %d pending",
            issue_id,
            counts[DeliveryStatus.SENT],
            counts[DeliveryStatus.FAILED],
            pending,
            extra={"issue": issue_id, "event": "issue sent"},
        )
    _write_archive(config, at())
    _compact(config, now)
    return SendReport(
        issue_id,
        post_count,
        sent=counts[DeliveryStatus.SENT],
        failed=counts[DeliveryStatus.FAILED],
        pending=pending,
        resumed=resumed,
        feed_problems=problems,
        skipped_subscribers=invalid,
    )
