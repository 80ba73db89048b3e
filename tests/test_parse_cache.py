"""A feed answering with the same bytes as last time is not parsed again: its last parse, kept in
the state file, stands in, until the bytes change or a post dated ahead comes due."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

from digest import store
from digest.config.schema import FeedConfig, load_config
from digest.core.models import FetchStatus
from digest.feeds.collect import KnownFeed, collect
from digest.issue.prepare import Collection, gather
from tests.conftest import Project, post
from tests.support import statefile


def parsed_rows(state_file: Path) -> dict[str, tuple[str, int]]:
    """Per feed URL: the key of the bytes parsed, and how many posts the parse gave."""
    with statefile.connect(state_file) as connection:
        rows = connection.execute(
            "SELECT url, parsed_key, json_array_length(posts) FROM parsed_feeds"
        ).fetchall()
    return {url: (key, count) for url, key, count in rows}


def test_unchanged_bytes_reuse_the_last_parse_and_changed_bytes_are_parsed(
    project: Project,
) -> None:
    config = load_config(project.config)
    store.open(config).close()
    blog, news = (feed.url for feed in config.feeds)
    with store.open(config, read_only=True) as state:
        first_posts, _, first = gather(config, state, project.now, Collection(record=False))
    assert [result.from_cache for result in first] == [False, False]
    rows = parsed_rows(config.state_path)
    assert {url: count for url, (_, count) in rows.items()} == {blog: 2, news: 1}

    with store.open(config, read_only=True) as state:
        again_posts, _, again = gather(config, state, project.now, Collection(record=False))
    assert [result.from_cache for result in again] == [True, True]
    assert again_posts == first_posts
    assert parsed_rows(config.state_path) == rows

    project.serve("/news.xml", [post(10, 1, site="https://example.org/news"), post(11)])
    with store.open(config, read_only=True) as state:
        changed_posts, _, changed = gather(config, state, project.now, Collection(record=False))
    assert [result.from_cache for result in changed] == [True, False]
    assert [p.title for p in changed_posts[news]] == ["Post number 10", "Post number 11"]
    assert parsed_rows(config.state_path)[news][1] == 2
    assert parsed_rows(config.state_path)[blog] == rows[blog]


def test_sends_keep_and_reuse_the_parse_in_their_own_state_file(project: Project) -> None:
    first = project.run("send")
    assert first.exit_code == 0, first.output
    config = load_config(project.config)
    rows = parsed_rows(config.state_path)
    assert sorted(count for _, count in rows.values()) == [1, 2]
    project.serve("/news.xml", [post(10, 1, site="https://example.org/news"), post(11)])
    second = project.run("send", now=project.now + timedelta(hours=1))
    assert second.exit_code == 0, second.output
    texts = [message.part("plain") for message in project.smtp.to("ann@example.com")]
    assert len(texts) == 2
    assert "Post number 11" in texts[1]
    assert "Post number 1\n" not in texts[1] and "Post number 10" not in texts[1]
    after = parsed_rows(config.state_path)
    blog, news = (feed.url for feed in config.feeds)
    assert after[blog] == rows[blog] and after[news][1] == 2


def test_a_post_dated_ahead_is_read_again_once_it_comes_due(project: Project) -> None:
    ahead = project.now + timedelta(hours=2)
    scheduled = {**post(3), "date": format_datetime(ahead)}
    project.serve("/blog.xml", [post(1), scheduled])
    config = load_config(project.config)
    blog = config.feeds[0]
    [first] = collect([blog], config.fetch, config.base_dir, {}, project.now)
    assert first.reparse_after == ahead
    assert {p.title: p.published for p in first.posts}["Post number 3"] is None
    known = {blog.url: KnownFeed(parsed=first)}

    [soon] = collect([blog], config.fetch, config.base_dir, known, ahead - timedelta(minutes=1))
    assert soon.from_cache and soon.posts == first.posts

    [due] = collect([blog], config.fetch, config.base_dir, known, ahead + timedelta(minutes=1))
    assert not due.from_cache and due.status is FetchStatus.OK
    assert {p.title: p.published for p in due.posts}["Post number 3"] == ahead
    assert due.reparse_after is None


def test_the_same_bytes_from_another_address_are_parsed_anew(project: Project) -> None:
    """Relative links resolve against the feed's address, so the key covers it."""
    same = [post(1), post(2, 2)]
    project.serve("/blog.xml", same)
    project.serve("/moved.xml", same)
    config = load_config(project.config)
    blog = config.feeds[0]
    [first] = collect([blog], config.fetch, config.base_dir, {}, project.now)
    moved = FeedConfig(name=blog.name, url=project.feeds.url("/moved.xml"))
    known = {moved.url: KnownFeed(parsed=first)}
    [second] = collect([moved], config.fetch, config.base_dir, known, project.now)
    assert not second.from_cache and second.parsed_key != first.parsed_key


def test_a_feed_taken_out_of_the_config_loses_its_parse(project: Project) -> None:
    config = load_config(project.config)
    with store.open(config) as state:
        gather(config, state, project.now, Collection(record=True))
    project.write_config(feeds=f"  - name: Only news\n    url: {project.feeds.url('/news.xml')}\n")
    project.serve("/news.xml", [post(10, 1, site="https://example.org/news"), post(11)])
    config = load_config(project.config)
    with store.open(config) as state:
        gather(config, state, project.now, Collection(record=True))
    assert list(parsed_rows(config.state_path)) == [project.feeds.url("/news.xml")]
