"""Run the stages in order for preview, test send, dry run and the real (resumable) send."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from digest import __version__, archive, store
from digest.audience import audience, record_file_consent, section_choice
from digest.collect import KnownFeed, collect
from digest.config import Config, FeedConfig
from digest.dates import format_date
from digest.errors import DigestError, Stopped
from digest.feedadvice import feed_advice, feed_label
from digest.group import AlreadySent, Choices, build_issue, only_sections, skip_reason
from digest.message import (
    DkimKey,
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
from digest.samples import sample_issue
from digest.store import IssueVariant, State, SuppressionKind, configured_secret
from digest.subscribers import load_subscribers
from digest.tokens import delivery_tag, make_purpose_token, make_token

logger = logging.getLogger(__name__)

# The shipped templates (as digest.loader names them; not imported from there, so that a cached
# preview does not load Jinja2).
BUNDLED_TEMPLATES = Path(__file__).resolve().parent / "templates"
_SOME_DAY = datetime(2000, 1, 1, tzinfo=UTC)  # stands for the issue's date, keyed as its day
PREVIEW_SUBSCRIBER = Subscriber(email="reader@example.org", name="Sample Reader")


class Progress(Protocol):
    """Told how many messages a send will try, then each final outcome as it is recorded."""

    def start(self, total: int, already_done: int) -> None:
        """`total` messages to send now; `already_done` had a final outcome before (a resume)."""

    def advance(self, delivery: Delivery) -> None:
        """One more recipient settled: sent, failed, or left pending."""


Collector = Callable[..., Sequence[FeedResult]]


@dataclass(frozen=True)
class IssueSources:
    """What the next issue is chosen from: each feed's posts (dated), what earlier issues
    carried, and the editor's choices and note."""

    posts_by_feed: Mapping[str, Sequence[Post]]
    already_sent: AlreadySent
    choices: Choices
    note: str


@dataclass(frozen=True)
class Prepared:
    """The next issue, grouped and rendered, with what it was chosen from and what went wrong
    collecting it."""

    issue: Issue
    rendered: RenderedIssue
    feed_results: tuple[FeedResult, ...]
    sources: IssueSources
    problems: tuple[str, ...] = ()  # one line per feed that failed or warned, naming it
    sample: bool = False  # nothing new: a preview shows sample posts so the design can be seen


@dataclass(frozen=True)
class GateAnswer:
    """A gate's answer on a new issue: send `prepared` (the issue as built, or narrowed to what
    was approved), or, when `held` says why, hold it back."""

    prepared: Prepared
    held: str = ""


Gate = Callable[[State, Prepared], GateAnswer]


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


def signing_secret(config: Config) -> str:
    """The token secret; without one configured, a first test send or dry run creates the
    state file to keep it in, so its unsubscribe links work like a real send's."""
    configured = configured_secret(config.secret)
    if configured:
        return configured
    with store.open(config) as state:
        return state.secrets.secret()


def render_issue(issue: Issue, config: Config) -> RenderedIssue:
    """digest.render's render_issue, loaded on first use: a cached preview never loads Jinja2."""
    from digest.render import render_issue as render

    return render(issue, config)


def _resolve_dates(
    posts: Sequence[Post], first_seen: dict[str, datetime], now: datetime
) -> list[Post]:
    return [
        post if post.published else replace(post, published=first_seen.get(post.key, now))
        for post in posts
    ]


def gather(
    config: Config,
    state: State,
    now: datetime,
    *,
    record: bool,
    collector: Collector = collect,
    stop: threading.Event | None = None,
) -> tuple[dict[str, list[Post]], AlreadySent, tuple[FeedResult, ...]]:
    """Collect every feed: each feed's posts (dated), what earlier issues carried, the results.

    When `stop` is set while feeds are fetched, collection is given up at once and Stopped is
    raised before anything is recorded.
    """
    known = {}
    for feed in config.feeds:
        remembered = state.feeds.feed(feed.url)
        parsed = state.parsed_feeds.parsed(feed.url)
        if remembered or parsed:
            known[feed.url] = KnownFeed(
                remembered.etag if remembered else None,
                remembered.last_modified if remembered else None,
                remembered.permanent_url if remembered else None,
                parsed,
            )
    if stop is None:
        results = collector(config.feeds, config.fetch, config.base_dir, known, now)
    else:
        results = collector(config.feeds, config.fetch, config.base_dir, known, now, stop=stop)
    if stop is not None and stop.is_set():
        raise Stopped("stopped while collecting the feeds: nothing was sent")
    posts_by_feed: dict[str, list[Post]] = {}
    for feed, result in zip(config.feeds, results, strict=True):
        if result.status is FetchStatus.OK:
            posts: Sequence[Post] = result.posts
        elif result.status is FetchStatus.NOT_MODIFIED:
            posts = state.feeds.stored_posts(feed.url)
        else:
            logger.info("feed %r skipped: %s", feed.name, result.error)
            posts = []
        posts_by_feed[feed.url] = _resolve_dates(posts, state.feeds.first_seen(feed.url), now)
        if record:
            state.feeds.record_fetch(result, now)
    state.parsed_feeds.remember(results, now)
    keys, links = state.ledger.carried()
    return posts_by_feed, AlreadySent(frozenset(keys), frozenset(links)), tuple(results)


def issue_from(
    config: Config,
    sources: IssueSources,
    now: datetime,
    only_keys: frozenset[tuple[str, str]] | None = None,
) -> Issue:
    """The issue, not yet rendered: the new posts as the editor chose (only those `only_keys`
    names, if given), and the note."""
    issue = build_issue(
        config, sources.posts_by_feed, sources.already_sent, now, sources.choices, only_keys
    )
    return replace(issue, note=sources.note)


def _next_issue(
    config: Config,
    state: State,
    now: datetime,
    *,
    record: bool,
    collector: Collector = collect,
    stop: threading.Event | None = None,
) -> tuple[Issue, IssueSources, tuple[FeedResult, ...]]:
    """The next issue, not yet rendered, what it was chosen from, and the feeds' results."""
    posts_by_feed, already_sent, results = gather(
        config, state, now, record=record, collector=collector, stop=stop
    )
    sources = IssueSources(
        posts_by_feed, already_sent, state.editorial.choices(), state.editorial.note()
    )
    return issue_from(config, sources, now), sources, results


def prepare(
    config: Config,
    state: State,
    now: datetime,
    *,
    record: bool,
    collector: Collector = collect,
    stop: threading.Event | None = None,
) -> Prepared:
    """Collect every feed, pick the new posts (as the editor chose), group and render them once,
    with the editor's note."""
    issue, sources, results = _next_issue(
        config, state, now, record=record, collector=collector, stop=stop
    )
    rendered = render_issue(issue, config)
    if not record:  # a preview or test: "view in browser" points at the preview
        rendered = stamp_issue_url(rendered, archive.preview_url(config))
    return Prepared(issue, rendered, results, sources, feed_problems(config.feeds, results))


def narrowed(config: Config, prepared: Prepared, keys: frozenset[tuple[str, str]]) -> Prepared:
    """The issue a real send prepared, chosen again from the same posts but only among those
    `keys` names, and rendered again (an approved draft, without the posts that came since)."""
    issue = issue_from(config, prepared.sources, prepared.issue.date, keys)
    return replace(prepared, issue=issue, rendered=render_issue(issue, config))


def preview_key(config: Config, issue: Issue) -> str:
    """A hash of everything a preview's rendering depends on: digest's version, the config, the
    issue (posts, dates, sections) and every template file, the editor's and the bundled ones."""
    digest = hashlib.sha256()
    for part in (__version__, repr(config), _dated(issue, config), archive.preview_url(config)):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    for folder in (config.templates_dir, BUNDLED_TEMPLATES):
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(folder)).encode("utf-8", "surrogatepass") + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _dated(issue: Issue, config: Config) -> str:
    """The issue as templates see it, each date as its formatted day (a preview made a minute
    later, whose undated posts are dated "now", is still the same preview)."""
    zone = ZoneInfo(config.schedule.timezone if config.schedule else "UTC")
    date_format = config.newsletter.date_format

    def day(moment: datetime | None) -> str:
        if moment is None:
            return ""
        return format_date(moment, date_format, zone) + moment.astimezone(zone).strftime("%F")

    # Every other field of the issue (its title, the editor's note) as it is.
    parts = [repr(replace(issue, date=_SOME_DAY, sections=())), day(issue.date)]
    for section in issue.sections:
        parts.append(section.title)
        for post in section.posts:
            parts += [repr(replace(post, published=None, updated=None)), day(post.published)]
    return "\n".join(parts)


def preview(
    config: Config, now: datetime, *, collector: Collector = collect, cache: bool = True
) -> tuple[Prepared, str, str]:
    """The next issue as a sample subscriber would get it (html, text); records nothing.

    An issue whose inputs are unchanged since an earlier preview is served from the cache in
    the state file (see digest.store.previews), without rendering or inlining again.
    """
    with store.open(config, read_only=True) as state:
        issue, sources, results = _next_issue(config, state, now, record=False, collector=collector)
        # With nothing new (so nothing would be sent), sample posts stand in, flagged `sample`,
        # so an editor working on the templates still sees them filled.
        sample = issue.post_count == 0 and config.digest.skip_if_empty
        if sample:
            issue = sample_issue(config)
        key = preview_key(config, issue) if cache else ""
        rendered = state.previews.cached(key) if cache else None
    if rendered is None:
        rendered = stamp_issue_url(render_issue(issue, config), archive.preview_url(config))
        if cache:
            with store.open(config, read_only=True) as state:
                state.previews.remember(key, rendered, now.isoformat())
    prepared = Prepared(
        issue, rendered, results, sources, feed_problems(config.feeds, results), sample=sample
    )
    envelope = envelope_for(config, prepared.rendered, now)
    html, text = personalise(prepared.rendered, PREVIEW_SUBSCRIBER, preview_unsubscribe(envelope))
    return prepared, html, text


def preview_unsubscribe(envelope: IssueEnvelope) -> str:
    template = envelope.unsubscribe_url_template
    return template.replace("{token}", "preview") if template else f"mailto:{envelope.sender}"


def _messages(
    envelope: IssueEnvelope,
    subscribers: Iterable[Subscriber],
    secret: str,
    preferences_expire: datetime | None = None,
) -> Iterator[OutgoingMessage]:
    """Each subscriber's message, built only when the mailer is ready for it."""
    offer_preferences = envelope.preferences_url_template is not None and preferences_expire
    for subscriber in subscribers:
        preferences = (
            make_purpose_token(secret, "preferences", subscriber.email, preferences_expire)
            if offer_preferences and preferences_expire
            else ""
        )
        tag = (
            delivery_tag(secret, envelope.reference, subscriber.email) if envelope.reference else ""
        )
        yield build_message(
            envelope, subscriber, make_token(secret, subscriber.email), preferences, tag
        )


@dataclass(frozen=True)
class Edition:
    """One rendering of the issue and the subscribers who get it."""

    rendered: RenderedIssue
    subscribers: tuple[Subscriber, ...]


def render_variants(
    config: Config, issue: Issue, subscribers: Iterable[Subscriber]
) -> dict[str, RenderedIssue | None]:
    """The issue rendered once per distinct choice of sections (None: nothing new in them)."""
    variants: dict[str, RenderedIssue | None] = {}
    for choice in sorted({section_choice(config, s) for s in subscribers} - {""}):
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


def _edition_messages(
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
        yield from _messages(envelope, edition.subscribers, secret, expire)


def _build_one(envelope: IssueEnvelope, subscribers: Sequence[Subscriber], secret: str) -> None:
    """Build one subscriber's message (signed, if DKIM is set) and throw it away, so a header,
    template or signing problem stops the send before the issue is frozen, not after."""
    sample = subscribers[0] if subscribers else PREVIEW_SUBSCRIBER
    next(_messages(envelope, [sample], secret))


def test_send(config: Config, now: datetime, recipients: Sequence[str]) -> SendReport:
    """Send the next issue to the given addresses only; records nothing, uses no posts up."""
    from digest.deliver import Mailer  # loaded by the commands that send: not by a preview

    with store.open(config, read_only=True) as state:
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
    secret = signing_secret(config)
    with store.open(config, read_only=True) as state:
        prepared = prepare(config, state, now, record=False)
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
    messages = _edition_messages(config, found, now, load_dkim(config), secret, now)
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


def refused_for_good(state: State, issue_id: int, delivery: Delivery, now: datetime) -> None:
    """Suppress an address the server refused as non-existent or disabled (5.1.1, 5.1.10,
    5.2.1) during the send, as a hard bounce would, so the next issue does not try it."""
    from digest.bouncereport import permanent_refusal

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
    config: Config,
    state: State,
    prepared: Prepared,
    variants: dict[str, RenderedIssue | None],
    now: datetime,
    slot_key: str | None,
) -> tuple[int, RenderedIssue, dict[str, RenderedIssue | None]]:
    """Freeze a new issue and its variants; with the archive on, number it and put its page's
    URL into every rendering, in the same transaction."""
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
        # The note and the pins were for this issue only; left-out posts stay left out.
        state.editorial.clear_note()
        state.editorial.unpin([(post.feed_url, post.key) for post in prepared.issue.posts])
        if config.archive.enabled:
            state.archive.publish(issue_id, number, slug, archive.summary_of(prepared.issue))
    return issue_id, rendered, variants


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
    from digest.deliver import Mailer  # loaded by the commands that send: not by a preview

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
            logger.info("resuming issue %d from %s", stored.id, stored.created_at.isoformat())
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
            prepared = prepare(config, state, now, record=True, stop=stop)
            problems = prepared.problems
            reason = skip_reason(config, prepared.issue.post_count)
            if reason:
                if slot_key:
                    state.ledger.record_skipped_slot(slot_key, now, reason)
                logger.info("nothing sent: %s", reason)
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
                _build_one(envelope, merged.subscribers, secret)
            issue_id, rendered, variants = _freeze(config, state, prepared, variants, now, slot_key)
            post_count, resumed, issue_date = prepared.issue.post_count, False, now
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
                if progress is not None:
                    progress.advance(delivery)

        messages = _edition_messages(
            config, found, issue_date, dkim_key, secret, now, str(issue_id)
        )
        mailer.send_all(messages, record, stop)
        handled = sum(counts.values())
        if not counts[DeliveryStatus.PENDING] and handled == len(recipients):
            state.ledger.finish_issue(issue_id, clock() if clock else now)
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
