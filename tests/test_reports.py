"""`digest report`: each count attributed to the issue it came from, through real sends, real
bounce and complaint reports (a DSN and an ARF report read by `digest bounces`, a signed
Mailgun webhook posted to `digest serve`), one-click unsubscribes and preference changes made
through the links in the messages, against a real state; and the health warning when an issue's
complaint rate passes reports.max_complaint_rate.
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from digest.core.tokens import make_token
from tests.conftest import Project, post
from tests.support import reports, statefile
from tests.support.serving import Serving, serving
from tests.test_signup import enable_signup, link_in
from tests.test_webhooks import MAILGUN_KEY, signed

READERS = ("ann", "bob", "cat", "dan", "eve", "fay")
ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def address(name: str) -> str:
    return f"{name}@example.com"


def unsubscribe_link(project: Project, name: str, issue: int, base: str) -> str:
    """The https link in the List-Unsubscribe header of `name`'s message of `issue` (the
    messages each reader got, in order), pointed at the local server."""
    message = project.smtp.to(address(name))[issue - 1].message
    found = re.search(r"<(https://[^>]+)>", message["List-Unsubscribe"])
    assert found, message["List-Unsubscribe"]
    link = urlsplit(found.group(1))
    return f"{base}{link.path}?{link.query}"


def mailgun_complaint(project: Project, name: str, issue: int) -> dict[str, object]:
    message_id = str(project.smtp.to(address(name))[issue - 1].message["Message-ID"])
    return {
        "signature": signed(MAILGUN_KEY, project.now),
        "event-data": {
            "id": secrets.token_hex(8),
            "event": "complained",
            "recipient": address(name),
            "message": {"headers": {"message-id": message_id.strip("<>")}},
        },
    }


@pytest.fixture
def two_issues(project: Project, monkeypatch: pytest.MonkeyPatch) -> Project:
    """Six readers get issue 1; Gil is added (a confirmed sign-up) and the seven get issue 2
    a day later; then Bob's issue 1 hard-bounces and Cat reports issue 2 as spam (ARF)."""
    enable_signup(project)
    monkeypatch.setenv("MAILGUN_KEY", MAILGUN_KEY)
    project.config.write_text(
        project.config.read_text(encoding="utf-8")
        + "bounces:\n  webhooks:\n    mailgun_signing_key: ${MAILGUN_KEY}\n",
        encoding="utf-8",
    )
    project.write_subscribers(*(f"{address(name)},{name.title()}" for name in READERS))
    assert project.run("send").exit_code == 0
    added = project.run(
        "subscribers",
        "add",
        address("gil"),
        "--source",
        "phone",
        now=project.now + timedelta(hours=12),
    )
    assert added.exit_code == 0, added.output
    project.serve("/blog.xml", [post(3, 0), post(1), post(2, 2)])
    second = project.run("send", now=project.now + timedelta(days=1))
    assert second.exit_code == 0, second.output
    bounced = reports.dsn(address("bob"), project.smtp.to(address("bob"))[0].data)
    complained = reports.arf(address("cat"), project.smtp.to(address("cat"))[1].data)
    for message in (bounced, complained):
        read = project.run("bounces", "--stdin", input=message, now=project.now + timedelta(days=1))
        assert read.exit_code == 0, read.output
    return project


@pytest.fixture
def served(two_issues: Project) -> Iterator[Serving]:
    with serving(two_issues, "--no-preview", env={"MAILGUN_KEY": MAILGUN_KEY}) as running:
        yield running


def report_json(project: Project, *args: str) -> object:
    result = project.run("report", *args, "--format", "json", now=project.now + timedelta(days=2))
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def counts(data: object) -> dict[str, int]:
    assert isinstance(data, dict)
    return {key: value["count"] for key, value in data["counts"].items()}


def test_each_count_is_attributed_to_the_issue_it_came_from(
    two_issues: Project, served: Serving
) -> None:
    project = two_issues
    # Eve unsubscribes with one click from issue 1; pressing it twice counts once.
    eve = unsubscribe_link(project, "eve", 1, served.public)
    for _ in range(2):
        answer = httpx.post(eve, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert answer.status_code == 200, answer.text
    # Fay changes her sections through issue 2's preferences link; saving the same again is
    # no change.
    fay = link_in(project.smtp.to(address("fay"))[1], "preferences", served)
    for _ in range(2):
        saved = httpx.post(fay, data={"action": "save", "name": "Fay", "section": "Latest news"})
        assert saved.status_code == 200 and "Saved." in saved.text
    # Dan's provider reports his issue 2 as spam through a signed webhook.
    hook = httpx.post(
        f"{served.public}/webhooks/mailgun", json=mailgun_complaint(project, "dan", 2)
    )
    assert hook.status_code == 200, hook.text
    # Ann unsubscribes with a token of the form made before links named their issue.
    old = httpx.post(
        f"{served.public}/unsubscribe?token={make_token('test-secret', address('ann'))}",
        content=b"List-Unsubscribe=One-Click",
        headers=ONE_CLICK,
    )
    assert old.status_code == 200, old.text

    first = report_json(project, "1")
    assert counts(first) == {
        "delivered": 6,
        "failed": 0,
        "hard_bounces": 1,
        "soft_bounces": 0,
        "complaints": 0,
        "unsubscribes": 1,
        "preference_changes": 0,
    }
    assert isinstance(first, dict)
    assert (first["list_before"], first["list_after"], first["new_signups"]) == (6, 4, 0)
    assert first["counts"]["hard_bounces"]["rate"] == pytest.approx(16.67)

    second = report_json(project, "2")
    assert counts(second) == {
        "delivered": 7,
        "failed": 0,
        "hard_bounces": 0,
        "soft_bounces": 0,
        "complaints": 2,
        "unsubscribes": 0,
        "preference_changes": 1,
    }
    assert isinstance(second, dict)
    assert (second["list_before"], second["list_after"], second["new_signups"]) == (7, 5, 1)
    assert second["counts"]["complaints"]["rate"] == pytest.approx(28.57)

    # The latest issue by default, as a table, with the unattributed unsubscribe said apart.
    table = project.run("report", now=project.now + timedelta(days=2))
    assert table.exit_code == 0, table.output
    assert "Issue 2, sent" in table.output
    assert re.search(r"Complaints\s*│\s*2\s*│\s*28\.57%", table.output), table.output
    assert "1 unsubscribes came through links from before links named their issue" in table.output

    listed = project.run("report", "--since", "2026-01-01", "--format", "csv")
    assert listed.exit_code == 0, listed.output
    rows = list(csv.DictReader(io.StringIO(listed.output)))
    assert [(r["issue"], r["unsubscribes"], r["complaints"], r["healthy"]) for r in rows] == [
        ("1", "1", "0", "no"),
        ("2", "0", "2", "no"),
    ]


def test_a_complaint_rate_past_the_limit_is_said_in_plain_words(two_issues: Project) -> None:
    project = two_issues
    later = project.now + timedelta(days=2)
    shown = project.run("report", "2", now=later)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert (
        "Warning: Issue 2's complaint rate is 14.29% (1 of 7 delivered), above the 0.1% set in"
        " reports.max_complaint_rate." in text
    )
    assert "Gmail and Yahoo ask bulk senders to keep spam complaints below 0.1%" in text
    checked = project.run("check", now=later)
    assert checked.exit_code == 0, checked.output
    assert "Issue 2's complaint rate is 14.29%" in " ".join(checked.output.split())

    # Raised past it, the same issue is healthy and nothing is said.
    project.config.write_text(
        project.config.read_text(encoding="utf-8") + "reports:\n  max_complaint_rate: 20%\n",
        encoding="utf-8",
    )
    calm = project.run("report", "2", now=later)
    assert calm.exit_code == 0 and "Warning" not in calm.output
    assert "complaint rate" not in project.run("check", now=later).output


def test_an_unknown_issue_and_a_bad_date_are_clear_errors(two_issues: Project) -> None:
    missing = two_issues.run("report", "9")
    assert missing.exit_code != 0
    assert "there is no issue 9: `digest history` lists the issues" in missing.output
    bad = two_issues.run("report", "--since", "last tuesday")
    assert bad.exit_code == 2 and "is not a date such as 2026-01-01" in bad.output
    assert "Traceback" not in missing.output + bad.output


# ---------------------------------------------------------------- the report by email


def test_digest_run_emails_the_report_once_reports_after_the_send(project: Project) -> None:
    from digest.config.schema import load_config
    from digest.reports.mail import queue_due
    from tests.test_schedule_run import Daemon, wait_until

    sent_at = project.now - timedelta(days=4)  # a Thursday; the schedule's slot is Monday's
    project.write_config(
        'schedule:\n  day: monday\n  time: "08:00"\n  timezone: Europe/London\n'
        "reports:\n  email_to: [Editor@Example.org]\n  after: 72h\n"
    )
    assert project.run("send", now=sent_at).exit_code == 0
    complained = reports.arf(address("bob"), project.smtp.to(address("bob"))[0].data)
    assert project.run("bounces", "--stdin", input=complained, now=sent_at).exit_code == 0

    def to_editor() -> list[bytes]:
        return [m.data for m in project.smtp.received if "editor@example.org" in m.recipients]

    config = load_config(project.config)
    assert queue_due(config, sent_at + timedelta(hours=71)) == ()  # not due yet
    assert to_editor() == []
    with Daemon(project, sent_at + timedelta(hours=73)) as daemon:
        wait_until(lambda: len(to_editor()) == 1)
        assert daemon.terminate() == 0, daemon.log
    [message] = [m for m in project.smtp.received if "editor@example.org" in m.recipients]
    assert message.message["Subject"] == ("Collaborate Weekly: report on issue 1 (needs attention)")
    assert "List-Unsubscribe" not in message.message
    text = message.part("plain")
    assert re.search(r"Delivered\s+2\s+100%", text), text
    assert re.search(r"Complaints\s+1\s+50%", text), text
    assert "Warning: Issue 1's complaint rate is 50% (1 of 2 delivered)" in text
    assert "bob@example.com" not in text + message.part("html")
    assert "archive" not in text + message.part("html")  # the archive is off: no button
    assert queue_due(config, sent_at + timedelta(hours=74)) == ()  # queued once only
    assert statefile.rows(project.root / "state.sqlite3", "SELECT COUNT(*) FROM outbox") == [(0,)]
    assert len(to_editor()) == 1


def test_the_emailed_report_links_the_issues_archive_page_while_it_is_published(
    project: Project,
) -> None:
    from email import message_from_bytes, policy

    import lxml.html

    from digest import store
    from digest.config.schema import load_config
    from digest.reports.mail import archive_page, queue_due
    from tests.test_archive import ARCHIVE_URL, enable_archive

    sent_at = project.now - timedelta(days=4)
    enable_archive(project, "reports:\n  email_to: [editor@example.org]\n")
    assert project.run("send", now=sent_at).exit_code == 0
    config = load_config(project.config)
    assert queue_due(config, sent_at + timedelta(hours=73)) == (1,)
    [(data,)] = statefile.rows(
        project.root / "state.sqlite3", "SELECT data FROM outbox WHERE kind = 'report'"
    )
    queued = message_from_bytes(bytes(data), policy=policy.default)
    html, text = (queued.get_body(preferencelist=(kind,)) for kind in ("html", "plain"))
    assert html is not None and text is not None
    [button] = lxml.html.fromstring(html.get_content()).xpath("//a[@class='button-link']")
    page = button.get("href")
    assert re.fullmatch(re.escape(ARCHIVE_URL) + r"/issues/1-[a-z0-9-]+/", page), page
    assert button.text_content() == "See the issue in the archive"
    lines = text.get_content().splitlines()
    assert lines[lines.index("See the issue in the archive:") + 1] == page

    # Withdrawn, the issue has no page to go to: no button.
    assert project.run("archive", "withdraw", "1").exit_code == 0
    with store.open(config) as state:
        assert archive_page(config, state, 1) == ""


def test_a_report_is_due_after_reports_after_and_not_long_after() -> None:
    from datetime import UTC, datetime

    from digest.reports.figures import IssueCounts, issue_reports
    from digest.reports.mail import DUE_FOR, due

    sent = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    [report] = issue_reports([IssueCounts(1, "One", sent, 10, 0, 0)], [])
    after = timedelta(hours=72)
    assert due([report], set(), after, sent + after - timedelta(seconds=1)) == ()
    assert due([report], set(), after, sent + after) == (report,)
    assert due([report], {1}, after, sent + after) == ()
    assert due([report], set(), after, sent + after + DUE_FOR) == ()
    [nothing] = issue_reports([IssueCounts(2, "Two", sent, 0, 3, 0)], [])
    assert due([nothing], set(), after, sent + after) == ()


def test_a_state_written_by_0_1_0_reports_what_it_knows(project: Project) -> None:
    import shutil
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "state-0.1.0.sqlite3"
    shutil.copyfile(fixture, project.root / "state.sqlite3")
    listed = report_json(project, "--since", "2026-01-01")
    assert isinstance(listed, list)
    assert [item["issue"] for item in listed] == [1, 2, 3]
    delivered = statefile.rows(
        project.root / "state.sqlite3",
        "SELECT issue_id, COUNT(*) FROM deliveries WHERE status = 'sent' GROUP BY issue_id",
    )
    assert [(item["issue"], item["counts"]["delivered"]["count"]) for item in listed] == [
        (int(str(issue)), int(str(count))) for issue, count in delivered
    ]
    assert all(item["counts"]["unsubscribes"]["count"] == 0 for item in listed)
    shown = project.run("report", now=project.now + timedelta(days=2))
    assert shown.exit_code == 0, shown.output
    assert "Issue 3, sent 2026-11-30" in shown.output
