"""An issue's report emailed to the editor (`reports.email_to`) `reports.after` its send, by
`digest run`: queued in the outbox, which `digest run` and `digest serve` drain, like every
other one-off email.

The email is built like every other one-off email (digest.render.message: templates/
report-email.html and .txt in the issue's frame, so the theme, logo, dark mode and inlined CSS
are the issue's and the editor can override them) and sent as they are (the newsletter's sender
and DKIM, no List-Unsubscribe). It holds counts only, never an address; an issue sent with
tracked links lists the links people followed most. Its one button goes to the issue's page in
the public archive, when the archive is on and the issue is published there: the workbench's
Reports page would be the obvious place, but it listens on the editor's machine only, so a link
to it from an email would not open anywhere else. With the archive off, no button.

Each issue's report is queued once (`report_mails`); one due more than DUE_FOR ago (an issue
sent before this release, or while `digest run` was stopped for long) is not sent late.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from digest import store
from digest.archive.pages import issue_url
from digest.config.schema import Config
from digest.core.dates import format_date
from digest.core.models import OutgoingMessage, Subscriber
from digest.mail.message import DkimKey, load_dkim, transactional_message
from digest.render.message import render_message
from digest.reports.figures import TOP_LINKS, IssueReport
from digest.reports.gather import gather
from digest.reports.health import HealthWarning, percent
from digest.store import State

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
    config: Config,
    report: IssueReport,
    warnings: Sequence[HealthWarning],
    after: timedelta,
    *,
    issue_page: str = "",
) -> ReportEmail:
    """One issue's report as an email to the editor (templates/report-email.html and .txt);
    `issue_page`, the issue's page in the archive (see `archive_page`), is its button, none
    if empty. The figures are formatted here, as templates cannot format numbers."""
    mine = [w for w in warnings if w.issue_id == report.issue_id]
    zone = ZoneInfo(config.schedule.timezone if config.schedule else "UTC")
    hours = round(after.total_seconds() / 3600)
    sent = format_date(report.counts.sent_at, config.newsletter.date_format, zone)
    context = {
        "issue": report.issue_id,
        "issue_subject": report.counts.subject,
        "sent": sent,
        "hours": hours,
        "warnings": [{"text": w.text, "advice": w.advice} for w in mine],
        "figures": [
            {
                "label": f.label,
                "count": f"{f.count:,}",
                "rate": "–" if f.rate is None else percent(f.rate),
            }
            for f in report.figures()
        ],
        "list_before": f"{report.list_before:,}",
        "list_after": f"{report.list_after:,}",
        "signups": f"{report.signups:,}",
        "tracked": report.tracked,
        "links": [
            {
                "url": link.url,
                "people": f"{link.people:,}",
                "scanners": f"{link.scanners:,}",
                "rate": "–" if link.rate is None else percent(link.rate),
            }
            for link in report.links(TOP_LINKS)
        ],
        "issue_url": issue_page,
    }
    flag = " (needs attention)" if mine else ""
    rendered = render_message(
        config,
        "report-email",
        subject=f"{config.newsletter.title}: report on issue {report.issue_id}{flag}",
        heading=f"{config.newsletter.title}: the report on issue {report.issue_id}",
        recipient=", ".join(config.reports.email_to),
        context=context,
        preheader=(mine[0].text if mine else f"Sent {sent}: the figures {hours} hours later."),
    )
    return ReportEmail(rendered.subject, rendered.text, rendered.html)


def archive_page(config: Config, state: State, issue_id: int) -> str:
    """The issue's page in the public archive, or "" with the archive off, or while the issue
    is not published there (not numbered yet, or withdrawn)."""
    if not config.archive.enabled or not config.newsletter.archive_url:
        return ""
    for entry in state.archive.issues():
        if entry.issue.id == issue_id:
            return issue_url(config, entry.number, entry.slug)
    return ""


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
            email = render(
                config,
                report,
                found.warnings,
                after,
                issue_page=archive_page(config, state, report.issue_id),
            )
            built = messages(config, email, now, dkim_key)
            with state.transaction():
                if not state.reports.queue_mail(report.issue_id, now):
                    continue  # another process queued it meanwhile
                for message in built:
                    state.outbox.add(OUTBOX_KIND, message.recipient, message, now)
            queued.append(report.issue_id)
            logger.info("report on issue %d queued for the editor", report.issue_id)
    return tuple(queued)
