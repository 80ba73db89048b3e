"""The mailboxes bounce reports arrive in: IMAP (through imapclient) and Maildir.

Each source hands every message to a callback that says whether it was handled; handled ones
are moved to the processed folder (never deleted), the rest are left untouched: IMAP
messages are read with BODY.PEEK so not even their \\Seen flag changes.
"""

from __future__ import annotations

import contextlib
import logging
import mailbox
import ssl
from collections.abc import Callable
from pathlib import Path

from digest.bounces.report import MAX_REPORT_BYTES
from digest.config.schema import ImapConfig
from digest.core.errors import DigestError

logger = logging.getLogger(__name__)

MAX_PER_RUN = 1000  # messages read in one run; the rest wait for the next
_BATCH = 50

Handler = Callable[[bytes], bool]  # True: handled, move it to the processed folder


class MailboxError(DigestError):
    """The bounce mailbox could not be reached or read."""


def _tls_context(settings: ImapConfig, ca_file: Path | None) -> ssl.SSLContext | None:
    """A context verifying the server's certificate against ca_file, else the system's CAs."""
    if not settings.tls:
        return None
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except OSError as error:
        reason = error.strerror if not isinstance(error, ssl.SSLError) else "no PEM certificate"
        raise MailboxError(f"bounces.imap.ca_file: cannot use {ca_file}: {reason}") from None


def _connect(settings: ImapConfig, ca_file: Path | None = None) -> object:
    from imapclient import IMAPClient

    context = _tls_context(settings, ca_file)
    try:
        client = IMAPClient(
            settings.host,
            port=settings.port,
            ssl=settings.tls,
            ssl_context=context,
            timeout=settings.timeout,
        )
    except ssl.SSLCertVerificationError as error:
        hint = (
            "; for a private CA or a self-signed certificate, set bounces.imap.ca_file"
            if ca_file is None
            else f" (trusting {ca_file})"
        )
        raise MailboxError(
            f"bounces.imap: {settings.host}:{settings.port}: certificate verification failed:"
            f" {error.verify_message}{hint}"
        ) from None
    except OSError as error:
        raise MailboxError(
            f"bounces.imap: cannot connect to {settings.host}:{settings.port}: {error}"
        ) from None
    try:
        client.login(settings.username, settings.password)
    except Exception as error:
        _logout(client)
        raise MailboxError(
            f"bounces.imap: {settings.host} refused the login of {settings.username}: {error}"
        ) from None
    return client


def _logout(client: object) -> None:
    try:
        client.logout()  # type: ignore[attr-defined]
    except Exception:  # the connection is going away either way
        with contextlib.suppress(Exception):
            client.shutdown()  # type: ignore[attr-defined]


def check_imap(settings: ImapConfig, ca_file: Path | None = None) -> None:
    """Log in and open the folder, or raise MailboxError saying why not."""
    client = _connect(settings, ca_file)
    try:
        client.select_folder(settings.folder, readonly=True)  # type: ignore[attr-defined]
    except Exception as error:
        raise MailboxError(
            f"bounces.imap: cannot open folder {settings.folder!r}: {error}"
        ) from None
    finally:
        _logout(client)


def read_imap(settings: ImapConfig, handle: Handler, ca_file: Path | None = None) -> int:
    """Hand every message in the folder to `handle`; move the handled ones. Returns how many
    messages were read."""
    from imapclient.exceptions import IMAPClientError

    client = _connect(settings, ca_file)
    imap = client  # typed loosely: imapclient ships no type information
    try:
        imap.select_folder(settings.folder)  # type: ignore[attr-defined]
        found = sorted(imap.search(["NOT", "DELETED"]))  # type: ignore[attr-defined]
        uids = found[-MAX_PER_RUN:]  # the newest first in line when a backlog builds up
        handled: list[int] = []
        for start in range(0, len(uids), _BATCH):
            batch = uids[start : start + _BATCH]
            sizes = imap.fetch(batch, ["RFC822.SIZE"])  # type: ignore[attr-defined]
            small = [
                uid
                for uid in batch
                if sizes.get(uid, {}).get(b"RFC822.SIZE", 0) <= MAX_REPORT_BYTES
            ]
            for uid in set(batch) - set(small):
                logger.warning("bounce mailbox: message %s is too large to be a report; left", uid)
            if not small:
                continue
            bodies = imap.fetch(small, ["BODY.PEEK[]"])  # type: ignore[attr-defined]
            for uid in small:
                data = bodies.get(uid, {}).get(b"BODY[]")
                if isinstance(data, bytes) and handle(data):
                    handled.append(uid)
        if handled:
            _move(imap, handled, settings.processed_folder)
        return len(uids)
    except (IMAPClientError, OSError) as error:
        raise MailboxError(f"bounces.imap: {settings.host}: {error}") from None
    finally:
        _logout(imap)


def _move(imap: object, uids: list[int], folder: str) -> None:
    """Move messages to `folder` (created if missing): MOVE, else COPY then delete."""
    if not imap.folder_exists(folder):  # type: ignore[attr-defined]
        imap.create_folder(folder)  # type: ignore[attr-defined]
    if imap.has_capability("MOVE"):  # type: ignore[attr-defined]
        imap.move(uids, folder)  # type: ignore[attr-defined]
        return
    imap.copy(uids, folder)  # type: ignore[attr-defined]
    imap.delete_messages(uids)  # type: ignore[attr-defined]
    if imap.has_capability("UIDPLUS"):  # type: ignore[attr-defined]
        imap.uid_expunge(uids)  # type: ignore[attr-defined]
    else:
        imap.expunge()  # type: ignore[attr-defined]


def read_maildir(path: Path, handle: Handler, processed_folder: str = "digest-processed") -> int:
    """Hand every message in a Maildir to `handle`; move the handled ones to its subfolder."""
    if not (path / "cur").is_dir() or not (path / "new").is_dir():
        raise MailboxError(f"bounces.maildir: {path} is not a Maildir (no cur/ and new/)")
    box = mailbox.Maildir(path, factory=None, create=False)
    processed = box.add_folder(processed_folder)
    read = 0
    for key in list(box.iterkeys())[:MAX_PER_RUN]:
        try:
            with box.get_file(key) as file:
                data = file.read(MAX_REPORT_BYTES + 1)
        except (KeyError, OSError):
            continue  # taken away by someone else meanwhile
        if len(data) > MAX_REPORT_BYTES:
            logger.warning("bounce Maildir: %s is too large to be a report; left", key)
            continue
        read += 1
        if handle(data):
            processed.add(box.get_message(key))
            box.discard(key)
    return read
