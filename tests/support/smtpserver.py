"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class Received:
    """One accepted message: envelope and parsed content."""

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes

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
    """Faults to inject: addresses to reject or defer, and how."""

    reject: dict[str, str] = field(default_factory=dict)
    defer: dict[str, int] = field(default_factory=dict)
    defer_reply: str = "451 4.3.0 Try again later"


class RecordingHandler:
    """aiosmtpd handler keeping every accepted message, applying the script's faults."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script = Script()
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        lowered = address.lower()
        if lowered in self.script.reject:
            return self.script.reject[lowered]
        if self.script.defer.get(lowered, 0) > 0:
            self.script.defer[lowered] -= 1
            return self.script.defer_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content: Any = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else str(content).encode()
        with self.lock:
            self.received.append(Received(str(envelope.mail_from), tuple(envelope.rcpt_tos), data))
        return "250 Message accepted for delivery"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpServer:
    """aiosmtpd on 127.0.0.1 at a free port; use as a context manager."""

    def __init__(self) -> None:
        self.handler = RecordingHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=free_port())

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.controller.port)

    @property
    def received(self) -> list[Received]:
        """Messages accepted so far."""
        return list(self.handler.received)

    def to(self, address: str) -> list[Received]:
        """Messages accepted for one recipient."""
        return [r for r in self.received if address.lower() in (x.lower() for x in r.recipients)]

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
