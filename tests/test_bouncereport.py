"""Reading one report: kinds, addresses and identifiers, on messages shaped as MTAs send them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from digest.bounces.feedback import ses_notification
from digest.bounces.parts import Finding
from digest.bounces.report import MAX_REPORT_BYTES, Kind, permanent_refusal, read_report
from tests.support import reports

RETURNED = (
    b"Return-Path: <bounces+7-abcdefghijklmnop@example.org>\r\n"
    b"Message-ID: <d7.abcdefghijklmnop.0123456789ab@example.org>\r\n"
    b"To: ann@example.com\r\nSubject: Weekly\r\n\r\nbody"
)


def test_a_dsn_names_the_recipient_status_and_the_delivery() -> None:
    report = read_report(reports.dsn("ann@example.com", RETURNED))
    assert report.kind is Kind.HARD and report.status == "5.1.1"
    assert report.recipients == ("ann@example.com",)
    assert report.tokens == (("7", "abcdefghijklmnop"),)
    assert report.message_ids == (("7", "abcdefghijklmnop"),)


def test_full_mailboxes_delays_and_policy_refusals_are_soft() -> None:
    full = reports.dsn(
        "ann@example.com", RETURNED, status="5.2.2", diagnostic="smtp; 552 5.2.2 Mailbox full"
    )
    delayed = reports.dsn(
        "ann@example.com",
        RETURNED,
        status="4.4.7",
        action="delayed",
        diagnostic="smtp; 421 4.4.7 Delivery time expired",
    )
    policy = reports.dsn(
        "ann@example.com", RETURNED, status="5.7.1", diagnostic="smtp; 554 5.7.1 Rejected by policy"
    )
    for message in (full, delayed, policy):
        assert read_report(message).kind is Kind.SOFT


def test_a_complaint_is_read_from_its_feedback_report() -> None:
    report = read_report(reports.arf("ann@example.com", RETURNED))
    assert report.kind is Kind.COMPLAINT and report.recipients == ("ann@example.com",)
    redacted = read_report(reports.arf("ann@example.com", RETURNED, redact=True))
    assert redacted.recipients == ("ann@example.com",)  # from the returned message's To
    assert redacted.message_ids == (("7", "abcdefghijklmnop"),)


def test_the_same_report_has_the_same_key_and_another_does_not() -> None:
    message = reports.dsn("ann@example.com", RETURNED)
    assert read_report(message).key == read_report(b"Received: by x\r\n" + message).key
    assert read_report(message).key != read_report(reports.dsn("ann@example.com", RETURNED)).key


def test_auto_replies_and_plain_mail() -> None:
    assert read_report(reports.out_of_office()).kind is Kind.AUTO_REPLY
    assert read_report(reports.vacation()).kind is Kind.AUTO_REPLY
    assert read_report(reports.plain_mail()).kind is Kind.NOT_BOUNCE


def test_smtp_replies_that_mean_the_address_is_gone_for_good() -> None:
    assert permanent_refusal("550 5.1.1 <a@example.com>: no such user") == "no such user"
    assert permanent_refusal("550 5.1.10 RESOLVER.ADR.RecipientNotFound") == "no such user"
    assert permanent_refusal("550 5.2.1 mailbox disabled").startswith("mailbox disabled")
    assert permanent_refusal("554 5.7.1 rejected by policy") == ""
    assert permanent_refusal("452 4.2.2 mailbox full") == ""


HOSTILE_HEAD = (
    b"From: MAILER-DAEMON@mx.example.com\r\nTo: bounces@example.org\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\nContent-Type: text/plain\r\n\r\n"
)
HOSTILE_BODIES = {
    "blank lines": b"\n",
    "at signs": b"@",
    "local parts": b"a" * 63 + b".",
    "half addresses": b"a" * 60 + b"@" + b"b" * 60 + b".",
    "one address a line": b"<ann@example.com>:\n",
    "spaced lines": b" " * 900 + b"\n",
    "address then spaces": b"ann@example.com" + b" " * 900 + b"x\n",
    "gapped phrases": b"quota " + b"x" * 50 + b" ",
    "separators": b"-" * 70 + b"\n",
    "header lines": b"Received: x\n",
    "status codes": b"5.1.1 550 ",
    "json": b'{"a":',
}


READ_ONE = """
import sys
from digest.core.addresses import canonical_or_none
from digest.bounces.report import read_report
report = read_report(sys.stdin.buffer.read())
assert all(canonical_or_none(address) == address for address in report.recipients)
print(report.kind.value)
"""


@pytest.mark.parametrize("shape", HOSTILE_BODIES)
def test_a_2_mib_hostile_body_is_read_in_bounded_time(shape: str) -> None:
    """Each shape once made a pattern or a detector take time that grew with the square of
    the message. The reader runs in its own process (a pattern holds the interpreter while it
    runs, so only a process can be given up on); the bound is generous: a slow, shared
    machine reads each in a second or two, a quadratic scan takes many minutes."""
    unit = HOSTILE_BODIES[shape]
    data = HOSTILE_HEAD + unit * (MAX_REPORT_BYTES // len(unit))
    try:
        done = subprocess.run(
            [sys.executable, "-c", READ_ONE], input=data, capture_output=True, timeout=90
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading a 2 MiB body of {shape!r} did not finish")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.strip() in (b"hard", b"soft", b"not_bounce")


def test_every_feedback_type_but_not_spam_is_a_complaint() -> None:
    """RFC 5965's types and the opt-out and unsubscribe reports some loops send."""
    for feedback in ("abuse", "fraud", "virus", "other", "opt-out", "unsubscribe"):
        message = reports.arf("ann@example.com", RETURNED).replace(
            b"Feedback-Type: abuse", f"Feedback-Type: {feedback}".encode()
        )
        report = read_report(message)
        assert report.kind is Kind.COMPLAINT, feedback
        assert report.recipients == ("ann@example.com",)
    not_spam = reports.arf("ann@example.com", RETURNED).replace(b"abuse\r", b"not-spam\r")
    assert read_report(not_spam).kind is Kind.NOT_BOUNCE


def _sns(message: object) -> str:
    """An SNS notification carrying `message` (JSON-encoded unless it is already text)."""
    text = message if isinstance(message, str) else json.dumps(message)
    return json.dumps({"Type": "Notification", "Message": text})


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        "{not json",
        json.dumps([{"notificationType": "Bounce"}]),
        _sns([1, 2]),
        _sns("[[["),
        _sns({"notificationType": "Bounce", "bounce": "not an object"}),
        _sns({"notificationType": "Bounce", "bounce": {"bouncedRecipients": ["x", 5, None]}}),
        _sns({"notificationType": "Complaint", "complaint": ["not an object"]}),
        _sns({"notificationType": "Open"}),
    ],
)
def test_an_ses_notification_of_the_wrong_shape_is_no_finding(body: str) -> None:
    assert ses_notification(body) is None


def test_ses_notifications_that_are_not_bounces_say_what_they_are() -> None:
    confirm = json.dumps({"Type": "SubscriptionConfirmation", "Message": "You chose to subscribe"})
    assert ses_notification(confirm) == Finding(
        Kind.NOT_BOUNCE, (), "", "SNS subscription confirmation"
    )
    delivered = ses_notification(_sns({"notificationType": "Delivery"}))
    assert delivered is not None and delivered.kind is Kind.NOT_BOUNCE
    assert delivered.reason == "delivered"
    not_spam = {
        "complaintFeedbackType": "not-spam",
        "complainedRecipients": [{"emailAddress": "ann@example.com"}],
    }
    found = ses_notification(_sns({"notificationType": "Complaint", "complaint": not_spam}))
    assert found is not None and found.kind is Kind.NOT_BOUNCE and found.recipients == ()


def test_an_ses_transient_bounce_is_soft_and_skips_rows_that_are_not_objects() -> None:
    bounce = {
        "bounceType": "Transient",
        "bounceSubType": "General",
        "bouncedRecipients": [
            "junk",
            {"emailAddress": "ann@example.com", "diagnosticCode": "smtp; 452 4.2.2 mailbox full"},
        ],
    }
    found = ses_notification(_sns({"eventType": "Bounce", "bounce": bounce}))
    assert found is not None
    assert (found.kind, found.recipients, found.status, found.reason) == (
        Kind.SOFT,
        ("ann@example.com",),
        "4.2.2",
        "mailboxfull",
    )


@pytest.mark.parametrize(
    ("subject", "headers"),
    [
        ("Re: Weekly", "Auto-Submitted: auto-replied\r\n"),
        ("Re: Weekly", "X-Autoreply: yes\r\n"),
        ("Re: Weekly", "X-Apple-Action: vacation\r\n"),
        ("Re: Weekly", "Precedence: auto_reply\r\n"),
        ("Out of office: Re: Weekly", ""),
    ],
)
def test_a_vacation_reply_is_an_auto_reply_not_a_bounce(subject: str, headers: str) -> None:
    message = (
        f"From: Ann <ann@example.com>\r\nTo: bounces@example.org\r\nSubject: {subject}\r\n"
        f"{headers}\r\nI am away until Monday.\r\n"
    ).encode()
    report = read_report(message)
    assert report.kind is Kind.AUTO_REPLY and report.recipients == ()


def test_a_reader_s_own_reply_is_not_a_bounce() -> None:
    message = (
        b"From: Ann <ann@example.com>\r\nTo: bounces@example.org\r\nSubject: Re: Weekly\r\n"
        b"\r\nThanks for the issue!\r\n"
    )
    assert read_report(message).kind is Kind.NOT_BOUNCE
