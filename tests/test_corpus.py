"""Every feed in the shared corpus goes through parse_feed quickly and reads what it should.

The corpus (feedparser's own test feeds and feeds captured from real sites) lives beside the
checkout in ../shared/corpus, or where DIGEST_TEST_CORPUS points; a clone without it skips
these tests with a one-line reason.

Which feedparser `Expect:` lines are checked, and how (through digest's Post, not feedparser):
- entries[0] title -> Post.title (plain text: markup dropped, entities decoded, spaces collapsed)
- entries[0] link -> Post.link (only http(s) survives; anything else must come out empty)
- entries[0] id -> Post.key
- entries[0] published_parsed / updated_parsed -> Post.published / Post.updated (aware UTC)
- entries[0] description / summary / content[0].value -> the plain text of Post.summary_html
- feed title -> FeedResult.feed_title (plain text)
Not checked: `bozo` itself (digest turns it into a warning or a failure), and every other key
(feed links, tagline, rights, contributors, enclosures, namespaces...), which digest never reads.
A content expectation is checked only when the entry has no competing summary (digest shows the
summary), and expectations that are Python expressions rather than literals are not evaluated.
"""

from __future__ import annotations

import ast
import json
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from digest.core.models import FeedResult, FetchStatus
from digest.feeds.parse import (
    collapse,
    normalise_link,
    parse_feed,
    safe_url,
    sanitise_html,
)
from digest.feeds.parse_process import ParseProcess
from digest.render.htmltext import html_to_line, html_to_text

CORPUS = Path(
    os.environ.get("DIGEST_TEST_CORPUS")
    or Path(__file__).resolve().parents[2] / "shared" / "corpus"
)
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
PER_FILE_SECONDS = 5.0  # of processor time, which a busy machine does not stretch
FEED_SUFFIXES = {".xml", ".rss", ".atom", ".rdf", ".json"}

if not CORPUS.is_dir():
    # One line in the summary for the whole module, rather than one per test.
    pytest.skip(f"feed corpus not found at {CORPUS}; corpus tests not run", allow_module_level=True)


@dataclass(frozen=True)
class Parsed:
    """One corpus file and what parse_feed made of it."""

    path: Path
    url: str
    data: bytes
    result: FeedResult | None
    error: str
    seconds: float  # processor time parsing took


def _is_feed_file(path: Path) -> bool:
    if path.suffix not in FEED_SUFFIXES or not path.is_file():
        return False
    return not (path.name.endswith(".serde.json") or path.parent.name == "output")


def _headers(data: bytes) -> dict[str, str]:
    """The HTTP headers a feedparser `http_*` test file asks to be served with (lower-case)."""
    found = re.findall(rb"^Header:\s*([\w-]+):\s*(.+?)\s*$", data[:2000], re.M)
    return {name.decode().lower(): value.decode() for name, value in found}


def _feed_url(path: Path) -> str:
    return "http://127.0.0.1:8097/" + path.relative_to(CORPUS / "feedparser").as_posix()


@pytest.fixture(scope="module")
def corpus() -> dict[Path, Parsed]:
    """Every feed file in the corpus, parsed once for all the tests below."""
    parsed = {}
    for path in sorted(p for p in CORPUS.rglob("*") if _is_feed_file(p)):
        data = path.read_bytes()
        headers = _headers(data) if "feedparser" in path.parts else {}
        url = headers.get("content-location") or (
            _feed_url(path) if "feedparser" in path.parts else f"https://example.org/{path.name}"
        )
        started = time.thread_time()
        try:
            content_type = headers.get("content-type")
            result, error = parse_feed(data, url, NOW, content_type=content_type), ""
        except Exception as problem:
            result, error = None, f"{type(problem).__name__}: {problem}"
        parsed[path] = Parsed(path, url, data, result, error, time.thread_time() - started)
    return parsed


def test_every_file_parses_without_an_exception_in_bounded_time(
    corpus: dict[Path, Parsed],
) -> None:
    assert len(corpus) > 2000
    crashed = [f"{p.path}: {p.error}" for p in corpus.values() if p.error]
    slow = [f"{p.path}: {p.seconds:.1f} s" for p in corpus.values() if p.seconds > PER_FILE_SECONDS]
    assert not crashed, "\n".join(crashed)
    assert not slow, "\n".join(slow)


def test_a_second_process_parses_every_file_as_parse_feed_does(
    corpus: dict[Path, Parsed],
) -> None:
    """What collect() gets from its second parsing process equals parsing in the thread."""
    process = ParseProcess.start()
    assert process is not None
    try:
        deadline = time.monotonic() + 20
        while not process.try_acquire():
            assert time.monotonic() < deadline, "the second process never became ready"
            time.sleep(0.01)
        differ = []
        for parsed in corpus.values():
            headers = _headers(parsed.data) if "feedparser" in parsed.path.parts else {}
            there = process.parse(
                parse_feed, parsed.data, parsed.url, headers.get("content-type"), NOW, lambda: False
            )
            if there != parsed.result:
                differ.append(str(parsed.path.relative_to(CORPUS)))
        process.release()
    finally:
        process.close()
    assert process.parsed == len(corpus)
    assert not differ, f"{len(differ)} differ:\n" + "\n".join(differ[:20])


def test_json_feeds_are_reported_not_crashed(corpus: dict[Path, Parsed]) -> None:
    json_files = [p for p in corpus.values() if p.data.lstrip().startswith(b"{")]
    assert json_files
    for parsed in json_files:
        assert parsed.result is not None
        assert parsed.result.status is FetchStatus.FAILED
        assert parsed.result.error.startswith("not a feed we can read"), parsed.path


TAG = re.compile(r"<([a-zA-Z][\w-]*)([^>]*)>")
UNSAFE_TAGS = {"script", "style", "form", "input", "iframe", "object", "embed", "button"}
UNSAFE_ATTRIBUTE = re.compile(
    r"\son\w+\s*=|\sstyle\s*=|(href|src)\s*=\s*[\"']?\s*(javascript|data|vbscript|file):", re.I
)


def _unsafe(html: str) -> str:
    """The first tag in sanitised HTML that could run code, restyle the email or post a form."""
    for tag in TAG.finditer(html):
        if tag.group(1).lower() in UNSAFE_TAGS or UNSAFE_ATTRIBUTE.search(tag.group(2)):
            return tag.group()
    return ""


def test_every_post_is_safe_to_put_in_an_email(corpus: dict[Path, Parsed]) -> None:
    problems = []
    for parsed in corpus.values():
        for post in parsed.result.posts if parsed.result else ():
            if unsafe := _unsafe(post.summary_html):
                problems.append(f"{parsed.path}: unsafe tag in summary {unsafe[:120]!r}")
            for url in (post.link, post.image_url):
                if url and not url.startswith(("http://", "https://")):
                    problems.append(f"{parsed.path}: non-http(s) URL {url!r}")
            if post.published and (post.published.tzinfo is None or post.published > NOW):
                problems.append(f"{parsed.path}: bad published {post.published!r}")
            if len(post.excerpt) > 250 or not post.title or len(post.title) > 300:
                problems.append(f"{parsed.path}: unbounded excerpt or title")
    assert not problems, "\n".join(problems[:50])


# -- feedparser's Expect: lines ------------------------------------------------------

EXPECT = re.compile(
    r"""^(?:not\s+bozo\s+and\s+|bozo\s+and\s+)?
    (?P<target>
        entries\[0\](?:\['(?P<entry_key>[a-z_]+)'\]|\.(?P<entry_attr>[a-z_]+))
            (?P<content>\[0\]\['value'\])?
      | feed(?:\['title'\]|\.title)
    )
    \s*==\s*(?P<value>.+)$""",
    re.X,
)
ENTRY_FIELDS = {
    "title",
    "link",
    "id",
    "published_parsed",
    "updated_parsed",
    "description",
    "summary",
    "content",
}


def _expectation(data: bytes) -> tuple[str, Any] | None:
    """(field, expected literal) for an Expect line about something digest uses, else None."""
    header = data[:4000].decode("utf-8", "replace")
    line = re.search(r"^Expect:\s*(.+?)\s*$", header, re.M)
    if not line:
        return None
    match = EXPECT.match(line.group(1))
    if not match:
        return None
    try:
        value = ast.literal_eval(match.group("value"))
    except (ValueError, SyntaxError):
        return None
    if match.group("target").startswith("feed"):
        return ("feed_title", value)
    field = match.group("entry_key") or match.group("entry_attr")
    if field not in ENTRY_FIELDS or (field == "content") != bool(match.group("content")):
        return None
    return (field, value)


def _text(html: str) -> str:
    return html_to_text(sanitise_html(html, ""))


def _utc(value: tuple[int, ...]) -> datetime:
    return datetime(*value[:6], tzinfo=UTC)


def _check(field: str, expected: Any, parsed: Parsed) -> str:
    """'' when digest agrees with the expectation, else what differs."""
    result = parsed.result
    assert result is not None
    if field == "feed_title":
        ok = result.feed_title in {collapse(expected), html_to_line(expected)}
        return "" if ok else f"feed title {result.feed_title!r} != {expected!r}"
    if not result.posts:
        return f"no posts ({result.error or result.warning})"
    post = result.posts[0]
    if field == "title":
        wanted = {collapse(expected), html_to_line(expected) or "(untitled)"} - {""}
        return "" if post.title in wanted else f"title {post.title!r} != {expected!r}"
    if field == "link":
        wanted_link = safe_url(expected, "")
        return "" if post.link == wanted_link else f"link {post.link!r} != {wanted_link!r}"
    if field == "id":
        # feedparser resolves ids that look like relative or absolute URIs against the base.
        resolved = urljoin(parsed.url, collapse(expected))
        ok = not collapse(expected) or post.key in {collapse(expected), resolved}
        return "" if ok else f"key {post.key!r} != {expected!r}"
    if field in ("published_parsed", "updated_parsed"):
        actual = post.published if field == "published_parsed" else post.updated
        return "" if actual == _utc(expected) else f"{field} {actual!r} != {expected!r}"
    # Text content (not HTML) is shown literally, so its markup-like text must survive as is.
    ours = html_to_text(post.summary_html)
    ok = ours in {_text(expected), collapse(expected)}
    return "" if ok else f"{field} text {ours!r} != {_text(expected)!r}"


UNCHECKED = {
    # "unguessable characters": bytes invalid in the declared encoding; any decoding is a guess.
    "bozo_linenoise.xml",
}


def _has_competing_summary(data: bytes) -> bool:
    return bool(re.search(rb"<(summary|description)\b", data))


def test_feedparser_expectations_about_what_digest_uses(corpus: dict[Path, Parsed]) -> None:
    checked, mismatches = 0, []
    for parsed in corpus.values():
        if "feedparser" not in parsed.path.parts or parsed.result is None:
            continue
        expectation = _expectation(parsed.data)
        if expectation is None or parsed.path.name in UNCHECKED:
            continue
        field, expected = expectation
        if field == "content" and _has_competing_summary(parsed.data):
            continue
        checked += 1
        difference = _check(field, expected, parsed)
        if difference:
            mismatches.append(f"{parsed.path.relative_to(CORPUS)}: {difference}")
    print(f"feedparser expectations checked: {checked}")
    assert checked > 900
    assert not mismatches, f"{len(mismatches)} of {checked}:\n" + "\n".join(mismatches[:60])


# -- expected values shipped with feed-rs and rss-parser ---------------------------------


def _rfc3339(value: str | None) -> datetime | None:
    """An expected date at whole seconds: feeds' own dates carry no fractions worth comparing."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return moment.replace(microsecond=0)


def _feed_rs_link(entry: dict[str, Any]) -> str:
    links = entry.get("links") or []
    for link in links:
        if link.get("rel") in (None, "alternate"):
            return str(link["href"])
    return ""


def test_feed_rs_titles_links_and_dates(corpus: dict[Path, Parsed]) -> None:
    fixtures = sorted((CORPUS / "real" / "feed-rs").rglob("*.serde.json"))
    assert fixtures
    mismatches, checked = [], 0
    for fixture in fixtures:
        source = fixture.with_name(fixture.name.removesuffix(".serde.json") + ".xml")
        parsed = corpus.get(source)
        if parsed is None or parsed.result is None:
            continue
        expected_entries = json.loads(fixture.read_text(encoding="utf-8")).get("entries") or []
        if parsed.result.status is FetchStatus.FAILED:
            mismatches.append(f"{source.name}: failed: {parsed.result.error}")
            continue
        for index, (entry, post) in enumerate(
            zip(expected_entries, parsed.result.posts, strict=False)
        ):
            checked += 1
            where = f"{source.name}[{index}]"
            title = (entry.get("title") or {}).get("content") or ""
            if title and post.title not in {collapse(title), html_to_line(title)}:
                mismatches.append(f"{where}: title {post.title!r} != {title!r}")
            link = safe_url(_feed_rs_link(entry), "")
            if link and normalise_link(post.link) != normalise_link(link):  # feed-rs lowers hosts
                mismatches.append(f"{where}: link {post.link!r} != {link!r}")
            date = _rfc3339(entry.get("published") or entry.get("updated"))
            if date and date <= NOW and post.published != date:
                mismatches.append(f"{where}: date {post.published} != {date}")
        if len(parsed.result.posts) != len(expected_entries):
            mismatches.append(
                f"{source.name}: {len(parsed.result.posts)} posts, expected {len(expected_entries)}"
            )
    print(f"feed-rs entries checked: {checked}")
    assert checked > 90
    assert not mismatches, f"{len(mismatches)}:\n" + "\n".join(mismatches[:60])


def test_rss_parser_titles_links_and_dates(corpus: dict[Path, Parsed]) -> None:
    outputs = sorted((CORPUS / "real" / "rss-parser" / "test" / "output").glob("*.json"))
    inputs = {p.stem: p for p in (CORPUS / "real" / "rss-parser" / "test" / "input").iterdir()}
    assert outputs
    mismatches, checked = [], 0
    for output in outputs:
        source = inputs.get(output.stem)
        parsed = corpus.get(source) if source else None
        if parsed is None or parsed.result is None:
            continue
        raw = output.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # one expected-output file is saved in Latin-1
            text = raw.decode("latin-1")
        items = json.loads(text).get("feed", {}).get("items") or []
        for index, (item, post) in enumerate(zip(items, parsed.result.posts, strict=False)):
            checked += 1
            where = f"{output.stem}[{index}]"
            title = item.get("title")
            # U+FFFD in an expected title means rss-parser itself failed to decode the feed.
            checkable = isinstance(title, str) and title.strip() and "\ufffd" not in title
            if checkable and post.title not in {collapse(title), html_to_line(title)}:
                mismatches.append(f"{where}: title {post.title!r} != {title!r}")
            link = safe_url(item.get("link") or "", "") if isinstance(item.get("link"), str) else ""
            if link and post.link != link:
                mismatches.append(f"{where}: link {post.link!r} != {link!r}")
            date = _rfc3339(item.get("isoDate"))
            if date and post.published != date:
                mismatches.append(f"{where}: date {post.published} != {date}")
    print(f"rss-parser items checked: {checked}")
    assert checked > 100
    assert not mismatches, f"{len(mismatches)}:\n" + "\n".join(mismatches[:60])
