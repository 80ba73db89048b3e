"""Which reports may suppress a reader: forged mail to the bounce mailbox must not.

Every test sends a real issue over SMTP, then feeds real report messages to `digest bounces`
(a Maildir or standard input) or real signed events to `digest serve`, against a real state.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from digest.config.schema import load_config
from digest.run.check import check_project
from tests.conftest import Project
from tests.support import reports, statefile
from tests.support.serving import Serving, serving
from tests.test_webhooks import MAILGUN_KEY, POSTMARK, mailgun_body, message_id

VERP = "  return_path: bounces+{token}@example.org\n"
# What anyone can write: a well-formed report about a reader, with nothing of digest's in it.
BARE = b"From: digest@example.org\r\nTo: ann@example.com\r\nSubject: Collaborate Weekly\r\n"


def rows(project: Project, sql: str) -> list[tuple[object, ...]]:
    return statefile.rows(project.root / "state.sqlite3", sql)


def suppressed(project: Project) -> dict[str, str]:
    return {str(e): str(s) for e, s in rows(project, "SELECT email, source FROM suppressions")}


def configure(project: Project, *, smtp: str = "", bounces: str = "") -> None:
    text = project.config.read_text(encoding="utf-8")
    text = text.replace("  retry_delay: 0\n", "  retry_delay: 0\n" + smtp)
    project.config.write_text(text + (f"bounces:\n{bounces}" if bounces else ""), "utf-8")


def test_with_verp_a_report_with_no_token_or_message_id_of_ours_suppresses_no_one(
    project: Project, tmp_path: Path
) -> None:
    configure(project, smtp=VERP)
    assert project.run("send").exit_code == 0
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(reports.dsn("ann@example.com", BARE))  # a forged "no such user" for Ann
    box.add(reports.arf("bob@example.com", BARE.replace(b"ann@", b"bob@")))  # a forged complaint
    genuine = project.smtp.to("ann@example.com")[-1].data
    box.add(reports.dsn("ann@example.com", genuine, status="4.2.2", action="delayed"))
    result = project.run("bounces", "--maildir", str(tmp_path / "Maildir"))
    assert result.exit_code == 0, result.output
    assert "Read 3 messages: 0 suppressed, 1 soft bounces counted" in result.output
    assert "2 not tied to a delivery (ignored)" in result.output
    assert suppressed(project) == {}
    outcomes = sorted(str(row[0]) for row in rows(project, "SELECT outcome FROM bounce_reports"))
    assert outcomes == ["counted", "untied", "untied"]

    shown = project.run("bounces", "--show")
    assert shown.exit_code == 0, shown.output
    assert "hard ann@example.com: untied" in shown.output
    assert "complaint bob@example.com: untied" in shown.output
    explained = " ".join(shown.output.split())
    assert "untied: not tied to a delivery: it carries no VERP token or Message-ID" in explained
    assert "smtp.return_path carries {token}" in explained


def test_without_verp_the_address_fallback_can_be_turned_off(project: Project) -> None:
    configure(project, bounces="  match_recent_deliveries: false\n")
    assert project.run("send").exit_code == 0
    bare = project.run("bounces", "--stdin", input=reports.dsn("ann@example.com", BARE))
    assert bare.exit_code == 0, bare.output
    assert "0 suppressed" in bare.output and "1 not tied to a delivery" in bare.output
    assert suppressed(project) == {}
    # A real bounce still carries digest's Message-ID in the returned headers: it counts.
    genuine = reports.dsn("bob@example.com", project.smtp.to("bob@example.com")[-1].data)
    real = project.run("bounces", "--stdin", input=genuine)
    assert "1 suppressed" in real.output, real.output
    assert suppressed(project) == {"bob@example.com": "bounce"}


def test_without_verp_and_with_the_fallback_on_a_recent_reader_is_still_suppressed(
    project: Project,
) -> None:
    assert project.run("send").exit_code == 0
    result = project.run("bounces", "--stdin", input=reports.dsn("ann@example.com", BARE))
    assert "1 suppressed" in result.output, result.output
    assert suppressed(project) == {"ann@example.com": "bounce"}


def test_check_says_what_the_address_fallback_allows(project: Project, tmp_path: Path) -> None:
    mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir = f"  maildir: {tmp_path / 'Maildir'}\n"
    plain = project.config.read_text(encoding="utf-8")
    configure(project, smtp="  return_path: bounces@example.org\n", bounces=maildir)
    warned = project.run("check")
    assert warned.exit_code == 0, warned.output
    said = " ".join(warned.output.split())
    assert (
        "Warning: smtp.return_path carries no {token}: a bounce report without a Message-ID of"
        " digest's is tied to a delivery by the address it names alone, so anyone who can send"
        " mail to the bounce mailbox can suppress a reader digest mailed in the last 14 days"
    ) in said
    assert "bounces.match_recent_deliveries: false" in said

    for smtp, bounces in ((VERP, maildir), ("", maildir + "  match_recent_deliveries: false\n")):
        project.config.write_text(plain, encoding="utf-8")
        configure(project, smtp=smtp, bounces=bounces)
        report = check_project(load_config(project.config), {})
        assert not [w for w in report.warnings if "match_recent_deliveries" in w], report


@pytest.fixture
def served_with_verp(project: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serving]:
    configure(
        project,
        smtp=VERP,
        bounces="  webhooks:\n    mailgun_signing_key: ${MAILGUN_KEY}\n"
        f"    postmark_username: {POSTMARK[0]}\n    postmark_password: ${{POSTMARK_PASSWORD}}\n",
    )
    env = {"MAILGUN_KEY": MAILGUN_KEY, "POSTMARK_PASSWORD": POSTMARK[1]}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert project.run("send").exit_code == 0
    with serving(project, "--no-preview", env=env) as running:
        yield running


def test_a_webhook_event_must_name_the_recipient_its_message_id_was_made_for(
    project: Project, served_with_verp: Serving
) -> None:
    url = f"{served_with_verp.public}/webhooks/mailgun"
    event = mailgun_body(project, "bob@example.com")
    data = event["event-data"]
    assert isinstance(data, dict)
    data["message"] = {"headers": {"message-id": message_id(project, "ann@example.com")[1:-1]}}
    answer = httpx.post(url, json=event)  # Bob's failure, carrying Ann's Message-ID
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"forged": 1}
    assert suppressed(project) == {}

    # A signed event without a Message-ID (Postmark's) is still tied by its recipient: the
    # provider vouches for it, and VERP tokens never come back through a webhook.
    hard = {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "Email": "ann@example.com",
        "BouncedAt": project.now.isoformat().replace("+00:00", "Z"),
    }
    posted = httpx.post(f"{served_with_verp.public}/webhooks/postmark", json=hard, auth=POSTMARK)
    assert posted.status_code == 200 and posted.json() == {"suppressed": 1}, posted.text
    assert suppressed(project) == {"ann@example.com": "bounce"}
