"""Top links in the reports, end to end: a real send with tracking.clicks on, the links in the
messages followed through the real `digest serve` by a browser and by a link scanner, then
`digest report` (table, JSON and CSV) and the emailed report show each link with its people
and scanner counts apart; an issue sent with tracking off says its clicks were not counted."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest

from tests.conftest import Project, post
from tests.support.serving import digest_serve
from tests.test_clicks_serve import BROWSER, SCANNER, redirects, track

# A post link with square brackets: a rich table must show it as written, not as markup.
MARKED = "https://example.org/blog/post-3?tag=[bold]x[/bold]"
POSTS = {MARKED, "https://example.org/blog/post-1", "https://example.org/news/post-10"}


@dataclass(frozen=True)
class Clicked:
    """The project after the clicks, and its links from the most followed to the least."""

    project: Project
    most: str
    once: str
    never: str


@pytest.fixture
def clicked(project: Project) -> Clicked:
    """Issue 1 sent with tracked links to Ann and Bob; later, people follow one link three
    times and another once, a scanner checks the first twice, and the third link is left."""
    track(project)
    project.serve("/blog.xml", [post(1), {**post(3, 0.5), "link": MARKED, "guid": MARKED}])
    assert project.run("send").exit_code == 0
    links = list(dict.fromkeys(redirects(project)[0]))
    assert len(links) == 3
    later = project.now + timedelta(hours=2)
    with digest_serve(project, env={"DIGEST_NOW": later.isoformat()}) as base:

        def follow(link: str, headers: dict[str, str]) -> str:
            answer = httpx.get(base + link, headers=headers)
            assert answer.status_code == 302
            return answer.headers["location"]

        most = [follow(links[1], BROWSER) for _ in range(3)]
        follow(links[1], SCANNER)
        follow(links[1], SCANNER)
        once = follow(links[2], BROWSER)
    [never] = POSTS - {most[0], once}
    return Clicked(project, most[0], once, never)


def report(project: Project, *args: str) -> str:
    result = project.run("report", *args, now=project.now + timedelta(days=1))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def test_the_report_shows_the_links_people_followed_most(clicked: Clicked) -> None:
    project, most, once, never = clicked.project, clicked.most, clicked.once, clicked.never
    table = report(project)
    assert "Top links" in table
    flat = " ".join(table.split())
    assert "4 clicks by people, 2 by link scanners and prefetchers" in flat
    # Two messages delivered: three clicks by people on one link is a click rate of 150%.
    rows = [line for line in table.splitlines() if "│" in line and "example.org" in line]
    assert len(rows) == 3
    assert re.search(r"│\s*3\s*│\s*2\s*│\s*150%\s*│", rows[0]) and most.split("/")[-1] in rows[0]
    assert re.search(r"│\s*1\s*│\s*0\s*│\s*50%\s*│", rows[1]) and once.split("/")[-1] in rows[1]
    assert re.search(r"│\s*0\s*│\s*0\s*│\s*0%\s*│", rows[2])
    assert "tag=[bold]x" in table and "[/bold]" in table  # shown as written, not as markup

    data = json.loads(report(project, "--format", "json"))
    assert data["links"] == [
        {"rank": 1, "url": most, "people": 3, "scanners": 2, "click_rate": 150.0},
        {"rank": 2, "url": once, "people": 1, "scanners": 0, "click_rate": 50.0},
        {"rank": 3, "url": never, "people": 0, "scanners": 0, "click_rate": 0.0},
    ]

    # The issues' CSV keeps its columns; the links are a CSV of their own.
    issues = list(csv.DictReader(io.StringIO(report(project, "--format", "csv"))))
    assert len(issues) == 1 and "url" not in issues[0]
    links = list(csv.DictReader(io.StringIO(report(project, "--format", "csv", "--links"))))
    assert [(r["issue"], r["rank"], r["url"], r["people"], r["scanners"]) for r in links] == [
        ("1", "1", most, "3", "2"),
        ("1", "2", once, "1", "0"),
        ("1", "3", never, "0", "0"),
    ]
    assert links[0]["click_rate"] == "150.00"
    wrong = project.run("report", "--links")
    assert wrong.exit_code == 2 and "--links goes with --format csv" in wrong.output


def test_an_issue_sent_with_tracking_off_says_its_clicks_were_not_counted(
    clicked: Clicked,
) -> None:
    project = clicked.project
    project.write_config()  # tracking off from now on
    project.serve("/blog.xml", [post(4, 0)])
    assert project.run("send", now=project.now + timedelta(hours=3)).exit_code == 0
    untracked = report(project, "2")
    assert "Clicks were not counted for this issue (tracking.clicks is off)." in untracked
    assert "Top links" not in untracked
    assert json.loads(report(project, "2", "--format", "json"))["links"] is None
    # The earlier issue's counts stay, and a CSV of both issues' links holds only its rows.
    assert "Top links" in report(project, "1")
    rows = list(
        csv.DictReader(
            io.StringIO(report(project, "--since", "2026-01-01", "--format", "csv", "--links"))
        )
    )
    assert {row["issue"] for row in rows} == {"1"} and len(rows) == 3
    # The emailed report says so too.
    from digest.config.schema import load_config
    from digest.reports.gather import gather
    from digest.reports.mail import render

    config = load_config(project.config)
    found = gather(config, project.now + timedelta(days=3))
    email = render(config, found.reports[-1], found.warnings, timedelta(hours=72))
    assert "Clicks were not counted for this issue (tracking.clicks is off)." in email.text
    assert "Clicks were not counted for this issue (tracking.clicks is off)." in email.html
    assert "Top links" not in email.text + email.html


def test_the_emailed_report_lists_the_top_links(clicked: Clicked) -> None:
    from digest.config.schema import load_config
    from digest.reports.gather import gather
    from digest.reports.mail import render

    project = clicked.project
    config = load_config(project.config)
    found = gather(config, project.now + timedelta(days=3))
    email = render(config, found.reports[-1], found.warnings, timedelta(hours=72))
    assert re.search(
        r"\n\s+3\s+2\s+150%\s+" + re.escape(clicked.most) + "\n",
        email.text,
    ), email.text
    assert re.search(r"\n\s+1\s+0\s+50%\s+" + re.escape(clicked.once), email.text)
    assert "Top links" in email.html and "150%" in email.html
    assert "[bold]x[/bold]" in email.html and "ann@example.com" not in email.text + email.html
