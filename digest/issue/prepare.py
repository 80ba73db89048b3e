"""Prepare the next issue: collect every feed, pick the new posts as the editor chose, group
and render them once.

What a collection does is one `Collection` (record what was fetched or not, which collector,
the stop signal), passed down as a whole rather than as keywords threaded through each call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from digest.archive import pages as archive
from digest.config.schema import Config, FeedConfig
from digest.core.errors import Stopped
from digest.core.models import (
    FeedResult,
    FetchStatus,
    Issue,
    Post,
    RenderedIssue,
)
from digest.feeds.advice import feed_advice, feed_label
from digest.feeds.collect import KnownFeed, collect
from digest.issue.group import AlreadySent, Choices, build_issue
from digest.render.personalise import stamp_issue_url
from digest.store import State

logger = logging.getLogger(__name__)


Collector = Callable[..., Sequence[FeedResult]]


@dataclass(frozen=True)
class Collection:
    """How to collect the feeds for an issue: `record` what was fetched (a real send) or not (a
    preview or rehearsal), with which `collector` (tests pass their own), and the `stop` signal
    that gives collection up at once."""

    record: bool
    collector: Collector = collect
    stop: threading.Event | None = None


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


def render_issue(issue: Issue, config: Config) -> RenderedIssue:
    """digest.render.issue's render_issue, loaded on first use: a cached preview never loads
    Jinja2."""
    from digest.render.issue import render_issue as render

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
    collection: Collection,
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
    stop = collection.stop
    if stop is None:
        results = collection.collector(config.feeds, config.fetch, config.base_dir, known, now)
    else:
        results = collection.collector(
            config.feeds, config.fetch, config.base_dir, known, now, stop=stop
        )
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
        if collection.record:
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


def next_issue(
    config: Config,
    state: State,
    now: datetime,
    collection: Collection,
) -> tuple[Issue, IssueSources, tuple[FeedResult, ...]]:
    """The next issue, not yet rendered, what it was chosen from, and the feeds' results."""
    posts_by_feed, already_sent, results = gather(config, state, now, collection)
    sources = IssueSources(
        posts_by_feed, already_sent, state.editorial.choices(), state.editorial.note()
    )
    return issue_from(config, sources, now), sources, results


def prepare(
    config: Config,
    state: State,
    now: datetime,
    collection: Collection,
) -> Prepared:
    """Collect every feed, pick the new posts (as the editor chose), group and render them once,
    with the editor's note."""
    issue, sources, results = next_issue(config, state, now, collection)
    rendered = render_issue(issue, config)
    if not collection.record:  # a preview or test: "view in browser" points at the preview
        rendered = stamp_issue_url(rendered, archive.preview_url(config))
    return Prepared(issue, rendered, results, sources, feed_problems(config.feeds, results))


def narrowed(config: Config, prepared: Prepared, keys: frozenset[tuple[str, str]]) -> Prepared:
    """The issue a real send prepared, chosen again from the same posts but only among those
    `keys` names, and rendered again (an approved draft, without the posts that came since)."""
    issue = issue_from(config, prepared.sources, prepared.issue.date, keys)
    return replace(prepared, issue=issue, rendered=render_issue(issue, config))
