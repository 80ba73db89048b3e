"""Act on bounce and complaint reports: tie each to a delivery digest made, then suppress.

A report only acts when it is tied to a delivery digest recorded: by the VERP token in the
envelope address, else by digest's own Message-ID, else (the fallback) by an address delivered
to in the last 14 days. Anyone can write to the bounce address, so:

- a token or Message-ID that does not verify ties nothing, whatever else the report names,
  and neither does an address digest did not mail lately ("forged");
- a mailed report carrying neither is tied by its address only when smtp.return_path carries no
  {token} and bounces.match_recent_deliveries is on: with VERP every real bounce carries the
  token, so one without it is not believed ("untied");
- a provider's webhook event is signed by the provider, so the fallback serves it whatever the
  return path, but its recipient must be the address the tag in its Message-ID names.

Each report is recorded under its key once: processing it again counts nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from digest import store
from digest.bounces.report import Kind, Report, read_report
from digest.config.schema import Config
from digest.core import counters
from digest.core.addresses import canonical_or_none
from digest.core.errors import DigestError
from digest.core.tokens import TRANSACTIONAL_REFERENCE, tag_matches
from digest.store import State, SuppressionKind
from digest.store.bounces import StoredReport

logger = logging.getLogger(__name__)

RECENT_DAYS = 14
# What a report did; the mailbox keeps only those left (not a bounce, or unreadable).
SUPPRESSED = "suppressed"
COUNTED = "counted"
DROPPED_SIGNUP = "dropped_signup"
IGNORED = "ignored"  # an auto-reply
FORGED = "forged"  # names no delivery digest made (a token that does not verify, say)
UNTIED = "untied"  # nothing of digest's in it, and the address alone is not trusted
NOT_TIED = frozenset({FORGED, UNTIED})
LEFT = "left"  # not a bounce: left in the mailbox, untouched
DUPLICATE = "duplicate"
ALREADY = "already_suppressed"
# Where reports arrive by mail; anything else is a provider's signed webhook event.
MAIL_SOURCES = frozenset({"stdin", "maildir", "imap"})

# What each outcome means, for `digest bounces --show`.
OUTCOME_MEANINGS = {
    SUPPRESSED: "the address is suppressed: no issue is sent to it again",
    COUNTED: "a soft bounce, counted: bounces.soft_limit of them in a row suppress the address",
    DROPPED_SIGNUP: "the sign-up's confirmation bounced: the pending sign-up is dropped",
    IGNORED: "an auto-reply: nothing to do",
    FORGED: "not tied to a delivery: its VERP token or Message-ID is not one digest made for"
    " the address it names, or it names an address digest did not mail in the last 14 days",
    UNTIED: "not tied to a delivery: it carries no VERP token or Message-ID of digest's, and"
    " the address it names is not enough (smtp.return_path carries {token}, so every real"
    " bounce would carry it; or bounces.match_recent_deliveries is false)",
    ALREADY: "the address was suppressed already",
    DUPLICATE: "the same report was processed before",
}


@dataclass(frozen=True)
class Attribution:
    """The delivery a report is about."""

    email: str
    issue_id: int | None  # None: digest's transactional mail (sign-up confirmation, welcome)


@dataclass
class Tally:
    """How many reports ended each way in one run."""

    outcomes: Counter[str] = field(default_factory=Counter)
    suppressed: list[str] = field(default_factory=list)

    def add(self, outcome: str, email: str = "") -> None:
        """Count one report's outcome."""
        self.outcomes[outcome] += 1
        if outcome == SUPPRESSED and email:
            self.suppressed.append(email)

    @property
    def total(self) -> int:
        """Reports read."""
        return sum(self.outcomes.values())

    @property
    def not_tied(self) -> int:
        """Reports tied to no delivery, whichever the reason."""
        return sum(self.outcomes[outcome] for outcome in NOT_TIED)


def _resolve(
    state: State,
    secret: str,
    reference: str,
    tag: str,
    candidates: tuple[str, ...],
    *,
    named_only: bool,
) -> Attribution | None:
    """The delivery a (reference, tag) pair names, if digest made it. With `named_only`, only
    a delivery to one of the `candidates` counts (a provider's event names its recipient);
    otherwise the tag may name another address (a mailed report from a forwarding address)."""
    if reference == TRANSACTIONAL_REFERENCE:
        others = () if named_only else tuple(state.bounces.signup_addresses())
        for address in (*candidates, *others):
            if tag_matches(secret, reference, address, tag):
                return Attribution(canonical_or_none(address) or address.lower(), None)
        return None
    issue_id = int(reference)
    for address in candidates:
        if tag_matches(secret, reference, address, tag) and state.bounces.delivery(
            issue_id, address
        ):
            return Attribution(canonical_or_none(address) or address.lower(), issue_id)
    if named_only:
        return None
    for address in state.bounces.recipients(issue_id):
        if tag_matches(secret, reference, address, tag):
            return Attribution(address, issue_id)
    return None


def verp_on(config: Config) -> bool:
    """Whether each message's envelope sender carries its delivery's token (VERP)."""
    return "{token}" in (config.smtp.return_path or "")


def by_address_allowed(config: Config, source: str) -> bool:
    """Whether a report with no token or Message-ID of digest's may be tied by its address: a
    provider's signed event when bounces.match_recent_deliveries is on; a mailed report only
    when, besides, the return path carries no {token}."""
    if not config.bounces.match_recent_deliveries:
        return False
    return source not in MAIL_SOURCES or not verp_on(config)


def attribute(
    state: State, secret: str, report: Report, now: datetime, *, by_address: bool, signed: bool
) -> Attribution | str:
    """Tie a report to a delivery (VERP token, else Message-ID, else with `by_address` a recent
    delivery to an address it names), or say why not: FORGED or UNTIED.
    A `signed` report is a provider's event: its Message-ID must name its own recipient."""
    for identifiers in (report.tokens, report.message_ids):
        if identifiers:
            for reference, tag in identifiers:
                found = _resolve(
                    state, secret, reference, tag, report.recipients, named_only=signed
                )
                if found is not None:
                    return found
            return FORGED  # identifiers that do not verify: forged, whatever else it names
    if not by_address:
        return UNTIED
    for address in report.recipients:
        issue_id = state.bounces.recent_delivery(address, now, RECENT_DAYS)
        if issue_id is not None:
            return Attribution(address, issue_id)
    pending = {s.email for s in state.signups.signups() if s.status == "pending"}
    for address in report.recipients:
        if address in pending:
            return Attribution(address, None)
    return FORGED


# What a report that suppresses makes of the address (a soft bounce only past the limit).
SUPPRESSION_KINDS = {
    Kind.HARD: SuppressionKind.HARD_BOUNCE,
    Kind.SOFT: SuppressionKind.SOFT_BOUNCES,
    Kind.COMPLAINT: SuppressionKind.COMPLAINT,
}


def _reason(report: Report) -> str:
    words = {Kind.HARD: "hard bounce", Kind.SOFT: "soft bounce", Kind.COMPLAINT: "complaint"}
    status = f" {report.status}" if report.status else ""
    detail = f": {report.detail}" if report.detail else ""
    return f"{words.get(report.kind, report.kind.value)}{status}{detail}"[:300]


def apply_report(
    config: Config, state: State, secret: str, report: Report, source: str, now: datetime
) -> tuple[str, str]:
    """Record one report and act on it; (outcome, address) — the address may be empty.
    A bounce or complaint recorded (not a duplicate) is counted for the metrics."""
    outcome, email = _apply_report(config, state, secret, report, source, now)
    if outcome not in (LEFT, DUPLICATE):
        if report.kind is Kind.COMPLAINT:
            counters.count(counters.COMPLAINTS, outcome=outcome)
        elif report.kind in (Kind.HARD, Kind.SOFT):
            counters.count(counters.BOUNCES, kind=report.kind.value, outcome=outcome)
    return outcome, email


def _apply_report(
    config: Config, state: State, secret: str, report: Report, source: str, now: datetime
) -> tuple[str, str]:
    if report.kind in (Kind.NOT_BOUNCE, Kind.UNREADABLE):
        return LEFT, ""
    if state.bounces.seen(report.key):
        return DUPLICATE, ""
    with state.transaction():
        tied: Attribution | str = IGNORED
        if report.is_bounce:
            allowed = by_address_allowed(config, source)
            signed = source not in MAIL_SOURCES
            tied = attribute(state, secret, report, now, by_address=allowed, signed=signed)
        found = tied if isinstance(tied, Attribution) else None
        outcome = COUNTED if found is not None else str(tied)
        email = found.email if found else (report.recipients[0] if report.recipients else "")
        issue_id = found.issue_id if found else None
        report_id = state.bounces.record(
            report_key=report.key,
            now=now,
            source=source,
            kind=report.kind.value,
            outcome=outcome,
            email=email,
            issue_id=issue_id,
            status=report.status,
            detail=report.detail,
            report=report.text,
        )
        if report_id is None:
            return DUPLICATE, ""
        if found is None:
            return outcome, email
        outcome = _act(config, state, report, found, report_id, now)
        state.bounces.set_outcome(report_id, outcome)
    logger.info("%s report for %s: %s", report.kind.value, found.email, outcome)
    return outcome, found.email


def _act(
    config: Config,
    state: State,
    report: Report,
    found: Attribution,
    report_id: int,
    now: datetime,
) -> str:
    """Suppress, drop a pending sign-up, or count a soft bounce."""
    signup = state.signups.signup(found.email)
    if found.issue_id is None and signup is not None and signup.status == "pending":
        if report.kind is Kind.SOFT:
            return COUNTED
        state.signups.drop_pending(found.email)
        return DROPPED_SIGNUP
    reason = _reason(report)
    if report.kind is Kind.SOFT:
        if found.issue_id is None:
            return COUNTED
        streak = state.bounces.soft_streak(found.email, found.issue_id)
        if streak < config.bounces.soft_limit:
            return COUNTED
        reason = f"{streak} soft bounces in a row; last: {reason}"
    added = state.suppressions.suppress(
        found.email,
        now,
        source="complaint" if report.kind is Kind.COMPLAINT else "bounce",
        kind=SUPPRESSION_KINDS[report.kind],
        reason=reason,
        issue_id=found.issue_id,
        report_id=report_id,
    )
    return SUPPRESSED if added else ALREADY


def process_message(
    config: Config, state: State, secret: str, data: bytes, source: str, now: datetime
) -> tuple[str, str]:
    """Read one message and act on it: (outcome, address)."""
    return apply_report(config, state, secret, read_report(data), source, now)


def collect_reports(
    config: Config,
    now: datetime,
    *,
    stdin: bytes | None = None,
    maildir: Path | None = None,
) -> Tally:
    """Read reports from one message (stdin), a Maildir, or the configured mailbox, and act."""
    from digest.bounces.mailbox import read_imap, read_maildir

    tally = Tally()
    with store.open(config) as state:
        secret = state.secrets.signing_secret(config.secret)

        def handle(data: bytes, source: str) -> bool:
            outcome, email = process_message(config, state, secret, data, source, now)
            tally.add(outcome, email)
            return outcome != LEFT

        if stdin is not None:
            handle(stdin, "stdin")
        elif maildir is not None or (config.bounces.maildir and config.bounces.imap is None):
            path = maildir or config.resolve(config.bounces.maildir or "")
            read_maildir(path, lambda data: handle(data, "maildir"))
        elif config.bounces.imap is not None:
            settings = config.bounces.imap
            ca_file = config.resolve(settings.ca_file) if settings.ca_file else None
            read_imap(settings, lambda data: handle(data, "imap"), ca_file)
        else:
            raise DigestError(
                "no bounce mailbox: set bounces.imap or bounces.maildir in config.yaml,"
                " or pipe one message to `digest bounces --stdin`"
            )
    return tally


def recent_reports(config: Config, limit: int) -> list[StoredReport]:
    """The newest reports with how each was classified and what it did."""
    with store.open(config, read_only=True) as state:
        return state.bounces.recent(limit)
