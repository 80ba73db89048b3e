"""Deliverability health: an issue whose complaint or hard-bounce rate passed its limit
(`reports.max_complaint_rate`, `reports.max_hard_bounce_rate`), said in plain words with what
to do. Pure: the report and the limits in, the warnings out.

Why these limits: Gmail's and Yahoo's rules for bulk senders (since February 2024) ask that
spam complaints stay below 0.1% of the mail delivered and never reach 0.3%, past which mail is
filtered to spam or refused; and a hard-bounce rate past about 2% is what a stale or bought
list looks like to a mailbox provider.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from digest.reports.figures import IssueReport

COMPLAINT_ADVICE = (
    "Gmail and Yahoo ask bulk senders to keep spam complaints below 0.1% of the mail they"
    " deliver, and filter or refuse mail from senders who reach 0.3%. What to do: make sure"
    " everyone on the list asked for the newsletter (sign-up with double opt-in, no bought or"
    " borrowed lists); keep the unsubscribe link easy to find, so nobody has to press 'spam' to"
    " stop it; send at the cadence readers signed up for; and ask readers who have been silent"
    " for months whether they still want it."
)
BOUNCE_ADVICE = (
    "Many addresses that no longer exist tell mailbox providers a list is old or was not"
    " gathered with consent. digest stops mailing each hard-bounced address already. What to"
    " do: check that bounce reports are being read (`digest bounces --show`); remove addresses"
    " from the subscriber file that have left their organisation; and add new readers only"
    " through double opt-in, so mistyped addresses never join."
)


@dataclass(frozen=True)
class Limits:
    """The rates, in percent, past which an issue is unhealthy."""

    max_complaint_rate: float = 0.1
    max_hard_bounce_rate: float = 2.0


@dataclass(frozen=True)
class HealthWarning:
    """One unhealthy rate of one issue: what happened, in a sentence, and what to do."""

    issue_id: int
    kind: str  # "complaints" or "hard_bounces"
    rate: float
    limit: float
    text: str
    advice: str


def percent(value: float) -> str:
    """A rate as people read it: 0.25%, 2%, 12.5%."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def warnings(reports: Iterable[IssueReport], limits: Limits) -> tuple[HealthWarning, ...]:
    """Each issue's rates past their limits, in the reports' order."""
    found = []
    checks = (
        ("complaints", "complaint", limits.max_complaint_rate, "reports.max_complaint_rate"),
        (
            "hard_bounces",
            "hard-bounce",
            limits.max_hard_bounce_rate,
            "reports.max_hard_bounce_rate",
        ),
    )
    for report in reports:
        for key, name, limit, setting in checks:
            value = report.rate_of(key)
            if value is None or value <= limit:
                continue
            count = int(getattr(report.counts, key))
            text = (
                f"Issue {report.issue_id}'s {name} rate is {percent(value)} ({count} of"
                f" {report.counts.delivered:,} delivered), above the {percent(limit)} set in"
                f" {setting}."
            )
            found.append(
                HealthWarning(
                    report.issue_id,
                    key,
                    value,
                    limit,
                    text,
                    COMPLAINT_ADVICE if key == "complaints" else BOUNCE_ADVICE,
                )
            )
    return tuple(found)
