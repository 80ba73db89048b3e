"""Shared fixtures: a newsletter project on disk with real feed and SMTP servers on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from click.testing import CliRunner, Result

from tests.support.feedserver import FeedServer
from tests.support.smtpserver import SmtpServer

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def rss(items: list[dict[str, str]], title: str = "Example blog") -> str:
    """A small RSS 2.0 document; each item has title, link, and optionally guid, date, summary."""
    parts = []
    for item in items:
        guid = f"<guid>{escape(item['guid'])}</guid>" if "guid" in item else ""
        date = f"<pubDate>{item['date']}</pubDate>" if "date" in item else ""
        summary = item.get("summary", "A summary.")
        parts.append(
            f"<item><title>{escape(item['title'])}</title><link>{escape(item['link'])}</link>"
            f"{guid}{date}<description>{escape(summary)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://example.org/</link>"
        f"<description>Posts</description>{''.join(parts)}</channel></rss>"
    )


def post(
    number: int, days_ago: float = 1, *, site: str = "https://example.org/blog"
) -> dict[str, str]:
    """An RSS item dated relative to NOW."""
    return {
        "title": f"Post number {number}",
        "link": f"{site}/post-{number}",
        "guid": f"{site}/post-{number}",
        "date": format_datetime(NOW - timedelta(days=days_ago)),
        "summary": f"<p>Summary of post {number}.</p>",
    }


@dataclass
class Project:
    """A newsletter project in a temporary folder, wired to live test servers."""

    root: Path
    feeds: FeedServer
    smtp: SmtpServer
    now: datetime = NOW

    @property
    def config(self) -> Path:
        """The config.yaml path."""
        return self.root / "config.yaml"

    def write_config(self, extra: str = "", *, feeds: str | None = None) -> None:
        """Write config.yaml: the two standard feeds unless `feeds` is given."""
        feeds = feeds or (
            f"  - name: From the blog\n    url: {self.feeds.url('/blog.xml')}\n"
            f"  - name: Latest news\n    url: {self.feeds.url('/news.xml')}\n"
        )
        self.config.write_text(
            "newsletter:\n"
            "  title: Collaborate Weekly\n"
            '  from: "Collaborate CIC <digest@example.org>"\n'
            '  unsubscribe_url: "https://example.org/unsubscribe?token={token}"\n'
            f"feeds:\n{feeds}"
            "subscribers: subscribers.csv\n"
            "smtp:\n"
            "  host: 127.0.0.1\n"
            f"  port: {self.smtp.port}\n"
            "  security: none\n"
            "  retry_delay: 0\n"
            "state: state.sqlite3\n"
            "secret: test-secret\n"
            "fetch:\n"
            "  timeout: 5\n" + extra,
            encoding="utf-8",
        )

    def add_newsletter_lines(self, lines: str) -> None:
        """Add lines (each indented two spaces, ending in a newline) under `newsletter:`."""
        anchor = "  title: Collaborate Weekly\n"
        text = self.config.read_text(encoding="utf-8")
        self.config.write_text(text.replace(anchor, anchor + lines, 1), encoding="utf-8")

    def write_subscribers(self, *rows: str) -> None:
        """Write subscribers.csv with the given 'email,name' rows."""
        text = "email,name\n" + "".join(f"{row}\n" for row in rows)
        (self.root / "subscribers.csv").write_text(text, encoding="utf-8")

    def serve(self, path: str, items: list[dict[str, str]]) -> None:
        """Serve an RSS feed with these items at path."""
        self.feeds.add(path, rss(items))

    def run(self, *args: str, now: datetime | None = None, input: bytes | None = None) -> Result:
        """Run the digest CLI in-process with --config and a fixed clock (and standard input)."""
        from digest.cli.main import main

        env = {"DIGEST_NOW": (now or self.now).isoformat()}
        return CliRunner().invoke(main, ["--config", str(self.config), *args], env=env, input=input)

    def run_process(
        self, *args: str, now: datetime | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run `python -m digest` as a real process."""
        env = {**os.environ, "DIGEST_NOW": (now or self.now).isoformat()}
        return subprocess.run(
            [sys.executable, "-m", "digest", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A project with a blog and a news feed served over HTTP, and an SMTP server."""
    with FeedServer() as feeds, SmtpServer() as smtp:
        made = Project(tmp_path, feeds, smtp)
        made.serve("/blog.xml", [post(1), post(2, 2)])
        made.serve("/news.xml", [post(10, 1, site="https://example.org/news")])
        made.write_config()
        made.write_subscribers("ann@example.com,Ann", "bob@example.com,Bob")
        yield made
