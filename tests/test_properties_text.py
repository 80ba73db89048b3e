"""Properties of feed HTML made into plain text and excerpts: never longer than the limit, never
a word cut where a whole one fits, never half an entity, never a line break in a one-line form."""

from __future__ import annotations

import html
import re

from hypothesis import given
from hypothesis import strategies as st

from digest.render.htmltext import collapse, html_to_line, html_to_text, shorten
from tests.support.properties import examples

# What shorten trims off the end of a cut before its ellipsis.
TRIMMED = " \n,;:.-\u2013\u2014|"

limits = st.integers(min_value=1, max_value=400)


@examples(400)
@given(st.text(), limits)
def test_a_shortened_text_is_never_longer_than_the_limit(text: str, limit: int) -> None:
    short = shorten(text, limit)
    assert len(short) <= limit
    if len(text) <= limit:
        assert short == text
    else:
        assert short.endswith("\u2026")
        assert text.startswith(short[:-1])


words = st.text(st.characters(categories=("L", "N")), min_size=1, max_size=12)
separators = st.sampled_from([" ", "  ", "\n", ", ", ". ", " - ", "; "])


@examples(400)
@given(st.lists(st.tuples(words, separators), min_size=1, max_size=80), limits)
def test_a_shortened_text_cuts_between_words_when_a_break_is_in_reach(
    pieces: list[tuple[str, str]], limit: int
) -> None:
    text = "".join(word + separator for word, separator in pieces).strip()
    short = shorten(text, limit)
    if short == text:
        return
    kept = short[:-1]
    window = text[: limit - 1]
    if max(window.rfind(" "), window.rfind("\n")) > limit // 2:
        # The last word kept is whole: what follows it is a break or trimmed punctuation.
        following = text[len(kept) : len(kept) + 1]
        assert following and following in TRIMMED, (text, short)
    assert not kept or kept[-1] not in TRIMMED


# Entities that decode to a letter or a symbol shorten does not trim.
ENTITIES = {
    "&eacute;": "\u00e9",
    "&#233;": "\u00e9",
    "&#xE9;": "\u00e9",
    "&lt;": "<",
    "&gt;": ">",
    "&quot;": '"',
    "&copy;": "\u00a9",
    "&#8364;": "\u20ac",
    "&szlig;": "\u00df",
}
atoms = st.one_of(
    st.text(st.characters(categories=("Ll", "Lu", "Nd"), max_codepoint=0x24F), min_size=1),
    st.sampled_from(sorted(ENTITIES)),
)
html_words = st.lists(atoms, min_size=1, max_size=4).map("".join).filter(lambda w: len(w) < 40)


def decoded(word: str) -> str:
    return html.unescape(word)


@examples(300)
@given(
    st.lists(st.lists(html_words, min_size=1, max_size=12), min_size=1, max_size=6),
    st.integers(min_value=30, max_value=300),
)
def test_an_excerpt_of_feed_html_keeps_whole_words_and_whole_entities(
    paragraphs: list[list[str]], limit: int
) -> None:
    # Only short words, so a break is always in reach of the cut.
    paragraphs = [
        [word for word in words if len(decoded(word)) <= 10] or ["x"] for words in paragraphs
    ]
    source = "".join(f"<p>{' '.join(words)}</p>" for words in paragraphs)
    whole = {decoded(word) for words in paragraphs for word in words}
    line = html_to_line(source)
    assert line == " \u2014 ".join(" ".join(decoded(w) for w in words) for words in paragraphs)
    excerpt = shorten(line, limit)
    assert len(excerpt) <= limit
    assert "&" not in excerpt and "#" not in excerpt
    shown = excerpt.removesuffix("\u2026").split()
    assert all(piece in whole or piece == "\u2014" for piece in shown), (excerpt, whole)


markup = st.lists(
    st.one_of(
        st.sampled_from(["<p>", "</p>", "<br>", "<li>", "<ul>", "</ul>", "<pre>", "</pre>"]),
        st.sampled_from(["<h2>", "</h2>", "<td>", "<tr>", "<script>", "</script>", "&amp;"]),
        st.sampled_from(["&#0;", "&#13;", "&#x2028;", "\r\n", "\t", "\x00", "\x0b", "<!--"]),
        st.text(max_size=8),
    ),
    max_size=40,
).map("".join)


@examples(400)
@given(markup)
def test_the_one_line_form_is_one_line_and_neither_form_keeps_control_characters(
    source: str,
) -> None:
    line = html_to_line(source)
    assert "\n" not in line and "\r" not in line
    assert line == line.strip()
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", line)
    text = html_to_text(source)
    assert "\r" not in text and not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text)
    assert "\n\n\n" not in text
    assert collapse(collapse(source)) == collapse(source)
