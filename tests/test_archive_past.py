"""`digest archive add-past`: issues sent before the archive was on join it, numbered after."""

from __future__ import annotations

import re

import feedparser
import pytest

from digest.core.tokens import make_token
from tests.conftest import NOW, Project, post
from tests.support import statefile
from tests.test_archive import (
    ARCHIVE_URL,
    SUBSCRIBERS,
    WEEK,
    enable_archive,
    files_of,
    view_in_browser,
)

NEWS_ONLY = "carol.news@example.net"
ARCHIVE_ON = "archive:\n  enabled: true\n"
ARCHIVE_OFF = "archive:\n  enabled: false\n"


def set_archive(project: Project, *, enabled: bool) -> None:
    """Turn the archive on or off in config.yaml, leaving everything else as it is."""
    text = project.config.read_text(encoding="utf-8")
    old, new = (ARCHIVE_OFF, ARCHIVE_ON) if enabled else (ARCHIVE_ON, ARCHIVE_OFF)
    project.config.write_text(text.replace(old, new, 1), encoding="utf-8")


def rows(project: Project, sql: str) -> list[tuple[object, ...]]:
    return statefile.rows(project.root / "state.sqlite3", sql)


def send_week(project: Project, week: int) -> None:
    """A real send `week` weeks after NOW, with one new blog post."""
    project.serve(
        "/blog.xml", [post(100 + week, days_ago=-(week * 7) + 1, site="https://example.org/blog")]
    )
    result = project.run("send", now=NOW + week * WEEK)
    assert result.exit_code == 0, result.output


@pytest.fixture
def two_before_one_after(project: Project) -> Project:
    """Two issues sent with the archive off (one subscriber getting only a section), a test send,
    then the archive turned on and a third issue sent."""
    enable_archive(project, "  out_dir: site\n")
    project.add_newsletter_lines("  choosable_sections: true\n")
    set_archive(project, enabled=False)
    added = project.run(
        "subscribers", "add", NEWS_ONLY, "--source", "x", "--section", "Latest news"
    )
    assert added.exit_code == 0, added.output
    assert project.run("send").exit_code == 0
    assert project.run("send", "--to", "editor@example.com", now=NOW + WEEK).exit_code == 0
    send_week(project, 1)
    set_archive(project, enabled=True)
    send_week(project, 2)
    return project


def test_past_issues_join_the_archive_in_send_order_and_no_page_moves(
    two_before_one_after: Project,
) -> None:
    project = two_before_one_after
    third_link = view_in_browser(project.smtp.to("annabel.quist@example.com")[-1].part("html"))
    assert third_link.startswith(f"{ARCHIVE_URL}/issues/1-")
    assert rows(project, "SELECT number, issue_id FROM archive_issues") == [(1, 3)]

    preview = project.run("archive", "add-past", "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert "Would add 2 past issues:" in preview.output
    assert re.search(r"^  2  2026-11-30  .*3 new posts", preview.output, re.M), preview.output
    assert re.search(r"^  3  2026-12-07  .*1 new posts", preview.output, re.M), preview.output
    assert rows(project, "SELECT number, issue_id FROM archive_issues") == [(1, 3)]
    assert len(files_of(project.root / "site" / "issues")) == 1

    result = project.run("archive", "add-past")
    assert result.exit_code == 0, result.output
    assert "Added 2 past issues:" in result.output
    assert f"Rewrote the archive in {project.root / 'site'}" in result.output
    assert rows(project, "SELECT number, issue_id FROM archive_issues ORDER BY number") == [
        (1, 3),
        (2, 1),
        (3, 2),
    ]

    files = files_of(project.root / "site")
    index = files["archive/index.html"].decode()
    keys = re.findall(r'<h2><a href="\.\./issues/([^"]+)/">', index)
    assert [key.split("-")[0] for key in keys] == ["1", "3", "2"]  # most recently sent first
    assert f"{ARCHIVE_URL}/issues/{keys[0]}/" == third_link  # the sent link still works
    assert f"issues/{keys[0]}/index.html" in files
    # Past issues are titled by their posts' titles, in the order their frozen text shows.
    summaries = re.findall(r'<h2><a href="[^"]+">(Post number [^<]*)</a></h2>', index)
    assert summaries == [
        "Post number 102",
        "Post number 101",
        "Post number 1 · Post number 2 · Post number 10",
    ]

    # The first issue is its full version, with both sections, not a subscriber's variant.
    first = files[f"issues/{keys[2]}/index.html"].decode()
    for shown in ("From the blog", "Latest news", "post-1", "post-2", "post-10"):
        assert shown in first, shown
    assert "Issue 2 ·" in first
    assert f'href="../{keys[1]}/" rel="next"' in first
    third = files[f"issues/{keys[0]}/index.html"].decode()
    assert f'href="../{keys[1]}/" rel="prev"' in third

    feed = feedparser.parse(files["feed.atom"])
    assert not feed.bozo, feed.bozo_exception
    assert [entry.link for entry in feed.entries] == [f"{ARCHIVE_URL}/issues/{k}/" for k in keys]

    secrets = ["%%DIGEST", "token=", "nsubscribe", NEWS_ONLY]
    for email, name in SUBSCRIBERS.items():
        # The token without an issue, and those naming each issue the messages came from.
        for issue in (None, 1, 2, 3, 4, 5):
            token = make_token("test-secret", email, issue)
            secrets += [token, *token.split(".")]
        secrets += [email, name, *name.split()]
    for name, data in files.items():
        text = data.decode()
        for secret in secrets:
            assert secret.lower() not in text.lower(), f"{secret!r} found in {name}"

    again = project.run("archive", "add-past")
    assert again.exit_code == 0, again.output
    assert "No past issues to add" in again.output
    assert len(rows(project, "SELECT * FROM archive_issues")) == 3


def test_withdrawn_issues_stay_withdrawn_and_new_sends_number_after(
    two_before_one_after: Project,
) -> None:
    project = two_before_one_after
    assert project.run("archive", "withdraw", "1").exit_code == 0
    assert project.run("archive", "add-past").exit_code == 0
    assert rows(project, "SELECT number FROM archive_issues WHERE withdrawn_at IS NOT NULL") == [
        (1,)
    ]
    send_week(project, 3)
    assert rows(project, "SELECT number, issue_id FROM archive_issues ORDER BY number") == [
        (1, 3),
        (2, 1),
        (3, 2),
        (4, 4),
    ]
    issues = sorted(path.name.split("-")[0] for path in (project.root / "site/issues").iterdir())
    assert issues == ["2", "3", "4"]


def test_an_issue_no_one_received_is_not_published(project: Project) -> None:
    enable_archive(project)
    set_archive(project, enabled=False)
    project.smtp.script.reject = dict.fromkeys(SUBSCRIBERS, "550 5.7.1 Refused by policy")
    assert project.run("send").exit_code == 0
    assert rows(project, "SELECT DISTINCT issue_id, status FROM deliveries") == [(1, "failed")]
    set_archive(project, enabled=True)
    result = project.run("archive", "add-past", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "No past issues to add" in result.output


def test_the_archive_off_is_refused_in_one_line(project: Project) -> None:
    assert project.run("send").exit_code == 0
    for args in (("archive", "add-past"), ("archive", "add-past", "--dry-run")):
        result = project.run(*args)
        assert result.exit_code == 1
        assert result.output.strip().count("\n") == 0
        assert "the archive is off" in result.output
    assert rows(project, "SELECT COUNT(*) FROM archive_issues") == [(0,)]
