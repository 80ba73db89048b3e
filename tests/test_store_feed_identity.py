"""A feed is known by its configured URL, even after its permanent move is remembered."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import Project, post, rss
from tests.support import statefile

DAY = timedelta(days=1)


def moved_feed(project: Project, extra: str = "") -> tuple[str, str]:
    """Configure one feed at /old.xml, which answers 301 to /new.xml; both URLs."""
    old = project.feeds.add("/old.xml", status=301, location=project.feeds.url("/new.xml"))
    project.write_config(feeds=f"  - name: News\n    url: {old}\n{extra}")
    return old, project.feeds.url("/new.xml")


def titles_sent(project: Project, since: int) -> list[str]:
    return [
        line
        for item in project.smtp.to("ann@example.com")[since:]
        for line in item.part("plain").splitlines()
        if line.startswith("Post number") or line.startswith("Undated note")
    ]


def state_rows(project: Project, sql: str) -> list[tuple[object, ...]]:
    with statefile.connect(project.root / "state.sqlite3") as db:
        return list(db.execute(sql))


def test_a_post_fetched_after_the_move_is_still_sent_when_the_feed_answers_304(
    project: Project,
) -> None:
    old, new = moved_feed(project, "    max_posts: 1\n")
    project.feeds.add("/new.xml", rss([post(1, 2)]), last_modified="Mon, 30 Nov 2026 06:00:00 GMT")
    first = project.run("send")
    assert first.exit_code == 0, first.output
    assert "moved permanently to" in first.output
    assert titles_sent(project, 0) == ["Post number 1"]

    # A day later two new posts; max_posts lets one go, the other waits for the next issue.
    project.feeds.add(
        "/new.xml",
        rss([post(2, -0.5), post(3, -0.25), post(1, 2)]),
        last_modified="Tue, 01 Dec 2026 06:00:00 GMT",
    )
    assert project.run("send", now=project.now + DAY).exit_code == 0
    assert titles_sent(project, 1) == ["Post number 2"]

    third = project.run("send", now=project.now + 2 * DAY)
    assert third.exit_code == 0, third.output
    last = project.feeds.hits("/new.xml")[-1]
    assert last.headers["if-modified-since"] == "Tue, 01 Dec 2026 06:00:00 GMT"  # answered 304
    assert not project.feeds.hits("/old.xml")[1:]  # fetched at the remembered address only
    assert titles_sent(project, 2) == ["Post number 3"]
    # Every post and carried post is recorded under the configured URL, none under the new one.
    assert {row[0] for row in state_rows(project, "SELECT feed_url FROM posts")} == {old}
    assert {row[0] for row in state_rows(project, "SELECT feed_url FROM issue_posts")} == {old}
    assert new not in str(state_rows(project, "SELECT data FROM posts"))


def test_an_undated_post_keeps_its_first_seen_date_after_the_move(project: Project) -> None:
    old, _ = moved_feed(project)
    project.feeds.add("/new.xml", rss([post(1, 1)]))
    assert project.run("send").exit_code == 0  # the move is remembered

    undated = {"title": "Undated note", "link": "https://example.org/blog/undated"}
    project.feeds.add("/new.xml", rss([undated, post(1, 1)]))
    moved_feed(project, "    exclude: ['Undated note']\n")
    held = project.run("send", now=project.now + DAY)  # seen for the first time, held back
    assert held.exit_code == 0 and "Nothing sent: nothing new." in held.output

    moved_feed(project)
    result = project.run("send", now=project.now + 3 * DAY)
    assert result.exit_code == 0, result.output
    text = project.smtp.to("ann@example.com")[-1].part("plain").replace("\r\n", "\n")
    assert "Undated note\n1 December 2026" in text  # first seen, not the day it was sent
    assert state_rows(
        project, "SELECT feed_url, first_seen FROM posts WHERE post_key LIKE '%undated'"
    ) == [(old, (project.now + DAY).isoformat())]
