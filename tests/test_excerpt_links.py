"""Excerpts keep the links of the feed's summary: linked in the HTML part, "text (URL)" in the
text part; http(s) only, sanitised, escaped, and never a link cut in half."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from digest.core.models import Issue, Section
from digest.feeds.parse import entry_to_post
from digest.render.htmltext import MAX_LINKS, link_spans
from digest.render.issue import render_issue
from tests.support.properties import examples
from tests.test_render import declarations, make_config, parse

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
SUMMARY = (
    '<p>The council published <a href="https://example.org/report?y=2026&amp;p=1">its'
    ' <em>spending</em> report</a> today. Write to <a href="mailto:council@example.org">the'
    ' council</a>, see <a href="javascript:alert(1)">this</a> or read'
    ' <a href="/relative/minutes">the minutes</a> and <a href="https://example.org/x">'
    "https://example.org/x</a>.</p>"
)


def issue_with(summary: str) -> Issue:
    entry = {
        "title": "Budget day",
        "link": "https://example.org/blog/budget",
        "id": "budget",
        "summary": summary,
        "summary_detail": {"type": "text/html"},
    }
    post = entry_to_post(entry, "https://example.org/blog.xml", "https://example.org/blog/", NOW)
    return Issue(title="Collaborate Weekly", date=NOW, sections=(Section("Blog", (post,)),))


def test_the_summarys_links_are_kept_in_the_html_and_as_urls_in_the_text(
    tmp_path: Path,
) -> None:
    rendered = render_issue(issue_with(SUMMARY), make_config(tmp_path))
    excerpt = parse(rendered.html).xpath("//p[contains(@class, 'excerpt')]")[0]
    links = {a.text_content(): a.get("href") for a in excerpt.xpath(".//a")}
    assert links == {
        "its spending report": "https://example.org/report?y=2026&p=1",
        "the minutes": "https://example.org/relative/minutes",  # made absolute when parsed
        "https://example.org/x": "https://example.org/x",
    }
    assert "javascript" not in rendered.html and "mailto:council" not in rendered.html
    assert excerpt.text_content().startswith("The council published its spending report today.")
    style = declarations(excerpt.xpath(".//a")[0].get("style"))
    assert style["color"] and style["text-decoration"] == "underline"
    text = " ".join(rendered.text.split())
    assert "its spending report (https://example.org/report?y=2026&p=1) today." in text
    assert "the minutes (https://example.org/relative/minutes)" in text
    assert "and https://example.org/x." in text and "(https://example.org/x)" not in text
    assert "the council," in text and "mailto" not in text
    css = parse(rendered.html).xpath("//style")[0].text
    assert ".excerpt a" in css.split("prefers-color-scheme: dark")[1]


def test_a_link_the_excerpt_cuts_off_is_left_out_and_text_is_escaped(tmp_path: Path) -> None:
    long = "word " * 45
    summary = (
        '<p>Say <a href="https://example.org/a?q=&quot;x&quot;">&lt;b&gt; &amp; co</a>.'
        f' {long}<a href="https://example.org/late">a link past the cut</a></p>'
    )
    rendered = render_issue(issue_with(summary), make_config(tmp_path))
    excerpt = parse(rendered.html).xpath("//p[contains(@class, 'excerpt')]")[0]
    (link,) = excerpt.xpath(".//a")
    assert link.get("href") == 'https://example.org/a?q="x"' and link.text_content() == "<b> & co"
    assert "&lt;b&gt; &amp; co</a>" in rendered.html
    assert "late" not in rendered.html and excerpt.text_content().endswith("…")


def test_links_whose_text_spans_blocks_or_sits_in_dropped_elements_are_not_linked() -> None:
    assert link_spans('<a href="https://a.example"><p>one</p><p>two</p></a>') == []
    assert link_spans('<script><a href="https://a.example">x</a></script>') == []
    assert link_spans('<a href="https://a.example"><img src="x" alt=""></a>') == []
    assert link_spans('<a href="https://a.example">a <a href="https://b">b</a></a>') == [
        ("a b", "https://a.example")
    ]
    many = "".join(f'<a href="https://a.example/{n}">{n}</a> ' for n in range(MAX_LINKS + 5))
    assert len(link_spans(many)) == MAX_LINKS


@examples(300)
@given(st.text(max_size=300))
def test_link_spans_never_fail_and_give_only_whole_web_urls(fragment: str) -> None:
    for label, url in link_spans(fragment):
        assert label == label.strip() and "\n" not in label
        assert re.match(r"https?://\S+\Z", url, re.IGNORECASE)


labels = st.text(st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=20)


@examples(60)
@given(st.lists(labels, min_size=1, max_size=6), st.text(max_size=40))
def test_an_excerpt_with_links_reads_the_same_as_without(words: list[str], filler: str) -> None:
    summary = "".join(
        f'{html.escape(filler)} <a href="https://example.org/{n}">{html.escape(word)}</a> '
        for n, word in enumerate(words)
    )
    config = make_config(Path("/nonexistent"))
    rendered = render_issue(issue_with(f"<p>{summary}</p>"), config)
    excerpt = parse(rendered.html).xpath("//p[contains(@class, 'excerpt')]")
    post = issue_with(f"<p>{summary}</p>").sections[0].posts[0]
    if post.excerpt:
        assert excerpt[0].text_content() == post.excerpt
        for link in excerpt[0].xpath(".//a"):
            assert link.get("href", "").startswith("https://example.org/")
