"""Run the stages in order for preview, test send, dry run and the real (resumable) send."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from digest import archive
from digest.collect import KnownFeed, collect
from digest.config import Config, FeedConfig
from digest.deliver import Mailer
from digest.errors import DigestError
from digest.feedadvice import feed_advice, feed_label
from digest.group import AlreadySent, build_issue
from digest.lock import hold_lock
from digest.message import (
    IssueEnvelope,
    build_message,
    envelope_for,
    load_dkim,
)
from digest.models import (
    Delivery,
    DeliveryStatus,
    FeedResult,
    FetchStatus,
    Issue,
    OutgoingMessage,
    Post,
    RenderedIssue,
    SendReport,
    Subscriber,
)
from digest.personalise import personalise, stamp_issue_url
from digest.render import render_issue
from digest.samples import sample_issue
from digest.store import State, configured_secret
from digest.subscribers import load_subscribers
from digest.tokens import make_token

logger = logging.getLogger(__name__)

PREVIEW_SUBSCRIBER = Subscriber(email="reader@example.org", name="Sample Reader")


class Progress(Protocol):
    """Told how many messages a send will try, then each final outcome as it is recorded."""

    def start(self, total: int, already_done: int) -> None:
        """`total` messages to send now; `already_done` had a final outcome before (a resume)."""

    def advance(self, delivery: Delivery) -> None:
        """One more recipient settled: sent, failed, or left pending."""


Collector = Callable[..., Sequence[FeedResult]]


@dataclass(frozen=True)
class Prepared:
    """The next issue, grouped and rendered, with what went wrong collecting it."""

    issue: Issue
    rendered: RenderedIssue
    feed_results: tuple[FeedResult, ...]
    problems: tuple[str, ...] = ()  # one line per feed that failed or warned, naming it
    sample: bool = False  # nothing new: a preview shows sample posts so the design can be seen


def feed_problems(feeds: Sequence[FeedConfig], results: Sequence[FeedResult]) -> tuple[str, ...]:
    """Lines an editor can act on for failed and suspicious feeds, named as in config.yaml."""
    lines = []
    for feed, result in zip(feeds, results, strict=True):
        name = feed_label(feed.name, feed.url)
        if result.status is FetchStatus.FAILED and not result.gone:
            lines.append(f"{name} skipped: {result.error}; its posts will come in a later issue")
        advice = feed_advice(
            permanent_url=result.permanent_url, gone=result.gone, warning=result.warning
        )
        lines.extend(f"{name}: {phrase}" for phrase in advice)
    return tuple(lines)


def open_state(config: Config, *, read_only: bool = False) -> State:
    """The state file; `read_only` changes nothing on disk (an absent file reads as empty)."""
    return State(config.state_path, read_only=read_only)


def signing_secret(config: Config) -> str:
    """The token secret; without one configured, a first test send or dry run creates the
    state file to keep it in, so its unsubscribe links work like a real send's."""
    configured = configured_secret(config.secret)
    if configured:
        return configured
    with open_state(config) as state:
        return state.secret()


def _resolve_dates(
    posts: Sequence[Post], first_seen: dict[str, datetime], now: datetime
) -> list[Post]:
    return [
        post if post.published else replace(post, published=first_seen.get(post.key, now))
        for post in posts
    ]


def prepare(
    config: Config, state: State, now: datetime, *, record: bool, collector: Collector = collect
) -> Prepared:
    """Collect every feed, pick the new posts, group and render them once."""
    known = {}
    for feed in config.feeds:
        remembered = state.feed(feed.url)
        if remembered:
            known[feed.url] = KnownFeed(
                remembered.etag, remembered.last_modified, remembered.permanent_url
            )
    results = collector(config.feeds, config.fetch, config.base_dir, known, now)
    posts_by_feed: dict[str, list[Post]] = {}
    for feed, result in zip(config.feeds, results, strict=True):
        if result.status is FetchStatus.OK:
            posts: Sequence[Post] = result.posts
        elif result.status is FetchStatus.NOT_MODIFIED:
            posts = state.stored_posts(feed.url)
        else:
            logger.info("feed %r skipped: %s", feed.name, result.error)
            posts = []
        posts_by_feed[feed.url] = _resolve_dates(posts, state.first_seen(feed.url), now)
        if record:
            state.record_fetch(result, now)
    keys, links = state.carried()
    issue = build_issue(config, posts_by_feed, AlreadySent(frozenset(keys), frozenset(links)), now)
    rendered = render_issue(issue, config)
    if not record:  # a preview or test: "view in browser" points at the preview
        rendered = stamp_issue_url(rendered, archive.preview_url(config))
    return Prepared(issue, rendered, tuple(results), feed_problems(config.feeds, results))


def preview(
    config: Config, now: datetime, *, collector: Collector = collect
) -> tuple[Prepared, str, str]:
    """The next issue as a sample subscriber would get it (html, text); records nothing."""
    with open_state(config, read_only=True) as state:
        prepared = prepare(config, state, now, record=False, collector=collector)
    # With nothing new (so nothing would be sent), sample posts stand in, flagged `sample`, so an
    # editor working on the templates still sees them filled.
    if prepared.issue.post_count == 0 and config.digest.skip_if_empty:
        sample = sample_issue(config)
        prepared = replace(
            prepared,
            issue=sample,
            rendered=stamp_issue_url(render_issue(sample, config), archive.preview_url(config)),
            sample=True,
        )
    envelope = envelope_for(config, prepared.rendered, now)
    html, text = personalise(prepared.rendered, PREVIEW_SUBSCRIBER, _preview_unsubscribe(envelope))
    return prepared, html, text


def _preview_unsubscribe(envelope: IssueEnvelope) -> str:
    template = envelope.unsubscribe_url_template
    return template.replace("{token}", "preview") if template else f"mailto:{envelope.sender}"


def _messages(
    envelope: IssueEnvelope, subscribers: Iterable[Subscriber], secret: str
) -> Iterator[OutgoingMessage]:
    """Each subscriber's message, built only when the mailer is ready for it."""
    for subscriber in subscribers:
        yield build_message(envelope, subscriber, make_token(secret, subscriber.email))


def test_send(config: Config, now: datetime, recipients: Sequence[str]) -> SendReport:
    """Send the next issue to the given addresses only; records nothing, uses no posts up."""
    with open_state(config, read_only=True) as state:
        prepared = prepare(config, state, now, record=False)
    if prepared.issue.post_count == 0 and config.digest.skip_if_empty:
        return SendReport(None, 0, skipped_reason="nothing new", feed_problems=prepared.problems)
    envelope = envelope_for(config, prepared.rendered, now, dkim_key=load_dkim(config))
    outcomes: list[Delivery] = []
    subscribers = [Subscriber(email=address) for address in recipients]
    secret = signing_secret(config)
    with Mailer(config.smtp) as mailer:
        mailer.send_all(_messages(envelope, subscribers, secret), outcomes.extend)
    return _report(None, prepared.issue.post_count, outcomes, prepared.problems)


def dry_run(config: Config, now: datetime) -> SendReport:
    """Build every subscriber's message and write them as .eml files; no SMTP, records nothing."""
    subscriber_list = load_subscribers(config.subscribers_path)
    with open_state(config, read_only=True) as state:
        prepared = prepare(config, state, now, record=False)
        suppressed = state.suppressed()
    if prepared.issue.post_count == 0 and config.digest.skip_if_empty:
        return SendReport(None, 0, skipped_reason="nothing new", feed_problems=prepared.problems)
    outbox = config.resolve(config.outbox) / now.strftime("%Y-%m-%dT%H%M%S")
    outbox.mkdir(parents=True, exist_ok=True)
    envelope = envelope_for(config, prepared.rendered, now, dkim_key=load_dkim(config))
    recipients = [s for s in subscriber_list.subscribers if s.email.lower() not in suppressed]
    secret = signing_secret(config)
    for number, message in enumerate(_messages(envelope, recipients, secret), start=1):
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


def _report(
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
    config: Config, state: State, prepared: Prepared, now: datetime, slot_key: str | None
) -> tuple[int, RenderedIssue]:
    """Freeze a new issue; with the archive on, number it and put its page's URL in, at once."""
    rendered = prepared.rendered
    with state.transaction():
        number, slug = state.archive.next_number(), archive.issue_slug(rendered.subject)
        if config.archive.enabled:
            rendered = stamp_issue_url(rendered, archive.issue_url(config, number, slug))
        issue_id = state.create_issue(
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            posts=prepared.issue.posts,
            now=now,
            slot_key=slot_key,
            marker=rendered.marker,
        )
        if config.archive.enabled:
            state.archive.publish(issue_id, number, slug, archive.summary_of(prepared.issue))
    return issue_id, rendered


def _write_archive(config: Config, now: datetime) -> None:
    """After a real send, rewrite the static archive (archive.out_dir) if one is configured."""
    if not (config.archive.enabled and config.archive.out_dir):
        return
    from digest.archive_files import publish

    try:
        publish(config, config.resolve(config.archive.out_dir), now)
    except DigestError as error:
        logger.warning("the static archive was not updated: %s", error)


def send(
    config: Config,
    now: datetime,
    *,
    slot_key: str | None = None,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    clock: Callable[[], datetime] | None = None,
) -> SendReport:
    """The real send: resume an unfinished issue first, else freeze and send a new one.

    Order matters for the guarantees: the send lock is taken first (no two sends overlap), the
    SMTP connection is opened before anything is frozen or recorded (a wrong host or password
    changes nothing), then the issue is frozen and each delivery is recorded, committed, as
    the server accepts or refuses it. Subscribers with a sent or failed delivery are skipped,
    so a resumed issue reaches only those it had not reached yet.
    """
    subscriber_list = load_subscribers(config.subscribers_path)
    dkim_key = load_dkim(config)
    with (
        hold_lock(config.state_path, "send", command="send"),
        open_state(config) as state,
        Mailer(config.smtp) as mailer,
    ):
        secret = state.signing_secret(config.secret)
        stored = state.unfinished_issue()
        problems: tuple[str, ...] = ()
        if stored is not None:
            logger.info("resuming issue %d from %s", stored.id, stored.created_at.isoformat())
            if slot_key:
                state.claim_slot(slot_key, stored.id)
            issue_id, post_count, resumed = stored.id, stored.post_count, True
            rendered = RenderedIssue(stored.subject, stored.html, stored.text, marker=stored.marker)
            issue_date = stored.created_at
        else:
            prepared = prepare(config, state, now, record=True)
            problems = prepared.problems
            if prepared.issue.post_count == 0 and config.digest.skip_if_empty:
                if slot_key:
                    state.record_skipped_slot(slot_key, now, "nothing new")
                return SendReport(None, 0, skipped_reason="nothing new", feed_problems=problems)
            issue_id, rendered = _freeze(config, state, prepared, now, slot_key)
            post_count, resumed, issue_date = prepared.issue.post_count, False, now
        done = {
            address
            for address, delivery in state.deliveries(issue_id).items()
            if delivery.status is not DeliveryStatus.PENDING
        }
        suppressed = state.suppressed()
        recipients = [
            s
            for s in subscriber_list.subscribers
            if s.email.lower() not in done and s.email.lower() not in suppressed
        ]
        envelope = envelope_for(config, rendered, issue_date, dkim_key=dkim_key)
        counts = {status: 0 for status in DeliveryStatus}
        if progress is not None:
            progress.start(len(recipients), len(done))

        def record(deliveries: Sequence[Delivery]) -> None:
            # Called on this thread only (the SQLite connection never crosses threads), with
            # the outcomes that arrived together: one commit for them all.
            when = clock() if clock else now
            with state.transaction():
                for delivery in deliveries:
                    state.record_delivery(issue_id, delivery, when)
            for delivery in deliveries:
                counts[delivery.status] += 1
                if progress is not None:
                    progress.advance(delivery)

        mailer.send_all(_messages(envelope, recipients, secret), record, stop)
        handled = sum(counts.values())
        if not counts[DeliveryStatus.PENDING] and handled == len(recipients):
            state.finish_issue(issue_id, clock() if clock else now)
    _write_archive(config, clock() if clock else now)
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
