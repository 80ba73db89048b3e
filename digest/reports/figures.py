"""An issue's report from its counts, and the weekly figures the charts draw: pure, no I/O.

Each count is a number and a rate. Delivered and failed are shares of the messages the issue
was addressed to; bounces, complaints, unsubscribes and preference changes are shares of the
messages delivered, as mailbox providers reckon a complaint rate. The list size before an
issue is how many readers it was addressed to; after, that less those it lost (hard bounces,
complaints and unsubscribes attributed to it). New sign-ups are those confirmed after the
previous issue was sent, up to this one.

An issue sent with `tracking.clicks: aggregate` also carries its post links' click counts: its
top links are those people followed most, each with a click rate, clicks by people per 100
messages delivered. A count is of clicks, not of readers (one reader clicking twice counts
twice), so a rate may pass 100%.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from digest.store.clicks import LinkCount

TOP_LINKS = 10  # links a report shows; `digest clicks` lists every one


@dataclass(frozen=True)
class IssueCounts:
    """What the state knows of one issue: its deliveries (or the counts kept when they were
    compacted), the bounces and complaints tied to it, and what readers did through its
    links."""

    issue_id: int
    subject: str
    sent_at: datetime
    delivered: int
    failed: int
    pending: int
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    unsubscribes: int = 0
    preference_changes: int = 0
    compacted: bool = False
    links: tuple[LinkCount, ...] | None = None  # None: sent without tracked links


# Each count of a report: (field, label, over what its rate is taken).
COUNTS: tuple[tuple[str, str, str], ...] = (
    ("delivered", "Delivered", "addressed"),
    ("failed", "Failed", "addressed"),
    ("hard_bounces", "Hard bounces", "delivered"),
    ("soft_bounces", "Soft bounces", "delivered"),
    ("complaints", "Complaints", "delivered"),
    ("unsubscribes", "Unsubscribes", "delivered"),
    ("preference_changes", "Preference changes", "delivered"),
)


@dataclass(frozen=True)
class Figure:
    """One count of a report with its rate in percent (None when there is nothing to divide
    by)."""

    key: str
    label: str
    count: int
    rate: float | None


@dataclass(frozen=True)
class TopLink:
    """One post link of an issue: its place among the issue's links by clicks from people
    (1 the most followed), the clicks counted as people's and as link scanners', and the
    people's clicks in percent of messages delivered (None when none was delivered)."""

    rank: int
    url: str
    people: int
    scanners: int
    rate: float | None


@dataclass(frozen=True)
class IssueReport:
    """One issue's report."""

    counts: IssueCounts
    signups: int  # confirmed since the previous issue, up to this one
    list_before: int
    list_after: int

    @property
    def issue_id(self) -> int:
        """The issue's number, as `digest history` shows it."""
        return self.counts.issue_id

    @property
    def addressed(self) -> int:
        """Messages the issue was addressed to (delivered, failed or still pending)."""
        return self.counts.delivered + self.counts.failed + self.counts.pending

    def figures(self) -> tuple[Figure, ...]:
        """Every count with its rate, in the order reports show them."""
        found = []
        for key, label, over in COUNTS:
            count = int(getattr(self.counts, key))
            whole = self.addressed if over == "addressed" else self.counts.delivered
            found.append(Figure(key, label, count, rate(count, whole)))
        return tuple(found)

    @property
    def tracked(self) -> bool:
        """Whether the issue was sent with tracked links (tracking.clicks: aggregate)."""
        return self.counts.links is not None

    def links(self, limit: int | None = None) -> tuple[TopLink, ...]:
        """The issue's tracked links, the most followed by people first (then by scanners,
        then in the order the issue shows them), at most `limit`; empty when untracked."""
        ordered = sorted(
            enumerate(self.counts.links or ()),
            key=lambda item: (-item[1].people, -item[1].scanners, item[0]),
        )
        return tuple(
            TopLink(
                rank, link.url, link.people, link.scanners, rate(link.people, self.counts.delivered)
            )
            for rank, (_, link) in enumerate(ordered[:limit], start=1)
        )

    def rate_of(self, key: str) -> float | None:
        """The rate of one count (a key of COUNTS)."""
        return next(figure.rate for figure in self.figures() if figure.key == key)


def rate(count: int, whole: int) -> float | None:
    """`count` as a percentage of `whole`; None when `whole` is 0."""
    return 100 * count / whole if whole else None


def issue_reports(
    issues: Iterable[IssueCounts], confirmed: Iterable[datetime]
) -> tuple[IssueReport, ...]:
    """Each issue's report, oldest first; `confirmed` are the times sign-ups were confirmed."""
    ordered = sorted(issues, key=lambda counts: (counts.sent_at, counts.issue_id))
    times = sorted(confirmed)
    found = []
    previous: datetime | None = None
    for counts in ordered:
        signups = sum(
            1 for at in times if (previous is None or at > previous) and at <= counts.sent_at
        )
        before = counts.delivered + counts.failed + counts.pending
        lost = counts.hard_bounces + counts.complaints + counts.unsubscribes
        found.append(IssueReport(counts, signups, before, max(0, before - lost)))
        previous = counts.sent_at
    return tuple(found)


@dataclass(frozen=True)
class Week:
    """One week's sign-ups, unsubscribes and bounces (hard and soft), and the list size at the
    last issue sent in it or before (None before the first issue)."""

    starts: date  # a Monday
    signups: int
    unsubscribes: int
    bounces: int
    list_size: int | None


def monday(moment: datetime) -> date:
    """The Monday (UTC) of the week `moment` falls in."""
    day = moment.astimezone(UTC).date() if moment.tzinfo else moment.date()
    return day - timedelta(days=day.weekday())


def weeks(
    reports: Sequence[IssueReport],
    confirmed: Iterable[datetime],
    events: Iterable[tuple[datetime, str]],
    now: datetime,
    count: int = 26,
) -> tuple[Week, ...]:
    """The last `count` weeks up to `now`, oldest first. `events` are (when, kind) with kind
    unsubscribe, preferences, hard, soft or complaint."""
    last = monday(now)
    starts = [last - timedelta(weeks=back) for back in range(count - 1, -1, -1)]
    signups = dict.fromkeys(starts, 0)
    unsubscribes = dict.fromkeys(starts, 0)
    bounces = dict.fromkeys(starts, 0)
    for at in confirmed:
        if monday(at) in signups:
            signups[monday(at)] += 1
    for at, kind in events:
        week = monday(at)
        if week in unsubscribes and kind == "unsubscribe":
            unsubscribes[week] += 1
        elif week in bounces and kind in ("hard", "soft"):
            bounces[week] += 1
    found = []
    for start in starts:
        end = start + timedelta(weeks=1)
        sent = [r for r in reports if monday(r.counts.sent_at) < end]
        size = sent[-1].list_after if sent else None
        found.append(Week(start, signups[start], unsubscribes[start], bounces[start], size))
    return tuple(found)
