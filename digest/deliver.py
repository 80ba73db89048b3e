"""Hand messages to the SMTP server and report each recipient's outcome as it completes."""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from collections.abc import Callable, Iterable

from digest.config import SmtpConfig
from digest.message import OutgoingMessage
from digest.models import Delivery, DeliveryStatus, DigestError

logger = logging.getLogger(__name__)

Recorder = Callable[[Delivery], None]


def _reply(code: int, text: bytes | str) -> str:
    body = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(body.split())}"


class Mailer:
    """One authenticated SMTP connection, reused for every message of a send."""

    def __init__(self, smtp: SmtpConfig) -> None:
        self.config = smtp
        self.connection: smtplib.SMTP | None = None

    def __enter__(self) -> Mailer:
        self.connection = self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                self.connection.close()
            self.connection = None

    def _connect(self) -> smtplib.SMTP:
        config = self.config
        where = f"{config.host}:{config.port}"
        try:
            connection: smtplib.SMTP
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
        except smtplib.SMTPAuthenticationError as error:
            reply = _reply(error.smtp_code, error.smtp_error)
            raise DigestError(
                f"SMTP {where}: authentication failed ({reply}); check smtp.username and smtp.password"
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise DigestError(
                f"SMTP {where}: the server does not offer STARTTLS; set smtp.security to 'ssl'"
                " or, only for a local relay, 'none'"
            ) from None
        except ssl.SSLError as error:
            raise DigestError(f"SMTP {where}: TLS failed: {error.reason or error}") from None
        except (TimeoutError, smtplib.SMTPException, OSError) as error:
            raise DigestError(
                f"SMTP {where}: cannot connect: {error or type(error).__name__};"
                " check smtp.host and smtp.port"
            ) from None
        return connection

    def send_one(self, message: OutgoingMessage) -> Delivery:
        """Send one message; 5xx means failed, 4xx or a lost connection means pending."""
        assert self.connection is not None
        options = ["SMTPUTF8"] if message.smtputf8 else []
        if message.smtputf8 and not self.connection.has_extn("smtputf8"):
            return Delivery(
                message.recipient,
                DeliveryStatus.FAILED,
                "the server does not offer SMTPUTF8, needed for this address",
            )
        try:
            refused = self.connection.sendmail(
                message.sender, [message.recipient], message.data, mail_options=options
            )
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            status = DeliveryStatus.FAILED if code >= 500 else DeliveryStatus.PENDING
            return Delivery(message.recipient, status, _reply(code, text))
        except smtplib.SMTPResponseException as error:
            status = DeliveryStatus.FAILED if error.smtp_code >= 500 else DeliveryStatus.PENDING
            return Delivery(message.recipient, status, _reply(error.smtp_code, error.smtp_error))
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            self.connection = self._connect()
            return Delivery(message.recipient, DeliveryStatus.PENDING, f"connection lost: {error}")
        if refused:
            code, text = refused[message.recipient]
            return Delivery(message.recipient, DeliveryStatus.FAILED, _reply(code, text))
        return Delivery(message.recipient, DeliveryStatus.SENT, "250 accepted")

    def send_all(
        self,
        messages: Iterable[OutgoingMessage],
        record: Recorder,
        stop: threading.Event | None = None,
    ) -> None:
        """Send each message in turn, recording every outcome before the next one starts."""
        for message in messages:
            if stop is not None and stop.is_set():
                logger.info("stop requested: leaving the remaining messages pending")
                return
            record(self.send_one(message))
