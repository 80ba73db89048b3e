"""Bounces and complaints through `digest bounces`, against real SMTP and IMAP servers."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import store
from tests.conftest import NOW, Project, post
from tests.support import reports, statefile
from tests.support.imapserver import PASSWORD, USER, WITHOUT_MOVE, ImapServer, dovecot_missing

VERP = "  return_path: bounces+{token}@example.org\n"


def rows(project: Project, sql: str) -> list[tuple[object, ...]]:
    return statefile.rows(project.root / "state.sqlite3", sql)


def suppressed(project: Project) -> dict[str, str]:
    return dict(rows(project, "SELECT email, source FROM suppressions"))  # type: ignore[arg-type]


def verp_project(project: Project, extra: str = "") -> None:
    text = project.config.read_text(encoding="utf-8")
    text = text.replace("  retry_delay: 0\n", "  retry_delay: 0\n" + VERP)
    project.config.write_text(text + extra, encoding="utf-8")


def sent_to(project: Project, address: str, index: int = -1) -> bytes:
    return project.smtp.to(address)[index].data


def new_posts(project: Project, first: int, days_later: int) -> None:
    when = NOW + timedelta(days=days_later)
    project.serve("/blog.xml", [post(first, -days_later + 1)])
    project.serve("/news.xml", [post(first + 1, -days_later + 1, site="https://example.org/n")])
    assert when


def test_each_message_names_its_delivery_in_the_envelope_and_message_id(
    project: Project,
) -> None:
    verp_project(project)
    assert project.run("send").exit_code == 0
    for received in project.smtp.received:
        assert re.fullmatch(r"bounces\+1-[a-z2-7]{16}@example\.org", received.mail_from)
        assert re.fullmatch(
            r"<d1\.[a-z2-7]{16}\.[0-9a-f]{12}@example\.org>", received.message["Message-ID"]
        )
    froms = {r.mail_from for r in project.smtp.received}
    assert len(froms) == 2  # one token per subscriber


@pytest.mark.skipif(dovecot_missing() is not None, reason=str(dovecot_missing()))
def test_bounces_in_an_imap_mailbox_suppress_and_the_next_send_skips_them(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAP_PASSWORD", PASSWORD)
    with ImapServer() as imap:
        verp_project(
            project,
            "bounces:\n  imap:\n    host: 127.0.0.1\n"
            f"    port: {imap.port}\n    tls: false\n    username: {USER}\n"
            "    password: ${IMAP_PASSWORD}\n",
        )
        assert project.run("send").exit_code == 0
        ann = sent_to(project, "ann@example.com")
        bob = sent_to(project, "bob@example.com")
        imap.append(
            "INBOX",
            reports.dsn("ann@example.com", ann),
            reports.arf("bob@example.com", bob, redact=True),
            reports.out_of_office(),
            reports.plain_mail(),
            reports.dsn("carol@example.com", b"Subject: never sent\r\nTo: carol@example.com"),
        )
        result = project.run("bounces")
        assert result.exit_code == 0, result.output
        assert "Read 5 messages: 2 suppressed" in result.output
        assert "1 auto-replies ignored, 1 not tied to a delivery" in result.output
        assert "1 not bounces (left in the mailbox)" in result.output
        assert suppressed(project) == {"ann@example.com": "bounce", "bob@example.com": "complaint"}
        left = imap.messages("INBOX")
        assert len(left) == 1 and b"Question about the newsletter" in left[0][1]
        assert b"\\Seen" not in left[0][0]  # untouched
        assert len(imap.messages("digest-processed")) == 4  # moved, never deleted
        reasons = dict(rows(project, "SELECT email, reason FROM suppressions"))
        assert str(reasons["ann@example.com"]).startswith("hard bounce 5.1.1")

        # Reading the mailbox again changes nothing: the report left there is not a bounce.
        again = project.run("bounces")
        assert "Read 1 message: 0 suppressed" in again.output

        project.smtp.handler.received.clear()
        new_posts(project, 30, 7)
        send = project.run("send", now=NOW + timedelta(days=7))
        assert send.exit_code == 0, send.output
        assert "Sent issue with 2 posts: 0 delivered, 0 failed" in send.output
        assert project.smtp.received == []  # both are suppressed now

        shown = project.run("bounces", "--show")
        assert "complaint bob@example.com: suppressed" in shown.output
        assert "auto_reply" in shown.output and "untied" in shown.output  # carol: no token


def test_the_same_report_twice_counts_once_and_a_mangled_one_is_tied_by_message_id(
    project: Project,
) -> None:
    # No VERP: the Message-ID in the returned headers identifies the delivery, even though
    # the report names another final recipient (a forwarding address).
    assert project.run("send").exit_code == 0
    report = reports.dsn(
        "ann@example.com", sent_to(project, "ann@example.com"), mangle_recipient=True
    )
    first = project.run("bounces", "--stdin", input=report)
    assert first.exit_code == 0, first.output
    assert "1 suppressed" in first.output
    second = project.run("bounces", "--stdin", input=report)
    assert "0 suppressed" in second.output and "1 already processed" in second.output
    assert suppressed(project) == {"ann@example.com": "bounce"}
    assert rows(project, "SELECT COUNT(*) FROM bounce_reports") == [(1,)]


def test_a_token_that_does_not_verify_changes_nothing(project: Project) -> None:
    verp_project(project)
    assert project.run("send").exit_code == 0
    ann = sent_to(project, "ann@example.com")
    forged = re.sub(rb"bounces\+1-[a-z2-7]{16}@", b"bounces+1-aaaaaaaaaaaaaaaa@", ann)
    forged = re.sub(rb"<d1\.[a-z2-7]{16}\.", b"<d1.bbbbbbbbbbbbbbbb.", forged)
    report = reports.dsn("ann@example.com", forged, to="bounces+1-aaaaaaaaaaaaaaaa@example.org")
    result = project.run("bounces", "--stdin", input=report)
    assert result.exit_code == 0, result.output
    assert "0 suppressed" in result.output and "1 not tied to a delivery" in result.output
    assert suppressed(project) == {}


def test_a_bare_address_counts_only_for_a_delivery_in_the_last_14_days(project: Project) -> None:
    assert project.run("send").exit_code == 0
    bare = b"Subject: Hi\r\nTo: ann@example.com\r\n\r\nHello"
    # `digest send` records each delivery at the wall-clock time it happened.
    sent_at = datetime.now(UTC)
    late = project.run(
        "bounces",
        "--stdin",
        input=reports.dsn("ann@example.com", bare),
        now=sent_at + timedelta(days=15),
    )
    assert "1 not tied to a delivery" in late.output
    never = project.run("bounces", "--stdin", input=reports.dsn("zed@example.com", bare))
    assert "1 not tied to a delivery" in never.output
    assert suppressed(project) == {}
    recent = project.run(
        "bounces",
        "--stdin",
        input=reports.dsn("ann@example.com", bare),
        now=NOW + timedelta(days=2),
    )
    assert "1 suppressed" in recent.output
    assert suppressed(project) == {"ann@example.com": "bounce"}


def test_soft_bounces_suppress_after_the_limit_on_distinct_issues(project: Project) -> None:
    verp_project(project, "bounces:\n  soft_limit: 2\n")
    full = {"status": "4.2.2", "diagnostic": "smtp; 452 4.2.2 Mailbox full"}
    assert project.run("send").exit_code == 0
    first = reports.dsn("ann@example.com", sent_to(project, "ann@example.com"), **full)
    assert "1 soft bounces counted" in project.run("bounces", "--stdin", input=first).output
    # The same issue soft-bouncing again (a second report) does not make two.
    again = reports.dsn("ann@example.com", sent_to(project, "ann@example.com"), **full)
    assert "1 soft bounces counted" in project.run("bounces", "--stdin", input=again).output
    assert suppressed(project) == {}
    new_posts(project, 40, 7)
    assert project.run("send", now=NOW + timedelta(days=7)).exit_code == 0
    second = reports.dsn("ann@example.com", sent_to(project, "ann@example.com"), **full)
    result = project.run("bounces", "--stdin", input=second, now=NOW + timedelta(days=7))
    assert "1 suppressed" in result.output
    reason = rows(project, "SELECT reason FROM suppressions")[0][0]
    assert str(reason).startswith("2 soft bounces in a row")


def test_a_delivery_between_soft_bounces_starts_the_count_again(project: Project) -> None:
    verp_project(project, "bounces:\n  soft_limit: 2\n")
    full = {"status": "4.2.2", "diagnostic": "smtp; 452 4.2.2 Mailbox full"}
    assert project.run("send").exit_code == 0
    first = reports.dsn("ann@example.com", sent_to(project, "ann@example.com"), **full)
    project.run("bounces", "--stdin", input=first)
    new_posts(project, 50, 7)
    assert project.run("send", now=NOW + timedelta(days=7)).exit_code == 0  # delivered fine
    new_posts(project, 60, 14)
    assert project.run("send", now=NOW + timedelta(days=14)).exit_code == 0
    third = reports.dsn("ann@example.com", sent_to(project, "ann@example.com"), **full)
    result = project.run("bounces", "--stdin", input=third, now=NOW + timedelta(days=14))
    assert "1 soft bounces counted" in result.output
    assert suppressed(project) == {}


def test_no_such_user_at_smtp_time_is_suppressed_for_the_next_issue(project: Project) -> None:
    project.smtp.script.reject["ann@example.com"] = "550 5.1.1 <ann@example.com>: no such user"
    project.smtp.script.reject["bob@example.com"] = "554 5.7.1 rejected by policy"
    result = project.run("send")
    assert "0 delivered, 2 failed" in result.output
    assert suppressed(project) == {"ann@example.com": "bounce"}  # a policy refusal is not
    reason = str(rows(project, "SELECT reason FROM suppressions")[0][0])
    assert reason.startswith("no such user at SMTP time")


def test_history_shows_bounces_complaints_and_the_complaint_rate(project: Project) -> None:
    verp_project(project)
    assert project.run("send").exit_code == 0
    project.run(
        "bounces",
        "--stdin",
        input=reports.arf("bob@example.com", sent_to(project, "bob@example.com")),
    )
    project.run(
        "bounces",
        "--stdin",
        input=reports.dsn("ann@example.com", sent_to(project, "ann@example.com")),
    )
    history = project.run("history")
    assert history.exit_code == 0, history.output
    assert "complaint rate 50.00%" in history.output
    counts = project.run("subscribers")
    assert "hard bounce" in counts.output and "complaint" in counts.output


def test_auto_replies_are_ignored_and_other_mail_left(project: Project) -> None:
    assert project.run("send").exit_code == 0
    for message in (reports.out_of_office(), reports.vacation()):
        result = project.run("bounces", "--stdin", input=message)
        assert "1 auto-replies ignored" in result.output, result.output
    result = project.run("bounces", "--stdin", input=reports.plain_mail())
    assert "1 not bounces" in result.output
    assert suppressed(project) == {}


def test_hostile_input_never_crashes(project: Project) -> None:
    assert project.run("send").exit_code == 0
    for data in (
        b"",
        b"\x00\xff" * 1000,
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n"
        b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: 9.9.9\r\n",
        b"From: MAILER-DAEMON@x\r\nSubject: Undeliverable\r\n\r\n" + b"A" * 3_000_000,
    ):
        result = project.run("bounces", "--stdin", input=data)
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
    assert suppressed(project) == {}


def test_a_bounced_confirmation_drops_the_pending_sign_up(project: Project) -> None:
    from digest.config.schema import load_config
    from digest.core.models import Subscriber
    from digest.core.tokens import TRANSACTIONAL_REFERENCE, delivery_tag
    from digest.mail.message import transactional_message

    verp_project(project)
    config = load_config(project.config)
    with store.open_path(project.root / "state.sqlite3") as state:
        state.signups.request(
            "dan@example.com", "Dan", None, NOW, page="", ip="", consent_sha256=""
        )
        secret = state.secrets.signing_secret(config.secret)
    tag = delivery_tag(secret, TRANSACTIONAL_REFERENCE, "dan@example.com")
    sent = transactional_message(
        config, Subscriber("dan@example.com"), "Confirm", "text", "<p>html</p>", NOW, None, tag
    )
    assert sent.sender == f"bounces+s-{tag}@example.org"
    result = project.run("bounces", "--stdin", input=reports.dsn("dan@example.com", sent.data))
    assert "1 pending sign-ups dropped" in result.output, result.output
    assert rows(project, "SELECT COUNT(*) FROM signups") == [(0,)]


def test_a_maildir_is_read_and_only_reports_are_moved(project: Project, tmp_path: Path) -> None:
    import mailbox

    assert project.run("send").exit_code == 0
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(reports.dsn("ann@example.com", sent_to(project, "ann@example.com")))
    box.add(reports.plain_mail())
    result = project.run("bounces", "--maildir", str(tmp_path / "Maildir"))
    assert result.exit_code == 0, result.output
    assert "Read 2 messages: 1 suppressed" in result.output
    assert len(box) == 1 and b"Question" in box.get_bytes(next(iter(box.keys())))
    assert len(box.get_folder("digest-processed")) == 1


def test_check_warns_when_the_bounce_mailbox_is_unreachable(project: Project) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    verp_project(
        project,
        "bounces:\n  imap:\n    host: 127.0.0.1\n"
        f"    port: {port}\n    tls: false\n    username: u\n    password: p\n    timeout: 3\n",
    )
    result = project.run("check")
    assert result.exit_code == 0, result.output
    assert "Warning: the bounce mailbox is unreachable: bounces.imap: cannot connect" in (
        result.output
    )


def test_resubscribe_undoes_a_suppression_made_in_error(project: Project) -> None:
    assert project.run("send").exit_code == 0
    report = reports.dsn("ann@example.com", sent_to(project, "ann@example.com"))
    project.run("bounces", "--stdin", input=report)
    assert "ann@example.com" in suppressed(project)
    result = project.run("resubscribe", "ann@example.com")
    assert result.exit_code == 0, result.output
    assert suppressed(project) == {}


def test_digest_run_s_poll_reads_the_configured_mailbox(project: Project, tmp_path: Path) -> None:
    import mailbox

    from digest.config.schema import load_config
    from digest.run.schedule import Clock, poll_bounces

    assert project.run("send").exit_code == 0
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(reports.dsn("ann@example.com", sent_to(project, "ann@example.com")))
    verp_project(project, f"bounces:\n  maildir: {tmp_path / 'Maildir'}\n  poll_every: 5m\n")
    config = load_config(project.config)
    assert config.bounces.poll_every == 300
    poll_bounces(config, Clock.starting_at(NOW))
    assert suppressed(project) == {"ann@example.com": "bounce"}
    assert len(box) == 0


@pytest.mark.skipif(dovecot_missing() is not None, reason=str(dovecot_missing()))
def test_imap_over_tls_verifies_the_certificate_against_the_configured_ca(
    project: Project,
) -> None:
    with ImapServer(tls=True) as imap:
        plain = project.config.read_text(encoding="utf-8")
        assert project.run("send").exit_code == 0
        imap.append("INBOX", reports.dsn("ann@example.com", sent_to(project, "ann@example.com")))

        # The test CA is in no system store: refused, one line, nothing read or suppressed.
        project.config.write_text(plain + imap.settings(), encoding="utf-8")
        refused = project.run_process("bounces")
        assert refused.returncode != 0, refused.stdout + refused.stderr
        assert refused.stdout == "" and "Traceback" not in refused.stderr
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith(f"Error: bounces.imap: 127.0.0.1:{imap.port}: certificate verif")
        assert "set bounces.imap.ca_file" in line
        assert suppressed(project) == {}
        assert rows(project, "SELECT COUNT(*) FROM bounce_reports") == [(0,)]
        checked = project.run("check")
        assert "the bounce mailbox is unreachable: " in checked.output
        assert "certificate verification failed" in checked.output

        missing = imap.settings("ca_file: no-such-ca.pem")
        project.config.write_text(plain + missing, encoding="utf-8")
        unreadable = project.run("bounces")
        assert unreadable.exit_code != 0 and "Traceback" not in unreadable.output
        assert "Error: bounces.imap.ca_file: cannot use " in unreadable.output
        assert "no-such-ca.pem: No such file or directory" in unreadable.output

        # Trusting the CA through bounces.imap.ca_file (relative to config.yaml): read over TLS.
        (project.root / "imap-ca.pem").write_bytes(imap.ca_file.read_bytes())
        trusting = imap.settings("ca_file: imap-ca.pem")
        project.config.write_text(plain + trusting, encoding="utf-8")
        result = project.run("bounces")
        assert result.exit_code == 0, result.output
        assert "Read 1 message: 1 suppressed" in result.output
        assert suppressed(project) == {"ann@example.com": "bounce"}
        assert imap.messages("INBOX") == [] and len(imap.messages("digest-processed")) == 1
        assert "unreachable" not in project.run("check").output
        assert "TLS" in imap.log()  # Dovecot logs the sessions as TLS ones


@pytest.mark.skipif(dovecot_missing() is not None, reason=str(dovecot_missing()))
@pytest.mark.parametrize(
    "capability",
    [WITHOUT_MOVE, WITHOUT_MOVE.replace(" UIDPLUS", "")],
    ids=["uid-expunge", "expunge"],
)
def test_without_move_reports_are_copied_then_expunged_and_other_mail_stays_unread(
    project: Project, capability: str
) -> None:
    with ImapServer(capability=capability) as imap:
        verp_project(project, imap.settings())
        client = imap.client()
        try:
            advertised = client.capability()[1][-1]
        finally:
            client.logout()
        assert b"MOVE" not in advertised.split()
        assert project.run("send").exit_code == 0
        imap.append(
            "INBOX",
            reports.dsn("ann@example.com", sent_to(project, "ann@example.com")),
            reports.plain_mail(),
            reports.arf("bob@example.com", sent_to(project, "bob@example.com")),
            reports.out_of_office(),
        )
        result = project.run("bounces")
        assert result.exit_code == 0, result.output
        assert "Read 4 messages: 2 suppressed" in result.output
        assert suppressed(project) == {"ann@example.com": "bounce", "bob@example.com": "complaint"}
        left = imap.messages("INBOX")
        assert len(left) == 1, left  # the others are expunged, not just flagged
        flags, body = left[0]
        assert b"Question about the newsletter" in body
        assert b"\\Seen" not in flags and b"\\Deleted" not in flags
        processed = imap.messages("digest-processed")
        assert len(processed) == 3
        assert all(b"\\Deleted" not in flags for flags, _ in processed)
        # COPY, then \Deleted and EXPUNGE: Dovecot counts three of each (a MOVE counts none).
        assert re.search(r"Logged out .*deleted=3 expunged=3", imap.log()), imap.log()
