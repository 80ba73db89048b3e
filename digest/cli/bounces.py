"""`bounces`: read bounce and complaint reports, or list how recent ones were classified."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from digest.cli.options import current_time, with_config
from digest.cli.output import out, plural
from digest.config.schema import Config


@click.command()
@click.option("--stdin", "from_stdin", is_flag=True, help="Read one message on standard input.")
@click.option(
    "--maildir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Read this Maildir instead of the configured mailbox.",
)
@click.option("--show", is_flag=True, help="List recent reports and how each was classified.")
@click.option("--limit", default=30, show_default=True, help="How many reports --show lists.")
@with_config
def bounces(config: Config, from_stdin: bool, maildir: Path | None, show: bool, limit: int) -> None:
    """Read bounce and complaint reports and suppress the addresses they tie to a delivery."""
    from rich.table import Table

    from digest.bounces import apply as bounce_reports
    from digest.bounces.report import MAX_REPORT_BYTES

    if show:
        rows = bounce_reports.recent_reports(config, limit)
        if not rows:
            out.print("No bounce or complaint reports yet.")
            return
        table = Table("When", "Source", "Kind", "Status", "Issue", "Outcome")
        for row in rows:
            issue = "sign-up mail" if row.issue_id is None and row.email else ""
            table.add_row(
                f"{row.received_at:%Y-%m-%d %H:%M}",
                row.source,
                row.kind,
                row.status,
                str(row.issue_id) if row.issue_id is not None else issue,
                row.outcome,
            )
        out.print(table)
        for row in rows:
            if row.email:
                out.print(f"{row.kind} {row.email}: {row.outcome} ({row.detail})", markup=False)
        out.print("What the outcomes mean:")
        for outcome in dict.fromkeys(row.outcome for row in rows):
            meaning = bounce_reports.OUTCOME_MEANINGS.get(outcome, "")
            out.print(f"  {outcome}: {meaning}".rstrip(), markup=False)
        return
    data = sys.stdin.buffer.read(MAX_REPORT_BYTES + 1)[:MAX_REPORT_BYTES] if from_stdin else None
    tally = bounce_reports.collect_reports(config, current_time(), stdin=data, maildir=maildir)
    counts = tally.outcomes
    out.print(
        f"Read {plural(tally.total, 'message')}: {counts['suppressed']} suppressed,"
        f" {counts['counted']} soft bounces counted, {counts['dropped_signup']} pending sign-ups"
        f" dropped, {counts['ignored']} auto-replies ignored, {tally.not_tied} not tied to"
        f" a delivery (ignored), {counts['duplicate'] + counts['already_suppressed']} already"
        f" processed, {counts['left']} not bounces (left in the mailbox)."
    )
    for email in tally.suppressed:
        out.print(f"Suppressed {email}", markup=False)
