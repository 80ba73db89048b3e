"""Why a delivery failed, read from its status code, SMTP reply and error text; hard or soft.

The reasons and the rule for hard and soft follow Sisimai, the most thorough bounce analyser
(its documented reasons and `Sisimai::Fact`'s hardbounce): only an address that does not exist
(userunknown), a domain that does not exist (hostunknown), a mailbox that has moved (hasmoved)
and a host that accepts no mail at all (notaccept, unless its reply is temporary) are hard.
Everything else is soft and counted: a full mailbox, a filter, a block or policy refusal, spam
or virus detection, an expired or delayed delivery, a suspended account, rate limits, system,
network and content errors, and a reason that could not be told ("onhold", "undefined").

The order matters as it does in Sisimai: a reply that names a full mailbox or a suspended
account is that, even with a 5.1.1 beside it; "user unknown" counts for the address only at RCPT
(or with a status that says so), and the same words after DATA are a content filter.

Pure functions of short strings: the callers cut each text before it comes here, and every
pattern is a plain alternation or a bounded gap, so matching time stays linear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_DIAGNOSTIC = 4000  # characters of error text classified for one recipient

HARD_REASONS = frozenset({"userunknown", "hostunknown", "hasmoved"})
# Reasons a reader of one format may name early and the text may still overrule (Sisimai's
# "retried" reasons).
PROVISIONAL = frozenset(
    {
        "",
        "undefined",
        "onhold",
        "systemerror",
        "securityerror",
        "expired",
        "networkerror",
        "hostunknown",
        "userunknown",
    }
)

STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
REPLY = re.compile(r"(?<![\d.-])([245][0-5]\d)(?=[ -]|$)(?![\d.])")
_BEFORE_DATA = frozenset({"CONN", "EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT"})


def _any(*phrases: str) -> re.Pattern[str]:
    """One pattern for phrases separated by "|"; a phrase may hold "~", a gap of up to 60
    characters."""
    split = [phrase for text in phrases for phrase in text.split("|") if phrase]
    parts = [".{0,60}?".join(map(re.escape, phrase.split("~"))) for phrase in split]
    return re.compile("|".join(parts))


# Each table below is matched against lower-case text with runs of white space made one space.
_FULL = _any(
    "mailbox~full|mailbox is full|full mailbox|over quota|over the allowed quota|"
    "overquota|quota exceeded|quota~exceeded|exceeded~quota|exceeds~quota|"
    "quota violation|disk quota|mailbox size limit exceeded|mailbox~exceeded~limit|"
    "exceeded storage allocation|insufficient disk space|not enough~space|"
    "no space left on device|mailfolder is full|user's space has been used up|"
    "too many messages on the server|mailbox would exceed|too much mail data|"
    "boite du destinataire pleine|messages in recipient's mailbox exceeded|"
    "would exceed maximum allowed storage"
)
_TOO_BIG = _any(
    "message too big|message is too big|message too large|message is too large|"
    "message size exceeds|message size~exceeds|message length exceeds|exceeds size limit|"
    "exceeds~size limit|size limit exceeded|message exceeds~size|mail size limit|"
    "message file too big|size of the message~exceeds|email is too large|"
    "message exceeded~size"
)
_EXCEED = _any("message length exceeds administrative limit", "exceeded the limit of")
_SUSPEND = _any(
    "is currently suspended|has been suspended|account suspended|user suspended|"
    "mailbox currently suspended|temporarily suspended|has been disabled|"
    "account is disabled|account has been disabled|account disabled|mailbox disabled|"
    "mailbox is disabled|mailbox is frozen|user or domain is disabled|"
    "email account that you tried to reach is disabled|"
    "email account that you tried to reach is inactive|inactive account|"
    "account is inactive|account inactive|is a deactivated mailbox|deactivated|"
    "temporarily inactive|user is terminated|account~locked|temporary locked|"
    "archived recipient|this address no longer accepts mail|discontinued|is disabled|"
    "mailbox unavailable or access denied"
)
_MOVED = _any(" has been replaced by ", "has moved", "mailbox has moved", "no forwarding address")
_NO_RELAY = _any(
    "relay access denied|relaying denied|relay denied|relay not permitted|"
    "relaying not allowed|no relaying|unable to relay|not allowed to relay|"
    "not permitted to relay|as a relay|we don't handle mail for|insecure mail relay|"
    "not an open relay|this system is not configured to relay|relaying mail to |"
    "that domain isn't in my list of allowed rcpthost"
)
_AUTH = _any(
    "spf check failed|spf validation|spf fail|failed spf|spf) record|dkim signature|"
    "sender policy framework|domain authentication fail|"
    "dkim check failed|dkim validation|dmarc policy|dmarc check failed|dmarc validation|"
    "failed dmarc|unauthenticated email|sender authentication failed|"
    "does not pass~authentication|authentication checks|is not authorized to send|"
    "not designated~permitted sender"
)
_USER = _any(
    "user unknown|unknown user|user not found|user not known|user does not exist|"
    "user doesn't exist|user~does not exist|user~doesn't exist|user not exist|"
    "user~not exist|no such user|no such mailbox|no such recipient|no such address|"
    "no such person|no such account|no such local user|unknown recipient|"
    "recipient unknown|recipient not found|recipient does not exist|recipient not exist|"
    "recipient~was not found|recipient address rejected: user unknown|"
    "recipient address rejected: unknown user|recipient address rejected: invalid user|"
    "recipient address rejected: access denied|recipient address rejected: userunknown|"
    "recipient is not local|recipient is not accepted|recipient refuses to accept|"
    "recipient rejected|recipientnotfound|recipnotfound|recipient notfound|"
    "invalid recipient|invalid mailbox|invalid address|invalid user|"
    "not a valid recipient|not a valid user|not a valid mailbox|is not a known user|"
    "not a local address|mailbox not found|mailbox does not exist|mailbox~does not exist|"
    "mailbox unavailable|mailbox is unavailable|mailbox not available|mailbox invalid|"
    "mailbox is inactive|mailbox not present|unknown mailbox|"
    "no mailbox here by that name|no mailbox by that name|no mail box available|"
    "no account by that name|address does not exist|address unknown|"
    "address not present in directory|addressee unknown|email address does not exist|"
    "the address is unknown|requested action not taken: mailbox unavailable|"
    "email address could not be found|"
    "email account that you tried to reach does not exist|e-mail account does not exist|"
    "account does not exist|does not exist at the organization|"
    "there is no one at this address|unknown local part|unknown local-part|"
    "unknown or illegal alias|unknown address|bad destination mailbox address|badrcptto|"
    "not listed in domino directory|not listed in public name & address book|"
    "not listed in the public name & address book|user not listed|"
    "isn't in my list of valid recipients|unknown e-mail address|unknown email address|"
    "unknown virtual user|user missing home directory|no such person at this address|"
    "destination addresses were unknown|utilisateur inconnu|no existe|nessun utente|"
    "non-existent user|nonexistent user|non existent user|"
    "this user doesn't have a~account|could not be found in the directory|"
    "the user's email name is not found|this spectator does not exist"
)
_FILTERED = _any(
    "message filtered|user reject|user refuses to receive|"
    "refused due to recipient preferences|recipient is only accepting mail from|"
    "you have been blocked by the recipient|account is protected by|"
    "rejected due to user rules|is not accepting any mail"
)
_PTR = _any(
    "reverse dns|ptr record|no ptr|reverse lookup|cannot find your hostname|"
    "cannot resolve your address|client host rejected: cannot find your hostname|"
    "hostname does not resolve|no reverse"
)
_NOT_RFC = _any(
    "this message is not rfc 5322 compliant|rfc 5322|duplicate headers|"
    "multiple addresses in from|multiple from|not rfc compliant"
)
_REPUTATION = _any(
    "poor reputation|bad reputation|low reputation|sender reputation|ip reputation|"
    "domain reputation|reputation of your|ip address has a poor"
)
_CONTENT = _any(
    "improper use of 8-bit data in message header|message header size|header too long|"
    "illegal attachment|message contains bare|message contains invalid header|"
    "message is not rfc|content rejected|message content rejected|"
    "has been rejected for content reasons|too many received headers|"
    'too many "received" headers|mail loop'
)
_SENDER = _any(
    "sender address rejected|sender rejected|sender was rejected|"
    "sender email address rejected|sender verify failed|sender is in my black list|"
    "sender not pre-approved|invalid sender|domain of sender address|"
    "returned mail not accepted here|empty envelope senders not allowed|"
    "null sender is not allowed|bogus mail from|sender address has been blacklisted|"
    "your email address has been blacklisted|administrative prohibition|"
    "you are not allowed to post to this mailing list|not allowed to post to this group|"
    "may not exist, or you may not have permission to post|address rejected|"
    "mail from not owned by user"
)
_NOT_SENDER = _any("recipient address rejected", "sender ip address rejected", "5.1.0 address rej")
_HOST = _any(
    "host unknown|unknown host|host not found|host or domain name not found|"
    "domain does not exist|domain not found|domain name not found|no such domain|"
    "unknown domain|domain is not reachable|domain must exist|unrouteable address|"
    "unroutable address|no mx record|mx records point to non-existent hosts|"
    "all host address lookups failed permanently|couldn't find any host named|"
    "could not find any host named|name or service not known|name service error|"
    "host unreachable|mail domain mentioned in email address is unknown|"
    "the account or domain may not exist|dns error|not a registered domain|"
    "domain has no mx|can't resolve|unable to resolve"
)
_SPAM = _any(
    "spam|junk mail|bulk mail|looks like spam|unsolicited|blocked as spam|content filter|"
    "classified as~junk|message refused by~filter|mail appears to be unsolicited|"
    "your message looks like|message rejected as~suspect|identified as~junk|"
    "rejected by~anti-spam|score"
)
_SPEED = _any(
    "rate limit|ratelimit|rate-limit|sending rate|too many messages|too many emails|"
    "too many recipients from|too fast|throttl|exceeded~sending limit|"
    "temporarily deferred due to unexpected volume|try again later|sending too|"
    "messages per"
)
_TOO_MANY_CONN = _any(
    "too many connections|too many concurrent|too many simultaneous|connection limit|"
    "too many smtp sessions|too many open connections"
)
_BLOCKED = _any(
    "blocked using|blocked by|blocked -|blacklisted|block list|blocklist|blacklist|"
    "listed at|listed in|spamhaus|spamcop|barracudacentral|sorbs|rbl|dnsbl|"
    "client host rejected|client host~blocked|helo command rejected|your ip|"
    "ip address~rejected|not allowed to connect|connection refused|connection rejected|"
    "access denied|dynamic ip|dynamic/zombied|go away|"
    "please use the smtp server of your isp|refused to talk to me|"
    "not accepting connections|was blocked|blocked for abuse|550 blocked|"
    "banned sending ip|part of their network is on our block list|"
    "service not available, closing transmission channel|after initial connection"
)
_VIRUS = _any("virus", "malware", "infected", "malicious")
_POLICY = _any(
    "policy violation|violates~policy|policy rejection|rejected~policy|by policy|"
    "local policy|policy reasons|message rejected for policy|not authorized by policy|"
    "delivery not authorized|message refused|prohibited"
)
_SYSTEM = _any(
    "system error|internal error|local error|server error|server configuration error|"
    "local configuration error|configuration problem|mail system error|temporary failure|"
    "unable to process|delivery to file forbidden|delivery to pipe forbidden|"
    "local delivery failed|lmtp error after|routing loop|too many hops|loop detected|"
    "mail for~loops back to myself|service unavailable|server busy|timeout waiting|"
    "unable to connect|problem with the recipient's mail server"
)
_NETWORK = _any(
    "network error|network is unreachable|no route to host|connection timed out|"
    "connection reset|connection closed|connection dropped|lost connection|"
    "could not connect|couldn't connect|cannot connect|unable to connect|"
    "dns lookup failure|dns lookup failed|unable to get mx|temporary lookup failure|"
    "malformed or unexpected name server reply|timed out|timeout|read error|"
    "tls handshake"
)
_SYSTEM_FULL = _any(
    "mail system full|insufficient system storage|disk full|system storage|out of disk|"
    "server is full"
)
_NOT_ACCEPT = _any(
    "does not accept mail|host/domain does not accept mail|accepts no mail|null mx|"
    "nullmx|no mx record found for domain=|smtp protocol returned a permanent error|"
    "mail receiving disabled|name server: .: host not found|"
    "an mx or srv record indicated no smtp service|"
    "no host found for existing smtp connection"
)
_EXPIRED = _any(
    "retry timeout exceeded|retry time not reached|delivery expired|message expired|"
    "expired|too old|giving up|gave up|could not be delivered for|delivery time expired|"
    "delay reason|has not been delivered|has been delayed|message delayed|delayed|"
    "no action is required on your part|will continue|not yet been delivered|deferred|"
    "queue|frozen|time limit|was not delivered within|all hosts have been failing"
)
_STARTTLS = _any("starttls", "tls required", "must issue a starttls", "requiretls")
_SECURITY = _any(
    "authentication required|authentication failed|authentication credentials invalid|"
    "password|must be authenticated|encryption required|certificate|security"
)
_SUPPRESSED = _any("suppression list", "suppressed", "on the account-level suppression")
_MAILER = _any(
    "x-unix|pipe to |procmail|command failed|exit code|exited with|mail delivery program|"
    "unknown mailer error|local mailer"
)
_SYNTAX = _any(
    "syntax error|command unrecognized|unrecognized command|command not recognized|"
    "bad command|invalid command|line too long"
)
_VACATION = _any("vacation", "out of office", "out of the office", "auto-reply", "autoreply")

_BY_STATUS = {
    "2.1.5": "delivered",
    "4.1.6": "hasmoved",
    "4.1.7": "rejected",
    "4.1.8": "rejected",
    "4.1.9": "systemerror",
    "4.2.1": "blocked",
    "4.2.2": "mailboxfull",
    "4.2.3": "exceedlimit",
    "4.2.4": "filtered",
    "4.3.1": "systemfull",
    "4.3.2": "notaccept",
    "4.3.3": "systemerror",
    "4.3.5": "systemerror",
    "4.4.1": "expired",
    "4.4.2": "networkerror",
    "4.4.3": "systemerror",
    "4.4.4": "networkerror",
    "4.4.5": "systemfull",
    "4.4.6": "networkerror",
    "4.4.7": "expired",
    "4.4.8": "networkerror",
    "4.5.3": "systemerror",
    "4.5.5": "systemerror",
    "4.6.0": "contenterror",
    "4.6.2": "contenterror",
    "4.6.5": "contenterror",
    "4.7.1": "blocked",
    "4.7.2": "blocked",
    "4.7.5": "securityerror",
    "4.7.6": "securityerror",
    "4.7.7": "securityerror",
    "4.7.12": "securityerror",
    "4.7.15": "securityerror",
    "4.7.16": "mesgtoobig",
    "4.7.24": "authfailure",
    "4.7.25": "requireptr",
    "4.7.26": "authfailure",
    "5.1.0": "userunknown",
    "5.1.1": "userunknown",
    "5.1.2": "hostunknown",
    "5.1.3": "userunknown",
    "5.1.4": "filtered",
    "5.1.6": "hasmoved",
    "5.1.7": "rejected",
    "5.1.8": "rejected",
    "5.1.9": "systemerror",
    "5.1.10": "notaccept",
    "5.2.0": "filtered",
    "5.2.1": "filtered",
    "5.2.2": "mailboxfull",
    "5.2.3": "exceedlimit",
    "5.2.4": "filtered",
    "5.3.0": "systemerror",
    "5.3.1": "systemfull",
    "5.3.2": "notaccept",
    "5.3.3": "systemerror",
    "5.3.4": "mesgtoobig",
    "5.3.5": "systemerror",
    "5.4.0": "networkerror",
    "5.4.3": "systemerror",
    "5.4.4": "hostunknown",
    "5.5.2": "syntaxerror",
    "5.5.3": "toomanyconn",
    "5.5.4": "systemerror",
    "5.5.5": "systemerror",
    "5.5.6": "syntaxerror",
    "5.7.13": "suspend",
    "5.7.16": "mesgtoobig",
    "5.7.17": "hasmoved",
    "5.7.18": "hasmoved",
    "5.7.20": "authfailure",
    "5.7.21": "authfailure",
    "5.7.22": "authfailure",
    "5.7.23": "authfailure",
    "5.7.24": "authfailure",
    "5.7.25": "requireptr",
    "5.7.26": "authfailure",
    "5.7.27": "notaccept",
    "5.7.28": "spamdetected",
    "5.7.29": "authfailure",
    "5.7.30": "failedstarttls",
}
for _minor in range(0, 31):
    _BY_STATUS.setdefault(f"5.6.{_minor}", "contenterror")
for _minor in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15, 19):
    _BY_STATUS.setdefault(f"5.7.{_minor}", "securityerror")


@dataclass(frozen=True)
class Failure:
    """What is known of one recipient's failure before it is classified."""

    status: str = ""  # "5.1.1"
    reply: str = ""  # "550"
    command: str = ""  # RCPT, DATA, MAIL, CONN, EHLO... when the text says
    text: str = ""  # the diagnostic: the SMTP reply and what the MTA said about it
    action: str = ""  # a DSN's action: failed, delayed...
    preset: str = ""  # a reason the reader of one format already knows
    unix: bool = False  # the failure came from a local program, not SMTP


def squeeze(text: str) -> str:
    """Lower-case text with every run of white space one space, cut to MAX_DIAGNOSTIC."""
    return " ".join(text[: MAX_DIAGNOSTIC * 2].lower().split())[:MAX_DIAGNOSTIC]


def find_status(text: str) -> str:
    """The first enhanced status code (RFC 3463) in text, e.g. '5.1.1', or ''."""
    match = STATUS.search(text)
    return ".".join(match.groups()) if match else ""


def find_reply(text: str) -> str:
    """The first SMTP reply code in text, e.g. '550', or ''."""
    match = REPLY.search(text)
    return match.group(1) if match else ""


def find_command(text: str) -> str:
    """The SMTP command a failure answered, as the text says, else ''."""
    lowered = text.lower()
    for pattern, command in _COMMANDS:
        if pattern.search(lowered):
            return command
    return ""


_COMMANDS = (
    (re.compile(r"end of data|after data|in reply to data|>>> data|data command"), "DATA"),
    (re.compile(r"\brcpt\b|does not like recipient|recipient address"), "RCPT"),
    (re.compile(r"mail from|mail command|>>> mail|does not like sender|sender address"), "MAIL"),
    (re.compile(r"initial connection|greeting|after connect|refused to talk to me"), "CONN"),
    (re.compile(r"\behlo\b|\bhelo\b"), "EHLO"),
)


def reason_of(failure: Failure) -> str:
    """The failure's reason, one of Sisimai's reason names ('userunknown', 'mailboxfull'...)."""
    status = failure.status
    if status.startswith("2."):
        return "delivered"
    preset = failure.preset
    if preset and preset not in PROVISIONAL:
        return preset
    text = squeeze(failure.text)
    named = _BY_STATUS.get(status, "")
    if named == "suspend" or preset == "suspend":
        return "suspend"
    found = _first_pass(failure, text, named)
    if found:
        return found
    found = _second_pass(failure, text, named)
    if found:
        return found
    if failure.action.startswith("delay"):
        return "expired"
    if _VACATION.search(text):
        return "vacation"
    return "onhold" if text else "undefined"


def _first_pass(failure: Failure, text: str, named: str) -> str:
    """Sisimai's first look: the reasons a status code or a telling phrase decides."""
    command, preset = failure.command, failure.preset
    if named == "mailboxfull" or _FULL.search(text):
        return "mailboxfull"
    if named == "mesgtoobig" or _TOO_BIG.search(text):
        return "mesgtoobig"
    if named == "exceedlimit" or _EXCEED.search(text):
        return "exceedlimit"
    if failure.reply == "525" or _SUSPEND.search(text):
        return "suspend"
    if preset == "hasmoved" or " has been replaced by " in text:
        return "hasmoved"
    if command not in ("CONN", "EHLO", "HELO") and _NO_RELAY.search(text):
        return "norelaying"
    if named == "authfailure" or _AUTH.search(text):
        return "authfailure"
    if _user_unknown(failure, text, named):
        return "userunknown"
    if _filtered(failure, text, named):
        return "filtered"
    if named == "requireptr" or _PTR.search(text):
        return "requireptr"
    if _NOT_RFC.search(text):
        return "notcompliantrfc"
    if _REPUTATION.search(text):
        return "badreputation"
    if (named == "contenterror" and _CONTENT.search(text)) or _CONTENT.search(text):
        return "contenterror"
    if _rejected(failure, text, named):
        return "rejected"
    if preset == "hostunknown":
        return "hostunknown"
    if named == "hostunknown":
        return "" if _NETWORK.search(text) else "hostunknown"
    if _HOST.search(text) and not _NETWORK_FIRST.search(text):
        return "hostunknown"
    if _SPAM.search(text):
        return "spamdetected"
    if _SPEED.search(text) and not _BLOCKED.search(text):
        return "speeding"
    if named == "toomanyconn" or _TOO_MANY_CONN.search(text):
        return "toomanyconn"
    if named == "blocked" or _BLOCKED.search(text):
        return "blocked"
    return ""


_NETWORK_FIRST = _any("dns lookup failure", "temporary lookup failure", "try again")


def _user_unknown(failure: Failure, text: str, named: str) -> bool:
    """A 5.1.1-style status not contradicted by the text, a reader's finding, or 'user unknown'
    words in the answer to RCPT."""
    if named == "userunknown" or failure.preset == "userunknown":
        conflicting = (_NO_RELAY, _BLOCKED_STRONG, _FULL, _MOVED_STRONG, _SENDER_STRONG)
        return not any(pattern.search(text) for pattern in conflicting)
    return failure.command == "RCPT" and bool(_USER.search(text))


_BLOCKED_STRONG = _any("blocked using", "blacklisted", "spamhaus", "client host rejected")
_MOVED_STRONG = _any(" has been replaced by ")
_SENDER_STRONG = _any("sender address rejected", "sender verify failed", "domain of sender address")


def _filtered(failure: Failure, text: str, named: str) -> bool:
    if named == "filtered":
        return bool(_USER.search(text) or _FILTERED.search(text))
    if failure.command in _BEFORE_DATA:
        return False
    return bool(_FILTERED.search(text) or _USER.search(text))


def _rejected(failure: Failure, text: str, named: str) -> bool:
    """The sender, not the recipient, was refused."""
    if named == "rejected":
        return True
    if _NOT_SENDER.search(text) or not _SENDER.search(text):
        return False
    if failure.command in ("MAIL", "DATA"):
        return True
    return named in ("", "securityerror", "systemerror")


def _second_pass(failure: Failure, text: str, named: str) -> str:
    """Sisimai's fallback: phrases for the other reasons, then the status code alone."""
    if named and named not in PROVISIONAL and not failure.unix:
        return named
    for pattern, reason in _FALLBACK:
        if pattern.search(text):
            return reason
    if named:
        return named
    if failure.status[:3] in ("5.6", "4.6"):
        return "contenterror"
    if failure.status[:3] in ("5.7", "4.7"):
        return "securityerror"
    if failure.unix:
        return "mailererror"
    if _SYNTAX.search(text):
        return "syntaxerror"
    if failure.action.startswith(("delay", "expire")):
        return "expired"
    if failure.command in ("EHLO", "HELO"):
        return "blocked"
    return ""


_FALLBACK = (
    (_FULL, "mailboxfull"),
    (_AUTH, "authfailure"),
    (_REPUTATION, "badreputation"),
    (_SPEED, "speeding"),
    (_SPAM, "spamdetected"),
    (_VIRUS, "virusdetected"),
    (_POLICY, "policyviolation"),
    (_NO_RELAY, "norelaying"),
    (_SYSTEM, "systemerror"),
    (_NETWORK, "networkerror"),
    (_SUSPEND, "suspend"),
    (_CONTENT, "contenterror"),
    (_SYSTEM_FULL, "systemfull"),
    (_NOT_ACCEPT, "notaccept"),
    (_EXPIRED, "expired"),
    (_STARTTLS, "failedstarttls"),
    (_SECURITY, "securityerror"),
    (_SUPPRESSED, "suppressed"),
    (_MAILER, "mailererror"),
)


def implied_command(text: str, status: str = "") -> str:
    """The command a failure answered when its notice does not say: a mailbox that does not
    exist is refused at RCPT, where mail systems check it, unless the status code names
    another cause (a 5.2.1 filter wording its refusal the same way) or the text says DATA."""
    if find_command(text) or _BY_STATUS.get(status):
        return ""
    return "RCPT" if is_user_unknown_text(text) else ""


def is_hard(reason: str, code: str = "") -> bool:
    """Sisimai's rule: a reason that says the address cannot receive mail at all is hard; a
    host that accepts no mail is hard unless its reply or status is temporary (4xx)."""
    if reason in HARD_REASONS:
        return True
    if reason != "notaccept":
        return False
    return not code.startswith("4")


def is_user_unknown_text(text: str) -> bool:
    """Whether the words say the mailbox does not exist."""
    return bool(_USER.search(squeeze(text)))
