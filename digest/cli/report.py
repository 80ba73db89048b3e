"""`report`: one issue's report (delivered, failed, bounces, complaints, unsubscribes and
preference changes, each a number and a rate; sign-ups; list size; the links people followed
most, when the issue's clicks were counted), or every issue since a date with its rates, as a
table, JSON or CSV; and the health warnings in plain words."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from digest.cli.options import current_time, with_config
from digest.cli.output import out
from digest.config.schema import Config
from digest.core.errors import DigestError
from digest.reports.figures import TOP_LINKS, IssueReport
from digest.reports.health import HealthWarning, percent


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date such as 2026-01-01", param_hint="--since"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rate(value: float | None) -> str:
    return "–" if value is None else percent(value)


@click.command()
@click.argument("number", type=int, required=False)
@click.option("--since", "since_text", metavar="DATE", help="Every issue sent since DATE.")
@click.option(
    "--format",
    "shape",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="A table to read, or JSON or CSV for a board report.",
)
@click.option(
    "--links",
    is_flag=True,
    help="With --format csv: the issues' tracked links and their clicks, one row per link.",
)
@with_config
def report(
    config: Config, number: int | None, since_text: str | None, shape: str, links: bool
) -> None:
    """An issue's report and its health; with --since, every issue since a date.

    NUMBER is the issue as `digest history` numbers it; without it, the latest issue. An issue
    sent with tracking.clicks on shows the links people followed most."""
    from digest.reports import formats
    from digest.reports.gather import gather

    since = _since(since_text)
    if since is not None and number is not None:
        raise click.UsageError("give either an issue NUMBER or --since, not both")
    if links and shape != "csv":
        raise click.UsageError(
            "--links goes with --format csv (the table and the JSON show the links already)"
        )
    found = gather(config, current_time())
    if since is not None:
        chosen = found.since(since)
    elif number is not None:
        one = found.report(number)
        if one is None:
            raise DigestError(f"there is no issue {number}: `digest history` lists the issues")
        chosen = (one,)
    else:
        chosen = found.reports[-1:]
    if not chosen:
        if shape == "json":
            out.print("[]" if since is not None else "null", markup=False)
        elif shape == "csv":
            empty = formats.as_links_csv(()) if links else formats.as_csv((), ())
            out.print(empty, end="", markup=False)
        else:
            out.print("No issues sent since then." if since else "No issues sent yet.")
        return
    warnings = tuple(w for w in found.warnings if w.issue_id in {r.issue_id for r in chosen})
    if shape == "json":
        out.print(formats.as_json(chosen, warnings, one=since is None), end="", markup=False)
    elif shape == "csv":
        written = formats.as_links_csv(chosen) if links else formats.as_csv(chosen, warnings)
        out.print(written, end="", markup=False, soft_wrap=True)
    elif since is None:
        _print_one(chosen[0])
        _print_links(chosen[0])
        _print_warnings(warnings)
    else:
        _print_many(chosen)
        _print_warnings(warnings)
    if since is None and shape == "table" and (found.unattributed.unsubscribes or 0):
        out.print(
            f"{found.unattributed.unsubscribes} unsubscribes came through links from before"
            " links named their issue; they are counted against no issue."
        )


def _print_one(one: IssueReport) -> None:
    from rich.table import Table

    out.print(f"Issue {one.issue_id}, sent {one.counts.sent_at:%Y-%m-%d %H:%M}", markup=False)
    out.print(one.counts.subject, markup=False)
    table = Table("", "Count", "Rate", title=None)
    for figure in one.figures():
        table.add_row(figure.label, f"{figure.count:,}", _rate(figure.rate))
    out.print(table)
    out.print(
        f"List size: {one.list_before:,} before, {one.list_after:,} after."
        f" New confirmed sign-ups since the previous issue: {one.signups:,}."
    )
    if one.counts.pending:
        out.print(f"{one.counts.pending:,} messages are still pending.")
    if one.counts.compacted:
        out.print("Its deliveries were compacted (retention.deliveries): these are its counts.")


def _print_links(one: IssueReport) -> None:
    """The links people followed most, with people and scanners apart; or why there are none."""
    from rich.table import Table
    from rich.text import Text

    if not one.tracked:
        out.print("Clicks were not counted for this issue (tracking.clicks is off).")
        return
    every = one.links()
    if not every:
        out.print("This issue carried no post links to count.")
        return
    table = Table("Link", "People", "Scanners", "Click rate", title="Top links")
    for link in every[:TOP_LINKS]:  # a URL is shown as written, never read as markup
        table.add_row(
            Text(link.url, overflow="fold"),
            f"{link.people:,}",
            f"{link.scanners:,}",
            _rate(link.rate),
        )
    out.print(table)
    people, scanners = sum(link.people for link in every), sum(link.scanners for link in every)
    out.print(
        f"{people:,} clicks by people, {scanners:,} by link scanners and prefetchers (not"
        " counted as people). A click rate is clicks by people per 100 messages delivered:"
        " clicks, not readers."
    )
    if len(every) > TOP_LINKS:
        out.print(
            f"{len(every) - TOP_LINKS} more links not shown: `digest clicks {one.issue_id}`"
            " lists every one.",
            markup=False,
        )


def _print_many(chosen: tuple[IssueReport, ...]) -> None:
    from rich.table import Table

    table = Table(
        "Issue",
        "Date",
        "Delivered",
        "Failed",
        "Hard",
        "Soft",
        "Complaints",
        "Unsubscribes",
        "Preferences",
        "List after",
    )
    for one in chosen:
        table.add_row(
            str(one.issue_id),
            f"{one.counts.sent_at:%Y-%m-%d}",
            f"{one.counts.delivered:,}",
            *(
                _rate(one.rate_of(key))
                for key in (
                    "failed",
                    "hard_bounces",
                    "soft_bounces",
                    "complaints",
                    "unsubscribes",
                    "preference_changes",
                )
            ),
            f"{one.list_after:,}",
        )
    out.print(table)


def _print_warnings(warnings: tuple[HealthWarning, ...]) -> None:
    for warning in warnings:
        out.print(f"Warning: {warning.text}", markup=False)
        out.print(warning.advice, markup=False)
