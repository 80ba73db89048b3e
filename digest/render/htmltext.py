"""Feed HTML as readable plain text that keeps its paragraphs, headings, line breaks and lists.

Two forms of the same text:

- `html_to_text`: several lines. Paragraphs and headings are separated by a blank line, a
  `<br>` starts a new line, each list item is its own line starting "- " (indented two spaces
  per level of nesting), table rows are lines with their cells separated by " | ".
- `html_to_line`: one line, for excerpts shown as a single paragraph. The blocks are joined
  with one space after a block that already ends in punctuation (. ! ? : ; …), with "; "
  between two list items, and with " — " otherwise, so "Intro: <ul><li>One<li>Two</ul>" reads
  "Intro: One; Two".

Scripts, styles, templates and other non-text elements are dropped, entities are decoded, and
whitespace runs collapse to one space except between the blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

_DROPPED = frozenset(
    {"script", "style", "template", "noscript", "iframe", "object", "svg", "math", "head"}
    | {"title", "select", "textarea", "button"}
)
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"})
_BLOCKS = frozenset(
    {"p", "div", "section", "article", "aside", "header", "footer", "main", "nav", "address"}
    | {"blockquote", "pre", "figure", "figcaption", "table", "thead", "tbody", "tfoot", "caption"}
    | {"dl", "dt", "dd", "form", "fieldset", "details", "summary", "center", "hr"}
)
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_LISTS = frozenset({"ul", "ol", "menu", "dir"})
_CELLS = frozenset({"td", "th"})
_SPACE = re.compile(r"[ \t\n\r\f\v\u00a0\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ANY_SPACE = re.compile(r"\s+")
_ENDS_SENTENCE = re.compile(r"[.!?:;…。！？][\"'”’»)\]]*$")
_BULLET = "- "


@dataclass(frozen=True)
class _Block:
    """One unit of text: a paragraph-like block, a heading, or a list item at a depth."""

    lines: tuple[str, ...]
    item_depth: int = 0  # 0 for anything that is not a list item


class _Blocks(HTMLParser):
    """Splits an HTML fragment into blocks of collapsed text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[_Block] = []
        self.lines: list[str] = []
        self.words: list[str] = []
        self.depth = 0
        self.in_item = 0
        self.dropping: list[str] = []
        self.preformatted = 0

    # -- structure

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.dropping:
            if tag == self.dropping[-1] and tag not in _VOID:
                self.dropping.append(tag)
            return
        if tag in _DROPPED:
            self.dropping.append(tag)
        elif tag == "br":
            self._break_line()
        elif tag == "li":
            self._end_block()
            self.in_item = max(self.depth, 1)
        elif tag in _LISTS:
            self._end_block()
            self.depth += 1
        elif tag == "tr":
            self._end_block()
        elif tag in _CELLS:
            if self._current():
                self.words.append(" | ")
        elif tag in _BLOCKS or tag in _HEADINGS:
            self._end_block()
            if tag == "pre":
                self.preformatted += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.dropping:
            if tag == self.dropping[-1]:
                self.dropping.pop()
            return
        if tag == "li":
            self._end_block()
        elif tag in _LISTS:
            self._end_block()
            self.depth = max(0, self.depth - 1)
            self.in_item = self.depth
        elif tag == "tr" or tag in _BLOCKS or tag in _HEADINGS:
            self._end_block()
            if tag == "pre":
                self.preformatted = max(0, self.preformatted - 1)

    def handle_data(self, data: str) -> None:
        if self.dropping:
            return
        data = _CONTROL.sub("", data)
        if not self.preformatted:
            self.words.append(data)
            return
        first, *rest = data.split("\n")
        self.words.append(first)
        for line in rest:
            self._break_line()
            self.words.append(line)

    # -- assembling

    def _current(self) -> str:
        return _SPACE.sub(" ", "".join(self.words)).strip()

    def _break_line(self) -> None:
        self.lines.append(self._current())
        self.words = []

    def _end_block(self) -> None:
        self._break_line()
        lines = _trim(self.lines)
        if lines:
            self.blocks.append(_Block(tuple(lines), self.in_item))
        self.lines = []

    def close(self) -> None:
        super().close()
        self._end_block()


def _trim(lines: list[str]) -> list[str]:
    """Lines without leading, trailing or repeated empty ones."""
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    while kept and not kept[-1]:
        kept.pop()
    return kept


def _blocks(html: str) -> list[_Block]:
    parser = _Blocks()
    parser.feed(html)
    parser.close()
    return parser.blocks


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment in lines: blank lines between blocks, "- " list items."""
    return _text_of_blocks(_blocks(html))


def html_to_line(html: str) -> str:
    """Plain text of an HTML fragment on one line, blocks joined by readable separators."""
    return _line_of_blocks(_blocks(html))


def html_to_text_and_line(html: str) -> tuple[str, str]:
    """html_to_text and html_to_line of the same fragment, parsing it once."""
    blocks = _blocks(html)
    return _text_of_blocks(blocks), _line_of_blocks(blocks)


def _text_of_blocks(blocks: list[_Block]) -> str:
    parts: list[str] = []
    previous: _Block | None = None
    for block in blocks:
        if block.item_depth:
            indent = "  " * (block.item_depth - 1)
            first, *rest = block.lines
            text = "\n".join([f"{indent}{_BULLET}{first}", *(f"{indent}  {line}" for line in rest)])
        else:
            text = "\n".join(block.lines)
        if previous is not None:
            together = block.item_depth and previous.item_depth
            parts.append("\n" if together else "\n\n")
        parts.append(text)
        previous = block
    return "".join(parts)


def _line_of_blocks(blocks: list[_Block]) -> str:
    parts: list[str] = []
    previous: _Block | None = None
    for block in blocks:
        for number, line in enumerate(block.lines):
            if not line:
                continue
            if parts:
                last = parts[-1]
                if _ENDS_SENTENCE.search(last):
                    parts.append(" ")
                elif number == 0 and block.item_depth and previous and previous.item_depth:
                    parts.append("; ")
                else:
                    parts.append(" — ")
            parts.append(line)
        previous = block
    return "".join(parts)


MAX_LINKS = 50  # links of one fragment link_spans looks at


def web_url(url: str) -> str:
    """The URL, trimmed, if it is an absolute http(s) one with a host and no whitespace or
    control character in it; else ""."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [ of an IPv6 address
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return "" if _ANY_SPACE.search(url) or _CONTROL.search(url) else url


class _Links(HTMLParser):
    """The http(s) links of an HTML fragment: each one's text, collapsed, and its URL."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self.href = ""  # the link being read, if any
        self.words: list[str] = []
        self.split = False  # a block, line break or list item inside the link being read
        self.dropping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.dropping:
            if tag == self.dropping[-1] and tag not in _VOID:
                self.dropping.append(tag)
        elif tag in _DROPPED:
            self.dropping.append(tag)
        elif tag == "a" and not self.href and len(self.found) < MAX_LINKS:
            href = web_url(dict(attrs).get("href") or "")
            if href:
                self.href, self.words, self.split = href, [], False
        elif tag in _BLOCKS or tag in _HEADINGS or tag in _LISTS or tag in ("br", "li", "tr"):
            self.split = True  # a link across blocks is no single run of text

    def handle_endtag(self, tag: str) -> None:
        if self.dropping:
            if tag == self.dropping[-1]:
                self.dropping.pop()
        elif tag == "a" and self.href:
            label = collapse("".join(self.words))
            if label and not self.split:
                self.found.append((label, self.href))
            self.href = ""

    def handle_data(self, data: str) -> None:
        if self.href and not self.dropping:
            self.words.append(data)


def link_spans(html: str) -> list[tuple[str, str]]:
    """(text, URL) of each http(s) link in an HTML fragment whose text is one run of words,
    in document order, at most MAX_LINKS; its text as html_to_line shows it. mailto: and other
    schemes are left out."""
    parser = _Links()
    parser.feed(html)
    parser.close()
    return parser.found


def collapse(text: str) -> str:
    """Whitespace runs to single spaces, control characters removed, ends trimmed."""
    return _ANY_SPACE.sub(" ", _CONTROL.sub("", text)).strip()


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word (or line) boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" \n,;:.-–—|") + "…"


def error_line(error: object, limit: int = 200) -> str:
    """An exception as one bounded line of text; its type's name when it has no message."""
    return shorten(collapse(str(error)) or type(error).__name__, limit)


_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def after_body_tag(document: str, fragment: str) -> str:
    """The document with `fragment` at the top of its body (at the start, if it has none)."""
    match = _BODY_TAG.search(document)
    if match is None:
        return fragment + document
    return document[: match.end()] + fragment + document[match.end() :]
