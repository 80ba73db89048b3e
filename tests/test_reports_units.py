"""The pure parts of the reports: rates, sign-ups between issues, list sizes, weeks, health
warnings, CSV and JSON, and the charts' markup. No state, no servers."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from html import escape

from digest.reports.charts import bar_chart, rates_chart, report_page, top_links_chart, weekly_chart
from digest.reports.figures import IssueCounts, issue_reports, monday, rate, weeks
from digest.reports.formats import as_csv, as_json, as_links_csv
from digest.reports.health import Limits, percent, warnings

MONDAY = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def counts(issue: int, sent_at: datetime, *, delivered: int = 1000, **changes: int) -> IssueCounts:
    failed = changes.pop("failed", 0)
    return IssueCounts(issue, f"Issue {issue}", sent_at, delivered, failed, 0, **changes)


def test_rates_are_shares_of_addressed_or_of_delivered() -> None:
    [report] = issue_reports([counts(1, MONDAY, delivered=990, failed=10, complaints=2)], [])
    shown = {figure.key: figure.rate for figure in report.figures()}
    assert shown["delivered"] == 99.0 and shown["failed"] == 1.0
    assert shown["complaints"] == 100 * 2 / 990
    assert rate(1, 0) is None
    [empty] = issue_reports([counts(2, MONDAY, delivered=0, failed=3)], [])
    assert empty.rate_of("complaints") is None and empty.rate_of("failed") == 100


def test_sign_ups_count_between_one_issue_and_the_next_and_the_list_shrinks_by_what_it_lost() -> (
    None
):
    first, second = MONDAY - timedelta(weeks=1), MONDAY
    confirmed = [first - timedelta(days=1), first, first + timedelta(days=1), second]
    reports = issue_reports(
        [
            counts(2, second, delivered=50, hard_bounces=1, complaints=1, unsubscribes=3),
            counts(1, first),
        ],
        confirmed,
    )
    assert [r.issue_id for r in reports] == [1, 2]  # oldest first, whatever order given
    assert [r.signups for r in reports] == [2, 2]  # at the send counts for the issue sent
    assert (reports[1].list_before, reports[1].list_after) == (50, 45)


def test_weeks_start_on_monday_and_carry_the_list_size_forward() -> None:
    assert monday(datetime(2026, 12, 6, 23, 0, tzinfo=UTC)) == date(2026, 11, 30)
    reports = issue_reports([counts(1, MONDAY - timedelta(weeks=2), delivered=40)], [])
    found = weeks(
        reports,
        [MONDAY],
        [(MONDAY, "unsubscribe"), (MONDAY, "hard"), (MONDAY, "soft"), (MONDAY, "complaint")],
        MONDAY + timedelta(days=2),
        count=4,
    )
    assert [w.starts for w in found][-1] == date(2026, 11, 30)
    assert [w.list_size for w in found] == [None, 40, 40, 40]
    assert (found[-1].signups, found[-1].unsubscribes, found[-1].bounces) == (1, 1, 2)


def test_a_warning_names_the_rate_the_limit_and_the_setting() -> None:
    reports = issue_reports(
        [
            counts(1, MONDAY, delivered=1200, complaints=3),
            counts(2, MONDAY + timedelta(weeks=1), delivered=1000, hard_bounces=20),
            counts(3, MONDAY + timedelta(weeks=2), delivered=1000, hard_bounces=21),
        ],
        [],
    )
    found = warnings(reports, Limits())
    assert [(w.issue_id, w.kind) for w in found] == [(1, "complaints"), (3, "hard_bounces")]
    assert found[0].text == (
        "Issue 1's complaint rate is 0.25% (3 of 1,200 delivered), above the 0.1% set in"
        " reports.max_complaint_rate."
    )
    assert "Gmail and Yahoo" in found[0].advice and "double opt-in" in found[1].advice
    assert warnings(reports, Limits(max_complaint_rate=0.3, max_hard_bounce_rate=2.1)) == ()
    assert [percent(v) for v in (0.25, 2, 12.5, 0.1)] == ["0.25%", "2%", "12.5%", "0.1%"]


def test_csv_keeps_a_subject_from_running_as_a_formula_and_json_holds_every_count() -> None:
    hostile = IssueCounts(1, '=HYPERLINK("https://evil.example")', MONDAY, 10, 0, 0)
    reports = issue_reports([hostile], [])
    [row] = list(csv.DictReader(io.StringIO(as_csv(reports, ()))))
    assert row["subject"].startswith("'=")
    assert (row["delivered"], row["delivered_rate"], row["healthy"]) == ("10", "100.00", "yes")
    data = json.loads(as_json(reports, (), one=True))
    assert data["issue"] == 1 and data["counts"]["complaints"] == {"count": 0, "rate": 0.0}
    assert json.loads(as_json(reports, (), one=False))[0]["subject"] == hostile.subject


def test_charts_escape_what_they_show_and_hold_no_script() -> None:
    reports = issue_reports(
        [IssueCounts(1, "<script>alert(1)</script> & more", MONDAY, 10, 0, 0, complaints=1)], []
    )
    page = report_page(
        reports,
        weeks(reports, [], [], MONDAY, 3),
        [("Issue 1's <b>rate</b>", "Do <this>")],
        0.1,
        2.0,
    )
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt;rate&lt;/b&gt;" in page and "Do &lt;this&gt;" in page
    assert page.count('role="img"') == 3 and page.count("<table>") == 4
    assert "aria-labelledby" in page


def test_each_chart_draws_what_its_table_holds() -> None:
    reports = issue_reports(
        [
            counts(1, MONDAY, delivered=100, complaints=1, unsubscribes=2),
            counts(2, MONDAY + timedelta(weeks=1), delivered=100, hard_bounces=3),
        ],
        [],
    )
    markup = rates_chart(reports, 0.1, 2.0)
    bars = re.findall(r"<title>([^<]+)</title></rect>", markup)
    assert bars == [
        "Complaint rate, #1: 1",
        "Hard-bounce rate, #2: 3",
        "Unsubscribe rate, #1: 2",
    ]
    assert "<td>1%</td><td>0%</td><td>2%</td>" in markup
    week_markup = weekly_chart(weeks(reports, [MONDAY], [], MONDAY, 2))
    assert re.findall(r"<title>(Sign-ups[^<]+)</title>", week_markup) == ["Sign-ups, 30 Nov: 1"]
    empty = bar_chart("e", "Nothing", "No figures.", ["a"], [])
    assert empty.startswith("<svg") and empty.endswith("</svg>")


# ---------------------------------------------------------------- top links


def tracked(*links: tuple[str, int, int], delivered: int = 200) -> IssueCounts:
    from digest.store import LinkCount

    return IssueCounts(
        1, "Issue 1", MONDAY, delivered, 0, 0, links=tuple(LinkCount(*link) for link in links)
    )


def test_top_links_are_the_most_followed_by_people_with_a_click_rate_over_delivered() -> None:
    [report] = issue_reports(
        [
            tracked(
                ("https://example.org/a", 1, 9),
                ("https://example.org/b", 5, 0),
                ("https://example.org/c", 1, 9),
                ("https://example.org/d", 1, 2),
                ("https://example.org/e", 0, 0),
            )
        ],
        [],
    )
    assert report.tracked
    shown = report.links(3)
    assert [(link.rank, link.url[-1], link.people, link.scanners) for link in shown] == [
        (1, "b", 5, 0),
        (2, "a", 1, 9),  # ties: more scanners first, then the order the issue shows them
        (3, "c", 1, 9),
    ]
    assert shown[0].rate == 2.5 and len(report.links()) == 5
    [untracked] = issue_reports([counts(2, MONDAY)], [])
    assert not untracked.tracked and untracked.links() == ()
    assert json.loads(as_json([untracked], (), one=True))["links"] is None
    [nothing_delivered] = issue_reports([tracked(("https://example.org/a", 1, 0), delivered=0)], [])
    assert nothing_delivered.links()[0].rate is None


def test_the_links_csv_keeps_a_link_from_running_as_a_formula() -> None:
    reports = issue_reports([tracked(("=HYPERLINK(1)", 2, 1), ("https://example.org/a", 1, 0))], [])
    rows = list(csv.DictReader(io.StringIO(as_links_csv(reports))))
    assert [(r["rank"], r["url"], r["people"], r["scanners"], r["click_rate"]) for r in rows] == [
        ("1", "'=HYPERLINK(1)", "2", "1", "1.00"),
        ("2", "https://example.org/a", "1", "0", "0.50"),
    ]
    assert as_links_csv(issue_reports([counts(2, MONDAY)], [])) == (
        "issue,rank,url,people,scanners,click_rate\r\n"
    )


def test_the_top_links_chart_escapes_its_links_and_draws_what_its_table_holds() -> None:
    hostile = "https://example.org/?q=<script>alert(1)</script>"
    many = [(f"https://example.org/post-{n}", n, 1) for n in range(12)]
    [report] = issue_reports([tracked((hostile, 20, 3), *many)], [])
    markup = top_links_chart(report)
    assert "<script" not in markup and "&lt;script&gt;" in markup
    assert markup.count('role="img"') == 1 and "aria-labelledby" in markup
    assert re.findall(r"<title>(People[^<]+)</title></rect>", markup)[:2] == [
        f"People, {escape(hostile)}: 20",
        "People, https://example.org/post-11: 11",
    ]
    rows = re.findall(r"<tr><th scope=\"row\">([^<]+)</th>", markup)
    assert len(rows) == 10 and rows[0] == escape(hostile)  # the ten most followed
    assert "<td>20</td><td>3</td><td>10%</td>" in markup
    page = report_page([report], weeks([report], [], [], MONDAY, 3), [], 0.1, 2.0)
    assert page.count('role="img"') == 4 and 'id="top-links"' in page
    [untracked] = issue_reports([counts(1, MONDAY)], [])
    plain = report_page([untracked], weeks([untracked], [], [], MONDAY, 3), [], 0.1, 2.0)
    assert 'id="top-links"' not in plain and plain.count('role="img"') == 3
    assert "Clicks were not counted for issue 1 (tracking.clicks is off)." in plain
