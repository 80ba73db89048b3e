"""End to end in a real browser: "Leave out" in the workbench takes a post out of the preview
and out of the next real send."""

from __future__ import annotations

import re

from tests.conftest import Project
from tests.test_browser_preview import preview_page, pytestmark  # noqa: F401


def test_leave_out_in_the_workbench_removes_the_post_from_preview_and_send(
    project: Project,
) -> None:
    with preview_page(project) as (sync_api, page, url):
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        titles = page.locator("h3.post-title")
        sync_api.expect(titles).to_have_count(3)
        sync_api.expect(titles.filter(has_text="Post number 2")).to_have_count(1)
        row = page.locator("#editor-controls tr", has_text="Post number 2")
        sync_api.expect(row).to_have_attribute("data-status", "in")
        row.get_by_role("button", name="Leave out").click()
        page.wait_for_url(url)
        sync_api.expect(titles).to_have_count(2)
        sync_api.expect(titles.filter(has_text="Post number 2")).to_have_count(0)
        sync_api.expect(titles.filter(has_text=re.compile(r"Post number 1\b"))).to_have_count(1)
        sync_api.expect(row).to_have_attribute("data-status", "left out")
        sync_api.expect(row.get_by_role("button", name="Put back")).to_have_count(1)
        assert errors == []

    sent = project.run_process("send")
    assert sent.returncode == 0, sent.stderr
    assert "Sent issue with 2 posts: 2 delivered" in sent.stdout
    assert len(project.smtp.received) == 2
    for message in project.smtp.received:
        for part in (message.part("html"), message.part("plain")):
            assert "Post number 1" in part and "Post number 10" in part
            assert "Post number 2" not in part
