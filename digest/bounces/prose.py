"""Bounces written as prose: whom a plain-text notice names, and what it says about each.

Many mail systems send no delivery-status part at all: qmail ("Hi. This is the qmail-send
program"), Exim ("A message that you sent could not be delivered... The following address(es)
failed:"), Postfix's and Sendmail's older notices, Exchange 2003 ("The following recipient(s)
could not be reached"), Lotus Domino and Notes ("was not delivered to: ... because:"), Gmail's
older notices ("Delivery to the following recipient failed permanently"), OpenSMTPD, DragonFly,
IMail, MailFoundry, MailMarshal, Amazon SES, Japanese carriers and many more. Their notices
share a shape: the failed address on a line of its own (alone, in angle brackets, quoted, or
followed by a colon and the error), then the remote server's reply or the system's own words,
then the returned message. This module reads that shape:

- the notice is the text before the returned message (a known separator line, or the first
  line that starts a header block);
- a failed address is an address on such a line, or after a label ("Recipient:", "RCPT TO:",
  "Unknown user:") or a phrase ("delivering your mail to"), that is not the notice's own
  sender or addressee, the returned message's sender, or a postmaster;
- its error text is what follows it, up to the next failed address;
- failing all of those, the X-Failed-Recipients header, then the returned message's To.

Phrases some systems use for one cause (qmail's "no mailbox here by that name", Domino's "not
listed in Domino Directory", Exim's "Unrouteable address") are named here as the reason; the
rest is left to digest.bounces.reason. Pure: text in, findings out, every scan bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NOTICE = 64 * 1024  # characters of a notice read
MAX_FAILURES = 50
_DIAGNOSTIC = 1500  # characters of error text kept for one address

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}"
_DOMAIN = r"(?:[A-Za-z0-9\u00a0-\uffff-]{1,63}\.){1,8}[A-Za-z\u00a0-\uffff]{2,63}"
ADDRESS = re.compile(rf"(?<![\w.+-])({_LOCAL}@{_DOMAIN})(?![\w-])")
_ALONE = re.compile(
    rf"^[\s>*\-]{{0,12}}[\"'<(]?\s?(?:rcpt to:\s*<?)?({_LOCAL}@{_DOMAIN})[>\"')]?"
    r"(?:[ \t]*:(?:[ \t]+(.{0,400}))?|[ \t]+on[ \t]+\d.{0,60}|[ \t]+\(.{0,120}\)|"
    r"[ \t]+(\S.{0,300}))?[ \t]*$"
)
_LABELLED = re.compile(
    r"(?:recipient address|original recipient|final recipient|failed recipients?|"
    r"recipients?|rcpt to|unknown user|invalid recipient|invalid address|bad address|"
    r"addressee|destination|address|user|smtp)\s*[:=]\s*\"?<?"
    rf"({_LOCAL}@{_DOMAIN})",
    re.IGNORECASE,
)
_AFTER_COLON = re.compile(rf"^[^@:]{{1,60}}:\s*[\"<]?({_LOCAL}@{_DOMAIN})[>\"]?\s*\.?\s*$")
_SENTENCE = re.compile(
    r"(?:delivering your (?:mail|message) to|deliver(?:ed|y)? (?:your (?:mail|message) )?to"
    r"|(?:mail|message|e-?mail) (?:sent )?to|could not be delivered to|not delivered to|"
    r"did not reach the following recipient|undeliverable to|delivery to|addressed to|"
    r"failed for|unable to deliver (?:message )?to|rejected by|following address(?:es)?)"
    r"\s*:?\s*\"?<?"
    rf"({_LOCAL}@{_DOMAIN})",
    re.IGNORECASE,
)
# Lines where the returned message (or its headers) starts: the notice ends before them.
_RETURNED = re.compile(
    r"^[ \t]*(?:-{2,}|={2,}|\*{2,}|_{2,})?[ \t]*(?:"
    r"this is a copy of the message|below this line is a copy of the message|"
    r"original message follows|original message|unsent message follows|"
    r"returned message|the header of the original message|below is a copy of the original|"
    r"message headers follow|message header follows|original message headers|"
    r"included is a copy of the message header|attachment is a copy of the message|"
    r"a copy of the original message|copy of the message|unsent message below|"
    r"the original message was(?! received)|headers of the original|original message header|"
    r"received message|forwarded message|original mail|"
    r"content-type: message/rfc822|content-type: text/rfc822-headers)",
    re.IGNORECASE | re.MULTILINE,
)
_HEADER_START = re.compile(
    r"^(?:received|return-path|message-id|dkim-signature|x-[a-z-]+|mime-version):\s",
    re.IGNORECASE | re.MULTILINE,
)
_SENDER_BEFORE = re.compile(r"(?:from|by|sender)\W{0,3}$")
_QUOTED_HEADER = re.compile(r"^\s*(?:to|cc|bcc|from|subject|sent|date|reply-to):\s", re.I)
_NOT_A_RECIPIENT = re.compile(
    r"^(?:postmaster|mailer-daemon|mailer_daemon|mailerdaemon|mail-daemon|root|"
    r"noreply|no-reply|abuse|hostmaster|daemon|mdaemon|bounce[s]?)@",
    re.IGNORECASE,
)
_PRESETS = (
    (
        "userunknown",
        re.compile(
            r"no mailbox here by that name|not listed in (?:the )?(?:domino directory|"
            r"public name & address book)|user not listed in|e-mail account does not exist at|"
            r"email account that you tried to reach does not exist|unknown user:|"
            r"user unknown in (?:local recipient|virtual (?:alias|mailbox)) table|"
            r"recipnotfound|recipientnotfound|resolver\.adr\.recip|"
            r"address not present in directory|"
            r"the recipient name is not recognized|invalid final delivery userid|"
            r"invalid recipient:",
            re.IGNORECASE,
        ),
    ),
    (
        "hostunknown",
        re.compile(
            r"couldn't find any host named|could not find any host named|unrouteable address|"
            r"unroutable address|mx records point to non-existent hosts|"
            r"all host address lookups failed permanently|domain name not found|"
            r"host or domain name not found|host not found \(authoritative\)|"
            r"no such domain at this location|bad destination host",
            re.IGNORECASE,
        ),
    ),
    ("mailboxfull", re.compile(r"mailbox is full|over quota|quota exceeded", re.IGNORECASE)),
    (
        "notaccept",
        re.compile(r"an mx or srv record indicated no smtp service|does not accept mail", re.I),
    ),
)


@dataclass(frozen=True)
class ProseFailure:
    """One failed address a notice names, with what it says about it."""

    address: str
    text: str  # the error text for this address (else the notice's)
    preset: str = ""  # a reason the notice's own words settle, if any


def notice_of(text: str) -> str:
    """The notice: the text before the returned message, at most MAX_NOTICE characters."""
    text = text[:MAX_NOTICE].replace("\r\n", "\n").replace("\r", "\n")
    cut = len(text)
    match = _RETURNED.search(text)
    if match is not None and match.start() > 0:
        cut = match.start()
    header = _HEADER_START.search(text, 0, cut)
    if header is not None and header.start() > 40:
        cut = header.start()
    return text[:cut]


def _excluded(address: str, own: frozenset[str]) -> bool:
    return address.lower() in own or bool(_NOT_A_RECIPIENT.match(address))


def failures(
    notice: str, own: frozenset[str], fallback: tuple[str, ...] = (), *, loose: bool = False
) -> list[ProseFailure]:
    """The failed addresses a notice names, each with its error text; `own` are addresses
    that are not recipients (the notice's and the returned message's senders), `fallback`
    the addresses to use when the notice names none (X-Failed-Recipients, the returned To).
    With `loose`, failing those, any address in the notice that is not a sender's."""
    lines = notice.split("\n")[:4000]
    found: dict[str, int] = {}  # address -> index of the line naming it
    quoted: list[str] = []
    for index, line in enumerate(lines):
        if "@" not in line or len(line) > 1000:
            continue
        if _QUOTED_HEADER.match(line):
            quoted.append(line)  # "  To: ..." in "Your message ... did not reach": the original's
            continue
        previous = lines[index - 1].strip() if index else ""
        for address in _addresses_on(line, starts_block=not previous or previous.endswith(":")):
            if not _excluded(address, own) and address.lower() not in found:
                found[address.lower()] = index
        if len(found) >= MAX_FAILURES:
            break
    if not found:
        for match in ADDRESS.finditer("\n".join(quoted)):
            fallback = (*fallback, match.group(1).strip("."))
        for address in fallback:
            if address and not _excluded(address, own):
                found.setdefault(address.lower(), -1)
    if not found and loose:
        for match in ADDRESS.finditer(notice[:MAX_NOTICE]):
            address = match.group(1).strip(".")
            before = notice[max(0, match.start() - 12) : match.start()].lower()
            if not _excluded(address, own) and not _SENDER_BEFORE.search(before):
                found.setdefault(address.lower(), _line_of(notice, match.start()))
            if len(found) >= MAX_FAILURES:
                break
    starts = sorted(set(found.values()))
    result = []
    for address, start in found.items():
        text = _text_after(lines, start, starts) if start >= 0 else ""
        if not text.strip():
            text = notice
        result.append(ProseFailure(address, text[: _DIAGNOSTIC * 4], _preset(text, notice)))
    return result


def _addresses_on(line: str, *, starts_block: bool) -> list[str]:
    """The recipient addresses a line of a notice names, by its shape. An address followed
    by free text counts only where a block starts (after a blank line or a colon), not in
    the middle of a paragraph."""
    alone = _ALONE.match(line)
    if alone is not None and (alone.group(3) is None or starts_block):
        return [alone.group(1).strip(".")]
    labelled = [m.group(1).strip(".") for m in _LABELLED.finditer(line)]
    if labelled:
        return labelled
    after_colon = _AFTER_COLON.match(line)
    if after_colon is not None and not _QUOTED_HEADER.match(line):
        return [after_colon.group(1).strip(".")]
    return [m.group(1).strip(".") for m in _SENTENCE.finditer(line)]


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset)


def _text_after(lines: list[str], start: int, starts: list[int]) -> str:
    """The address's line and those after it, up to the next address's line."""
    later = [s for s in starts if s > start]
    end = min(later[0] if later else len(lines), start + 30)
    chosen = lines[start:end]
    if end - start <= 1 and start > 0:
        chosen = lines[max(0, start - 3) : end]  # "...failed for: <addr>" with text before
    return "\n".join(chosen)[:_DIAGNOSTIC]


def _preset(text: str, notice: str) -> str:
    """A reason the address's error text (else the whole notice) settles by its own words."""
    for haystack in (text, notice[: _DIAGNOSTIC * 4]):
        for reason, pattern in _PRESETS:
            if pattern.search(haystack):
                return reason
    return ""
