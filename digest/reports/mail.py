"""An issue's report emailed to the editor (`reports.email_to`) `reports.after` its send, by
`digest run`: queued in the outbox, which `digest run` and `digest serve` drain, like every
other one-off email.

The email is rendered from digest/pages/report-email.txt and .html as the sign-up emails are
(digest.readers.signup.render_page), and sent as they are (the newsletter's sender and DKIM, no
List-Unsubscribe). It holds counts only, never an address; an issue sent with tracked links
lists the links people followed most. Each issue's report is queued once
(`report_mails`); one due more than DUE_FOR ago (an issue sent before this release, or while
`digest run` was stopped for long) is not sent late.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from digest import store
from digest.config.schema import Config
from digest.core.dates import format_date
from digest.core.models import OutgoingMessage, Subscriber
from digest.mail.message import DkimKey, load_dkim, transactional_message
from digest.readers.signup import render_page
from digest.reports.figures import TOP_LINKS, IssueReport
from digest.reports.gather import gather
from digest.reports.health import HealthWarning, percent

logger = logging.getLogger(__name__)

DUE_FOR = timedelta(days=7)
OUTBOX_KIND = "report"


def due(
    reports: Iterable[IssueReport], mailed: set[int], after: timedelta, now: datetime
) -> tuple[IssueReport, ...]:
    """The reports to email now: issues that delivered something, sent at least `after` ago
    but not more than `after` + DUE_FOR, whose report was not queued yet."""
    return tuple(
        report
        for report in reports
        if report.counts.delivered
        and report.issue_id not in mailed
        and report.counts.sent_at + after <= now < report.counts.sent_at + after + DUE_FOR
    )


@dataclass(frozen=True)
class ReportEmail:
    """The subject and the two bodies of one issue's report."""

    subject: str
    text: str
    html: str


def render(
    config: Config, report: IssueReport, warnings: Sequence[HealthWarning], after: timedelta
) -> ReportEmail:
    """One issue's report as an email to the editor."""
    mine = [w for w in warnings if w.issue_id == report.issue_id]
    zone = ZoneInfo(config.schedule.timezone if config.schedule else "UTC")
    context = {
        "newsletter": config.newsletter,
        "report": report,
        "figures": report.figures(),
        "rates": {f.key: "–" if f.rate is None else percent(f.rate) for f in report.figures()},
        "warnings": mine,
        "tracked": report.tracked,
        "links": [
            {
                "url": link.url,
                "people": link.people,
                "scanners": link.scanners,
                "rate": "–" if link.rate is None else percent(link.rate),
            }
            for link in report.links(TOP_LINKS)
        ],
        "hours": round(after.total_seconds() / 3600),
        "sent": format_date(report.counts.sent_at, config.newsletter.date_format, zone),
    }
    flag = " (needs attention)" if mine else ""
    return ReportEmail(
        f"{config.newsletter.title}: report on issue {report.issue_id}{flag}",
        render_page("report-email.txt", **context),
        render_page("report-email.html", **context),
    )


def messages(
    config: Config, email: ReportEmail, now: datetime, dkim_key: DkimKey | None
) -> list[OutgoingMessage]:
    """The report's message to each address in reports.email_to."""
    return [
        transactional_message(
            config, Subscriber(address, ""), email.subject, email.text, email.html, now, dkim_key
        )
        for address in config.reports.email_to
    ]


def queue_due(config: Config, now: datetime) -> tuple[int, ...]:
    """Queue the report of every issue that is due (see `due`) for reports.email_to, each in
    one transaction with its record in report_mails; the issues queued."""
    if not config.reports.email_to:
        return ()
    after = timedelta(seconds=config.reports.after)
    found = gather(config, now)
    dkim_key = load_dkim(config)
    queued = []
    with store.open(config) as state:
        for report in due(found.reports, state.reports.mailed(), after, now):
            built = messages(config, render(config, report, found.warnings, after), now, dkim_key)
            with state.transaction():
                if not state.reports.queue_mail(report.issue_id, now):
                    continue  # another process queued it meanwhile
                for message in built:
                    state.outbox.add(OUTBOX_KIND, message.recipient, message, now)
            queued.append(report.issue_id)
            logger.info("report on issue %d queued for the editor", report.issue_id)
    return tuple(queued)
