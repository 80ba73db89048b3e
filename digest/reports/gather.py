"""The report's counts, read from the state without changing it, and the reports made of them.

An issue's bounces and complaints are those tied to it (a compacted issue's, the counts kept
when it was compacted); its unsubscribes and preference changes are those made through its
links. An issue sent before links named their issue, or before this release, shows what is
known: its deliveries, bounces and complaints, and no unsubscribes it cannot be credited with
(those are listed apart, as made through links that name no issue). An issue sent with
tracked links carries its links' click counts; one sent without, none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from digest import store
from digest.config.schema import Config
from digest.reports.figures import IssueCounts, IssueReport, Week, issue_reports, weeks
from digest.reports.health import HealthWarning, Limits, warnings
from digest.store import ReaderCounts


@dataclass(frozen=True)
class Reports:
    """Every issue's report, oldest first, with the health warnings and the weekly figures."""

    reports: tuple[IssueReport, ...]
    warnings: tuple[HealthWarning, ...]
    weeks: tuple[Week, ...]
    unattributed: ReaderCounts  # made through links that name no issue

    def report(self, issue_id: int) -> IssueReport | None:
        """One issue's report, if there is such an issue."""
        return next((r for r in self.reports if r.issue_id == issue_id), None)

    def since(self, moment: datetime) -> tuple[IssueReport, ...]:
        """The reports of issues sent at or after `moment`."""
        return tuple(r for r in self.reports if r.counts.sent_at >= moment)


def limits(config: Config) -> Limits:
    """The health limits config.yaml sets (`reports.max_complaint_rate`, ...)."""
    return Limits(config.reports.max_complaint_rate, config.reports.max_hard_bounce_rate)


def _counts(state: store.State) -> list[IssueCounts]:
    """Every issue's counts, oldest first."""
    bounced = {**state.bounces.by_issue(), **state.ledger.compacted_bounces()}
    readers = state.reports.by_issue()
    clicked = state.clicks.by_issue()
    counts = []
    for row in state.reports.totals():
        drew = bounced.get(row.issue_id)
        did = readers.get(row.issue_id, ReaderCounts())
        counts.append(
            IssueCounts(
                issue_id=row.issue_id,
                subject=row.subject,
                sent_at=row.created_at,
                delivered=row.sent,
                failed=row.failed,
                pending=row.pending,
                hard_bounces=drew.hard if drew else 0,
                soft_bounces=drew.soft if drew else 0,
                complaints=drew.complaints if drew else 0,
                unsubscribes=did.unsubscribes,
                preference_changes=did.preference_changes,
                compacted=row.compacted,
                links=tuple(clicked[row.issue_id]) if row.issue_id in clicked else None,
            )
        )
    return counts


def _confirmed(state: store.State) -> list[datetime]:
    """When each confirmed sign-up was confirmed."""
    return [
        signup.confirmed_at
        for signup in state.signups.signups()
        if signup.status == "confirmed" and signup.confirmed_at is not None
    ]


def gather(config: Config, now: datetime, week_count: int = 26) -> Reports:
    """Every issue's report and the last `week_count` weeks' figures at `now`."""
    with store.open(config, read_only=True) as state:
        counts = _counts(state)
        confirmed = _confirmed(state)
        unattributed = state.reports.by_issue().get(None, ReaderCounts())
        events = state.reports.dated(now - timedelta(weeks=week_count + 1))
    made = issue_reports(counts, confirmed)
    return Reports(
        reports=made,
        warnings=warnings(made, limits(config)),
        weeks=weeks(made, confirmed, [(e.at, e.kind) for e in events], now, week_count),
        unattributed=unattributed,
    )


def latest_warnings(config: Config) -> tuple[HealthWarning, ...]:
    """The health warnings of the latest issue that delivered anything (what `digest check`
    and the workbench say)."""
    with store.open(config, read_only=True) as state:
        counts = _counts(state)
        confirmed = _confirmed(state)
    made = [r for r in issue_reports(counts, confirmed) if r.counts.delivered]
    return warnings(made[-1:], limits(config))
