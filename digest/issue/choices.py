"""The editor's hand on the next issue: its note, the posts left out or pinned by short id, and
a clean start (every post the feeds carry today marked as already sent)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest import store
from digest.config.schema import Config
from digest.core.errors import ConfigError, DigestError
from digest.core.models import Choice, FetchStatus
from digest.feeds.advice import feed_label
from digest.feeds.collect import collect
from digest.issue.group import SHORT_ID_LENGTH, Candidate, candidates
from digest.issue.prepare import Collection, Collector, feed_problems, gather

logger = logging.getLogger(__name__)

MAX_NOTE = 20_000  # characters: a note is a paragraph or two, not an article


def note(config: Config) -> str:
    """The note waiting for the next issue ("" when none)."""
    with store.open(config, read_only=True) as state:
        return state.editorial.note()


def set_note(config: Config, text: str, now: datetime) -> str:
    """Keep Markdown `text` for the next issue only (blank clears it); returns it as kept."""
    text = text.strip()
    if len(text) > MAX_NOTE:
        raise ConfigError(f"the note is {len(text)} characters; keep it under {MAX_NOTE}")
    with store.open(config) as state:
        state.editorial.set_note(text, now)
    logger.info("note for the next issue %s", "set" if text else "cleared")
    return text


def read_note_file(path: Path) -> str:
    """A note's text from a UTF-8 file, as a one-line error if it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the note: {error}") from None


def next_posts(config: Config, now: datetime, *, collector: Collector = collect) -> list[Candidate]:
    """The next issue's candidate posts (the feeds fetched now), with short ids and status."""
    with store.open(config, read_only=True) as state:
        posts_by_feed, already_sent, _ = gather(
            config, state, now, Collection(record=False, collector=collector)
        )
        return candidates(config, posts_by_feed, already_sent, now, state.editorial.choices())


def find(found: Sequence[Candidate], post_id: str) -> Candidate:
    """The one candidate whose short id starts with `post_id`; a one-line error otherwise."""
    wanted = post_id.strip().lower()
    matches = [c for c in found if wanted and c.short_id.startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DigestError(
            f"no post {post_id!r} among the next issue's candidates; `digest posts` lists them"
        )
    raise DigestError(
        f"{post_id!r} names {len(matches)} posts; give more of its {SHORT_ID_LENGTH}-character id"
    )


def choose(
    config: Config,
    post_id: str,
    choice: Choice,
    now: datetime,
    *,
    undo: bool = False,
    collector: Collector = collect,
) -> Candidate:
    """Leave out or pin the post `post_id` names (`undo`: take that choice back; any other
    stays); returns it with its status in the next issue afterwards."""
    with store.open(config) as state:
        posts_by_feed, already_sent, _ = gather(
            config, state, now, Collection(record=False, collector=collector)
        )
        before = candidates(config, posts_by_feed, already_sent, now, state.editorial.choices())
        chosen = find(before, post_id)
        key = (chosen.post.feed_url, chosen.post.key)
        if not undo:
            state.editorial.choose(*key, choice, now)
        elif state.editorial.choices().get(key) is choice:
            state.editorial.choose(*key, None, now)
        after = candidates(config, posts_by_feed, already_sent, now, state.editorial.choices())
    logger.info("post %s (%s): %s%s", chosen.short_id, chosen.post.title, choice, undo * " undone")
    return find(after, chosen.short_id)


@dataclass(frozen=True)
class MarkedSeen:
    """What `digest mark-seen` did: posts newly marked, posts the feeds carry, feed problems."""

    marked: int
    carried: int
    feeds: int
    failed: tuple[str, ...]  # one line per feed that could not be read: its posts are not marked
    problems: tuple[str, ...]


def mark_seen(config: Config, now: datetime, *, collector: Collector = collect) -> MarkedSeen:
    """Record every post the feeds carry now as already sent, so the next issue brings only
    posts published after this (for an organisation starting digest on an old blog)."""
    with store.lock(config, "send", command="mark-seen"), store.open(config) as state:
        posts_by_feed, _, results = gather(
            config, state, now, Collection(record=True, collector=collector)
        )
        posts = [post for feed_posts in posts_by_feed.values() for post in feed_posts]
        marked = state.editorial.mark_seen(posts, now)
    failed = tuple(
        f"{feed_label(feed.name, feed.url)}: {result.error}"
        for feed, result in zip(config.feeds, results, strict=True)
        if result.status is FetchStatus.FAILED
    )
    logger.info("marked %d of %d posts as already sent", marked, len(posts))
    return MarkedSeen(
        marked, len(posts), len(config.feeds), failed, feed_problems(config.feeds, results)
    )
