"""With nothing new, the workbench's preview says so, and the sample issue standing in is labelled
a sample in the issue itself (so a saved preview says so too), dated today, with no image that
would not load."""

from __future__ import annotations

import re

import httpx
import lxml.html

from tests.conftest import Project
from tests.support.serving import serving

LABEL = "This is a sample issue."


def test_the_sample_issue_is_labelled_dated_today_and_has_no_broken_images(
    project: Project,
) -> None:
    assert project.run("send").exit_code == 0  # nothing is new after this
    with serving(project) as served:
        page = httpx.get(f"{served.workbench}/preview", timeout=30)
        assert page.status_code == 200
        text = httpx.get(f"{served.workbench}/preview.txt", timeout=30).text
    doc = lxml.html.document_fromstring(page.text)
    assert doc.get_element_by_id("preview-notice").text_content().startswith("Nothing new")
    note = doc.xpath("//div[contains(@class, 'note')]")[0].text_content()
    assert note.startswith(LABEL) and "without images" in note
    assert "Five lessons from a decade of community health partnerships" in page.text
    images = [img.get("src") for img in doc.xpath("//img")]
    assert images == [], images  # the sample's thumbnails are not real images: none are shown
    dates = {p.text_content().split(" · ")[0] for p in doc.xpath("//p[contains(@class, 'meta')]")}
    assert dates <= {"30 November 2026", "29 November 2026", "28 November 2026"}, dates
    assert "2017" not in page.text
    assert LABEL in text and "2017" not in text

    out = project.root / "saved.html"
    saved = project.run("preview", "--out", str(out))
    assert saved.exit_code == 0, saved.output
    written = out.read_text(encoding="utf-8")
    assert "preview-notice" not in written and LABEL in re.sub(r"<[^>]+>", "", written)


def test_a_preview_with_new_posts_carries_no_sample_label(project: Project) -> None:
    text = project.run("preview", "--text")
    assert text.exit_code == 0
    assert "Post number 1" in text.stdout and LABEL not in text.stdout
