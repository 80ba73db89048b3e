"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts and injects faults.

The script can reject or defer recipients, drop the connection in the middle of a message,
answer slowly, refuse connections with 421, require AUTH, and speak STARTTLS or implicit TLS
with a self-signed certificate made at test time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email
import email.policy
import ipaddress
import itertools
import os
import random
import socket
import ssl
import threading
import time
import warnings
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Received:
    """One accepted message: envelope and parsed content."""

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()

    @property
    def message(self) -> EmailMessage:
        """The message parsed with the modern email API."""
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def part(self, subtype: str) -> str:
        """The decoded text/plain or text/html body."""
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        content = body.get_content()
        assert isinstance(content, str)
        return content


@dataclass
class Script:
    """Faults to inject.

    reject: address -> permanent reply for RCPT. defer: address -> how many times to answer
    RCPT with `defer_reply` before accepting. drop_at: DATA numbers (1-based, across all
    connections) at which the connection is cut instead of answering; that message is not
    kept. data_delay: seconds to wait before answering each DATA. hold_after: DATA commands
    after that many wait until `release` is set (at most a minute). data_together: hold the first
    DATA commands until this many are being answered at once (10 s at most), so that a test of
    sending in parallel needs no luck with timing. refuse_connections: how many of the next
    connections get `refuse_reply` as their greeting and are closed. reject_sender: a reply for
    every MAIL FROM, to refuse the sender.
    """

    reject: dict[str, str] = field(default_factory=dict)
    defer: dict[str, int] = field(default_factory=dict)
    defer_reply: str = "451 4.3.0 Try again later"
    drop_at: set[int] = field(default_factory=set)
    data_delay: float = 0.0
    data_together: int = 0
    hold_after: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    refuse_connections: int = 0
    refuse_reply: str = "421 4.3.2 Too busy, try again later"
    reject_sender: str | None = None


class RecordingHandler:
    """aiosmtpd handler keeping every accepted message, applying the script's faults."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script = Script()
        self.lock = threading.Lock()
        self.data_commands = 0
        self.connections = 0
        self.active = 0
        self.peak_active = 0
        self.rcpt_attempts: dict[str, int] = {}
        self.rcpt_moments: dict[str, list[float]] = {}  # time.monotonic() of each RCPT
        self.data_active = 0
        self.peak_data = 0  # the most DATA commands being answered at once
        self._together = asyncio.Event()
        self.pipelining = True

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # aiosmtpd reads pipelined commands correctly but does not say so; offer it as Postfix does.
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.script.reject_sender:
            return self.script.reject_sender
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        lowered = address.lower()
        with self.lock:
            self.rcpt_attempts[lowered] = self.rcpt_attempts.get(lowered, 0) + 1
            self.rcpt_moments.setdefault(lowered, []).append(time.monotonic())
        if lowered in self.script.reject:
            return self.script.reject[lowered]
        if self.script.defer.get(lowered, 0) > 0:
            self.script.defer[lowered] -= 1
            return self.script.defer_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.data_commands += 1
            number = self.data_commands
            self.data_active += 1
            self.peak_data = max(self.peak_data, self.data_active)
            together = self.data_active >= self.script.data_together
        try:
            return await self._data(server, envelope, number, together)
        finally:
            with self.lock:
                self.data_active -= 1

    async def _data(self, server: SMTP, envelope: Envelope, number: int, together: bool) -> str:
        if together:
            self._together.set()
        elif not self._together.is_set():
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._together.wait(), 10)
            finally:  # the others are not coming, or the client gave up: hold nobody from now on
                self._together.set()
        if self.script.data_delay:
            await asyncio.sleep(self.script.data_delay)
        if self.script.hold_after and number > self.script.hold_after:
            deadline = time.monotonic() + 60  # a guard: a test that never releases still ends
            while not self.script.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        if number in self.script.drop_at:
            assert server.transport is not None
            server.transport.abort()
            return "421 4.4.2 Connection dropped"
        content: Any = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else str(content).encode()
        with self.lock:
            self.received.append(
                Received(
                    str(envelope.mail_from),
                    tuple(envelope.rcpt_tos),
                    data,
                    tuple(envelope.mail_options),
                )
            )
        return "250 Message accepted for delivery"


class ScriptedSMTP(SMTP):
    """aiosmtpd's SMTP session, counting connections and able to refuse them with 421."""

    async def _handle_client(self) -> None:
        handler: RecordingHandler = self.event_handler
        with handler.lock:
            handler.connections += 1
            refuse = handler.script.refuse_connections > 0
            if refuse:
                handler.script.refuse_connections -= 1
            else:
                handler.active += 1
                handler.peak_active = max(handler.peak_active, handler.active)
        if refuse:
            await self.push(handler.script.refuse_reply)
            assert self.transport is not None
            self.transport.close()
            return
        try:
            await super()._handle_client()
        finally:
            with handler.lock:
                handler.active -= 1


class Authenticator:
    """Accept exactly one user name and password."""

    def __init__(self, username: str, password: str) -> None:
        self.credentials = (username.encode(), password.encode())
        self.attempts = 0

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.attempts += 1
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == self.credentials
        return AuthResult(success=ok, handled=False)


# Parallel test workers (pytest-xdist) each take ports from a block of their own, below the
# kernel's ephemeral range, so a port one worker probed free is never handed to another worker's
# server before the first one binds it.
_PORT_BLOCK = 1500
_FIRST_PORT = 17000
# Each run starts at a random place in its block, so two runs on one machine rarely meet.
_next_port = itertools.count(random.randrange(_PORT_BLOCK))


def _worker_number() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = name.removeprefix("gw")
    return int(digits) % 10 if digits.isdigit() else 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, from this worker's block."""
    base = _FIRST_PORT + _worker_number() * _PORT_BLOCK
    for _ in range(_PORT_BLOCK):
        port = base + next(_next_port) % _PORT_BLOCK
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}-{base + _PORT_BLOCK - 1}")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1 and localhost, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "digest test server")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Controller(Controller):
    def factory(self) -> SMTP:
        with warnings.catch_warnings():
            # AUTH without TLS is deliberate here: it lets plain-text tests exercise AUTH.
            warnings.simplefilter("ignore", UserWarning)
            return ScriptedSMTP(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    """aiosmtpd on 127.0.0.1 at a free port; use as a context manager.

    tls: None (plain), "starttls" (offers STARTTLS) or "ssl" (implicit TLS); needs `certificate`
    (cert, key). auth: (username, password) to require AUTH; over plain connections AUTH is
    allowed without TLS so tests can exercise it. smtputf8: whether SMTPUTF8 is offered;
    pipelining: whether PIPELINING (RFC 2920) is offered.
    """

    def __init__(
        self,
        *,
        tls: str | None = None,
        certificate: tuple[Path, Path] | None = None,
        auth: tuple[str, str] | None = None,
        smtputf8: bool = True,
        pipelining: bool = True,
    ) -> None:
        self.handler = RecordingHandler()
        self.handler.pipelining = pipelining
        self.authenticator = Authenticator(*auth) if auth else None
        options: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        context = None
        if tls is not None:
            assert certificate is not None, "TLS needs a certificate"
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(certificate[0]), str(certificate[1]))
        if tls == "starttls":
            options["tls_context"] = context
            options["require_starttls"] = True
        if self.authenticator is not None:
            options["authenticator"] = self.authenticator
            options["auth_required"] = True
            options["auth_require_tls"] = tls is not None
        self.controller = _Controller(
            self.handler,
            hostname="127.0.0.1",
            port=free_port(),
            ssl_context=context if tls == "ssl" else None,
            **options,
        )

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.controller.port)

    @property
    def script(self) -> Script:
        """The faults to inject; change it at any time."""
        return self.handler.script

    @property
    def received(self) -> list[Received]:
        """Messages accepted so far."""
        with self.handler.lock:
            return list(self.handler.received)

    def to(self, address: str) -> list[Received]:
        """Messages accepted for one recipient."""
        return [r for r in self.received if address.lower() in (x.lower() for x in r.recipients)]

    def counts(self) -> dict[str, int]:
        """How many messages each recipient (lower-cased) received."""
        counts: dict[str, int] = {}
        for item in self.received:
            for recipient in item.recipients:
                counts[recipient.lower()] = counts.get(recipient.lower(), 0) + 1
        return counts

    @property
    def connections(self) -> int:
        """Connections accepted so far, refused ones included (the start-up probe excluded)."""
        return self.handler.connections

    @property
    def peak_connections(self) -> int:
        """The most sessions open at the same time."""
        return self.handler.peak_active

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        with self.handler.lock:
            self.handler.connections = 0
            self.handler.peak_active = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
