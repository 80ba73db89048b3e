"""`digest check`: its decisions come from check_project; the command prints them and exits."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from digest.config.schema import load_config
from digest.core.models import FeedResult, FetchStatus
from digest.issue.prepare import feed_problems
from digest.run.check import CheckReport, check_project
from tests.conftest import Project, post, rss
from tests.support.dkimkey import make_dkim_key


def check_process(project: Project, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`digest check` as a real process with these environment variables added."""
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(project.config), "check"],
        capture_output=True,
        text=True,
        env={**os.environ, "DIGEST_NOW": project.now.isoformat(), **env},
        timeout=60,
        check=False,
    )


def test_a_placeholder_secret_from_the_example_env_file_is_warned_about(project: Project) -> None:
    result = check_process(project, {"DIGEST_SECRET": "change-me"})
    assert result.returncode == 0, result.stderr
    assert (
        "Warning: the signing secret is a placeholder from the examples: anyone could forge"
        " unsubscribe links; set DIGEST_SECRET" in result.stderr
    )
    assert "change-me" not in result.stdout

    strong = check_process(project, {"DIGEST_SECRET": secrets.token_urlsafe(32)})
    assert strong.returncode == 0
    assert "signing secret" not in strong.stderr


def test_a_short_secret_in_config_is_warned_about(project: Project) -> None:
    result = project.run("check")
    assert result.exit_code == 0
    assert "Warning: the signing secret is shorter than 32 bytes" in result.output


def test_check_project_returns_the_report_the_command_prints(project: Project) -> None:
    project.write_subscribers("ann@example.com,Ann", "not-an-address,X", "ANN@example.com,Again")
    report = check_project(load_config(project.config), {})
    assert isinstance(report, CheckReport)
    assert report.ok and report.errors == ()
    assert (report.feeds, report.subscribers) == (2, 1)
    assert report.warnings[-2].startswith("invalid subscriber skipped: subscribers.csv:3:")
    assert report.warnings[-1] == "duplicate subscriber ignored: subscribers.csv:4: ann@example.com"
    assert not project.feeds.requests


def test_feeds_that_moved_went_or_keep_failing_get_one_wording_everywhere(
    project: Project,
) -> None:
    project.feeds.add("/new.xml", rss([post(1)]))
    moved = project.feeds.add("/moved.xml", status=301, location="/new.xml")
    broken = project.feeds.add("/broken.xml", "x", status=500)
    gone = project.feeds.add("/gone.xml", status=410)
    project.write_config(
        feeds=f"  - name: Blog\n    url: {moved}\n  - name: Broken\n    url: {broken}\n"
        f"  - name: Old\n    url: {gone}\n"
    )
    sent = project.run("send")
    assert sent.exit_code == 0, sent.output
    assert (
        f"Warning: feed 'Blog' ({moved}): moved permanently to {project.feeds.url('/new.xml')}:"
        " update config.yaml" in sent.output
    )
    assert f"Warning: feed 'Old' ({gone}): gone: remove this feed" in sent.output
    assert f"Warning: feed 'Broken' ({broken}) skipped: HTTP 500" in sent.output

    checked = project.run("check")
    assert checked.exit_code == 0, checked.output
    warnings = [line for line in checked.output.splitlines() if line.startswith("Warning: feed")]
    assert warnings == [
        f"Warning: feed 'Blog': moved permanently to {project.feeds.url('/new.xml')}:"
        " update config.yaml",
        "Warning: feed 'Broken': HTTP 500 Internal Server Error",
        "Warning: feed 'Broken': failing since 2026-11-30 (1 attempt)",
        "Warning: feed 'Old': gone: remove this feed",
    ]


def test_feed_problems_never_show_credentials_in_a_feed_url() -> None:
    from digest.config.schema import FeedConfig

    feed = FeedConfig(name="Members", url="https://reader:hunter22@example.org/feed?token=abc123")
    result = FeedResult(
        feed.url,
        FetchStatus.FAILED,
        error="HTTP 503 Service Unavailable",
        permanent_url="https://reader:hunter22@example.org/new?token=abc123",
    )
    lines = feed_problems([feed], [result])
    assert lines == (
        "feed 'Members' (https://***@example.org/feed?token=***) skipped:"
        " HTTP 503 Service Unavailable; its posts will come in a later issue",
        "feed 'Members' (https://***@example.org/feed?token=***): moved permanently to"
        " https://***@example.org/new?token=***: update config.yaml",
    )


def test_a_missing_local_feed_file_fails_the_check_with_exit_2(project: Project) -> None:
    project.write_config(feeds="  - name: Local\n    url: feeds/local.xml\n")
    result = project.run("check")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {project.config}: feed 'Local': no file at feeds/local.xml;"
        " fix its url in config.yaml"
    )
    assert "OK:" not in result.output


def test_an_unusable_dkim_key_fails_the_check_without_quoting_the_key(project: Project) -> None:
    key_path, _ = make_dkim_key(project.root)
    pem = key_path.read_text()
    body = pem.splitlines()[1]
    key_path.write_text(pem.replace(body, body[::-1]))
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text.replace(
            "  retry_delay: 0\n",
            "  retry_delay: 0\n  dkim:\n    selector: news\n    domain: example.org\n"
            f"    key_file: {key_path.name}\n",
        )
    )
    result = project.run("check")
    assert result.exit_code == 2, result.output
    assert f"Error: {project.config}: smtp.dkim.key_file: {key_path} cannot be read" in (
        result.output
    )
    assert body[:16] not in result.output and body[::-1][:16] not in result.output


def test_the_check_creates_no_state_file(project: Project) -> None:
    assert project.run("check").exit_code == 0
    assert not (project.root / "state.sqlite3").exists()


def test_check_feeds_shows_each_feed_s_health_and_fails_when_one_is_failing(
    project: Project,
) -> None:
    healthy = project.run("check", "--feeds")
    assert healthy.exit_code == 0, healthy.output
    assert "OK: 2 feeds, 2 subscribers, templates render." in healthy.output
    for name in ("From the blog", "Latest news"):
        assert name in healthy.output
    assert "2026-11-29" in healthy.output  # the newest post of each

    project.feeds.add("/news.xml", b"Gone", status=404)
    failing = project.run("check", "--feeds")
    assert failing.exit_code == 1, failing.output
    assert "failed" in failing.output and "404" in failing.output
    assert "some feeds are failing; see the table above" in failing.output
