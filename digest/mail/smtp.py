"""Hand messages to the SMTP server over a small pool of connections; report each outcome.

Threads: the calling thread builds messages (from the iterator it is given), decides retries and
calls `record` for every final outcome, so the caller's SQLite connection is only ever used on
its own thread. Each worker thread owns one SMTP connection and only talks to the server;
outcomes come back to the calling thread through a queue. At most one message per connection
is handed out and not yet recorded, so a crash can repeat at most smtp.connections messages.

Outcomes: 2xx after the message -> sent; 5xx for a recipient or its message -> failed, with the
server's reply; 4xx, a dropped connection or a timeout -> retried with backoff (smtp.retries,
smtp.retry_delay doubling), then left pending for the next run. A refused sender (5xx to MAIL
FROM), failed authentication or TLS stops the whole send: those are configuration problems that
would fail every message the same way.

Seams: the Mailer takes a `connector` (how a connection is opened; smtplib by default) and a
`clock` (monotonic time and waiting; the real ones by default), so the retry, stop and fatal
paths can be driven by a fake connection on a fake clock, fast and deterministically.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import queue
import smtplib
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from digest.config.schema import SmtpConfig
from digest.core.errors import DigestError, SmtpError
from digest.core.models import Delivery, DeliveryStatus, OutgoingMessage

logger = logging.getLogger(__name__)

# Called with outcomes that settled together; must store them durably before returning.
Recorder = Callable[[Sequence[Delivery]], None]

# Messages waiting for a retry are held in memory; past this many, no new ones are started.
RETRY_BACKLOG = 1000
# How often the dispatcher wakes up to notice a stop request while waiting.
_POLL_SECONDS = 0.2


class Connection(Protocol):
    """What the mailer uses of an SMTP connection: the part of smtplib.SMTP it calls."""

    command_encoding: str

    @property
    def sock(self) -> object | None:
        """The open socket; None once the connection is closed."""

    def has_extn(self, opt: str) -> bool:
        """Whether the server offered this ESMTP extension."""

    def putcmd(self, cmd: str, args: str = "") -> None:
        """Send one command line."""

    def getreply(self) -> tuple[int, bytes]:
        """Read the server's reply: (code, text); raises SMTPServerDisconnected."""

    def docmd(self, cmd: str, args: str = "") -> tuple[int, bytes]:
        """Send a command and read its reply."""

    def send(self, s: bytes) -> None:
        """Send raw bytes (the DATA payload)."""

    def rset(self) -> tuple[int, bytes]:
        """Abort the current transaction."""

    def quit(self) -> tuple[int, bytes]:
        """Say goodbye and close."""

    def close(self) -> None:
        """Close without a word."""


class Connector(Protocol):
    """Opens one ready-to-use connection or raises SmtpError; `connect` is the real one."""

    def __call__(self, config: SmtpConfig, *, initial: bool = True) -> Connection:
        """A connected, secured, authenticated connection."""


class Clock(Protocol):
    """The mailer's sense of time: backoff, retry due times and the rate cap."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Wait `seconds`, less if `stop` is set; True when it was."""


class SystemClock:
    """The real clock: time.monotonic, and waiting that a stop request cuts short."""

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Wait on `stop` (so setting it wakes us) or, without one, sleep."""
        if stop is not None:
            return stop.wait(seconds)
        time.sleep(seconds)
        return False


SYSTEM_CLOCK = SystemClock()


def _reply(code: int, text: bytes | str) -> str:
    body = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(body.split())}".strip()


def wire_format(data: bytes) -> bytes:
    """The DATA payload: CRLF line endings, leading dots doubled, ending in CRLF.CRLF."""
    if data.count(b"\n") != data.count(b"\r\n"):
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _wire(message: OutgoingMessage) -> bytes:
    """The DATA payload: the one built with the message, else made from its bytes."""
    return message.wire if message.wire is not None else wire_format(message.data)


def connect(config: SmtpConfig, *, initial: bool = True) -> smtplib.SMTP:
    """Open, secure and authenticate one connection, or raise SmtpError saying what to fix.

    On the first connection of a send a refused or unreachable server is a permanent error
    (most likely a wrong host or port); later, when reconnecting, it is temporary.
    """
    where = f"{config.host}:{config.port}"
    connection: smtplib.SMTP | None = None
    try:
        if config.security == "ssl":
            connection = smtplib.SMTP_SSL(
                config.host,
                config.port,
                timeout=config.timeout,
                context=ssl.create_default_context(),
            )
        else:
            connection = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
        connection.ehlo()
        if config.security == "starttls":
            connection.starttls(context=ssl.create_default_context())
            connection.ehlo()
        if config.username:
            connection.login(config.username, config.password or "")
        return connection
    except smtplib.SMTPAuthenticationError as error:
        reply = _reply(error.smtp_code, error.smtp_error)
        raise SmtpError(
            f"SMTP {where}: authentication failed ({reply}); check smtp.username and smtp.password",
            temporary=400 <= error.smtp_code < 500,
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise SmtpError(
            f"SMTP {where}: the server does not offer STARTTLS; set smtp.security to 'ssl'"
            " or, only for a local relay, 'none'"
        ) from None
    except (ssl.SSLError, ssl.CertificateError) as error:
        reason = getattr(error, "reason", None) or error
        raise SmtpError(
            f"SMTP {where}: TLS failed: {reason}; check smtp.host (it must match the server's"
            " certificate), smtp.port and smtp.security"
        ) from None
    except smtplib.SMTPResponseException as error:
        reply = _reply(error.smtp_code, error.smtp_error)
        raise SmtpError(
            f"SMTP {where}: the server refused the connection: {reply}",
            temporary=400 <= error.smtp_code < 500,
        ) from None
    except smtplib.SMTPServerDisconnected as error:
        raise SmtpError(
            f"SMTP {where}: the server closed the connection: {error}", temporary=not initial
        ) from None
    except smtplib.SMTPException as error:
        # smtplib's own complaints, e.g. "No suitable authentication method found."
        hint = " (it may only offer AUTH over TLS: check smtp.security)" if config.username else ""
        raise SmtpError(f"SMTP {where}: {error}{hint}") from None
    except socket.gaierror as error:
        raise SmtpError(f"SMTP {where}: unknown host ({error.strerror}); check smtp.host") from None
    except OSError as error:
        raise SmtpError(
            f"SMTP {where}: cannot connect: {error.strerror or error or type(error).__name__};"
            " check smtp.host and smtp.port",
            temporary=not initial,
        ) from None
    finally:
        if connection is not None and connection.sock is None:
            connection.close()


def connect_with_retries(
    config: SmtpConfig,
    *,
    initial: bool,
    stop: threading.Event | None = None,
    connector: Connector = connect,
    clock: Clock = SYSTEM_CLOCK,
) -> Connection:
    """connect(), retrying temporary failures with backoff up to smtp.retries times."""
    for attempt in itertools.count():
        try:
            return connector(config, initial=initial)
        except SmtpError as error:
            if not error.temporary or attempt >= config.retries:
                raise
            delay = config.retry_delay * 2**attempt
            logger.info("%s; trying again in %.1f s", error, delay)
            if clock.sleep(delay, stop):
                raise
    raise AssertionError("unreachable")


class _Lost(Exception):
    """The connection went away mid-message; whether the server kept the message is unknown."""


class _SenderRefused(DigestError):
    """The server refused our envelope sender: every message would fail the same way."""


def _quit(connection: Connection) -> None:
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        connection.close()


def transmit(connection: Connection, message: OutgoingMessage, wire: bytes) -> Delivery:
    """One SMTP transaction (MAIL, RCPT, DATA) for one recipient; classify the outcome."""
    recipient = message.recipient
    if message.smtputf8 and not connection.has_extn("smtputf8"):
        return Delivery(
            recipient,
            DeliveryStatus.FAILED,
            "not sent: the address needs SMTPUTF8, which the server does not offer",
        )
    options = " SMTPUTF8" if message.smtputf8 else ""
    connection.command_encoding = "utf-8" if message.smtputf8 else "ascii"
    try:
        if connection.has_extn("pipelining"):
            early = _pipelined_envelope(connection, message, options)
        else:
            early = _envelope(connection, message, options)
        if early is not None:
            return early
        connection.send(wire)
        code, text = connection.getreply()
    except smtplib.SMTPServerDisconnected as error:
        connection.close()
        raise _Lost(str(error) or "connection closed") from None
    if 200 <= code < 300:
        return Delivery(recipient, DeliveryStatus.SENT, _reply(code, text))
    if code == 421:
        connection.close()
    status = DeliveryStatus.FAILED if 500 <= code < 600 else DeliveryStatus.PENDING
    return Delivery(recipient, status, _reply(code, text))


def _refused_sender(message: OutgoingMessage, code: int, text: bytes) -> _SenderRefused:
    return _SenderRefused(
        f"the SMTP server refused the sender {message.sender}: {_reply(code, text)};"
        " check newsletter.from and which senders the server allows"
    )


def _envelope(connection: Connection, message: OutgoingMessage, options: str) -> Delivery | None:
    """MAIL, RCPT and DATA one at a time; None once the server waits for the message."""
    recipient = message.recipient
    connection.putcmd("mail", f"FROM:<{message.sender}>{options}")
    code, text = connection.getreply()
    if code != 250:
        if 500 <= code < 600:
            raise _refused_sender(message, code, text)
        return _not_accepted(connection, recipient, code, text)
    connection.putcmd("rcpt", f"TO:<{recipient}>")
    code, text = connection.getreply()
    if code not in (250, 251):
        return _not_accepted(connection, recipient, code, text)
    code, text = connection.docmd("data")
    if code != 354:
        return _not_accepted(connection, recipient, code, text)
    return None


def _pipelined_envelope(
    connection: Connection, message: OutgoingMessage, options: str
) -> Delivery | None:
    """MAIL, RCPT and DATA in one write, then their three replies (RFC 2920 PIPELINING): one
    round trip instead of three. None once the server waits for the message.

    A server that offers PIPELINING answers DATA with 503 or 554 when the sender or recipient
    was refused; one that opens the message anyway gets it ended at once, empty, before the
    refusal is reported exactly as without pipelining.
    """
    recipient = message.recipient
    lines = f"MAIL FROM:<{message.sender}>{options}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"
    connection.send(lines.encode(connection.command_encoding))
    mail_code, mail_text = connection.getreply()
    if mail_code == 421:  # closing: the other replies will not come
        return _not_accepted(connection, recipient, mail_code, mail_text)
    rcpt_code, rcpt_text = connection.getreply()
    if rcpt_code == 421:
        return _not_accepted(connection, recipient, rcpt_code, rcpt_text)
    data_code, data_text = connection.getreply()
    accepted = mail_code == 250 and rcpt_code in (250, 251)
    if data_code == 354 and not accepted:
        connection.send(b".\r\n")
        connection.getreply()
    if mail_code != 250:
        if 500 <= mail_code < 600:
            raise _refused_sender(message, mail_code, mail_text)
        return _not_accepted(connection, recipient, mail_code, mail_text)
    if rcpt_code not in (250, 251):
        return _not_accepted(connection, recipient, rcpt_code, rcpt_text)
    if data_code != 354:
        return _not_accepted(connection, recipient, data_code, data_text)
    return None


def _not_accepted(connection: Connection, recipient: str, code: int, text: bytes) -> Delivery:
    status = DeliveryStatus.FAILED if 500 <= code < 600 else DeliveryStatus.PENDING
    if code == 421 or code < 0:
        connection.close()
    else:
        try:
            connection.rset()
        except (smtplib.SMTPException, OSError):
            connection.close()
    return Delivery(recipient, status, _reply(code, text))


class RateLimiter:
    """Space sends at least 1/rate seconds apart across every connection."""

    def __init__(self, per_second: float | None, clock: Clock = SYSTEM_CLOCK) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next_slot = 0.0
        self.lock = threading.Lock()
        self.clock = clock

    def wait(self) -> None:
        """Block until this send may start."""
        if not self.interval:
            return
        with self.lock:
            now = self.clock.monotonic()
            start = max(now, self.next_slot)
            self.next_slot = start + self.interval
        if start > now:
            self.clock.sleep(start - now)


@dataclass(order=True)
class _Job:
    due: float
    sequence: int
    message: OutgoingMessage = field(compare=False)
    attempts: int = field(default=0, compare=False)
    last: Delivery | None = field(default=None, compare=False)


@dataclass(frozen=True)
class _Done:
    job: _Job
    delivery: Delivery


@dataclass(frozen=True)
class _Requeue:
    """A worker gave up its connection before sending this job; someone else should send it."""

    job: _Job


@dataclass(frozen=True)
class _Fatal:
    job: _Job | None
    error: BaseException


@dataclass(frozen=True)
class _Retired:
    reason: str


_Result = _Done | _Requeue | _Fatal | _Retired


class Mailer:
    """A pool of up to smtp.connections SMTP connections, reused for every message of a send.

    Entering opens the first connection, so a wrong host, port, password or TLS setting is a
    clear error before any message is built or sent. The others open when sending starts; a
    server that refuses extra connections just leaves the pool smaller. `connector` and `clock`
    replace smtplib and the real clock, for tests.
    """

    def __init__(
        self, smtp: SmtpConfig, *, connector: Connector = connect, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.config = smtp
        self.where = f"{smtp.host}:{smtp.port}"
        self.first: Connection | None = None
        self.connector = connector
        self.clock = clock
        self.limiter = RateLimiter(smtp.max_per_second, clock)
        self.entered = False

    def __enter__(self) -> Mailer:
        self.first = connect_with_retries(
            self.config, initial=True, connector=self.connector, clock=self.clock
        )
        self.entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.entered = False
        if self.first is not None:
            _quit(self.first)
            self.first = None

    # -- the worker side ---------------------------------------------------------

    def _worker(
        self,
        number: int,
        jobs: queue.SimpleQueue[_Job | None],
        results: queue.SimpleQueue[_Result],
        halt: threading.Event,
    ) -> None:
        connection: Connection | None = None
        job: _Job | None = None
        try:
            if number == 0:
                connection, self.first = self.first, None
            else:
                try:
                    connection = self.connector(self.config, initial=False)
                except SmtpError as error:
                    logger.info("connection %d not opened: %s", number + 1, error)
                    results.put(_Retired(str(error)))
                    return
            while True:
                job = jobs.get()
                if job is None:
                    break
                if connection is None or connection.sock is None:
                    try:
                        connection = connect_with_retries(
                            self.config,
                            initial=False,
                            stop=halt,
                            connector=self.connector,
                            clock=self.clock,
                        )
                    except SmtpError as error:
                        results.put(_Requeue(job) if error.temporary else _Fatal(job, error))
                        results.put(_Retired(str(error)))
                        return
                self.limiter.wait()
                try:
                    delivery = transmit(connection, job.message, _wire(job.message))
                except _Lost as lost:
                    delivery = Delivery(
                        job.message.recipient, DeliveryStatus.PENDING, f"connection lost: {lost}"
                    )
                except _SenderRefused as error:
                    results.put(_Fatal(job, error))
                    results.put(_Retired(str(error)))
                    return
                results.put(_Done(job, delivery))
                job = None
            results.put(_Retired("finished"))
        except BaseException as error:  # a bug: hand it to the calling thread to raise
            results.put(_Fatal(job, error))
            results.put(_Retired(repr(error)))
        finally:
            if connection is not None:
                _quit(connection)

    # -- the calling thread's side ---------------------------------------------------

    def send_all(
        self,
        messages: Iterable[OutgoingMessage],
        record: Recorder,
        stop: threading.Event | None = None,
    ) -> None:
        """Send every message; call `record` (on this thread) with final outcomes as they come.

        Messages are drawn from the iterator only as connections become free, so memory stays
        flat however long the list. When `stop` is set, messages already handed to the server
        finish and the rest are left for the next run. Raises SmtpError (or a DigestError) when
        the send cannot go on; every outcome recorded before that stands. May be called again
        (a sender with more to send later): the pool is opened afresh.
        """
        if not self.entered:
            raise RuntimeError("use Mailer as a context manager")
        if self.first is None:
            self.first = connect_with_retries(
                self.config, initial=False, stop=stop, connector=self.connector, clock=self.clock
            )
        count = self.config.connections
        jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        results: queue.SimpleQueue[_Result] = queue.SimpleQueue()
        halt = threading.Event()
        workers = [
            threading.Thread(
                target=self._worker,
                args=(number, jobs, results, halt),
                name=f"smtp-{number + 1}",
                daemon=True,
            )
            for number in range(count)
        ]
        for worker in workers:
            worker.start()
        try:
            self._dispatch(iter(messages), record, stop, jobs, results, count, halt)
        finally:
            halt.set()
            _drain(jobs)
            for _ in workers:
                jobs.put(None)
            for worker in workers:
                worker.join(timeout=self.config.timeout + 5)

    def _dispatch(
        self,
        source: Iterator[OutgoingMessage],
        record: Recorder,
        stop: threading.Event | None,
        jobs: queue.SimpleQueue[_Job | None],
        results: queue.SimpleQueue[_Result],
        alive: int,
        halt: threading.Event,
    ) -> None:
        retries: list[_Job] = []
        ready: deque[OutgoingMessage] = deque()  # built ahead, not yet handed to a connection
        sequence = itertools.count()
        in_flight = 0
        exhausted = False
        fatal: BaseException | None = None
        last_retirement = ""
        stopped = False
        while True:
            stopped = stop is not None and stop.is_set()
            stopping = fatal is not None or alive == 0 or stopped
            if stopped:
                halt.set()  # a worker waiting to reconnect gives its message back at once
            if stopping:
                in_flight -= _drain(jobs, keep=retries)
            else:
                now = self.clock.monotonic()
                while in_flight < alive:
                    if retries and retries[0].due <= now:
                        job = heapq.heappop(retries)
                    elif (ready or not exhausted) and len(retries) < RETRY_BACKLOG:
                        message = ready.popleft() if ready else next(source, None)
                        if message is None:
                            exhausted = True
                            continue
                        job = _Job(now, next(sequence), message)
                    else:
                        break
                    jobs.put(job)
                    in_flight += 1
                # Build the next messages while the server handles these, so a connection that
                # comes free gets its next one at once. Built is not handed out: at most one
                # message per connection is still in flight, unrecorded.
                while not exhausted and len(ready) < alive and len(retries) < RETRY_BACKLOG:
                    message = next(source, None)
                    if message is None:
                        exhausted = True
                    else:
                        ready.append(message)
            if in_flight == 0:
                if stopping or (exhausted and not retries):
                    break
                wait = min(max(0.0, retries[0].due - self.clock.monotonic()), _POLL_SECONDS)
                self.clock.sleep(wait)
                continue
            try:
                arrived = [results.get(timeout=_POLL_SECONDS)]
            except queue.Empty:
                continue
            with contextlib.suppress(queue.Empty):
                while True:
                    arrived.append(results.get_nowait())
            settled: list[Delivery] = []
            for result in arrived:
                if isinstance(result, _Retired):
                    alive -= 1
                    last_retirement = result.reason
                    continue
                in_flight -= 1
                if isinstance(result, _Requeue):
                    heapq.heappush(retries, result.job)
                elif isinstance(result, _Fatal):
                    fatal = fatal or result.error
                    if result.job is not None:
                        heapq.heappush(retries, result.job)
                elif self._settle(result, retries, stopping):
                    settled.append(result.delivery)
            if settled:
                record(settled)
        left_pending = [job.last for job in retries if job.last is not None]
        if left_pending:
            record(left_pending)
        if fatal is not None:
            raise fatal
        if alive == 0 and (retries or ready or not exhausted) and not stopped:
            left = "some messages" if ready or not exhausted else f"{len(retries)} messages"
            raise SmtpError(
                f"SMTP {self.where}: the connection was lost and could not be reopened"
                f" ({last_retirement}); {left} were not sent; run `digest send` again to send"
                " them",
                temporary=True,
            )

    def _settle(self, result: _Done, retries: list[_Job], stopping: bool) -> bool:
        """True when the outcome is final; False when the message is queued for a retry."""
        job, delivery = result.job, result.delivery
        job.attempts += 1
        job.last = delivery
        retry = job.attempts <= self.config.retries
        if delivery.status is DeliveryStatus.PENDING and retry and not stopping:
            job.due = self.clock.monotonic() + self.config.retry_delay * 2 ** (job.attempts - 1)
            logger.info(
                "%s: %s; retry %d of %d",
                delivery.email,
                delivery.reply,
                job.attempts,
                self.config.retries,
            )
            heapq.heappush(retries, job)
            return False
        return True


def _drain(jobs: queue.SimpleQueue[_Job | None], keep: list[_Job] | None = None) -> int:
    """Take back jobs no worker has started; returns how many."""
    taken = 0
    while True:
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            return taken
        if job is not None:
            taken += 1
            if keep is not None:
                heapq.heappush(keep, job)
