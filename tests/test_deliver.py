"""The mailer against a real aiosmtpd server scripted to reject, defer, drop, stall and refuse."""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from digest.config.schema import SmtpConfig
from digest.core.errors import DigestError
from digest.core.models import Delivery, DeliveryStatus, OutgoingMessage
from digest.mail.smtp import Mailer, SmtpError, wire_format
from tests.support.smtpserver import SmtpServer, free_port, self_signed_certificate


def smtp_config(server: SmtpServer | None, **overrides: Any) -> SmtpConfig:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port if server else free_port(),
        "security": "none",
        "retries": 3,
        "retry_delay": 0.01,
        "timeout": 5,
    }
    settings.update(overrides)
    return SmtpConfig(**settings)


def message(address: str) -> OutgoingMessage:
    data = (
        f"From: digest@example.org\r\nTo: {address}\r\nSubject: Weekly\r\n\r\n"
        f"Hello {address}\r\n.a line starting with a dot\r\n"
    ).encode()
    return OutgoingMessage("digest@example.org", address, data, smtputf8=not address.isascii())


def addresses(count: int) -> list[str]:
    return [f"reader{n}@example.com" for n in range(count)]


def send(
    config: SmtpConfig, recipients: list[str], stop: threading.Event | None = None
) -> dict[str, Delivery]:
    """Send one message per address; return every recorded outcome, asserting one each."""
    recorded: list[Delivery] = []
    with Mailer(config) as mailer:
        mailer.send_all((message(a) for a in recipients), recorded.extend, stop)
    assert len({d.email for d in recorded}) == len(recorded), "an outcome was recorded twice"
    return {d.email: d for d in recorded}


def test_every_message_goes_once_over_a_pool_of_reused_connections() -> None:
    with SmtpServer() as server:
        server.script.data_delay = 0.02
        outcomes = send(smtp_config(server, connections=4), addresses(40))
        assert server.counts() == Counter(addresses(40))
        assert all(d.status is DeliveryStatus.SENT for d in outcomes.values())
        assert all(d.reply.startswith("250") for d in outcomes.values())
        assert server.connections == 4
        assert server.peak_connections == 4
        body = server.to("reader0@example.com")[0].data
        assert b"\r\n.a line starting with a dot" in body


def test_a_rejected_address_is_failed_with_the_reply_and_the_rest_continue() -> None:
    with SmtpServer() as server:
        server.script.reject = {
            "reader1@example.com": "550 5.1.1 No such user",
            "reader2@example.com": "553 5.1.3 Bad address syntax",
            "reader3@example.com": "554 5.7.1 Relay access denied",
        }
        outcomes = send(smtp_config(server, connections=2), addresses(6))
        assert outcomes["reader1@example.com"] == Delivery(
            "reader1@example.com", DeliveryStatus.FAILED, "550 5.1.1 No such user"
        )
        assert outcomes["reader2@example.com"].reply == "553 5.1.3 Bad address syntax"
        assert outcomes["reader3@example.com"].status is DeliveryStatus.FAILED
        assert server.counts() == Counter(["reader0@example.com", *addresses(6)[4:]])
        assert server.handler.rcpt_attempts["reader1@example.com"] == 1


def test_a_deferred_address_is_retried_with_backoff_and_delivered() -> None:
    with SmtpServer() as server:
        server.script.defer = {"reader2@example.com": 2}
        outcomes = send(smtp_config(server, retries=3, retry_delay=0.2), addresses(5))
        assert outcomes["reader2@example.com"].status is DeliveryStatus.SENT
        assert server.counts() == Counter(addresses(5))
        assert server.handler.rcpt_attempts["reader2@example.com"] == 3
        # Backoff: 0.2 s, then 0.4 s, from the server's refusal to the next attempt (lower
        # bounds between the server's own moments, which a busy machine can only lengthen).
        first, second, third = server.handler.rcpt_moments["reader2@example.com"]
        assert second - first >= 0.2
        assert third - second >= 0.4


def test_an_address_deferred_past_the_retries_is_left_pending() -> None:
    with SmtpServer() as server:
        server.script.defer = {"reader0@example.com": 100}
        server.script.defer_reply = "452 4.2.2 Mailbox full"
        outcomes = send(smtp_config(server, retries=2), addresses(3))
        assert outcomes["reader0@example.com"] == Delivery(
            "reader0@example.com", DeliveryStatus.PENDING, "452 4.2.2 Mailbox full"
        )
        assert server.handler.rcpt_attempts["reader0@example.com"] == 3
        assert server.counts() == Counter(addresses(3)[1:])


def test_dropped_connections_are_reopened_and_everyone_gets_one_message() -> None:
    with SmtpServer() as server:
        server.script.drop_at = {3, 7, 8, 20}
        outcomes = send(smtp_config(server, connections=3), addresses(30))
        assert server.counts() == Counter(addresses(30))
        assert all(d.status is DeliveryStatus.SENT for d in outcomes.values())
        assert server.connections >= 3 + 4


def test_421_on_connect_is_retried_before_and_during_the_send() -> None:
    with SmtpServer() as server:
        server.script.refuse_connections = 2
        config = smtp_config(server, connections=1, retries=3)
        recorded: list[Delivery] = []
        with Mailer(config) as mailer:
            server.script.drop_at = {2}
            server.script.refuse_connections = 1
            mailer.send_all((message(a) for a in addresses(4)), recorded.extend)
        assert server.counts() == Counter(addresses(4))
        assert server.connections == 2 + 1 + 1 + 1


def test_a_server_refusing_extra_connections_leaves_a_smaller_pool() -> None:
    with SmtpServer() as server:
        config = smtp_config(server, connections=4)
        with Mailer(config) as mailer:
            server.script.refuse_connections = 3
            recorded: list[Delivery] = []
            mailer.send_all((message(a) for a in addresses(10)), recorded.extend)
        assert server.counts() == Counter(addresses(10))
        assert server.peak_connections == 1


def test_a_slow_server_is_waited_for_and_the_pool_sends_in_parallel() -> None:
    with SmtpServer() as server:
        # The first messages are answered only once four are in at once: a pool sending one
        # at a time would wait for the other three in vain.
        server.script.data_together = 4
        server.script.data_delay = 0.2
        send(smtp_config(server, connections=4), addresses(16))
        assert server.counts() == Counter(addresses(16))
        assert server.handler.peak_data == 4


def test_a_server_slower_than_the_timeout_leaves_messages_pending() -> None:
    with SmtpServer() as server:
        server.script.data_delay = 1.5
        outcomes = send(smtp_config(server, connections=1, timeout=0.5, retries=0), addresses(1))
        delivery = outcomes["reader0@example.com"]
        assert delivery.status is DeliveryStatus.PENDING
        assert "connection lost" in delivery.reply


def test_rate_cap_spaces_messages() -> None:
    with SmtpServer() as server:
        started = time.monotonic()
        send(smtp_config(server, connections=4, max_per_second=20), addresses(11))
        # 11 messages at 20 a second span at least 0.5 s. A lower bound cannot be met early by
        # a busy machine; the spacing itself is checked on a fake clock in test_deliver_seams.
        assert time.monotonic() - started >= 0.45
        assert server.counts() == Counter(addresses(11))


def test_wrong_port_is_a_clear_error_before_anything_is_sent() -> None:
    config = smtp_config(None)
    with pytest.raises(SmtpError) as raised, Mailer(config):
        pass
    assert f"SMTP 127.0.0.1:{config.port}: cannot connect" in str(raised.value)
    assert "check smtp.host and smtp.port" in str(raised.value)


def test_authentication_failure_is_a_clear_error_and_nothing_is_sent() -> None:
    with SmtpServer(auth=("digest", "right")) as server:
        config = smtp_config(server, username="digest", password="wrong")
        with pytest.raises(SmtpError) as raised, Mailer(config):
            pass
        assert "authentication failed (535" in str(raised.value)
        assert "check smtp.username and smtp.password" in str(raised.value)
        assert server.received == []


def test_authentication_with_the_right_password_sends() -> None:
    with SmtpServer(auth=("digest", "right")) as server:
        config = smtp_config(server, username="digest", password="right", connections=4)
        send(config, addresses(3))
        assert server.counts() == Counter(addresses(3))
        assert server.authenticator is not None
        assert server.authenticator.attempts == 4  # one per connection: 1 first + 3 in the pool


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path)


def test_starttls_and_auth_with_a_trusted_certificate(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with SmtpServer(tls="starttls", certificate=certificate, auth=("digest", "pw")) as server:
        config = smtp_config(server, security="starttls", username="digest", password="pw")
        send(config, addresses(3))
        assert server.counts() == Counter(addresses(3))


def test_implicit_tls(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with SmtpServer(tls="ssl", certificate=certificate) as server:
        send(smtp_config(server, security="ssl", connections=2), addresses(3))
        assert server.counts() == Counter(addresses(3))


def test_an_untrusted_certificate_is_a_clear_tls_error(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with SmtpServer(tls="starttls", certificate=certificate) as server:
        with pytest.raises(SmtpError) as raised, Mailer(smtp_config(server, security="starttls")):
            pass
        assert "TLS failed: CERTIFICATE_VERIFY_FAILED" in str(raised.value)
        assert server.received == []


def test_starttls_required_but_not_offered_is_a_clear_error() -> None:
    with SmtpServer() as server:
        with pytest.raises(SmtpError) as raised, Mailer(smtp_config(server, security="starttls")):
            pass
        assert "does not offer STARTTLS" in str(raised.value)


def test_tls_against_a_plain_server_is_a_clear_error() -> None:
    with SmtpServer() as server:
        with pytest.raises(SmtpError) as raised, Mailer(smtp_config(server, security="ssl")):
            pass
        assert "TLS failed" in str(raised.value)


def test_non_ascii_address_uses_smtputf8_when_offered() -> None:
    with SmtpServer(smtputf8=True) as server:
        outcomes = send(smtp_config(server), ["zoë@example.com", "ann@example.com"])
        assert outcomes["zoë@example.com"].status is DeliveryStatus.SENT
        received = server.to("zoë@example.com")
        assert len(received) == 1 and "SMTPUTF8" in received[0].mail_options
        assert "SMTPUTF8" not in server.to("ann@example.com")[0].mail_options


def test_non_ascii_address_fails_when_smtputf8_is_not_offered() -> None:
    with SmtpServer(smtputf8=False) as server:
        outcomes = send(smtp_config(server), ["zoë@example.com", "ann@example.com"])
        assert outcomes["zoë@example.com"].status is DeliveryStatus.FAILED
        assert "SMTPUTF8" in outcomes["zoë@example.com"].reply
        assert server.counts() == Counter(["ann@example.com"])


def test_a_refused_sender_stops_the_send_without_failing_anyone() -> None:
    with SmtpServer() as server:
        server.script.reject_sender = "553 5.7.1 Sender address rejected: not owned by user"
        recorded: list[Delivery] = []
        with pytest.raises(DigestError) as raised, Mailer(smtp_config(server)) as mailer:
            mailer.send_all((message(a) for a in addresses(5)), recorded.extend)
        assert "refused the sender digest@example.org: 553" in str(raised.value)
        assert all(d.status is not DeliveryStatus.FAILED for d in recorded)
        assert server.received == []


def test_stop_finishes_messages_in_flight_and_leaves_the_rest() -> None:
    with SmtpServer() as server:
        server.script.data_delay = 0.05
        stop = threading.Event()
        recorded: list[Delivery] = []

        at_stop: list[int] = []

        def record(batch: Sequence[Delivery]) -> None:
            recorded.extend(batch)
            if len(recorded) >= 3 and not stop.is_set():
                stop.set()
                at_stop.append(len(recorded))

        with Mailer(smtp_config(server, connections=2)) as mailer:
            mailer.send_all((message(a) for a in addresses(50)), record, stop)
        assert at_stop[0] <= len(recorded) <= at_stop[0] + 2
        assert {d.email for d in recorded} == set(server.counts())
        assert all(d.status is DeliveryStatus.SENT for d in recorded)


def test_server_gone_for_good_raises_after_recording_what_was_sent() -> None:
    server = SmtpServer()
    server.__enter__()
    recorded: list[Delivery] = []
    stopped: list[bool] = []

    def record(batch: Sequence[Delivery]) -> None:
        recorded.extend(batch)
        if len(recorded) >= 3 and not stopped:
            stopped.append(True)
            server.__exit__()

    def messages() -> Iterator[OutgoingMessage]:
        for address in addresses(20):
            yield message(address)

    config = smtp_config(server, connections=1, retries=1)
    with pytest.raises(SmtpError) as raised, Mailer(config) as mailer:
        mailer.send_all(messages(), record)
    assert "could not be reopened" in str(raised.value)
    sent = [d.email for d in recorded if d.status is DeliveryStatus.SENT]
    assert sorted(sent) == sorted(server.counts())


def test_wire_format_dot_stuffs_and_terminates() -> None:
    assert wire_format(b".hidden\r\nline\r\n..two") == b"..hidden\r\nline\r\n...two\r\n.\r\n"
    assert wire_format(b"bare\nnewlines\n") == b"bare\r\nnewlines\r\n.\r\n"


def test_certificate_helper_makes_a_loadable_pair(certificate: tuple[Path, Path]) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one at a time"])
def test_a_sender_deferred_by_the_server_leaves_every_reader_pending(pipelining: bool) -> None:
    """A temporary refusal of MAIL FROM (greylisting) leaves every reader pending for the next
    run with the server's reply, nothing failed and nothing delivered; then the next run
    delivers."""
    with SmtpServer(pipelining=pipelining) as server:
        server.script.reject_sender = "451 4.7.1 Greylisted, try again later"
        deferred = send(smtp_config(server, retries=0), addresses(3))
        assert {d.status for d in deferred.values()} == {DeliveryStatus.PENDING}
        assert all("451 4.7.1 Greylisted" in d.reply for d in deferred.values())
        assert server.received == []
        server.script.reject_sender = None
        delivered = send(smtp_config(server, retries=0), addresses(3))
        assert {d.status for d in delivered.values()} == {DeliveryStatus.SENT}
        assert server.counts() == Counter(addresses(3))
