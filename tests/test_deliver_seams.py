"""The mailer's retry, stop and fatal paths over a fake connection on a fake clock: no sockets,
no real waiting, the same outcome every run."""

from __future__ import annotations

import smtplib
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest

from digest.config.schema import SmtpConfig
from digest.core.errors import DigestError
from digest.core.models import Delivery, DeliveryStatus, OutgoingMessage
from digest.mail.smtp import Mailer, RateLimiter, SmtpError

Reply = tuple[int, bytes]
ACCEPTED: Reply = (250, b"2.0.0 queued")


class FakeClock:
    """Virtual time: sleeping moves it on at once; every wait is kept in `sleeps`."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def monotonic(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        with self.lock:
            self.now += seconds
            self.sleeps.append(seconds)
        return stop is not None and stop.is_set()


class FakeServer:
    """What the fake connections talk to: scripted replies per recipient, a log of attempts.

    rcpt / data: recipient -> replies for successive attempts (then 250). drop: recipients whose
    next DATA loses the connection (once each). mail: the reply to every MAIL FROM. connect:
    outcomes of successive connection attempts, an SmtpError to raise or None to connect.
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.rcpt: dict[str, list[Reply]] = {}
        self.data: dict[str, list[Reply]] = {}
        self.drop: set[str] = set()
        self.mail: Reply = (250, b"OK")
        self.connect: list[SmtpError | None] = []
        self.connections = 0
        self.attempts: dict[str, list[float]] = defaultdict(list)  # virtual time of each RCPT
        self.accepted: list[str] = []
        self.lock = threading.Lock()
        self.on_data: Callable[[str], None] = lambda recipient: None

    def connector(self, config: SmtpConfig, *, initial: bool = True) -> FakeConnection:
        with self.lock:
            outcome = self.connect.pop(0) if self.connect else None
            if outcome is not None:
                raise outcome
            self.connections += 1
        return FakeConnection(self)

    def next_reply(self, script: dict[str, list[Reply]], recipient: str) -> Reply:
        with self.lock:
            replies = script.get(recipient)
            return replies.pop(0) if replies else ACCEPTED


class FakeConnection:
    """The part of smtplib.SMTP the mailer uses, answering from a FakeServer."""

    command_encoding = "ascii"

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.sock: object | None = object()
        self.recipient = ""
        self.reply: Reply = (0, b"")

    def has_extn(self, opt: str) -> bool:
        return opt == "smtputf8"

    def putcmd(self, cmd: str, args: str = "") -> None:
        if cmd == "mail":
            self.reply = self.server.mail
        elif cmd == "rcpt":
            self.recipient = args.removeprefix("TO:<").removesuffix(">")
            self.server.attempts[self.recipient].append(self.server.clock.monotonic())
            self.reply = self.server.next_reply(self.server.rcpt, self.recipient)

    def getreply(self) -> Reply:
        return self.reply

    def docmd(self, cmd: str, args: str = "") -> Reply:
        return (354, b"go ahead")

    def send(self, s: bytes) -> None:
        self.server.on_data(self.recipient)
        if self.recipient in self.server.drop:
            self.server.drop.discard(self.recipient)
            self.reply = (-1, b"")
            self.sock = None
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        self.reply = self.server.next_reply(self.server.data, self.recipient)
        if 200 <= self.reply[0] < 300:
            with self.server.lock:
                self.server.accepted.append(self.recipient)

    def rset(self) -> Reply:
        return (250, b"OK")

    def quit(self) -> Reply:
        self.sock = None
        return (221, b"bye")

    def close(self) -> None:
        self.sock = None


def config(**overrides: Any) -> SmtpConfig:
    settings: dict[str, Any] = {
        "host": "smtp.example.org",
        "port": 25,
        "security": "none",
        "retries": 3,
        "retry_delay": 10,
        "connections": 1,
    }
    settings.update(overrides)
    return SmtpConfig(**settings)


def message(address: str) -> OutgoingMessage:
    data = f"From: digest@example.org\r\nTo: {address}\r\n\r\nHello\r\n".encode()
    return OutgoingMessage("digest@example.org", address, data)


def people(count: int) -> list[str]:
    return [f"reader{n}@example.com" for n in range(count)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> FakeServer:
    return FakeServer(clock)


def send(
    server: FakeServer,
    clock: FakeClock,
    recipients: Iterable[str],
    settings: SmtpConfig | None = None,
    *,
    stop: threading.Event | None = None,
    record: Callable[[Sequence[Delivery]], None] | None = None,
) -> dict[str, Delivery]:
    recorded: list[Delivery] = []

    def keep(batch: Sequence[Delivery]) -> None:
        recorded.extend(batch)
        if record is not None:
            record(batch)

    mailer = Mailer(settings or config(), connector=server.connector, clock=clock)
    with mailer:
        mailer.send_all((message(a) for a in recipients), keep, stop)
    assert len({d.email for d in recorded}) == len(recorded), "an outcome was recorded twice"
    return {d.email: d for d in recorded}


def offsets(server: FakeServer, recipient: str) -> list[float]:
    first = server.attempts[recipient][0]
    return [round(moment - first, 6) for moment in server.attempts[recipient]]


# -- retries ---------------------------------------------------------------------------------


def test_a_deferred_address_is_retried_after_doubling_delays_then_delivered(
    server: FakeServer, clock: FakeClock
) -> None:
    server.rcpt["reader1@example.com"] = [(451, b"4.3.0 later"), (451, b"4.3.0 later")]
    outcomes = send(server, clock, people(3))
    assert {a: d.status for a, d in outcomes.items()} == dict.fromkeys(
        people(3), DeliveryStatus.SENT
    )
    assert offsets(server, "reader1@example.com") == [0, 10, 30]
    assert sorted(server.accepted) == people(3)


def test_deferred_past_the_retries_is_left_pending_with_the_last_reply(
    server: FakeServer, clock: FakeClock
) -> None:
    server.rcpt["reader0@example.com"] = [(452, b"4.2.2 mailbox full")] * 10
    outcomes = send(server, clock, people(2))
    pending = outcomes["reader0@example.com"]
    assert (pending.status, pending.reply) == (DeliveryStatus.PENDING, "452 4.2.2 mailbox full")
    assert offsets(server, "reader0@example.com") == [0, 10, 30, 70]
    assert outcomes["reader1@example.com"].status is DeliveryStatus.SENT


def test_a_permanent_refusal_fails_that_address_at_once_and_the_rest_go(
    server: FakeServer, clock: FakeClock
) -> None:
    server.rcpt["reader1@example.com"] = [(550, b"5.1.1 no such user")]
    outcomes = send(server, clock, people(3))
    failed = outcomes["reader1@example.com"]
    assert (failed.status, failed.reply) == (DeliveryStatus.FAILED, "550 5.1.1 no such user")
    assert len(server.attempts["reader1@example.com"]) == 1
    assert sorted(server.accepted) == ["reader0@example.com", "reader2@example.com"]
    assert clock.sleeps == []


def test_a_dropped_connection_is_reopened_and_the_message_sent_again(
    server: FakeServer, clock: FakeClock
) -> None:
    server.drop = {"reader1@example.com"}
    outcomes = send(server, clock, people(3))
    assert all(d.status is DeliveryStatus.SENT for d in outcomes.values())
    assert server.connections == 2
    assert sorted(server.accepted) == people(3)


def test_temporary_connect_failures_are_retried_with_backoff(
    server: FakeServer, clock: FakeClock
) -> None:
    busy = SmtpError("SMTP smtp.example.org:25: 421 busy", temporary=True)
    server.connect = [busy, busy]
    outcomes = send(server, clock, people(1))
    assert outcomes["reader0@example.com"].status is DeliveryStatus.SENT
    assert clock.sleeps == [10, 20]


def test_the_rate_cap_spaces_messages_on_the_clock(server: FakeServer, clock: FakeClock) -> None:
    send(server, clock, people(5), config(max_per_second=2))
    starts = [server.attempts[a][0] - server.attempts["reader0@example.com"][0] for a in people(5)]
    assert starts == [0, 0.5, 1.0, 1.5, 2.0]


def test_the_rate_limiter_alone_waits_only_when_needed(clock: FakeClock) -> None:
    limiter = RateLimiter(4, clock)
    for _ in range(3):
        limiter.wait()
    assert clock.sleeps == [0.25, 0.25]


# -- stop ------------------------------------------------------------------------------------


def test_stop_finishes_the_message_in_flight_and_starts_no_other(
    server: FakeServer, clock: FakeClock
) -> None:
    stop = threading.Event()
    server.on_data = lambda recipient: stop.set()  # set while the first message is on the wire
    outcomes = send(server, clock, people(10), stop=stop)
    assert list(outcomes) == ["reader0@example.com"]
    assert outcomes["reader0@example.com"].status is DeliveryStatus.SENT
    assert server.accepted == ["reader0@example.com"]


def test_stop_during_a_retry_wait_leaves_the_deferred_address_pending(
    server: FakeServer, clock: FakeClock
) -> None:
    stop = threading.Event()
    server.rcpt["reader0@example.com"] = [(451, b"4.3.0 later")] * 10

    def stop_after_first(batch: Sequence[Delivery]) -> None:
        stop.set()

    server.on_data = lambda recipient: None
    outcomes = send(server, clock, people(2), stop=stop, record=stop_after_first)
    assert outcomes["reader1@example.com"].status is DeliveryStatus.SENT
    deferred = outcomes["reader0@example.com"]
    assert (deferred.status, deferred.reply) == (DeliveryStatus.PENDING, "451 4.3.0 later")
    assert len(server.attempts["reader0@example.com"]) == 1


def test_a_lost_message_is_pending_and_not_retried_once_stopping(
    server: FakeServer, clock: FakeClock
) -> None:
    stop = threading.Event()
    server.drop = {"reader0@example.com"}
    server.on_data = lambda recipient: stop.set()
    outcomes = send(server, clock, people(3), stop=stop)
    lost = outcomes["reader0@example.com"]
    assert (lost.status, lost.reply) == (
        DeliveryStatus.PENDING,
        "connection lost: Connection unexpectedly closed",
    )
    assert list(outcomes) == ["reader0@example.com"]
    assert server.connections == 1


class StoppableClock(FakeClock):
    """Virtual time, except that a wait which a stop request may cut short really waits for it
    (10 s at most): that stop request is what ends it."""

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is not None:
            stop.wait(10)
        return super().sleep(seconds, stop)


def test_stop_cuts_short_a_reconnect_and_is_not_an_error(server: FakeServer) -> None:
    clock = StoppableClock()
    stop = threading.Event()
    server.drop = {"reader0@example.com"}
    tries: list[int] = []

    def reconnect(settings: SmtpConfig, *, initial: bool = True) -> FakeConnection:
        if initial:
            return server.connector(settings, initial=initial)
        tries.append(1)
        stop.set()  # the dispatcher passes it on to the worker waiting to try again
        raise SmtpError("SMTP smtp.example.org:25: cannot connect", temporary=True)

    recorded: list[Delivery] = []
    mailer = Mailer(config(retries=5), connector=reconnect, clock=clock)
    with mailer:
        mailer.send_all((message(a) for a in people(3)), recorded.extend, stop)
    assert tries == [1]  # no second attempt after the stop
    assert clock.sleeps == [10]  # the one backoff wait, cut short
    assert [(d.email, d.status) for d in recorded] == [
        ("reader0@example.com", DeliveryStatus.PENDING)
    ]


# -- fatal -----------------------------------------------------------------------------------


def test_a_refused_sender_stops_the_send_and_fails_nobody(
    server: FakeServer, clock: FakeClock
) -> None:
    server.mail = (553, b"5.7.1 sender not allowed")
    recorded: list[Delivery] = []
    with pytest.raises(DigestError, match=r"refused the sender digest@example\.org: 553"):
        send(server, clock, people(5), record=recorded.extend)
    assert recorded == []


def test_a_permanent_connect_failure_is_raised_before_anything_is_sent(
    server: FakeServer, clock: FakeClock
) -> None:
    server.connect = [SmtpError("SMTP smtp.example.org:25: authentication failed (535)")]
    with pytest.raises(SmtpError, match="authentication failed"):
        send(server, clock, people(3))
    assert server.attempts == {}
    assert clock.sleeps == []


def test_a_server_gone_for_good_raises_after_recording_what_went(
    server: FakeServer, clock: FakeClock
) -> None:
    server.drop = {"reader2@example.com"}
    gone = SmtpError("SMTP smtp.example.org:25: cannot connect", temporary=True)

    def vanish(recipient: str) -> None:
        if recipient == "reader2@example.com":
            server.connect = [gone] * 10

    server.on_data = vanish
    recorded: list[Delivery] = []
    with pytest.raises(SmtpError, match="could not be reopened") as raised:
        send(server, clock, people(6), config(retries=2), record=recorded.extend)
    assert raised.value.temporary
    assert [(d.email, d.status) for d in recorded] == [
        ("reader0@example.com", DeliveryStatus.SENT),
        ("reader1@example.com", DeliveryStatus.SENT),
        ("reader2@example.com", DeliveryStatus.PENDING),
    ]
    assert clock.sleeps == [10, 20]


def test_a_bug_in_a_worker_is_raised_on_the_calling_thread(
    server: FakeServer, clock: FakeClock
) -> None:
    def broken(recipient: str) -> None:
        raise RuntimeError("bug")

    server.on_data = broken
    with pytest.raises(RuntimeError, match="bug"):
        send(server, clock, people(2))
