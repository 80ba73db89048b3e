"""One-off emails (confirmation, welcome, "held" notice, the editor's report) pass the issue's
rendering checks: the 600px frame with Outlook's fixed table, presentational tables (the report's
figures are data tables, with a caption and header cells), alt texts, CSS inlined with only
dark-mode and phone rules kept, no external CSS, the theme, AA contrast, a bulletproof button and
a text part for people; and in Chromium they fit 600 and 375 px, light and dark."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lxml.etree
import lxml.html
import pytest

from digest.config.schema import Config
from digest.core.errors import TemplateError
from digest.issue.samples import check_templates
from digest.render.message import RenderedMessage, render_message
from digest.render.theme import contrast_ratio
from digest.reports import mail
from digest.reports.figures import IssueCounts, issue_reports
from digest.reports.health import Limits, warnings
from digest.store.clicks import LinkCount
from tests.test_render import URL_LINE, declarations, make_config, parse, top_level_rules

LINK = "https://news.example.org/confirm?token=" + "abcdefghij" * 8
PREFERENCES = "https://news.example.org/preferences?token=" + "klmnopqrst" * 8
LATEST = "https://news.example.org/issues/3-collaborate-weekly/"
APPROVAL = "https://news.example.org/approval?token=xyz"
ISSUE_PAGE = "https://news.example.org/issues/3-collaborate-weekly/"
LONG_LINK = (
    "https://example.org/blog/a-post-whose-address-is-much-too-long-for-one-row-of-the-table"
)

Render = Callable[[Config], RenderedMessage]


def confirmation(config: Config) -> RenderedMessage:
    return render_message(
        config,
        "confirm-email",
        subject="Confirm your subscription to Collaborate Weekly",
        heading="Confirm your subscription",
        recipient="ann@example.org",
        context={"name": "Ann", "link": LINK, "days": 2},
    )


def welcome(config: Config) -> RenderedMessage:
    return render_message(
        config,
        "welcome-email",
        subject="Welcome to Collaborate Weekly",
        heading="Welcome to Collaborate Weekly",
        recipient="ann@example.org",
        context={"name": "", "preferences": PREFERENCES, "latest_url": LATEST},
    )


def held(config: Config) -> RenderedMessage:
    return render_message(
        config,
        "held-email",
        subject="Held: Collaborate Weekly, 2026-11-30",
        heading="The issue due 2026-11-30 08:00 UTC is held",
        recipient="editor@example.org",
        context={
            "due": "2026-11-30T08:00:00+00:00",
            "why": "not approved in time",
            "until": "2026-11-30T14:00:00+00:00",
            "approval_url": APPROVAL,
        },
    )


def report(config: Config) -> RenderedMessage:
    counts = IssueCounts(
        3,
        "Collaborate Weekly, 30 November",
        datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
        delivered=998,
        failed=2,
        pending=0,
        complaints=2,
        links=(LinkCount(LONG_LINK, 31, 2), LinkCount("https://example.org/short", 4, 0)),
    )
    [issue] = issue_reports([counts], [])
    email = mail.render(
        config,
        issue,
        warnings([issue], Limits()),
        timedelta(hours=72),
        issue_page=ISSUE_PAGE,
    )
    return RenderedMessage(email.subject, email.html, email.text)


EMAILS: dict[str, tuple[Render, str, str]] = {
    "confirmation": (confirmation, LINK, "Confirm your subscription"),
    "welcome": (welcome, LATEST, "Read the latest issue"),
    "held": (held, APPROVAL, "Approve or hold it"),
    "report": (report, ISSUE_PAGE, "See the issue in the archive"),
}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path,
        newsletter="  logo_url: https://example.org/logo.png\n  address: 1 Example Street\n",
    )


@pytest.fixture(params=sorted(EMAILS))
def email(request: pytest.FixtureRequest, config: Config) -> tuple[RenderedMessage, str, str]:
    build, url, label = EMAILS[request.param]
    return build(config), url, label


def test_the_email_essentials_as_in_the_issue(email: tuple[RenderedMessage, str, str]) -> None:
    rendered, _, _ = email
    doc = parse(rendered.html)
    assert doc.get("lang") == "en-GB"
    head = doc.find("head")
    assert head is not None
    assert head.xpath("meta[@charset='utf-8']")
    assert "width=device-width" in head.xpath("meta[@name='viewport']/@content")[0]
    assert head.xpath("meta[@name='color-scheme']/@content") == ["light dark"]
    assert doc.findtext(".//title") == rendered.subject
    comments = [str(c.text) for c in doc.iter(lxml.etree.Comment)]
    assert any(c.startswith("[if mso]") and 'width="600"' in c for c in comments)
    container = doc.xpath("//table[contains(@class, 'container')]")[0]
    assert "max-width:600px" in container.get("style").replace(" ", "")
    preheader = doc.xpath("//body/div[contains(@class, 'preheader')]")[0]
    assert declarations(preheader.get("style"))["display"] == "none"


def test_tables_are_presentational_and_the_logo_has_alt_and_size(
    email: tuple[RenderedMessage, str, str],
) -> None:
    doc = parse(email[0].html)
    for table in doc.xpath("//table"):
        if table.find("caption") is not None:  # the report's figures: a data table
            assert table.get("role") is None and table.xpath("thead//th[@scope='col']")
            assert table.xpath("tbody/tr/th[@scope='row']")
        else:
            assert table.get("role") == "presentation"
    images = doc.xpath("//img")
    assert len(images) == 1
    assert images[0].get("alt") == "Collaborate Weekly"
    assert images[0].get("width") and images[0].get("height")


def test_css_is_inlined_with_only_dark_mode_and_phone_rules_kept_and_none_external(
    email: tuple[RenderedMessage, str, str],
) -> None:
    rendered = email[0]
    doc = parse(rendered.html)
    styles = doc.xpath("//style")
    assert len(styles) == 1
    css = styles[0].text
    assert "@media (prefers-color-scheme: dark)" in css and "max-width: 620px" in css
    client_specific = re.compile(r"^(:root|a\[x-apple-data-detectors\]|\[data-ogs[cb]\] .+)$")
    for prelude in top_level_rules(css):
        if not prelude.startswith("@media"):
            for selector in prelude.split(","):
                assert client_specific.match(selector.strip()), f"{selector!r} should be inlined"
    assert not doc.xpath("//link") and "@import" not in rendered.html
    for element in doc.xpath("//h1 | //p | //td | //th | //caption"):
        assert "font-family" in declarations(element.get("style", ""))
    assert not re.search(r"#[0-9a-fA-F]{3}\b", rendered.html), "colours must be six-digit hex"


def test_a_bulletproof_button_in_the_accent_with_the_emails_link(
    email: tuple[RenderedMessage, str, str], config: Config
) -> None:
    rendered, url, label = email
    doc = parse(rendered.html)
    cells = doc.xpath("//table[contains(@class, 'button')]//td")
    assert len(cells) == 1
    cell = cells[0]
    assert cell.get("bgcolor") == config.theme.accent
    assert declarations(cell.get("style"))["background-color"] == config.theme.accent
    link = cell.xpath("a")[0]
    assert link.get("href") == url and link.text_content() == label
    style = declarations(link.get("style"))
    assert style["display"] == "inline-block" and style["padding"] == "12px 24px"
    header = doc.xpath("//td[contains(@class, 'header')]")[0]
    assert declarations(header.get("style"))["border-top"] == f"4px solid {config.theme.accent}"


def test_text_part_is_written_for_people_and_keeps_the_link_whole(
    email: tuple[RenderedMessage, str, str],
) -> None:
    rendered, url, _ = email
    lines = rendered.text.splitlines()
    assert lines[1] == "=" * len(lines[0])
    assert url in lines
    for line in lines:
        assert len(line) <= 78 or URL_LINE.match(line), line
    assert "1 Example Street" in lines
    assert not re.search(r"<[a-z/][^>]*>|&[a-z]+;|&#\d+;", rendered.text)


@pytest.mark.parametrize("name", sorted(EMAILS))
def test_text_and_links_meet_wcag_aa_contrast_with_a_pale_accent(tmp_path: Path, name: str) -> None:
    pale = make_config(tmp_path, extra="theme:\n  accent: '#ffdd33'\n")
    doc = parse(EMAILS[name][0](pale).html)
    checked = 0
    for element in doc.iter(lxml.etree.Element):
        colour = declarations(element.get("style", "")).get("color")
        if not colour or not element.text_content().strip():
            continue
        if "preheader" in element.get("class", ""):
            continue
        background = next(
            (
                bg
                for ancestor in [element, *element.iterancestors()]
                if (bg := declarations(ancestor.get("style", "")).get("background-color"))
            ),
            "#ffffff",
        )
        assert contrast_ratio(colour, background) >= 4.5, (colour, background)
        checked += 1
    assert checked >= 5


def test_what_a_reader_gives_is_escaped(config: Config) -> None:
    rendered = render_message(
        config,
        "confirm-email",
        subject="s",
        heading="h",
        recipient="ann@example.org",
        context={"name": '<img src=x onerror="alert(1)">', "link": LINK, "days": 1},
    )
    assert "<img src=x" not in rendered.html and "&lt;img src=x" in rendered.html
    assert "The link works for 1 day." in rendered.text


def test_an_editors_template_replaces_the_bundled_one(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "welcome-email.html").write_text(
        '{% extends "bundled/welcome-email.html" %}\n'
        "{% block content %}<p>Glad you are here.</p>{{ super() }}{% endblock %}\n"
    )
    html = welcome(make_config(tmp_path)).html
    assert "Glad you are here." in html and "Read the latest issue" in html


def test_an_editors_report_template_replaces_the_bundled_one(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "report-email.txt").write_text(
        '{% extends "bundled/report-email.txt" %}\n'
        "{% block content %}For the board: {{ issue_subject }}\n{{ super() }}{% endblock %}\n"
    )
    rendered = report(make_config(tmp_path))
    assert "For the board: Collaborate Weekly, 30 November" in rendered.text
    assert "List size: 1,000 before, 998 after." in rendered.text
    assert "For the board" not in rendered.html


def test_the_report_without_an_archive_page_has_no_button(config: Config) -> None:
    [issue] = issue_reports(
        [IssueCounts(3, "Three", datetime(2026, 11, 30, 8, 0, tzinfo=UTC), 10, 0, 0)], []
    )
    email = mail.render(config, issue, (), timedelta(hours=72))
    assert not parse(email.html).xpath("//table[contains(@class, 'button')]")
    assert "archive" not in email.text + email.html
    assert "Clicks were not counted for this issue (tracking.clicks is off)." in email.text


def test_the_welcome_without_a_latest_issue_has_no_button(config: Config) -> None:
    rendered = render_message(
        config,
        "welcome-email",
        subject="Welcome",
        heading="Welcome",
        recipient="ann@example.org",
        context={"name": "", "preferences": PREFERENCES, "latest_url": ""},
    )
    assert not parse(rendered.html).xpath("//table[contains(@class, 'button')]")
    assert "latest issue" not in rendered.text and PREFERENCES in rendered.text


# ---------------------------------------------------------------- in a browser

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not at /usr/bin/chromium; `make browser` installs it with apt-get",
)
def test_in_chromium_each_email_fits_600_and_375_pixels_light_and_dark(config: Config) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    from tests.test_browser_preview import CHROMIUM_ARGS

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for name, (build, _, label) in EMAILS.items():
                # No network: the logo is swapped for an inline image of the same size.
                html = build(config).html.replace(
                    "https://example.org/logo.png", "data:image/gif;base64,R0lGODlhAQABAAAAACw="
                )
                for width in (600, 375):
                    for scheme in ("light", "dark"):
                        page = browser.new_page(
                            viewport={"width": width, "height": 800}, color_scheme=scheme
                        )
                        page.set_content(html)
                        where = f"{name} at {width}px, {scheme}"
                        overflow = page.evaluate(
                            "document.documentElement.scrollWidth - window.innerWidth"
                        )
                        assert overflow <= 0, where
                        button = page.get_by_role("link", name=label).bounding_box()
                        assert button is not None and button["height"] >= 40, where
                        assert button["x"] >= 0 and button["x"] + button["width"] <= width, where
                        card = page.evaluate(
                            "getComputedStyle(document.querySelector('.card')).backgroundColor"
                        )
                        dark = card == "rgb(26, 31, 37)"
                        assert dark == (scheme == "dark"), (where, card)
                        page.close()
        finally:
            browser.close()


def test_digest_check_renders_the_emails_and_names_a_mistakes_file_and_line(
    tmp_path: Path,
) -> None:
    assert check_templates(make_config(tmp_path)) == []
    (tmp_path / "templates").mkdir()
    broken = tmp_path / "templates" / "welcome-email.html"
    broken.write_text(
        '{% extends "bundled/welcome-email.html" %}\n{% block content %}\n'
        "<p>{{ newsletter.no_such_key }}</p>\n{% endblock %}\n"
    )
    with pytest.raises(TemplateError) as raised:
        check_templates(make_config(tmp_path))
    assert f"{broken}:3:" in str(raised.value) and "no_such_key" in str(raised.value)
