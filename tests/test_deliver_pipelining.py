"""PIPELINING (RFC 2920): the same messages and the same outcomes as one command at a time."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest

from digest.config.schema import SmtpConfig
from digest.core.models import Delivery, DeliveryStatus
from digest.mail.smtp import Connection, Mailer, connect
from tests.support.smtpserver import SmtpServer
from tests.test_deliver import addresses, message, smtp_config


class Counting:
    """A connector that counts the commands sent one at a time over real smtplib connections."""

    def __init__(self) -> None:
        self.single_commands = 0

    def __call__(self, config: SmtpConfig, *, initial: bool = True) -> Connection:
        connection = connect(config, initial=initial)
        original = connection.putcmd

        def putcmd(cmd: str, args: str = "") -> None:
            if cmd.lower() in ("mail", "rcpt", "data"):
                self.single_commands += 1
            original(cmd, args)

        connection.putcmd = putcmd  # type: ignore[method-assign]
        return connection


def run(
    server: SmtpServer, recipients: list[str], **overrides: Any
) -> tuple[dict[str, Delivery], int]:
    counting = Counting()
    recorded: list[Delivery] = []
    with Mailer(smtp_config(server, **overrides), connector=counting) as mailer:
        mailer.send_all((message(a) for a in recipients), recorded.extend)
    return {d.email: d for d in recorded}, counting.single_commands


@pytest.mark.parametrize("pipelining", [True, False])
def test_pipelined_or_not_the_server_receives_the_same_messages(pipelining: bool) -> None:
    recipients = [*addresses(30), "zoë@example.com"]
    with SmtpServer(pipelining=pipelining) as server:
        outcomes, single = run(server, recipients, connections=3)
        received = sorted((r.recipients, r.data) for r in server.received)
    assert {d.status for d in outcomes.values()} == {DeliveryStatus.SENT}
    expected = sorted(((a,), message(a).data) for a in recipients)
    assert [(to, data.replace(b"\r\n", b"\n")) for to, data in received] == [
        (to, data.replace(b"\r\n", b"\n")) for to, data in expected
    ]
    assert (single == 0) is pipelining  # pipelined: no MAIL, RCPT or DATA sent on its own


def test_refused_and_deferred_recipients_keep_their_outcomes_when_pipelined() -> None:
    with SmtpServer() as server:
        server.script.reject["reader1@example.com"] = "550 5.1.1 No such user"
        server.script.defer["reader2@example.com"] = 99
        outcomes, _ = run(server, addresses(5), retries=1, retry_delay=0.01)
        got = sorted(r.recipients[0] for r in server.received)
    assert outcomes["reader1@example.com"].status is DeliveryStatus.FAILED
    assert outcomes["reader1@example.com"].reply.startswith("550")
    assert outcomes["reader2@example.com"].status is DeliveryStatus.PENDING
    assert got == ["reader0@example.com", "reader3@example.com", "reader4@example.com"]


def test_smtplib_sees_pipelining_offered() -> None:
    with SmtpServer() as server:
        connection = smtplib.SMTP("127.0.0.1", server.port)
        connection.ehlo()
        assert connection.has_extn("pipelining")
        connection.quit()
