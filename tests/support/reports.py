"""Bounce, complaint and auto-reply messages as real MTAs and mailbox providers write them."""

from __future__ import annotations

import secrets


def dsn(
    recipient: str,
    returned: bytes,
    *,
    status: str = "5.1.1",
    action: str = "failed",
    to: str = "bounces@example.org",
    diagnostic: str = "smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown",
    headers_only: bool = True,
    mangle_recipient: bool = False,
) -> bytes:
    """A Postfix-style RFC 3464 DSN returning the headers (or all) of `returned`."""
    boundary = f"b{secrets.token_hex(6)}"
    head = returned.split(b"\r\n\r\n", 1)[0] if headers_only else returned
    kind = "text/rfc822-headers" if headers_only else "message/rfc822"
    final = "someone-else@example.net" if mangle_recipient else recipient
    return (
        (
            f"Return-Path: <>\r\n"
            f"Delivered-To: {to}\r\n"
            f"From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\n"
            f"To: {to}\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@mx.example.com>\r\n"
            f"Auto-Submitted: auto-replied\r\n"
            f"MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status;\r\n"
            f' boundary="{boundary}"\r\n'
            f"\r\n"
            f"--{boundary}\r\n"
            f"Content-Description: Notification\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
            f"--{boundary}\r\n"
            f"Content-Description: Delivery report\r\n"
            f"Content-Type: message/delivery-status\r\n\r\n"
            f"Reporting-MTA: dns; mx.example.com\r\n\r\n"
            f"Final-Recipient: rfc822; {final}\r\n"
            f"Original-Recipient: rfc822;{final}\r\n"
            f"Action: {action}\r\n"
            f"Status: {status}\r\n"
            f"Diagnostic-Code: {diagnostic.format(r=final)}\r\n\r\n"
            f"--{boundary}\r\n"
            f"Content-Description: Undelivered Message Headers\r\n"
            f"Content-Type: {kind}\r\n\r\n"
        ).encode()
        + head
        + f"\r\n\r\n--{boundary}--\r\n".encode()
    )


def arf(recipient: str, returned: bytes, *, redact: bool = False) -> bytes:
    """An RFC 5965 abuse report, as Yahoo's and Outlook's feedback loops send them."""
    boundary = f"f{secrets.token_hex(6)}"
    rcpt = "" if redact else f"Original-Rcpt-To: {recipient}\r\n"
    return (
        (
            f"From: feedbackloop@comcast.example\r\n"
            f"To: bounces@example.org\r\n"
            f"Subject: FW: spam complaint\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@fbl.example>\r\n"
            f"MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=feedback-report;\r\n"
            f' boundary="{boundary}"\r\n'
            f"\r\n"
            f"--{boundary}\r\n"
            f"Content-Type: text/plain\r\n\r\n"
            f"This is an email abuse report for an email message received.\r\n\r\n"
            f"--{boundary}\r\n"
            f"Content-Type: message/feedback-report\r\n\r\n"
            f"Feedback-Type: abuse\r\n"
            f"User-Agent: SomeGenerator/1.0\r\n"
            f"Version: 1\r\n"
            f"{rcpt}\r\n"
            f"--{boundary}\r\n"
            f"Content-Type: message/rfc822\r\n\r\n"
        ).encode()
        + returned
        + f"\r\n--{boundary}--\r\n".encode()
    )


def out_of_office(to: str = "bounces@example.org", subject: str = "Automatic reply: Hi") -> bytes:
    """An Exchange/Outlook-style out-of-office reply."""
    return (
        f"From: Ann <ann@example.com>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.com>\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"X-Auto-Response-Suppress: All\r\n"
        f"Content-Type: text/plain\r\n\r\n"
        f"I am out of the office until Monday with limited access to email.\r\n"
    ).encode()


def vacation(to: str = "bounces@example.org") -> bytes:
    """A Gmail-style vacation responder reply: no Auto-Submitted, a subject and a header."""
    return (
        f"From: bob@example.com\r\n"
        f"To: {to}\r\n"
        f"Subject: Out of Office\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@mail.example.com>\r\n"
        f"X-Autoreply: yes\r\n"
        f"Precedence: auto_reply\r\n"
        f"Content-Type: text/plain\r\n\r\n"
        f"Away until 5 January. I will reply when I am back.\r\n"
    ).encode()


def plain_mail(to: str = "bounces@example.org") -> bytes:
    """A person writing to the bounce address: not a report."""
    return (
        f"From: Carol <carol@example.net>\r\n"
        f"To: {to}\r\n"
        f"Subject: Question about the newsletter\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.net>\r\n"
        f"Content-Type: text/plain\r\n\r\n"
        f"Hello, who do I ask about the newsletter?\r\n"
    ).encode()
