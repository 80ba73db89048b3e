"""Choose the new posts and arrange them into sections: pure, no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from digest.config import Config, FeedConfig
from digest.models import Issue, Post, Section

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


def build_issue(
    config: Config,
    posts_by_feed: Mapping[str, Sequence[Post]],
    already_sent: AlreadySent,
    now: datetime,
) -> Issue:
    """Sections in config order, newest first, each post once, capped per feed and per section.

    Posts must have `published` set (the pipeline fills undated ones with the time first seen).
    """
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
                and post.published >= oldest
                and not already_sent.covers(post)
                and passes_filters(post, feed)
            ),
            key=_newest_first,
            reverse=True,
        )
        chosen: list[Post] = []
        for post in candidates:
            if (post.feed_url, post.key) in seen_keys or (
                post.link_key and post.link_key in seen_links
            ):
                continue
            seen_keys.add((post.feed_url, post.key))
            if post.link_key:
                seen_links.add(post.link_key)
            chosen.append(post)
            if feed.max_posts and len(chosen) >= feed.max_posts:
                break
        headings.setdefault(feed.heading, []).extend(chosen)
    sections = tuple(
        Section(
            title=heading,
            posts=tuple(
                sorted(posts, key=_newest_first, reverse=True)[
                    : config.digest.max_posts_per_section
                ]
            ),
        )
        for heading, posts in headings.items()
        if posts
    )
    return Issue(title=config.newsletter.title, date=now, sections=sections)


def only_sections(issue: Issue, titles: frozenset[str]) -> Issue:
    """The issue with only the sections a subscriber chose, in the same order."""
    kept = tuple(section for section in issue.sections if section.title in titles)
    return Issue(title=issue.title, date=issue.date, sections=kept)
