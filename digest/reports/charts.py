"""The reports drawn as inline SVG, each chart followed by a table of the same figures (its text
alternative): pure, markup out, no JavaScript.

Every value that reaches the markup is escaped; the charts draw numbers only, and the one text
from outside (an issue's subject) goes into table cells and <title> elements escaped. Each
series has its own colour and its name in a legend, and the table says everything the chart
shows, so nothing depends on telling colours apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from digest.reports.figures import TOP_LINKS, IssueReport, TopLink, Week
from digest.reports.health import percent

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 48
COLOURS = ("#1f6feb", "#c2410c", "#6d28d9", "#15803d")


@dataclass(frozen=True)
class Series:
    """One named row of values, one per column of the chart."""

    name: str
    values: tuple[float | None, ...]


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _scale(series: Sequence[Series]) -> float:
    """A round top for the y axis: at least every value, never 0."""
    top = max((v for s in series for v in s.values if v is not None), default=0.0)
    if top <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(top))
    return float(next(f * magnitude for f in (1, 2, 2.5, 5, 10) if f * magnitude >= top))


def _frame(chart_id: str, title: str, summary: str, labels: Sequence[str], top: float) -> list[str]:
    """The svg element, its title and description, the y axis with its gridlines, and the
    column labels."""
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="100%" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc"'
        ' style="max-width:720px;font:12px sans-serif">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(summary)}</desc>',
    ]
    for step in range(5):
        value = top * step / 4
        y = TOP + inner_h - inner_h * step / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + inner_w}" y1="{y:.1f}" y2="{y:.1f}"'
            ' stroke="#ddd" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#444">'
            f"{_number(value)}</text>"
        )
    column = inner_w / max(1, len(labels))
    every = max(1, len(labels) // 12)  # at most about 12 labels, so they never overlap
    for index, label in enumerate(labels):
        if index % every:
            continue
        x = LEFT + column * (index + 0.5)
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" fill="#444">'
            f"{escape(label)}</text>"
        )
    return parts


def _legend(series: Sequence[Series], height: int = HEIGHT) -> str:
    """Each series' colour and name, along the foot of a chart `height` high."""
    parts = []
    x = LEFT
    for index, one in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        parts.append(
            f'<rect x="{x}" y="{height - 18}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{x + 16}" y="{height - 8}" fill="#222">{escape(one.name)}</text>'
        )
        x += 24 + 8 * len(one.name)
    return "".join(parts)


def bar_chart(
    chart_id: str,
    title: str,
    summary: str,
    labels: Sequence[str],
    series: Sequence[Series],
    limits: Sequence[tuple[str, float]] = (),
) -> str:
    """Grouped bars, one group per label, one bar per series; `limits` are dashed lines with
    their names (e.g. a rate's threshold)."""
    top = _scale([*series, Series("", tuple(value for _, value in limits))])
    parts = _frame(chart_id, title, summary, labels, top)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    column = inner_w / max(1, len(labels))
    bar = column * 0.8 / max(1, len(series))
    for index, one in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        for position, value in enumerate(one.values):
            if not value:
                continue
            height = inner_h * value / top
            x = LEFT + column * position + column * 0.1 + bar * index
            parts.append(
                f'<rect x="{x:.1f}" y="{TOP + inner_h - height:.1f}" width="{bar:.1f}"'
                f' height="{height:.1f}" fill="{colour}"><title>{escape(one.name)},'
                f" {escape(labels[position])}: {_number(value)}</title></rect>"
            )
    for name, value in limits:
        y = TOP + inner_h - inner_h * value / top
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + inner_w}" y1="{y:.1f}" y2="{y:.1f}"'
            ' stroke="#b91c1c" stroke-dasharray="6 4" stroke-width="1.5"/>'
            f'<text x="{LEFT + inner_w}" y="{y - 4:.1f}" text-anchor="end" fill="#b91c1c">'
            f"{escape(name)}</text>"
        )
    parts.append(_legend(series))
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    chart_id: str, title: str, summary: str, labels: Sequence[str], series: Series
) -> str:
    """One line through the values that are known, with a dot at each."""
    top = _scale([series])
    parts = _frame(chart_id, title, summary, labels, top)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    column = inner_w / max(1, len(labels))
    points = [
        (LEFT + column * (index + 0.5), TOP + inner_h - inner_h * value / top, value)
        for index, value in enumerate(series.values)
        if value is not None
    ]
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{COLOURS[0]}" stroke-width="2"/>'
        )
    for x, y, value in points:
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLOURS[0]}">'
            f"<title>{_number(value)}</title></circle>"
        )
    parts.append(_legend([series]))
    parts.append("</svg>")
    return "".join(parts)


def table(caption: str, head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain table with a caption and column headers; every cell escaped."""
    header = "".join(f'<th scope="col">{escape(cell)}</th>' for cell in head)
    body = "".join(
        "<tr>"
        + f'<th scope="row">{escape(row[0])}</th>'
        + "".join(f"<td>{escape(cell)}</td>" for cell in row[1:])
        + "</tr>"
        for row in rows
    )
    return (
        f"<table><caption>{escape(caption)}</caption><thead><tr>{header}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def _figure(chart_id: str, caption: str, svg: str, alternative: str) -> str:
    """The chart and its table under one caption; the table behind a disclosure (open it to
    read every figure; a screen reader reaches it as a button and a table)."""
    return (
        f'<figure id="{chart_id}" class="chart"><figcaption>{escape(caption)}</figcaption>'
        f"{svg}<details><summary>The figures as a table</summary>{alternative}</details>"
        "</figure>"
    )


def list_size_chart(weeks: Sequence[Week]) -> str:
    """The list size week by week (at the latest issue sent by then), with its table."""
    labels = [f"{week.starts:%d %b}" for week in weeks]
    sizes = tuple(None if w.list_size is None else float(w.list_size) for w in weeks)
    known = [w.list_size for w in weeks if w.list_size is not None]
    summary = (
        f"From {known[0]:,} to {known[-1]:,} readers over {len(weeks)} weeks."
        if known
        else "No issue sent in these weeks."
    )
    svg = line_chart("list-size", "List size by week", summary, labels, Series("Readers", sizes))
    rows = [
        (f"Week of {w.starts:%Y-%m-%d}", "–" if w.list_size is None else f"{w.list_size:,}")
        for w in weeks
    ]
    return _figure(
        "list-size",
        "List size over time",
        svg,
        table("List size by week", ("Week", "Readers"), rows),
    )


def weekly_chart(weeks: Sequence[Week]) -> str:
    """Sign-ups, unsubscribes and bounces per week, with their table."""
    labels = [f"{week.starts:%d %b}" for week in weeks]
    series = (
        Series("Sign-ups", tuple(float(w.signups) for w in weeks)),
        Series("Unsubscribes", tuple(float(w.unsubscribes) for w in weeks)),
        Series("Bounces", tuple(float(w.bounces) for w in weeks)),
    )
    summary = (
        f"{sum(w.signups for w in weeks):,} sign-ups, {sum(w.unsubscribes for w in weeks):,}"
        f" unsubscribes and {sum(w.bounces for w in weeks):,} bounces over {len(weeks)} weeks."
    )
    svg = bar_chart(
        "weekly", "Sign-ups, unsubscribes and bounces per week", summary, labels, series
    )
    rows = [
        (f"Week of {w.starts:%Y-%m-%d}", str(w.signups), str(w.unsubscribes), str(w.bounces))
        for w in weeks
    ]
    return _figure(
        "weekly",
        "Sign-ups, unsubscribes and bounces per week",
        svg,
        table(
            "Sign-ups, unsubscribes and bounces per week",
            ("Week", "Sign-ups", "Unsubscribes", "Bounces"),
            rows,
        ),
    )


RATE_KEYS = (
    ("complaints", "Complaint rate"),
    ("hard_bounces", "Hard-bounce rate"),
    ("unsubscribes", "Unsubscribe rate"),
)


def rates_chart(
    reports: Sequence[IssueReport], max_complaint_rate: float, max_hard_bounce_rate: float
) -> str:
    """Each issue's complaint, hard-bounce and unsubscribe rates (percent of delivered), with
    the health limits drawn across, and their table."""
    labels = [f"#{report.issue_id}" for report in reports]
    series = tuple(
        Series(name, tuple(report.rate_of(key) for report in reports)) for key, name in RATE_KEYS
    )
    summary = (
        f"Rates of the last {len(reports)} issues, in percent of messages delivered; the"
        f" limits are {percent(max_complaint_rate)} for complaints and"
        f" {percent(max_hard_bounce_rate)} for hard bounces."
    )
    svg = bar_chart(
        "rates",
        "Per-issue rates, percent of delivered",
        summary,
        labels,
        series,
        limits=(
            (f"complaint limit {percent(max_complaint_rate)}", max_complaint_rate),
            (f"hard-bounce limit {percent(max_hard_bounce_rate)}", max_hard_bounce_rate),
        ),
    )
    rows = [
        (
            f"Issue {report.issue_id}",
            f"{report.counts.sent_at:%Y-%m-%d}",
            report.counts.subject,
            f"{report.counts.delivered:,}",
            *(_shown(report.rate_of(key)) for key, _ in RATE_KEYS),
        )
        for report in reports
    ]
    return _figure(
        "rates",
        "Per-issue rates",
        svg,
        table(
            "Per-issue rates, percent of delivered",
            ("Issue", "Sent", "Subject", "Delivered", *(name for _, name in RATE_KEYS)),
            rows,
        ),
    )


LABEL_WIDTH, ROW = 280, 26  # the links chart: room for a link's name, height of one link


def _short(url: str, room: int = 40) -> str:
    """A link as a chart names it: without its scheme, and when longer than `room`
    characters, its host and the end of the rest (where links to one site differ); the table
    and each bar's title give it whole."""
    bare = url.split("://", 1)[-1]
    if len(bare) <= room:
        return bare
    host, _, rest = bare.partition("/")
    if len(host) > room // 2:
        return bare[: room - 1] + "…"
    return f"{host}/…{rest[-(room - len(host) - 2) :]}"


def _count_scale(values: Sequence[float]) -> float:
    """A top for an axis of counts in four steps, each a whole 1, 2 or 5 times a power of
    ten, so no gridline falls between two counts."""
    need = max(values, default=0.0) / 4
    if need <= 1:
        return 4.0
    magnitude = 10 ** math.floor(math.log10(need))
    return float(4 * next(f * magnitude for f in (1, 2, 5, 10) if f * magnitude >= need))


def link_chart(chart_id: str, title: str, summary: str, links: Sequence[TopLink]) -> str:
    """Horizontal bars, one pair per link (people, scanners), each link named at its left:
    links are long, so they read across rather than under a column."""
    series = (
        Series("People", tuple(float(link.people) for link in links)),
        Series("Scanners", tuple(float(link.scanners) for link in links)),
    )
    top = _count_scale([value or 0.0 for one in series for value in one.values])
    height = TOP + ROW * max(1, len(links)) + 52
    left, inner_w = LABEL_WIDTH, WIDTH - LABEL_WIDTH - RIGHT
    bottom = TOP + ROW * max(1, len(links))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}"'
        f' width="100%" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc"'
        ' style="max-width:720px;font:12px sans-serif">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(summary)}</desc>',
    ]
    for step in range(5):
        x = left + inner_w * step / 4
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{bottom}"'
            ' stroke="#ddd" stroke-width="1"/>'
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" fill="#444">'
            f"{_number(top * step / 4)}</text>"
        )
    bar = (ROW - 6) / len(series)
    for position, link in enumerate(links):
        y = TOP + ROW * position
        parts.append(
            f'<text x="{left - 8}" y="{y + ROW / 2 + 4:.1f}" text-anchor="end" fill="#222">'
            f"{link.rank}. {escape(_short(link.url))}</text>"
        )
        for index, one in enumerate(series):
            value = one.values[position] or 0.0
            if not value:
                continue
            parts.append(
                f'<rect x="{left}" y="{y + 3 + bar * index:.1f}"'
                f' width="{inner_w * value / top:.1f}" height="{bar:.1f}"'
                f' fill="{COLOURS[index % len(COLOURS)]}"><title>{escape(one.name)},'
                f" {escape(link.url)}: {_number(value)}</title></rect>"
            )
    parts.append(_legend(series, height))
    parts.append("</svg>")
    return "".join(parts)


def top_links_chart(report: IssueReport) -> str:
    """The links people followed most in an issue (at most TOP_LINKS), people and scanners
    apart, with their table; a one-line note instead when its clicks were not counted."""
    if not report.tracked:
        return (
            '<p class="note">Clicks were not counted for issue'
            f" {report.issue_id} (tracking.clicks is off).</p>"
        )
    every = report.links()
    shown = every[:TOP_LINKS]
    people = sum(link.people for link in every)
    scanners = sum(link.scanners for link in every)
    summary = (
        f"The {len(shown)} links of issue {report.issue_id} people followed most:"
        f" {people:,} clicks by people and {scanners:,} by link scanners over its"
        f" {len(every)} links. A click rate is clicks by people per 100 messages delivered."
    )
    name = f"Top links of issue {report.issue_id}"
    svg = link_chart("top-links", name, summary, shown)
    rows = [
        (link.url, f"{link.people:,}", f"{link.scanners:,}", _shown(link.rate)) for link in shown
    ]
    return _figure(
        "top-links",
        "Top links",
        svg,
        table(name, ("Link", "People", "Scanners", "Click rate"), rows),
    )


def _shown(value: float | None) -> str:
    return "–" if value is None else percent(value)


PAGE_STYLE = (
    "body{font-family:Helvetica,Arial,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;"
    "line-height:1.5;color:#222}table{border-collapse:collapse;margin:.5em 0 2em}"
    "caption{text-align:left;font-weight:bold;padding:.3em 0}"
    "th,td{border:1px solid #ccc;padding:.2em .6em;text-align:right}th{white-space:nowrap}"
    "summary{cursor:pointer;color:#1f4fa0}"
    "th[scope=row],td:nth-child(3){text-align:left}figure{margin:2em 0}"
    "figcaption{font-size:1.2em;font-weight:bold}"
    "#top-links th[scope=row]{white-space:normal;overflow-wrap:anywhere;font-weight:normal}"
    "#top-links thead th:first-child{text-align:left}#top-links td{text-align:right}"
    ".note{color:#555}"
    ".warning{background:#fff4e5;border-left:4px solid #c2410c;padding:.6em 1em;margin:1em 0}"
)


def report_page(
    reports: Sequence[IssueReport],
    weeks: Sequence[Week],
    warnings: Sequence[tuple[str, str]],
    max_complaint_rate: float,
    max_hard_bounce_rate: float,
) -> str:
    """The workbench's Reports page: the health warnings in plain words (text, advice), the
    latest issue's figures and its top links (when its clicks were counted), and the three
    charts each with its table. `reports` oldest first; the rates chart shows the last 12
    issues."""
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Reports</title><style>{PAGE_STYLE}</style></head><body>"
        '<p><a href="preview">Back to the preview</a></p><h1>Reports</h1>'
    ]
    for text, advice in warnings:
        parts.append(
            f'<div class="warning" role="alert"><p><strong>{escape(text)}</strong></p>'
            f"<p>{escape(advice)}</p></div>"
        )
    if not reports:
        parts.append("<p>No issue has been sent yet: reports appear after the first send.</p>")
    else:
        latest = reports[-1]
        rows = [
            (figure.label, f"{figure.count:,}", _shown(figure.rate)) for figure in latest.figures()
        ]
        rows += [
            ("List size before", f"{latest.list_before:,}", ""),
            ("List size after", f"{latest.list_after:,}", ""),
            ("New sign-ups since the previous issue", f"{latest.signups:,}", ""),
        ]
        parts.append(f"<h2>Issue {latest.issue_id}: {escape(latest.counts.subject)}</h2>")
        parts.append(
            table(
                f"Issue {latest.issue_id}, sent {latest.counts.sent_at:%Y-%m-%d}",
                ("", "Count", "Rate"),
                rows,
            )
        )
        parts.append(top_links_chart(latest))
    parts.append(list_size_chart(weeks))
    parts.append(weekly_chart(weeks))
    if reports:
        parts.append(rates_chart(reports[-12:], max_complaint_rate, max_hard_bounce_rate))
    parts.append("</body></html>")
    return "".join(parts)
