"""Feed HTML as text: blocks, lists and line breaks stay apart, in lines and on one line."""

from __future__ import annotations

import pytest

from digest.render.htmltext import (
    MAX_LINKS,
    after_body_tag,
    collapse,
    error_line,
    html_to_line,
    html_to_text,
    link_spans,
    shorten,
    web_url,
)
from tests.conftest import Project

ARTICLE = (
    "<p>Most guides quietly say otherwise.</p>"
    "<ul><li>Start before the specification exists</li><li>Pay people for their time</li>"
    "<li>Publish what you changed</li></ul><p>More next week.</p>"
)


def test_paragraphs_and_a_list_in_lines() -> None:
    assert html_to_text(ARTICLE) == (
        "Most guides quietly say otherwise.\n\n"
        "- Start before the specification exists\n"
        "- Pay people for their time\n"
        "- Publish what you changed\n\n"
        "More next week."
    )


def test_paragraphs_and_a_list_on_one_line() -> None:
    assert html_to_line(ARTICLE) == (
        "Most guides quietly say otherwise. Start before the specification exists; "
        "Pay people for their time; Publish what you changed — More next week."
    )


def test_nested_lists_are_indented_and_unclosed_items_end_at_the_next() -> None:
    html = "<ol><li>One<ul><li>One a<li>One b</ul></li><li>Two<br>still two</ol>"
    assert html_to_text(html) == "- One\n  - One a\n  - One b\n- Two\n  still two"
    assert html_to_line(html) == "One; One a; One b; Two — still two"
    three = "<ul><li>a<ul><li>b<ul><li>c</ul><li>d</ul><li>e</ul>"
    assert html_to_text(three) == "- a\n  - b\n    - c\n  - d\n- e"


def test_headings_and_line_breaks() -> None:
    html = "<h2>Why it matters</h2>First line<br>second line<br/><br>after a gap<h3>Next:</h3>x"
    assert html_to_text(html) == (
        "Why it matters\n\nFirst line\nsecond line\n\nafter a gap\n\nNext:\n\nx"
    )
    assert html_to_line(html) == (
        "Why it matters — First line — second line — after a gap — Next: x"
    )


def test_entities_are_decoded_and_whitespace_collapsed() -> None:
    html = "<p>  Fish&nbsp;&amp;\n\tchips &#8212; &lt;tag&gt; &eacute;t&eacute;  </p>\n\n<p></p>"
    assert html_to_text(html) == "Fish & chips — <tag> été"
    assert html_to_line(html) == "Fish & chips — <tag> été"


@pytest.mark.parametrize(
    "hidden",
    [
        "<script>alert('x')</script>",
        "<style>p { color: red }</style>",
        "<template><p>later</p></template>",
        "<noscript><p>enable js</p></noscript>",
        "<svg><text>drawn</text></svg>",
    ],
)
def test_scripts_styles_and_other_non_text_are_dropped(hidden: str) -> None:
    html = f"<p>Before</p>{hidden}<p>After</p>"
    assert html_to_text(html) == "Before\n\nAfter"


def test_a_dropped_element_ends_only_at_its_own_closing_tag() -> None:
    # Inside a dropped element other tags are not tracked, an unclosed one included, but the
    # same element nested in itself is: text resumes after the outermost closing tag.
    assert html_to_text("<svg><p>inside</svg>After") == "After"
    nested = "<p>Before</p><svg><svg>x</svg>hidden</svg><p>After</p>"
    assert html_to_text(nested) == "Before\n\nAfter"
    assert html_to_text("<p>Before <svg/> after</p>") == "Before after"


def test_control_characters_in_feed_text_are_removed() -> None:
    assert html_to_text("<p>a\x00b\x07c</p>") == "abc"
    assert collapse(" a\x01b \n c ") == "ab c"


def test_tables_and_preformatted_text() -> None:
    html = "<table><tr><th>Day</th><th>Room</th></tr><tr><td>Mon</td><td>4</td></tr></table>"
    assert html_to_text(html) == "Day | Room\n\nMon | 4"
    assert html_to_text("<pre>a  b\nc</pre>") == "a b\nc"


def test_each_table_row_is_its_own_line_even_unclosed() -> None:
    assert html_to_text("<table><tr><td>a<tr><td>b</table>") == "a\n\nb"
    assert html_to_text("<table><tr><td>a</td></tr><td>b</td></table>") == "a\n\nb"
    assert html_to_text("<p>One</p>Two") == "One\n\nTwo"


def test_preformatted_text_keeps_its_lines_until_its_outermost_pre_closes() -> None:
    html = "<pre>x<pre>y</pre>a\nb</pre>c\nd"
    assert html_to_text(html) == "x\n\ny\n\na\nb\n\nc d"


def test_shorten_cuts_at_the_last_break_in_the_second_half_else_mid_word() -> None:
    assert shorten("one\ntwo\nthree four", 12) == "one\ntwo…"
    # The only space is at the half: cutting there would lose too much.
    assert shorten("abcde fghijkl", 10) == "abcde fgh…"
    # Trailing punctuation and spaces go before the ellipsis; letters stay.
    assert shorten("TAX TAX TAXES", 8) == "TAX TAX…"
    assert shorten("Fish, chips; peas", 12) == "Fish, chips…"


def test_an_error_is_one_bounded_line_or_its_type_name() -> None:
    assert error_line(ValueError()) == "ValueError"
    assert error_line(ValueError("  bad\n\tthing  ")) == "bad thing"
    long = error_line(ValueError("word " * 100))
    assert len(long) <= 200 and long.endswith("word…")
    assert error_line(OSError("x " * 10), 9) == "x x x x…"
    assert len(error_line(ValueError("x" * 201))) == 200


def test_a_fragment_goes_at_the_top_of_the_body_or_of_the_document() -> None:
    document = '<html><BODY class="x">hi</body>'
    assert after_body_tag(document, "<p>F</p>") == '<html><BODY class="x"><p>F</p>hi</body>'
    assert after_body_tag("<p>hi</p>", "<p>F</p>") == "<p>F</p><p>hi</p>"
    assert after_body_tag("<bodyx><body>t", "F") == "<bodyx><body>Ft"


def test_plain_text_and_empty_input() -> None:
    assert html_to_text("just words") == "just words"
    assert html_to_line("") == html_to_text("   ") == ""


def test_the_text_part_shows_a_summarys_list_as_lines(project: Project) -> None:
    project.serve(
        "/blog.xml",
        [
            {
                "title": "Listed",
                "link": "https://example.org/blog/listed",
                "guid": "https://example.org/blog/listed",
                "summary": ARTICLE,
            }
        ],
    )
    result = project.run("send")
    assert result.exit_code == 0, result.output
    message = project.smtp.to("ann@example.com")[0]
    lines = message.part("plain").splitlines()
    start = lines.index("Most guides quietly say otherwise.")
    assert lines[start : start + 5] == [
        "Most guides quietly say otherwise.",
        "- Start before the specification exists",
        "- Pay people for their time",
        "- Publish what you changed",
        "More next week.",
    ]
    html = message.part("html")
    assert "Start before the specification exists; Pay people for their time;" in html


# -- link_spans: the links an excerpt can keep ------------------------------------


def test_link_spans_gives_each_web_links_text_and_url_in_order() -> None:
    fragment = (
        '<p>See <a href="https://a.example/x?y=1&amp;z=2">the  <em>full</em>\n report</a>,'
        ' <A HREF=" HTTP://B.example/ ">B &amp; co</A> and <a href="https://c.example">c</a>.</p>'
    )
    assert link_spans(fragment) == [
        ("the full report", "https://a.example/x?y=1&z=2"),
        ("B & co", "HTTP://B.example/"),
        ("c", "https://c.example"),
    ]


def test_link_spans_leaves_out_other_schemes_and_unusable_urls() -> None:
    for href in (
        "mailto:a@example.org",
        "/relative",
        "javascript:x()",
        "https://a b",
        "",
        "ftp://x",
    ):
        assert link_spans(f'<a href="{href}">text</a>') == [], href
    assert link_spans("<a>no href</a> <a name=x>anchor</a>") == []
    assert link_spans('<a href="https://a.example/\x01">x</a>') == []


def test_link_spans_leaves_out_links_whose_text_is_not_one_run() -> None:
    for inner in (
        "<p>a</p>",
        "a<br>b",
        "<ul><li>a</li></ul>",
        "<table><tr><td>a</td></tr></table>",
    ):
        assert link_spans(f'<a href="https://a.example">{inner}</a>') == [], inner
    for inner in ("<h2>a</h2>", "a<div>b</div>", "a<li>b", "a<tr>b"):
        assert link_spans(f'<a href="https://a.example">{inner}</a>') == [], inner
    assert link_spans('<a href="https://a.example"> <img src="x.png"> </a>') == []
    # A block before or after a link does not stop it.
    assert link_spans('<p>x</p><a href="https://a.example">a</a><p>y</p>') == [
        ("a", "https://a.example")
    ]


def test_link_spans_skips_what_dropped_elements_hold() -> None:
    assert link_spans('<a href="https://a.example">a<script>hidden</script>c</a>') == [
        ("ac", "https://a.example")
    ]
    fragment = (
        '<svg><svg><a href="https://in.example">in</a></svg><img><a href="https://in2.example">'
        'in</a></svg><a href="https://out.example">out</a>'
    )
    assert link_spans(fragment) == [("out", "https://out.example")]
    assert link_spans('<svg><br/></svg><a href="https://out.example">out</a>') == [
        ("out", "https://out.example")
    ]
    # Only the dropped element's own tag nests: an unclosed tag inside it does not hold it open.
    assert link_spans('<svg><p></svg><a href="https://out.example">out</a>') == [
        ("out", "https://out.example")
    ]


def test_link_spans_reads_the_outer_of_nested_links_and_stops_at_the_bound() -> None:
    nested = '<a href="https://a.example">a <a href="https://b.example">b</a> c</a>'
    assert link_spans(nested) == [("a b", "https://a.example")]
    assert link_spans('</a><a href="https://a.example">a</a></a>') == [("a", "https://a.example")]
    many = "".join(f'<a href="https://a.example/{n}">{n}</a>' for n in range(MAX_LINKS + 1))
    found = link_spans(many)
    assert len(found) == MAX_LINKS and found[-1] == (
        str(MAX_LINKS - 1),
        f"https://a.example/{MAX_LINKS - 1}",
    )


def test_a_closed_list_item_ends_its_block() -> None:
    assert html_to_text("<ul><li>one</li>after</ul>") == "- one\n- after"
    assert html_to_line("<ul><li>one</li>after</ul>") == "one; after"


def test_web_url_keeps_only_absolute_http_urls_without_whitespace() -> None:
    assert web_url("  https://a.example/x?y=1 ") == "https://a.example/x?y=1"
    assert web_url("HTTP://a.example") == "HTTP://a.example"
    for url in (
        "mailto:a@b",
        "/x",
        "javascript:x",
        "https://a b",
        "https://a\tb",
        "http://[::1",
        "",
    ):
        assert web_url(url) == "", url
    assert web_url("https://a.example/\u2028x") == ""
    assert web_url("https://a.example/\x7f") == "" and web_url("https:///no-host") == ""
