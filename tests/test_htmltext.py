"""Feed HTML as text: blocks, lists and line breaks stay apart, in lines and on one line."""

from __future__ import annotations

import pytest

from digest.render.htmltext import html_to_line, html_to_text
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


def test_tables_and_preformatted_text() -> None:
    html = "<table><tr><th>Day</th><th>Room</th></tr><tr><td>Mon</td><td>4</td></tr></table>"
    assert html_to_text(html) == "Day | Room\n\nMon | 4"
    assert html_to_text("<pre>a  b\nc</pre>") == "a b\nc"


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
