"""Choose the new posts and arrange them into sections: pure, no I/O."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.config.schema import Config, FeedConfig
from digest.core.models import Choice, Issue, Post, Section

SHORT_ID_LENGTH = 6
_PLAIN_WORDS = re.compile(r"^[\w\s'-]+$")


def compile_filter(pattern: str) -> re.Pattern[str]:
    """A plain word matches as a whole word; anything else is a regular expression."""
    if _PLAIN_WORDS.match(pattern):
        return re.compile(rf"\b{re.escape(pattern.strip())}\b", re.IGNORECASE)
    return re.compile(pattern, re.IGNORECASE)


def _matches(post: Post, patterns: Sequence[re.Pattern[str]]) -> bool:
    haystacks = (post.title, *post.categories)
    return any(p.search(text) for p in patterns for text in haystacks)


def passes_filters(post: Post, feed: FeedConfig) -> bool:
    """Whether a post survives the feed's include and exclude lists."""
    if feed.include and not _matches(post, [compile_filter(p) for p in feed.include]):
        return False
    return not (feed.exclude and _matches(post, [compile_filter(p) for p in feed.exclude]))


@dataclass(frozen=True)
class AlreadySent:
    """What earlier issues carried: feed-scoped keys and normalised links."""

    keys: frozenset[tuple[str, str]] = frozenset()
    links: frozenset[str] = frozenset()

    def covers(self, post: Post) -> bool:
        """Whether an earlier issue carried this post, under this feed or another."""
        return (post.feed_url, post.key) in self.keys or bool(
            post.link_key and post.link_key in self.links
        )


def _newest_first(post: Post) -> tuple[datetime, str]:
    assert post.published is not None
    return post.published, post.title


Choices = Mapping[tuple[str, str], Choice]


def short_id(post: Post) -> str:
    """A short, stable id for the editor to name a post by: 6 hex digits of its identity."""
    return hashlib.sha256(f"{post.feed_url}\n{post.key}".encode()).hexdigest()[:SHORT_ID_LENGTH]


def _pinned_newest_first(choices: Choices) -> Callable[[Post], tuple[bool, datetime, str]]:
    def order(post: Post) -> tuple[bool, datetime, str]:
        return (choices.get((post.feed_url, post.key)) is Choice.PIN, *_newest_first(post))

    return order


def _capped(posts: Sequence[Post], cap: int | None, choices: Choices) -> list[Post]:
    """Pinned posts all, then the others up to `cap` (None: no cap)."""
    kept, unpinned = [], 0
    for post in posts:
        if choices.get((post.feed_url, post.key)) is not Choice.PIN:
            if cap is not None and unpinned >= cap:
                continue
            unpinned += 1
        kept.append(post)
    return kept


def build_issue(
    config: Config,
    posts_by_feed: Mapping[str, Sequence[Post]],
    already_sent: AlreadySent,
    now: datetime,
    choices: Choices | None = None,
    only_keys: frozenset[tuple[str, str]] | None = None,
) -> Issue:
    """Sections in config order, newest first, each post once, capped per feed and per section.

    The editor's `choices` leave posts out for good, or pin them: a pinned post that no earlier
    issue carried goes in whatever its date, the feed's filters and the caps, first in its
    section. `only_keys` (feed URL, post key) narrows the choice to those posts, each still
    subject to all of that (an approved draft's posts, without those published since). Posts
    must have `published` set (digest.issue.prepare fills undated ones with the time first seen).
    """
    choices = choices or {}
    order = _pinned_newest_first(choices)
    oldest = now - timedelta(days=config.digest.lookback_days)
    seen_keys: set[tuple[str, str]] = set()
    seen_links: set[str] = set()
    headings: dict[str, list[Post]] = {}
    for feed in config.feeds:
        candidates = sorted(
            (
                post
                for post in posts_by_feed.get(feed.url, ())
                if post.published is not None
                and (only_keys is None or (post.feed_url, post.key) in only_keys)
                and not already_sent.covers(post)
                and _eligible(post, feed, choices.get((post.feed_url, post.key)), oldest)
            ),
            key=order,
            reverse=True,
        )
        unique: list[Post] = []
        for post in candidates:
            if (post.feed_url, post.key) in seen_keys or (
                post.link_key and post.link_key in seen_links
            ):
                continue
            unique.append(post)
        chosen = _capped(unique, feed.max_posts or None, choices)
        for post in chosen:
            seen_keys.add((post.feed_url, post.key))
            if post.link_key:
                seen_links.add(post.link_key)
        headings.setdefault(feed.heading, []).extend(chosen)
    sections = tuple(
        Section(
            title=heading,
            posts=tuple(
                _capped(
                    sorted(posts, key=order, reverse=True),
                    config.digest.max_posts_per_section,
                    choices,
                )
            ),
        )
        for heading, posts in headings.items()
        if posts
    )
    return Issue(title=config.newsletter.title, date=now, sections=sections)


def _eligible(post: Post, feed: FeedConfig, choice: Choice | None, oldest: datetime) -> bool:
    if choice is Choice.LEAVE_OUT:
        return False
    if choice is Choice.PIN:
        return True
    assert post.published is not None
    return post.published >= oldest and passes_filters(post, feed)


@dataclass(frozen=True)
class Candidate:
    """A post the next issue could carry, with its short id and whether it will."""

    post: Post
    short_id: str
    status: str  # "in", "pinned", "left out" or "not in" (a cap, a filter or a duplicate)


def candidates(
    config: Config,
    posts_by_feed: Mapping[str, Sequence[Post]],
    already_sent: AlreadySent,
    now: datetime,
    choices: Choices,
) -> list[Candidate]:
    """Every post no earlier issue carried that is new (within lookback_days) or pinned, feed
    by feed, newest first, saying whether the next issue carries it or the editor left it out."""
    carried = {
        (p.feed_url, p.key)
        for p in build_issue(config, posts_by_feed, already_sent, now, choices).posts
    }
    oldest = now - timedelta(days=config.digest.lookback_days)
    found: list[Candidate] = []
    for feed in config.feeds:
        posts = sorted(
            (p for p in posts_by_feed.get(feed.url, ()) if p.published is not None),
            key=_newest_first,
            reverse=True,
        )
        for post in posts:
            key = (post.feed_url, post.key)
            choice = choices.get(key)
            assert post.published is not None
            if already_sent.covers(post):
                continue
            if key in carried:
                status = "pinned" if choice is Choice.PIN else "in"
            elif post.published < oldest:
                continue  # too old to be new: not listed, left out or not
            elif choice is Choice.LEAVE_OUT:
                status = "left out"
            else:
                status = "not in"  # over a cap, filtered out by the feed, or a duplicate
            found.append(Candidate(post, short_id(post), status))
    return found


def skip_reason(config: Config, post_count: int) -> str:
    """Why a send of this many new posts should not go out ("" when it should): nothing new, or
    a thin week below digest.min_posts, whose posts roll over to the next slot."""
    if post_count == 0:
        return "nothing new" if config.digest.skip_if_empty else ""
    minimum = config.digest.min_posts
    if post_count < minimum:
        posts = "1 new post" if post_count == 1 else f"{post_count} new posts"
        return f"thin week: {posts}, fewer than digest.min_posts ({minimum}); they roll over"
    return ""


def only_sections(issue: Issue, titles: frozenset[str]) -> Issue:
    """The issue with only the sections a subscriber chose, in the same order."""
    kept = tuple(section for section in issue.sections if section.title in titles)
    return Issue(title=issue.title, date=issue.date, sections=kept, note=issue.note)
