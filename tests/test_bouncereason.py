"""Why a delivery failed and whether that is hard: Sisimai's reasons and its hard/soft rule."""

from __future__ import annotations

import pytest

from digest.bounces.reason import Failure, is_hard, is_user_unknown_text, reason_of


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (Failure("5.1.1", "550", "RCPT", "550 5.1.1 <a@example.com>: User unknown"), "userunknown"),
        (Failure("5.1.2", "550", "", "550 5.1.2 Host unknown"), "hostunknown"),
        (Failure("5.1.6", "550", "RCPT", "550 5.1.6 recipient no longer on server"), "hasmoved"),
        # A full mailbox is that, even beside a 5.1.1 some servers put on everything.
        (Failure("5.1.1", "550", "RCPT", "550 5.1.1 mailbox is full"), "mailboxfull"),
        (Failure("5.2.2", "552", "", "552 5.2.2 Quota exceeded"), "mailboxfull"),
        (
            Failure("5.7.1", "554", "RCPT", "554 5.7.1 <a@example.com>: Relay access denied"),
            "norelaying",
        ),
        (
            Failure("5.7.1", "550", "", "550 5.7.1 message is likely unsolicited mail"),
            "spamdetected",
        ),
        (Failure("5.3.4", "552", "", "552 5.3.4 Message size exceeds fixed limit"), "mesgtoobig"),
        (Failure("4.4.7", "", "", "delivery time expired", "delayed"), "expired"),
        # "Unknown user" after DATA is a content filter wording its refusal, not the address.
        (Failure("", "550", "DATA", "550 Unknown user a@example.jp"), "filtered"),
        # A phrase with a gap ("quota ... exceeded") matches across the gap.
        (Failure("", "552", "", "552 quota for this mailbox exceeded"), "mailboxfull"),
        (
            Failure("", "554", "RCPT", "554 This user doesn't have a example.com account"),
            "userunknown",
        ),
        (Failure("2.0.0", "250", "", "250 OK"), "delivered"),
    ],
)
def test_the_reason_follows_sisimai(failure: Failure, reason: str) -> None:
    assert reason_of(failure) == reason


def test_only_an_address_or_domain_that_is_not_there_is_hard() -> None:
    for reason in ("userunknown", "hostunknown", "hasmoved"):
        assert is_hard(reason, "550")
    assert is_hard("notaccept", "550") and not is_hard("notaccept", "421")
    soft = (
        "mailboxfull filtered blocked policyviolation spamdetected expired suspend speeding"
        " systemerror networkerror contenterror mesgtoobig rejected norelaying onhold undefined"
    )
    for reason in soft.split():
        assert not is_hard(reason, "550"), reason


def test_phrases_with_a_gap_match_across_it() -> None:
    assert is_user_unknown_text("This user doesn't have a yahoo.example.com account")
    assert is_user_unknown_text("the user  ann  does not exist")
    assert not is_user_unknown_text("the user is on holiday")


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        # A reason the format's own reader found stands, unless it is only provisional.
        (Failure("", "", "", "", "failed", preset="mailboxfull"), "mailboxfull"),
        (Failure("", "550", "RCPT", "550 sorry", preset="hasmoved"), "hasmoved"),
        (Failure("", "550", "RCPT", "550 something", preset="filtered"), "filtered"),
        (Failure("", "525", "", "525 account"), "suspend"),
        (Failure("5.2.3", "552", "DATA", "552 5.2.3 too much"), "exceedlimit"),
        (Failure("", "550", "CONN", "550 cannot find your hostname"), "requireptr"),
        (
            Failure("", "550", "DATA", "550 this message is not rfc 5322 compliant"),
            "notcompliantrfc",
        ),
        (Failure("", "550", "DATA", "550 rejected due to poor reputation"), "badreputation"),
        (Failure("", "550", "DATA", "550 illegal attachment"), "contenterror"),
        (Failure("4.7.0", "421", "CONN", "421 too many connections from your host"), "toomanyconn"),
        (Failure("", "550", "MAIL", "550 sender address rejected"), "rejected"),
        (Failure("", "550", "RCPT", "550 I am on vacation until monday"), "vacation"),
        # The status code's class decides when no phrase does.
        (Failure("5.6.0", "554", "", "554 5.6.0 the thing"), "contenterror"),
        (Failure("5.7.0", "554", "", "554 5.7.0 the thing"), "securityerror"),
        (Failure("5.4.6", "554", "", "554 5.4.6 routing loop"), "systemerror"),
        (Failure("", "", "", "procmail: exit 75", unix=True), "mailererror"),
        (Failure("", "500", "", "500 syntax error"), "syntaxerror"),
        (Failure("", "550", "EHLO", "550 go away"), "blocked"),
    ],
)
def test_each_reason_is_found_by_its_status_phrase_command_or_preset(
    failure: Failure, reason: str
) -> None:
    assert reason_of(failure) == reason
