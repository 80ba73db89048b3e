"""`report`: one issue's report (delivered, failed, bounces, complaints, unsubscribes and
preference changes, each a number and a rate; sign-ups; list size), or every issue since a
date with its rates, as a table, JSON or CSV; and the health warnings in plain words."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from digest.cli.options import current_time, with_config
from digest.cli.output import out
from digest.config.schema import Config
from digest.core.errors import DigestError
from digest.reports.figures import IssueReport
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
@with_config
def report(config: Config, number: int | None, since_text: str | None, shape: str) -> None:
    """An issue's report and its health; with --since, every issue since a date.

    NUMBER is the issue as `digest history` numbers it; without it, the latest issue."""
    from digest.reports import formats
    from digest.reports.gather import gather

    since = _since(since_text)
    if since is not None and number is not None:
        raise click.UsageError("give either an issue NUMBER or --since, not both")
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
            out.print(formats.as_csv((), ()), end="", markup=False)
        else:
            out.print("No issues sent since then." if since else "No issues sent yet.")
        return
    warnings = tuple(w for w in found.warnings if w.issue_id in {r.issue_id for r in chosen})
    if shape == "json":
        out.print(formats.as_json(chosen, warnings, one=since is None), end="", markup=False)
    elif shape == "csv":
        out.print(formats.as_csv(chosen, warnings), end="", markup=False, soft_wrap=True)
    elif since is None:
        _print_one(chosen[0])
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
