"""What was sent: the recent issues with their delivery counts and failures, the bounces and
complaints each drew (with the complaint rate mailbox providers watch), the slots that fired
without an issue, and how many addresses every send skips. An issue older than the retention
window shows the counts kept when it was compacted, and no addresses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from digest import store
from digest.config.schema import Config
from digest.store.bounces import IssueBounces

# Complaints per delivered message, in percent, above which mailbox providers may start to block
# the sender (Gmail and Yahoo's bulk sender rules name 0.3%).
COMPLAINT_RATE_LIMIT = 0.3


@dataclass(frozen=True)
class IssueReports:
    """The bounces and complaints one issue drew, with its complaint rate (percent of those
    delivered)."""

    issue_id: int
    hard: int
    soft: int
    complaints: int
    complaint_rate: float

    @property
    def over_limit(self) -> bool:
        """Whether the complaint rate is past what mailbox providers tolerate."""
        return self.complaint_rate > COMPLAINT_RATE_LIMIT


@dataclass(frozen=True)
class SkippedSlot:
    """A slot that fired without an issue, and why."""

    at: datetime
    reason: str


@dataclass(frozen=True)
class History:
    """What `digest history` shows, newest issue first."""

    issues: tuple[store.IssueSummary, ...]
    reports: tuple[IssueReports, ...]
    skipped: tuple[SkippedSlot, ...]
    suppressed: int


def issue_reports(
    issues: Sequence[store.IssueSummary], bounced: Mapping[int, IssueBounces]
) -> tuple[IssueReports, ...]:
    """Each issue that delivered something and drew a bounce or complaint, in the issues'
    order, with its complaint rate."""
    found = []
    for row in issues:
        counted = bounced.get(row.issue.id, IssueBounces())
        if row.sent and (counted.complaints or counted.hard or counted.soft):
            found.append(
                IssueReports(
                    issue_id=row.issue.id,
                    hard=counted.hard,
                    soft=counted.soft,
                    complaints=counted.complaints,
                    complaint_rate=100 * counted.complaints / row.sent,
                )
            )
    return tuple(found)


def history(config: Config, limit: int) -> History:
    """The last `limit` issues and skipped slots, read without changing the state."""
    with store.open(config, read_only=True) as state:
        issues = state.ledger.history(limit)
        skipped = state.ledger.skipped_slots(limit)
        suppressed = len(state.suppressions.suppressed())
        # A compacted issue's reports no longer tell one address from another: its counts
        # were kept when it was compacted.
        bounced = {**state.bounces.by_issue(), **state.ledger.compacted_bounces()}
    return History(
        issues=tuple(issues),
        reports=issue_reports(issues, bounced),
        skipped=tuple(SkippedSlot(datetime.fromisoformat(key), reason) for key, reason in skipped),
        suppressed=suppressed,
    )
