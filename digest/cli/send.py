"""Sending an issue and what was sent: `send` (also a test send or a dry run), `history`,
`clicks` (how often each tracked post link was followed), and `compact` (old deliveries into
per-issue counts)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from digest.cli.options import current_time, email_address, with_config
from digest.cli.output import SendProgress, err, out, print_report_problems, summarise
from digest.config.schema import Config
from digest.core.errors import DigestError
from digest.core.stopping import GracefulStop
from digest.run.history import SkippedSlot


@click.command()
@click.option("--to", "recipients", multiple=True, help="Test send to these addresses only.")
@click.option("--dry-run", is_flag=True, help="Write .eml files to the outbox; no SMTP.")
@click.option(
    "--join",
    is_flag=True,
    help="Only help send an issue another sender is sending; never start one.",
)
@with_config
def send(config: Config, recipients: tuple[str, ...], dry_run: bool, join: bool) -> None:
    """Send the next issue to every subscriber (resuming an unfinished one first).

    While another process sends an issue, this one joins it: each claims batches of the
    deliveries, so several hosts share one send.
    """
    # Loaded here, not above: `digest history` and `compact` need none of the sending code.
    from digest.run import rehearsal
    from digest.run import send as sending

    now = current_time()
    if recipients and dry_run:
        raise click.UsageError("use either --to or --dry-run, not both")
    if join and (recipients or dry_run):
        raise click.UsageError("--join goes with neither --to nor --dry-run")
    if dry_run:
        report = rehearsal.dry_run(config, now)
        print_report_problems(report)
        if report.skipped_reason:
            out.print(f"Nothing to write: {report.skipped_reason}.")
        else:
            out.print(
                f"Wrote {report.sent} messages ({report.post_count} posts) to {report.outbox}"
            )
        return
    if recipients:
        report = rehearsal.test_send(config, now, tuple(map(email_address, recipients)))
        summarise(report, "Test-sent")
    else:
        with GracefulStop() as stop, SendProgress(err) as progress:
            report = sending.send(
                config,
                now,
                progress=progress,
                clock=lambda: datetime.now(UTC),
                stop=stop,
                join=join,
            )
        summarise(report, "Sent")
        if stop.is_set() and report.pending:
            raise DigestError(
                f"stopped: {report.pending} messages not sent yet;"
                " run `digest send` again to finish the issue"
            )
    if report.pending:
        raise DigestError(
            f"{report.pending} messages left pending after temporary failures;"
            " run `digest send` again to retry them"
        )


FAILED_ADDRESSES_SHOWN = 20


@click.command()
@click.option("--limit", default=20, show_default=True, help="How many issues to list.")
@with_config
def history(config: Config, limit: int) -> None:
    """Issues sent so far: date, posts, delivered / failed / pending, failed addresses."""
    from digest.run.history import COMPLAINT_RATE_LIMIT
    from digest.run.history import history as sent_history

    found = sent_history(config, limit)
    if not found.issues:
        out.print("No issues sent yet.")
        _print_skipped(found.skipped)
        return
    from rich.table import Table

    table = Table("Issue", "Date", "Posts", "Delivered", "Failed", "Pending")
    for row in found.issues:
        finished = "" if row.issue.finished_at else " (unfinished)"
        table.add_row(
            str(row.issue.id),
            f"{row.issue.created_at:%Y-%m-%d %H:%M}{finished}",
            str(row.issue.post_count),
            str(row.sent),
            str(row.failed),
            str(row.pending),
        )
    out.print(table)
    for reports in found.reports:
        warn = (
            f" (over {COMPLAINT_RATE_LIMIT}%: mailbox providers may block the sender)"
            if reports.over_limit
            else ""
        )
        out.print(
            f"Issue {reports.issue_id}: {reports.hard} hard bounces, {reports.soft} soft,"
            f" {reports.complaints} complaints; complaint rate {reports.complaint_rate:.2f}%{warn}"
        )
    # Addresses go on plain lines, never in a cell, so a narrow terminal cannot fold them;
    # printed at once (a line at a time, a year of issues' failures took a tenth of a second).
    lines = []
    for row in found.issues:
        for failure in row.failures[:FAILED_ADDRESSES_SHOWN]:
            reply = f": {failure.reply}" if failure.reply else ""
            lines.append(f"Issue {row.issue.id} failed {failure.email}{reply}")
        # The ledger reads only the first failures; the tally counts them all.
        shown = min(len(row.failures), FAILED_ADDRESSES_SHOWN)
        hidden = 0 if row.compacted else row.failed - shown
        if hidden > 0:
            lines.append(f"Issue {row.issue.id}: {hidden} more failed addresses not shown.")
    if lines:
        out.print("\n".join(lines), markup=False)
    _print_skipped(found.skipped)
    if found.suppressed:
        out.print(f"{found.suppressed} unsubscribed addresses are skipped on every send.")
    compacted = [row.issue.id for row in found.issues if row.compacted]
    if compacted:
        out.print(
            f"{len(compacted)} issues older than retention.deliveries show counts only:"
            " their deliveries were compacted."
        )


@click.command()
@click.argument("number", type=click.IntRange(min=1), required=False)
@with_config
def clicks(config: Config, number: int | None) -> None:
    """How often each post link of issue NUMBER (default: the latest tracked) was followed."""
    from digest.run.clicks import click_counts

    found = click_counts(config, number)
    if found.issue_id is None:
        out.print(
            "No issue was sent with tracked links yet (tracking.clicks: aggregate turns it on)."
        )
        return
    if not found.links:
        out.print(f"Issue {found.issue_id} was sent without tracked links.")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table("Link", "People", "Scanners", title=f"Issue {found.issue_id}")
    for link in found.links:  # a URL is shown as written, never read as markup
        table.add_row(Text(link.url, overflow="fold"), str(link.people), str(link.scanners))
    out.print(table)
    out.print(
        f"{found.people} clicks by people, {found.scanners} by link scanners and prefetchers"
        " (not counted as people)."
    )


@click.command()
@with_config
def compact(config: Config) -> None:
    """Compact deliveries older than retention.deliveries into per-issue counts (also run
    after each send)."""
    from digest.run.retention import compact as compact_deliveries

    found = compact_deliveries(config, current_time())
    done, cutoff = found.done, found.cutoff
    if done is None or cutoff is None:
        out.print("retention.deliveries is forever: every delivery is kept.")
        return
    out.print(
        f"Compacted {len(done.issues)} issues ({done.deliveries} deliveries) and stripped"
        f" {done.reports} bounce reports from before {cutoff.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        f" ({found.window} ago)."
    )
    for issue_id in done.unfinished:
        out.print(
            f"Issue {issue_id} is older than that but unfinished: its deliveries are kept until"
            " `digest send` finishes it."
        )


def _print_skipped(skipped: tuple[SkippedSlot, ...]) -> None:
    for slot in skipped:
        out.print(f"Slot {slot.at:%Y-%m-%d %H:%M} UTC skipped: {slot.reason}", markup=False)
