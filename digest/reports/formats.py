"""Reports as JSON or CSV, for a board report or a spreadsheet: pure, text out.

Rates are percentages rounded to two decimals (null/empty when there is nothing to divide
by). A CSV cell that a spreadsheet would run as a formula (a subject starting with `=`, `+`,
`-` or `@`: subjects come from feed posts) is written with a leading apostrophe.

The JSON of an issue sent with tracked links holds every link in `links`, the most followed
by people first (null for an issue sent without). The CSV keeps one row per issue with columns
that do not change; the links are a CSV of their own (`as_links_csv`, `digest report --links`),
one row per issue and link, so each file is one table a spreadsheet reads as it is.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from digest.reports.figures import COUNTS, IssueReport
from digest.reports.health import HealthWarning

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def as_data(report: IssueReport, warnings: Sequence[HealthWarning] = ()) -> dict[str, Any]:
    """One report as plain data (what the JSON holds)."""
    return {
        "issue": report.issue_id,
        "subject": report.counts.subject,
        "sent_at": report.counts.sent_at.isoformat(),
        "compacted": report.counts.compacted,
        "addressed": report.addressed,
        "pending": report.counts.pending,
        "list_before": report.list_before,
        "list_after": report.list_after,
        "new_signups": report.signups,
        "counts": {
            figure.key: {"count": figure.count, "rate": _rounded(figure.rate)}
            for figure in report.figures()
        },
        "links": None
        if not report.tracked
        else [
            {
                "rank": link.rank,
                "url": link.url,
                "people": link.people,
                "scanners": link.scanners,
                "click_rate": _rounded(link.rate),
            }
            for link in report.links()
        ],
        "warnings": [
            {
                "kind": warning.kind,
                "rate": _rounded(warning.rate),
                "limit": warning.limit,
                "text": warning.text,
                "advice": warning.advice,
            }
            for warning in warnings
            if warning.issue_id == report.issue_id
        ],
    }


def as_json(reports: Sequence[IssueReport], warnings: Sequence[HealthWarning], *, one: bool) -> str:
    """The reports as JSON: one object when `one`, else a list, oldest first."""
    data = [as_data(report, warnings) for report in reports]
    return json.dumps(data[0] if one and data else data, indent=2, ensure_ascii=False) + "\n"


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


CSV_COLUMNS: tuple[str, ...] = (
    "issue",
    "subject",
    "sent_at",
    "addressed",
    "list_before",
    "list_after",
    "new_signups",
    *(f"{key}{suffix}" for key, _, _ in COUNTS for suffix in ("", "_rate")),
    "healthy",
)


def as_csv(reports: Sequence[IssueReport], warnings: Sequence[HealthWarning]) -> str:
    """The reports as CSV, one row per issue, oldest first, with a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    unhealthy = {warning.issue_id for warning in warnings}
    for report in reports:
        row: list[object] = [
            report.issue_id,
            report.counts.subject,
            report.counts.sent_at.isoformat(),
            report.addressed,
            report.list_before,
            report.list_after,
            report.signups,
        ]
        for figure in report.figures():
            row += [figure.count, "" if figure.rate is None else f"{figure.rate:.2f}"]
        row.append("no" if report.issue_id in unhealthy else "yes")
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()


LINK_COLUMNS: tuple[str, ...] = ("issue", "rank", "url", "people", "scanners", "click_rate")


def as_links_csv(reports: Sequence[IssueReport]) -> str:
    """The tracked links of the reports' issues as CSV, one row per issue and link (the most
    followed by people first within an issue), with a header row; issues sent without tracked
    links have no rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(LINK_COLUMNS)
    for report in reports:
        for link in report.links():
            row: list[object] = [
                report.issue_id,
                link.rank,
                link.url,
                link.people,
                link.scanners,
                "" if link.rate is None else f"{link.rate:.2f}",
            ]
            writer.writerow([_cell(value) for value in row])
    return out.getvalue()
