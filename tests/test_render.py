"""The render stage: HTML structure, inlined CSS, the text part, escaping, overrides and errors."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lxml.etree
import lxml.html
import pytest

from digest.config.schema import Config, parse_config
from digest.core.errors import ConfigError, TemplateError
from digest.core.models import Issue, Post, RenderedIssue, Section, Subscriber
from digest.issue.samples import check_templates, sample_issue
from digest.render.inline import inline_css
from digest.render.issue import render_issue
from digest.render.personalise import personalise, placeholder
from digest.render.theme import contrast_ratio

DATE = datetime(2017, 12, 1, 9, 30, tzinfo=UTC)
HOSTILE = '“Integrated” <budgets> & "quotes" <script>alert(1)</script>'
URL_LINE = re.compile(r"^(https?|mailto):\S+$")


def make_config(tmp_path: Path, extra: str = "", newsletter: str = "") -> Config:
    text = (
        "newsletter:\n"
        "  title: Collaborate Weekly\n"
        '  from: "Collaborate CIC <digest@example.org>"\n'
        f"{newsletter}"
        "feeds:\n"
        "  - name: From the blog\n    url: https://example.org/blog.xml\n"
        "  - name: Latest news\n    url: https://example.org/news.xml\n"
        f"{extra}"
    )
    return parse_config(text, "config.yaml", tmp_path, {})


def make_post(number: int, **changes: object) -> Post:
    post = Post(
        feed_url="https://example.org/blog.xml",
        key=f"post-{number}",
        link_key=f"example.org/post-{number}",
        title=f"Post number {number}",
        link=f"https://example.org/blog/post-{number}?utm_source=feed&ref=a%20b",
        published=DATE - timedelta(hours=number),
        author=f"Writer {number}" if number % 2 else "",
        summary_html=f"<p>Summary of post {number}.</p>",
        excerpt="A paragraph of summary text about the post that goes on for a while. " * 3,
        image_url=f"https://example.org/img/{number}.jpg" if number % 3 == 0 else "",
    )
    return replace(post, **changes)  # type: ignore[arg-type]


def make_issue(posts_per_section: int = 3, **first_post: object) -> Issue:
    blog = tuple(make_post(n) for n in range(1, posts_per_section + 1))
    if first_post:
        blog = (replace(blog[0], **first_post), *blog[1:])  # type: ignore[arg-type]
    news = tuple(make_post(n) for n in range(100, 100 + posts_per_section))
    return Issue(
        title="Collaborate Weekly",
        date=DATE,
        sections=(Section("From the blog", blog), Section("Latest news", news)),
    )


def parse(html: str) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(html)


def declarations(style: str) -> dict[str, str]:
    pairs = (part.split(":", 1) for part in style.split(";") if ":" in part)
    return {name.strip().lower(): value.strip() for name, value in pairs}


def same_style(first: str, second: str) -> bool:
    """Equal declarations, treating 0pt and 0px as 0 (premailer shortens zero lengths)."""

    def normal(style: str) -> dict[str, str]:
        return {k: re.sub(r"\b0(pt|px)\b", "0", v) for k, v in declarations(style).items()}

    return normal(first) == normal(second)


def top_level_rules(css: str) -> list[str]:
    """Each top-level rule's prelude: '@media ...' or a selector list."""
    preludes, depth, current = [], 0, ""
    for char in css:
        if char == "{":
            if depth == 0:
                preludes.append(current.strip())
            depth += 1
        elif char == "}":
            depth -= 1
            current = ""
        elif depth == 0:
            current += char
    return preludes


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path,
        newsletter="  logo_url: https://example.org/logo.png\n"
        "  archive_url: https://example.org/archive\n"
        "  intro: Hello **readers**, see [our site](https://example.org).\n"
        "  address: 1 Example Street\n",
    )


@pytest.fixture
def rendered(config: Config) -> RenderedIssue:
    return render_issue(make_issue(), config)


def test_html_document_has_the_email_essentials(rendered: RenderedIssue) -> None:
    doc = parse(rendered.html)
    assert doc.get("lang") == "en-GB"
    head = doc.find("head")
    assert head is not None
    assert head.xpath("meta[@charset='utf-8']")
    assert "width=device-width" in head.xpath("meta[@name='viewport']/@content")[0]
    assert head.xpath("meta[@name='color-scheme']/@content") == ["light dark"]
    assert head.xpath("meta[@name='supported-color-schemes']/@content") == ["light dark"]
    assert doc.findtext(".//title") == rendered.subject
    comments = [str(c.text) for c in doc.iter(lxml.etree.Comment)]
    assert any(c.startswith("[if mso]") and 'width="600"' in c for c in comments)


def test_every_table_is_presentational_and_every_image_has_alt_and_size(
    rendered: RenderedIssue,
) -> None:
    doc = parse(rendered.html)
    tables = doc.xpath("//table")
    assert len(tables) > 6
    assert all(t.get("role") == "presentation" for t in tables)
    images = doc.xpath("//img")
    assert len(images) == 3  # the logo and two thumbnails
    for image in images:
        assert image.get("alt") is not None
        assert image.get("width") and image.get("height")
        assert image.get("src", "").startswith("https://")
    assert images[0].get("alt") == "Collaborate Weekly"
    assert all(image.get("alt") == "" for image in images[1:])
    container = doc.xpath("//table[contains(@class, 'container')]")[0]
    assert "max-width:600px" in container.get("style").replace(" ", "")


def test_preheader_is_hidden_and_lists_the_top_posts(rendered: RenderedIssue) -> None:
    doc = parse(rendered.html)
    preheader = doc.xpath("//body/div[contains(@class, 'preheader')]")[0]
    style = declarations(preheader.get("style"))
    assert style["display"] == "none" and style["mso-hide"] == "all"
    assert preheader.text_content().startswith("Post number 1 · Post number 2 · Post number 100")


def test_headings_links_and_view_in_browser(rendered: RenderedIssue) -> None:
    doc = parse(rendered.html)
    assert [h.text_content() for h in doc.xpath("//h2")] == ["From the blog", "Latest news"]
    titles = doc.xpath("//h3/a")
    assert titles[0].text_content() == "Post number 1"
    assert titles[0].get("href") == "https://example.org/blog/post-1?utm_source=feed&ref=a%20b"
    view = doc.xpath("//a[@href='https://example.org/archive']")
    assert view and "browser" in view[0].text_content()
    unsubscribe = doc.xpath(f"//a[@href='{placeholder(rendered.marker, 'UNSUBSCRIBE_URL')}']")
    assert unsubscribe[0].text_content() == "Unsubscribe from Collaborate Weekly"
    assert "1 Example Street" in doc.text_content()


def test_css_is_inlined_and_only_media_and_client_rules_stay_in_one_style_block(
    rendered: RenderedIssue,
) -> None:
    doc = parse(rendered.html)
    styles = doc.xpath("//style")
    assert len(styles) == 1
    css = styles[0].text
    assert "@media (prefers-color-scheme: dark)" in css
    assert "!important" in css
    client_specific = re.compile(r"^(:root|a\[x-apple-data-detectors\]|\[data-ogs[cb]\] .+)$")
    for prelude in top_level_rules(css):
        if prelude.startswith("@media"):
            continue
        for selector in prelude.split(","):
            assert client_specific.match(selector.strip()), f"{selector!r} should be inlined"
    for element in doc.xpath("//h1 | //h2 | //h3 | //p | //td"):
        style = declarations(element.get("style", ""))
        assert "font-family" in style, lxml.html.tostring(element)[:80]
    excerpt = doc.xpath("//p[contains(@class, 'excerpt')]")[0]
    assert declarations(excerpt.get("style"))["color"] == "#1f2933"
    assert not re.search(r"#[0-9a-fA-F]{3}\b", rendered.html), "colours must be six-digit hex"


def test_body_text_and_links_meet_wcag_aa_contrast(tmp_path: Path) -> None:
    pale_accent = make_config(tmp_path, extra="theme:\n  accent: '#ffdd33'\n")
    doc = parse(render_issue(make_issue(), pale_accent).html)
    checked = 0
    for element in doc.iter(lxml.etree.Element):
        colour = declarations(element.get("style", "")).get("color")
        if not colour or not element.text_content().strip():
            continue
        background = next(
            (
                bg
                for ancestor in [element, *element.iterancestors()]
                if (bg := declarations(ancestor.get("style", "")).get("background-color"))
            ),
            "#ffffff",
        )
        if "preheader" in element.get("class", ""):
            continue
        assert contrast_ratio(colour, background) >= 4.5, (colour, background)
        checked += 1
    assert checked > 20


def test_forty_posts_stay_well_under_gmails_clipping_limit(config: Config) -> None:
    rendered = render_issue(make_issue(20), config)
    assert len(rendered.html.encode("utf-8")) < 80 * 1024
    assert rendered.warnings == ()


def test_an_oversized_issue_warns(config: Config) -> None:
    rendered = render_issue(make_issue(70), config)
    assert len(rendered.html.encode("utf-8")) > 90 * 1024
    assert len(rendered.warnings) == 1 and "Gmail clips" in rendered.warnings[0]


def test_text_part_is_written_for_people(rendered: RenderedIssue) -> None:
    text = rendered.text
    lines = text.splitlines()
    assert lines[:2] == ["Collaborate Weekly", "=================="]
    assert lines[2] == "1 December 2017 · 6 new posts"
    assert "Hello readers, see our site (https://example.org)." in text
    blog = lines.index("From the blog")
    assert lines[blog + 1] == "-" * len("From the blog")
    first = lines.index("Post number 1")
    assert lines[first + 1] == "1 December 2017 · Writer 1"
    assert lines[first + 2].startswith("A paragraph of summary text")
    link = "https://example.org/blog/post-1?utm_source=feed&ref=a%20b"
    assert link in lines
    assert lines.index(link) > first + 2
    assert lines.index("Latest news") > lines.index(link)
    unsubscribe = placeholder(rendered.marker, "UNSUBSCRIBE_URL")
    assert lines[-1] == unsubscribe or unsubscribe in lines[-3:]
    assert not re.search(r"<[a-z/][^>]*>|&[a-z]+;|&#\d+;", text)


def test_text_part_wraps_at_78_columns_without_breaking_urls(config: Config) -> None:
    long_link = "https://example.org/" + "a-very-long-path-segment/" * 6 + "?q=1&r=2"
    issue = make_issue(3, link=long_link, title="A long title " * 12)
    text = render_issue(issue, config).text
    for line in text.splitlines():
        assert len(line) <= 78 or URL_LINE.match(line), line
    assert long_link in text.splitlines()


def test_hostile_titles_escaped_in_html_and_intact_in_text(config: Config) -> None:
    rendered = render_issue(make_issue(title=HOSTILE, author='Eve "<img src=x>"'), config)
    doc = parse(rendered.html)
    assert doc.xpath("//h3/a")[0].text_content() == HOSTILE
    assert "“Integrated” &lt;budgets&gt; &amp;" in rendered.html
    assert not doc.xpath("//script") and "<script" not in rendered.html
    assert len(doc.xpath("//img")) == 3  # no image smuggled in through the author
    assert HOSTILE in rendered.text
    assert "\n" not in rendered.subject


def test_unsafe_links_and_images_are_dropped(config: Config) -> None:
    issue = make_issue(link="javascript:alert(1)", image_url="data:image/png;base64,xx")
    doc = parse(render_issue(issue, config).html)
    assert "javascript:" not in render_issue(issue, config).html
    assert doc.xpath("//h3")[0].text_content() == "Post number 1"
    assert all(img.get("src").startswith("https://") for img in doc.xpath("//img"))


def test_intro_markdown_has_raw_html_disabled(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, newsletter='  intro: "<script>x()</script> **Hi** <b onclick=x>there</b>"\n'
    )
    rendered = render_issue(make_issue(), config)
    intro = parse(rendered.html).xpath("//div[contains(@class, 'intro')]")[0]
    assert intro.xpath(".//strong")[0].text == "Hi"
    assert not intro.xpath(".//script | .//b | .//*[@onclick]")
    assert "&lt;b onclick=x&gt;there&lt;/b&gt;" in rendered.html  # shown as text, harmless


def test_subject_is_one_bounded_line(tmp_path: Path) -> None:
    config = make_config(tmp_path, newsletter='  subject: "{title} — {count} posts ({date})"\n')
    issue = replace(make_issue(), title="Collaborate\r\nWeekly " + "very " * 60)
    subject = render_issue(issue, config).subject
    assert "\n" not in subject and "\r" not in subject
    assert subject.startswith("Collaborate Weekly very")
    assert len(subject) <= 150
    default = render_issue(make_issue(), make_config(tmp_path)).subject
    assert default == "Collaborate Weekly: 6 new posts, 1 December 2017"


def test_unknown_subject_variable_is_a_template_error(tmp_path: Path) -> None:
    config = make_config(tmp_path, newsletter='  subject: "{title} {week}"\n')
    with pytest.raises(TemplateError, match=r"newsletter.subject: unknown variable \{week\}"):
        render_issue(make_issue(), config)


def test_dates_use_the_date_format_and_the_schedule_time_zone(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        newsletter='  date_format: "%A %-d %b"\n',
        extra="schedule:\n  day: friday\n  time: '08:00'\n  timezone: America/New_York\n",
    )
    issue = replace(make_issue(), date=datetime(2017, 12, 2, 3, 0, tzinfo=UTC))
    rendered = render_issue(issue, config)
    assert rendered.text.splitlines()[2].startswith("Friday 1 Dec ·")


def test_personalise_escapes_in_html_and_keeps_text_raw(rendered: RenderedIssue) -> None:
    ann = Subscriber(email="ann@example.com", name="<b>Ann & Co</b> %%DIGEST_EMAIL%%")
    url = "https://example.org/unsubscribe?token=abc&x=1"
    html, text = personalise(rendered, ann, url)
    assert "&lt;b&gt;Ann &amp; Co&lt;/b&gt; %%DIGEST_EMAIL%% (ann@example.com)" in html
    assert "<b>Ann & Co</b> %%DIGEST_EMAIL%% (ann@example.com)" in text
    doc = parse(html)
    assert doc.xpath("//a[contains(., 'Unsubscribe')]/@href") == [url]
    assert url in text.splitlines()
    for field in ("NAME", "UNSUBSCRIBE_URL"):
        assert placeholder(rendered.marker, field) not in html
        assert placeholder(rendered.marker, field) not in text
    assert not doc.xpath("//b")


def test_personalise_without_a_name(rendered: RenderedIssue) -> None:
    html, text = personalise(rendered, Subscriber("bob@example.com"), "mailto:x@example.org")
    assert "This email was sent to bob@example.com." in text
    assert placeholder(rendered.marker, "EMAIL") not in html and "()" not in html


def test_editor_templates_override_bundled_ones_file_by_file(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.txt").write_text(
        "{{ issue.title }} for {{ subscriber.name }}\n{% for s in sections %}* {{ s.title }}\n"
        "{% endfor %}{{ unsubscribe_url }}\n"
    )
    (tmp_path / "templates" / "post.html").write_text('<p class="mine">{{ post.title }}</p>\n')
    rendered = render_issue(make_issue(), make_config(tmp_path))
    _, text = personalise(rendered, Subscriber("ann@example.com", "Ann"), "https://x.org/u")
    assert text == "Collaborate Weekly for Ann\n* From the blog\n* Latest news\nhttps://x.org/u\n"
    doc = parse(rendered.html)
    assert [p.text for p in doc.xpath("//p[@class='mine']")][:2] == [
        "Post number 1",
        "Post number 2",
    ]
    assert doc.xpath("//meta[@name='color-scheme']")  # the rest is still the bundled email.html


def test_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    broken = tmp_path / "templates" / "post.html"
    broken.write_text("<p>\n{{ post.title }\n</p>\n")
    with pytest.raises(TemplateError) as caught:
        render_issue(make_issue(), make_config(tmp_path))
    message = str(caught.value)
    assert message.startswith(f"{broken}:2: syntax error:")
    assert "Traceback" not in message


def test_undefined_variable_names_file_line_expression_and_what_is_available(
    tmp_path: Path,
) -> None:
    (tmp_path / "templates").mkdir()
    broken = tmp_path / "templates" / "email.txt"
    broken.write_text(
        "{{ issue.title }}\n\n{% for section in sections %}\n{{ section.titel }}\n{% endfor %}\n"
    )
    with pytest.raises(TemplateError) as caught:
        render_issue(make_issue(), make_config(tmp_path))
    message = str(caught.value)
    assert message.startswith(f"{broken}:4: ")
    assert "has no attribute 'titel'" in message
    assert "`{{ section.titel }}`" in message
    assert "available variables: intro_html, intro_text, issue, issue_url, newsletter" in message


def test_check_templates_renders_every_feature(tmp_path: Path) -> None:
    assert check_templates(make_config(tmp_path)) == []
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.html").write_text(
        "{% if newsletter.logo_url %}{{ newsletter.logo_url.missing }}{% endif %}"
    )
    with pytest.raises(TemplateError, match=r"email.html:1: .*has no attribute 'missing'"):
        check_templates(make_config(tmp_path))


def test_check_templates_warns_when_a_full_issue_would_be_clipped(tmp_path: Path) -> None:
    config = make_config(tmp_path, extra="digest:\n  max_posts_per_section: 50\n")
    warnings = check_templates(config)
    assert len(warnings) == 1
    assert warnings[0].startswith("a full issue (100 posts) would be too big:")


def test_rendering_is_pure_and_repeatable(config: Config) -> None:
    issue = sample_issue(config)
    marker = "0123456789abcdef0123456789abcdef"
    assert render_issue(issue, config, marker=marker) == render_issue(issue, config, marker=marker)


def test_css_inline_gives_the_same_structure(config: Config) -> None:
    pytest.importorskip(
        "css_inline", reason="css-inline is an optional extra (pip install .[fast])"
    )
    fast = render_issue(make_issue(), config, inliner="css_inline", marker="m")
    slow = render_issue(make_issue(), config, marker="m")
    fast_doc, slow_doc = parse(fast.html), parse(slow.html)
    assert len(fast_doc.xpath("//style")) == 1
    assert fast_doc.xpath("//style")[0].text == slow_doc.xpath("//style")[0].text

    def elements(doc: lxml.html.HtmlElement) -> list[lxml.html.HtmlElement]:
        # html5ever (css-inline) adds the <tbody> every browser adds; lxml does not.
        return [e for e in doc.iter(lxml.etree.Element) if e.tag != "tbody"]

    for a, b in zip(elements(fast_doc), elements(slow_doc), strict=True):
        assert a.tag == b.tag
        assert same_style(a.get("style", ""), b.get("style", "")), a.tag
    assert fast.text == slow.text


def test_config_chooses_the_inliner(tmp_path: Path) -> None:
    pytest.importorskip(
        "css_inline", reason="css-inline is an optional extra (pip install .[fast])"
    )
    config = make_config(tmp_path, "inliner: css_inline\n")
    chosen = render_issue(make_issue(), config, marker="m")
    assert chosen == render_issue(make_issue(), config, inliner="css_inline", marker="m")
    assert "<tbody>" in chosen.html  # html5ever's parse, which premailer's lxml does not add
    assert "<tbody>" not in render_issue(make_issue(), config, inliner="premailer").html


def test_choosing_css_inline_without_it_installed_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "css_inline" else real_find_spec(name, *args),
    )
    config = make_config(tmp_path, "inliner: css_inline\n")
    with pytest.raises(ConfigError) as raised:
        render_issue(make_issue(), config)
    assert str(raised.value) == (
        "config.yaml: inliner: css_inline is not installed;"
        " run pip install 'digest[fast]' or set inliner: premailer"
    )


def test_theme_accent_and_font_brand_the_email_without_css_injection(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, extra="theme:\n  accent: '#AA3300'\n  font: 'Georgia, serif; } h1 { color: red'\n"
    )
    doc = parse(render_issue(make_issue(), config).html)
    header = doc.xpath("//td[contains(@class, 'header')]")[0]
    assert declarations(header.get("style"))["border-top"] == "4px solid #aa3300"
    title = doc.xpath("//h1")[0]
    assert declarations(title.get("style"))["font-family"] == "Georgia, serif h1 color red"
    assert declarations(title.get("style"))["color"] == "#111827"


@pytest.mark.parametrize("inliner", ["premailer", "css_inline"])
def test_rules_an_editor_adds_that_cannot_be_inlined_join_the_one_style_block(
    tmp_path: Path, inliner: str
) -> None:
    if inliner == "css_inline":
        pytest.importorskip("css_inline", reason="css-inline is an optional extra (.[fast])")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "email.css").write_text(
        "h1 { color: #222222; }\n"
        "a.link:hover { text-decoration: underline; }\n"
        "@media (max-width: 400px) { h1 { font-size: 20px !important; } }\n"
    )
    html = render_issue(make_issue(), make_config(tmp_path), inliner=inliner).html
    doc = parse(html)
    assert declarations(doc.xpath("//h1")[0].get("style")) == {"color": "#222222"}
    styles = doc.xpath("//style")
    assert len(styles) == 1
    css = styles[0].text
    assert "prefers-color-scheme: dark" in css  # the bundled kept rules are still there
    assert "max-width: 400px" in css and "font-size: 20px !important" in css
    if inliner == "premailer":  # css-inline drops pseudo-class rules it cannot inline
        assert "a.link:hover" in css
    assert "<!--[if mso]>" in html and "font-family: Arial" in html  # Outlook's block untouched


def test_floated_images_get_outlooks_align_attribute_and_others_none() -> None:
    floated = (
        "<html><head><style>.lead{float:right;width:120px}</style></head>"
        '<body><img class="lead" src="https://example.org/a.png" alt=""></body></html>'
    )
    plain = (
        "<html><head><style>.lead{width:120px}</style></head>"
        '<body><img class="lead" src="https://example.org/a.png" alt=""></body></html>'
    )
    floated_image = lxml.html.fromstring(inline_css(floated)).xpath("//img")[0]
    plain_image = lxml.html.fromstring(inline_css(plain)).xpath("//img")[0]
    assert floated_image.get("align") == "right"
    assert "float:right" in floated_image.get("style").replace(" ", "")
    assert plain_image.get("align") is None
    assert "width:120px" in plain_image.get("style").replace(" ", "")
