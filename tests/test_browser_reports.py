"""End to end in a real browser: the workbench's Reports page, after two real sends and a real
complaint, shows the health warning in plain words and three charts drawn as inline SVG, each
with a table holding the same figures behind a disclosure, and all of it works with JavaScript
off; after a tracked send and real clicks, it draws the latest issue's top links the same way."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import Project
from tests.support.serving import serving
from tests.test_browser_preview import CHROMIUM, CHROMIUM_ARGS, pytestmark  # noqa: F401
from tests.test_report_links import Clicked, clicked  # noqa: F401 (fixture)
from tests.test_reports import two_issues  # noqa: F401 (fixture)


def test_the_reports_page_draws_its_charts_with_their_tables(two_issues: Project) -> None:  # noqa: F811
    import pytest

    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    project = two_issues
    project.now = project.now + timedelta(days=2)
    with serving(project) as served, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(java_script_enabled=False)
            page.goto(f"{served.workbench}/preview")
            with page.expect_navigation():
                page.get_by_role("link", name="Reports").click()
            assert page.url == f"{served.workbench}/reports"
            answer = page.goto(f"{served.workbench}/reports")
            assert answer is not None and answer.status == 200
            assert "script-src" not in answer.headers["content-security-policy"]
            expect = sync_api.expect
            expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()
            expect(page.get_by_role("alert")).to_contain_text(
                "Issue 2's complaint rate is 14.29% (1 of 7 delivered), above the 0.1%"
            )
            expect(page.get_by_role("alert")).to_contain_text("Gmail and Yahoo")
            for chart, name in (
                ("list-size", "List size by week"),
                ("weekly", "Sign-ups, unsubscribes and bounces per week"),
                ("rates", "Per-issue rates, percent of delivered"),
            ):
                figure = page.locator(f"figure#{chart}")
                expect(figure.locator("svg[role=img]")).to_have_count(1)
                expect(figure.get_by_role("img", name=name)).to_be_visible()
                expect(figure.get_by_role("table", name=name)).to_be_hidden()
                figure.get_by_text("The figures as a table").click()  # no script needed
                expect(figure.get_by_role("table", name=name)).to_be_visible()
            rates = page.get_by_role("table", name="Per-issue rates, percent of delivered")
            expect(rates.get_by_role("row")).to_have_count(3)  # the header and two issues
            issue_2 = rates.get_by_role("row", name="Issue 2")
            expect(issue_2).to_contain_text("14.29%")
            expect(page.locator("figure#rates svg rect[fill]")).not_to_have_count(0)
            expect(page.locator("figure#top-links")).to_have_count(0)
            expect(page.get_by_text("Clicks were not counted for issue 2")).to_be_visible()
            weekly = page.get_by_role("table", name="Sign-ups, unsubscribes and bounces per week")
            expect(weekly.get_by_role("row")).to_have_count(27)  # the header and 26 weeks
            latest = page.get_by_role("table", name="Issue 2, sent 2026-12-01")
            expect(latest.get_by_role("row", name="Complaints")).to_contain_text("1")
            assert page.locator("script").count() == 0
        finally:
            browser.close()


def test_the_reports_page_draws_the_latest_issue_s_top_links(clicked: Clicked) -> None:  # noqa: F811
    import pytest

    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    project = clicked.project
    project.now = project.now + timedelta(days=1)
    with serving(project) as served, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(java_script_enabled=False)
            answer = page.goto(f"{served.workbench}/reports")
            assert answer is not None and answer.status == 200
            expect = sync_api.expect
            figure = page.locator("figure#top-links")
            expect(figure.locator("figcaption")).to_have_text("Top links")
            chart = figure.get_by_role("img", name="Top links of issue 1")
            expect(chart).to_be_visible()  # named by its title and its one-sentence summary
            expect(chart).to_have_accessible_name(
                "Top links of issue 1 The 3 links of issue 1 people followed most: 4 clicks by"
                " people and 2 by link scanners over its 3 links. A click rate is clicks by"
                " people per 100 messages delivered."
            )
            expect(figure.locator("svg rect[fill]")).to_have_count(3 + 2)  # bars and legend
            links = figure.get_by_role("table", name="Top links of issue 1")
            expect(links).to_be_hidden()
            figure.get_by_text("The figures as a table").click()  # no script needed
            expect(links).to_be_visible()
            expect(links.get_by_role("row")).to_have_count(4)  # the header and three links
            most = links.get_by_role("row").nth(1)
            expect(most.get_by_role("rowheader")).to_have_text(clicked.most)
            expect(most.get_by_role("cell")).to_have_text(["3", "2", "150%"])
            expect(links.get_by_role("row").nth(3).get_by_role("rowheader")).to_have_text(
                clicked.never
            )
            assert page.locator("script").count() == 0
        finally:
            browser.close()
