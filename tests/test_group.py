"""Grouping is pure: sections, order, dedupe, caps and filters without any server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest.config.schema import Config, parse_config
from digest.core.models import Post
from digest.issue.group import AlreadySent, build_issue, compile_filter

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def make_config(feeds: str, extra: str = "") -> Config:
    text = f"newsletter:\n  title: T\n  from: a@example.org\nfeeds:\n{feeds}{extra}"
    return parse_config(text, "config.yaml", Path("."), {})


def make_post(feed: str, key: str, days: float, link: str = "", **fields: object) -> Post:
    return Post(
        feed_url=feed,
        key=key,
        link_key=link,
        title=str(fields.pop("title", key)),
        link=link,
        published=NOW - timedelta(days=days),
        **fields,  # type: ignore[arg-type]
    )


TWO_FEEDS = "  - name: Blog\n    url: https://a/feed\n  - name: News\n    url: https://b/feed\n"


def titles(
    config: Config, posts: dict[str, list[Post]], sent: AlreadySent | None = None
) -> list[tuple[str, list[str]]]:
    issue = build_issue(config, posts, sent or AlreadySent(), NOW)
    return [(s.title, [p.title for p in s.posts]) for s in issue.sections]


def test_sections_in_config_order_newest_first_and_empty_sections_dropped() -> None:
    config = make_config(TWO_FEEDS + "  - name: Empty\n    url: https://c/feed\n")
    posts = {
        "https://b/feed": [make_post("https://b/feed", "n1", 1)],
        "https://a/feed": [
            make_post("https://a/feed", "old", 5),
            make_post("https://a/feed", "new", 1),
        ],
    }
    assert titles(config, posts) == [("Blog", ["new", "old"]), ("News", ["n1"])]


def test_post_in_two_feeds_appears_once_in_the_first_section() -> None:
    config = make_config(TWO_FEEDS)
    posts = {
        "https://a/feed": [make_post("https://a/feed", "a1", 1, "example.org/x")],
        "https://b/feed": [make_post("https://b/feed", "b1", 1, "example.org/x")],
    }
    assert titles(config, posts) == [("Blog", ["a1"])]


def test_already_sent_by_key_or_by_link_is_not_new() -> None:
    config = make_config(TWO_FEEDS)
    posts = {
        "https://a/feed": [
            make_post("https://a/feed", "a1", 1),
            make_post("https://a/feed", "a2", 1),
        ],
        "https://b/feed": [make_post("https://b/feed", "b1", 1, "example.org/x")],
    }
    sent = AlreadySent(frozenset({("https://a/feed", "a1")}), frozenset({"example.org/x"}))
    assert titles(config, posts, sent) == [("Blog", ["a2"])]


def test_lookback_and_caps() -> None:
    config = make_config(
        "  - name: Blog\n    url: https://a/feed\n    max_posts: 2\n",
        "digest:\n  lookback_days: 7\n",
    )
    posts = {"https://a/feed": [make_post("https://a/feed", f"p{d}", d) for d in (1, 2, 3, 10)]}
    assert titles(config, posts) == [("Blog", ["p1", "p2"])]


def test_shared_section_merges_feeds_newest_first_under_the_cap() -> None:
    config = make_config(
        "  - name: Blog\n    url: https://a/feed\n    section: Updates\n"
        "  - name: News\n    url: https://b/feed\n    section: Updates\n",
        "digest:\n  max_posts_per_section: 3\n",
    )
    posts = {
        "https://a/feed": [make_post("https://a/feed", f"a{d}", d) for d in (1, 3, 5)],
        "https://b/feed": [make_post("https://b/feed", f"b{d}", d) for d in (2, 4)],
    }
    assert titles(config, posts) == [("Updates", ["a1", "b2", "a3"])]


def test_include_and_exclude_match_words_or_regexes_in_title_and_categories() -> None:
    config = make_config(
        "  - name: Blog\n    url: https://a/feed\n    include: [budget, '^Event:']\n"
        "    exclude: [draft]\n"
    )
    posts = {
        "https://a/feed": [
            make_post("https://a/feed", "1", 1, title="The Budget explained"),
            make_post("https://a/feed", "2", 2, title="Budgets draft", categories=("x",)),
            make_post("https://a/feed", "3", 3, title="Event: launch"),
            make_post("https://a/feed", "4", 4, title="Other", categories=("BUDGET",)),
            make_post("https://a/feed", "5", 5, title="Budgeting"),
        ]
    }
    assert titles(config, posts) == [("Blog", ["The Budget explained", "Event: launch", "Other"])]


def test_plain_word_filter_is_whole_word() -> None:
    assert compile_filter("cat").search("a cat sat")
    assert not compile_filter("cat").search("concatenate")
    assert compile_filter("cat.*").search("concatenate")
