"""The whole job through the `digest` command, against real HTTP and SMTP servers."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import dkim
import pytest

from digest.core.tokens import verify_token
from tests.conftest import Project, post, rss
from tests.support import statefile
from tests.support.dkimkey import make_dkim_key


def state_rows(project: Project, sql: str) -> list[tuple[object, ...]]:
    with statefile.connect(project.root / "state.sqlite3") as db:
        return list(db.execute(sql))


def post_titles(text: str) -> list[str]:
    return re.findall(r"Post number \d+", text)


def test_send_delivers_one_multipart_message_per_subscriber(project: Project) -> None:
    result = project.run("send")
    assert result.exit_code == 0, result.output
    assert "Sent issue with 3 posts: 2 delivered, 0 failed, 0 pending." in result.output
    received = project.smtp.received
    assert sorted(r.recipients for r in received) == [("ann@example.com",), ("bob@example.com",)]
    for item in received:
        assert item.mail_from == "digest@example.org"
        message = item.message
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        assert message["From"] == "Collaborate CIC <digest@example.org>"
        assert message["Subject"].startswith("Collaborate Weekly")
        assert "\n" not in message["Subject"]
        assert message["Date"]
        assert message["Message-ID"].endswith("@example.org>")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert b"\r\n" in item.data and b"\n" not in item.data.replace(b"\r\n", b"")
    ann = project.smtp.to("ann@example.com")[0]
    assert ann.message["To"] == "Ann <ann@example.com>"
    unsubscribe = ann.message["List-Unsubscribe"]
    https = re.search(r"<https://example\.org/unsubscribe\?token=([^>]+)>", unsubscribe)
    assert https and "<mailto:" in unsubscribe
    assert verify_token("test-secret", https.group(1)) == "ann@example.com"
    assert https.group(1) in ann.part("html") and https.group(1) in ann.part("plain")


def test_sections_follow_config_order_and_a_shared_post_appears_once(project: Project) -> None:
    shared = post(1)
    project.serve(
        "/news.xml",
        [
            post(10, 1, site="https://example.org/news"),
            {**shared, "guid": "news-1", "link": shared["link"] + "?utm_source=news#top"},
        ],
    )
    assert project.run("send").exit_code == 0
    text = project.smtp.to("ann@example.com")[0].part("plain")
    assert text.index("From the blog") < text.index("Latest news")
    assert post_titles(text).count("Post number 1") == 1
    blog, news = text.split("Latest news", 1)
    assert "Post number 1" in blog and "Post number 10" in news
    # newest first within a section
    assert blog.index("Post number 1") < blog.index("Post number 2")


def test_nothing_new_sends_nothing_and_new_post_goes_out_alone(project: Project) -> None:
    assert project.run("send").exit_code == 0
    assert len(project.smtp.received) == 2
    again = project.run("send", now=project.now + timedelta(hours=1))
    assert again.exit_code == 0
    assert "Nothing sent: nothing new." in again.output
    assert len(project.smtp.received) == 2
    project.serve("/blog.xml", [post(3, 0.5), post(1), post(2, 2)])
    third = project.run("send", now=project.now + timedelta(days=1))
    assert third.exit_code == 0, third.output
    latest = project.smtp.to("ann@example.com")[-1]
    assert post_titles(latest.part("plain")) == ["Post number 3"]
    assert len(project.smtp.received) == 4


def test_test_send_goes_only_to_given_addresses_and_uses_no_posts(project: Project) -> None:
    result = project.run("send", "--to", "editor@example.org")
    assert result.exit_code == 0, result.output
    assert [r.recipients for r in project.smtp.received] == [("editor@example.org",)]
    assert not (project.root / "state.sqlite3").exists() or not state_rows(
        project, "SELECT * FROM issues"
    )
    real = project.run("send")
    assert real.exit_code == 0
    assert len(project.smtp.received) == 3
    assert post_titles(project.smtp.to("ann@example.com")[0].part("plain")) == [
        "Post number 1",
        "Post number 2",
        "Post number 10",
    ]


def test_dry_run_writes_eml_files_and_records_nothing(project: Project) -> None:
    result = project.run("send", "--dry-run")
    assert result.exit_code == 0, result.output
    files = sorted((project.root / "outbox").rglob("*.eml"))
    assert [f.name.split("-", 1)[1] for f in files] == [
        "ann@example.com.eml",
        "bob@example.com.eml",
    ]
    assert b"Subject: Collaborate Weekly" in files[0].read_bytes()
    assert not project.smtp.received
    assert not (project.root / "state.sqlite3").exists()


def test_preview_writes_inlined_html_and_records_nothing(project: Project) -> None:
    out = project.root / "preview.html"
    result = project.run("preview", "--out", str(out))
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert "Post number 1" in html and "Post number 10" in html
    assert 'style="' in html
    assert not project.smtp.received
    assert not (project.root / "state.sqlite3").exists()
    assert project.run("send").exit_code == 0
    assert len(project.smtp.received) == 2


def test_broken_feed_is_named_skipped_and_its_posts_come_later(project: Project) -> None:
    project.feeds.add("/news.xml", "oops", status=500)
    result = project.run("send")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert warnings == [
        f"Warning: feed 'Latest news' ({project.feeds.url('/news.xml')}) skipped:"
        " HTTP 500 Internal Server Error; its posts will come in a later issue"
    ]
    first = project.smtp.to("ann@example.com")[0].part("plain")
    assert post_titles(first) == ["Post number 1", "Post number 2"]
    project.serve("/news.xml", [post(10, 1, site="https://example.org/news")])
    second = project.run("send", now=project.now + timedelta(hours=2))
    assert second.exit_code == 0, second.output
    assert post_titles(project.smtp.to("ann@example.com")[-1].part("plain")) == ["Post number 10"]


def test_invalid_subscribers_are_named_once_by_send_and_skipped(project: Project) -> None:
    project.write_subscribers("ann@example.com,Ann", "not-an-address,Nobody")
    result = project.run("send")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if "not-an-address" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("Warning: invalid subscriber skipped: subscribers.csv:3:")
    assert [r.recipients for r in project.smtp.received] == [("ann@example.com",)]


def test_hostile_titles_are_escaped_in_html_and_intact_in_text(project: Project) -> None:
    hostile = {
        **post(5),
        "title": "“Integrated” <budgets> & <script>alert(1)</script>",
        "summary": '<p onclick="steal()">Read <a href="/relative">more</a></p>'
        '<script>alert(2)</script><form action="https://evil.example"><input></form>',
    }
    project.serve("/blog.xml", [hostile])
    assert project.run("send").exit_code == 0
    received = project.smtp.to("ann@example.com")[0]
    html, text = received.part("html"), received.part("plain")
    assert "“Integrated” &lt;budgets&gt; &amp;" in html
    assert "<script" not in html and "onclick" not in html and "<form" not in html
    assert "“Integrated” <budgets> &" in text
    assert "&lt;" not in text and "&amp;" not in text
    assert "\n" not in received.message["Subject"]


def test_validators_are_stored_and_sent_next_time(project: Project) -> None:
    project.feeds.add("/blog.xml", rss([post(1)]), etag='"v1"')
    assert project.run("send").exit_code == 0
    assert state_rows(project, "SELECT etag FROM feeds WHERE url LIKE '%blog.xml'") == [('"v1"',)]
    assert project.run("send", now=project.now + timedelta(hours=1)).exit_code == 0
    last = project.feeds.hits("/blog.xml")[-1]
    assert last.headers.get("if-none-match") == '"v1"'


def test_history_lists_issues_with_delivery_counts(project: Project) -> None:
    project.write_subscribers("ann@example.com,Ann", "bob@example.com,Bob")
    project.smtp.handler.script.reject["bob@example.com"] = "550 5.1.1 No such user"
    assert project.run("send").exit_code == 0
    result = project.run("history")
    assert result.exit_code == 0
    assert "Issue 1 failed bob@example.com: 550 5.1.1 No such user" in result.output
    assert "ann@example.com" not in result.output
    rows = state_rows(project, "SELECT email, status, reply FROM deliveries ORDER BY email")
    assert rows == [
        ("ann@example.com", "sent", "250 Message accepted for delivery"),
        ("bob@example.com", "failed", "550 5.1.1 No such user"),
    ]


def test_old_posts_beyond_lookback_are_not_new(project: Project) -> None:
    project.serve("/blog.xml", [post(1), post(7, 30)])
    assert project.run("send").exit_code == 0
    assert "Post number 7" not in project.smtp.to("ann@example.com")[0].part("plain")


def test_max_posts_per_section(project: Project) -> None:
    project.serve("/blog.xml", [post(n, n / 10) for n in range(1, 8)])
    project.write_config("digest:\n  max_posts_per_section: 3\n")
    assert project.run("send").exit_code == 0
    text = project.smtp.to("ann@example.com")[0].part("plain")
    blog = text.split("Latest news")[0]
    assert post_titles(blog) == ["Post number 1", "Post number 2", "Post number 3"]


def test_css_is_inlined_once_per_issue_not_per_subscriber(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest.render.issue

    calls: list[int] = []
    original = digest.render.issue.render_issue

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(digest.render.issue, "render_issue", counting)
    project.write_subscribers(*(f"reader{n}@example.com,Reader {n}" for n in range(5)))
    assert project.run("send").exit_code == 0
    assert len(project.smtp.received) == 5
    assert len(calls) == 1
    names = {
        r.part("html").count(f"Reader {n}") > 0
        for n, r in enumerate(sorted(project.smtp.received, key=lambda r: r.recipients[0]))
    }
    assert names == {True}


def test_check_validates_without_network(project: Project, tmp_path: Path) -> None:
    result = project.run("check")
    assert result.exit_code == 0, result.output
    assert "OK: 2 feeds, 2 subscribers" in result.output
    assert not project.feeds.requests


def test_every_message_that_leaves_is_dkim_signed(project: Project) -> None:
    key_path, record = make_dkim_key(project.root)
    dkim_settings = (
        f"  dkim:\n    selector: news\n    domain: example.org\n    key_file: {key_path.name}\n"
    )
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text.replace("  retry_delay: 0\n", "  retry_delay: 0\n" + dkim_settings), encoding="utf-8"
    )

    assert project.run("send", "--to", "editor@example.org").exit_code == 0
    assert project.run("send", "--dry-run").exit_code == 0
    assert project.run("send").exit_code == 0

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"news._domainkey.example.org."
        return record

    received = project.smtp.received
    assert sorted(r.recipients[0] for r in received) == [
        "ann@example.com",
        "bob@example.com",
        "editor@example.org",
    ]
    assert all(dkim.verify(r.data, dnsfunc=dns) for r in received)
    written = sorted((project.root / "outbox").rglob("*.eml"))
    assert len(written) == 2
    assert all(dkim.verify(path.read_bytes(), dnsfunc=dns) for path in written)
