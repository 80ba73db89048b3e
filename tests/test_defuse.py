"""DOCTYPE defusing holds for subsets of any size and shape, before any XML parser sees them."""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime

import pytest

from digest.core.models import FetchStatus
from digest.feeds.defuse import defuse
from digest.feeds.parse import parse_feed

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
URL = "https://example.org/feed.xml"

LAUGHS = "".join(
    f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">\n' if n else '<!ENTITY lol0 "lol">\n'
    for n in range(10)
)
BODY = (
    '<rss version="2.0"><channel><title>Laughs &lol9;</title>'
    "<item><title>Bomb &lol9;</title><link>https://example.org/bomb</link>"
    "<guid>&id;1</guid><description>&lol9;</description></item></channel></rss>"
)


def feed(subset: str, *, doctype: str = "<!DOCTYPE rss [", prolog: str = "") -> bytes:
    """A one-item RSS feed whose DOCTYPE has this internal subset."""
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n{prolog}{doctype}\n{subset}\n]>\n{BODY}'
    ).encode()


def parse_bounded(data: bytes, encoding: str = "utf-8") -> tuple[str, str, str]:
    """Parse within time and memory bounds; the post's title, key and the feed's warning."""
    if encoding != "utf-8":
        data = data.decode("utf-8").replace('encoding="utf-8"', f'encoding="{encoding}"')
        data = data.encode(encoding)  # type: ignore[attr-defined]
    tracemalloc.start()
    started = time.thread_time()  # processor time, which a busy machine does not stretch
    try:
        result = parse_feed(data, URL, NOW)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.thread_time() - started < 10  # a blow-up takes minutes; tracing slows this down
    assert peak < 20 * len(data) + 30_000_000, f"parsing peaked at {peak / 1e6:.0f} MB"
    assert result.status is FetchStatus.OK, result.error
    [post] = result.posts
    text = f"{post.title} {post.summary_html} {post.excerpt} {result.feed_title}"
    assert "lollol" not in text
    return post.title, post.key, result.warning


MEGABYTES_OF_COMMENTS = "".join(f"<!-- padding {n:07d} ]> -->\n" for n in range(120_000))
MANY_ENTITIES = "".join(f'<!ENTITY e{n} "v{n}">\n' for n in range(100_000))
PARAMETER = (
    "<!ENTITY % inner \"<!ENTITY lol9 'lollollollollollollollollol'>\">\n%inner;\n"
    '<!ENTITY % remote SYSTEM "file:///etc/passwd">\n%remote;\n'
)


@pytest.mark.parametrize(
    ("subset", "doctype", "prolog"),
    [
        (LAUGHS, "<!DOCTYPE rss [", ""),
        (MEGABYTES_OF_COMMENTS + LAUGHS, "<!DOCTYPE rss [", ""),
        (" " * 3_000_000 + LAUGHS, "<!DOCTYPE rss [", ""),
        (MANY_ENTITIES + LAUGHS, "<!DOCTYPE rss [", ""),
        (LAUGHS + MANY_ENTITIES, "<!DOCTYPE rss [", ""),
        (PARAMETER + LAUGHS, "<!DOCTYPE rss [", ""),
        (LAUGHS.replace(" ", "\n\t "), '<!doctype\n rss\n SYSTEM "a]>b>c.dtd"\n\n[', ""),
        (LAUGHS, "<!DOCTYPE rss PUBLIC '-//x[y>//EN' 'z.dtd' [", "<!-- <!DOCTYPE x [ ]> -->\n"),
        ("<!-- ]> -->\n<?pi ]> ?>\n" + LAUGHS, "<!DOCTYPE rss [", "<?style x?>\n"),
        ("<!ELEMENT rss ANY>\n<!ATTLIST rss a CDATA 'x>]'>\n" + LAUGHS, "<!DOCTYPE rss [", ""),
        ('<!ENTITY id "tag:example.com,">' + LAUGHS, "<!DOCTYPE rss [", ""),
    ],
    ids=[
        "plain",
        "megabytes-of-comments",
        "megabytes-of-space",
        "many-entities-then-bomb",
        "bomb-then-many-entities",
        "parameter-entities",
        "split-over-lines-lowercase",
        "quoted-public-id-and-decoy-comment",
        "decoy-ends-inside-comment-and-pi",
        "other-declarations",
        "after-a-safe-one",
    ],
)
def test_billion_laughs_in_any_shape_never_expands(subset: str, doctype: str, prolog: str) -> None:
    title, _, warning = parse_bounded(feed(subset, doctype=doctype, prolog=prolog))
    assert len(title) < 100
    assert "entity declarations in the DOCTYPE were ignored" in warning


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "cp037"])
def test_other_encodings_are_defused_too(encoding: str) -> None:
    title, _, warning = parse_bounded(feed(MEGABYTES_OF_COMMENTS[:100_000] + LAUGHS), encoding)
    assert len(title) < 100
    assert "entity declarations in the DOCTYPE were ignored" in warning


def test_a_short_literal_entity_still_reads() -> None:
    data = feed('<!ENTITY id "tag:example.com,">').replace(b"&lol9;", b"")
    assert defuse(data) == (data, False)
    title, key, warning = parse_bounded(data)
    assert (title, key, warning) == ("Bomb", "tag:example.com,1", "")


def test_quadratic_blowup_of_a_literal_entity_is_refused() -> None:
    subset = f'<!ENTITY big "{"x" * 200}">'
    body = BODY.replace("<description>&lol9;", "<description>" + "&big;" * 20_000)
    data = feed(subset).replace(BODY.encode(), body.encode())
    defused, dropped = defuse(data)
    assert dropped
    assert b"<!ENTITY big" not in defused
    parse_bounded(data)


def test_a_document_ending_inside_its_doctype_keeps_nothing_of_it() -> None:
    data = b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "b">\n' + b" " * 1_000_000
    defused, dropped = defuse(data)
    assert dropped and defused == b'<?xml version="1.0"?>\n'
    unterminated = b'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "never closed ' + b"x" * 1000
    assert defuse(unterminated) == (b'<?xml version="1.0"?>', True)
    result = parse_feed(data, URL, NOW)
    assert result.status is FetchStatus.FAILED
    assert result.error.startswith("not a feed we can read")


def test_stray_text_before_the_doctype_does_not_hide_it() -> None:
    data = feed(LAUGHS, prolog="stray text\n")
    defused, dropped = defuse(data)
    assert dropped
    assert b"&lol8;" not in defused.split(b"]>")[0]


def test_a_doctype_inside_the_content_is_left_alone() -> None:
    body = BODY.replace("&lol9;", "<![CDATA[<!DOCTYPE x [<!ENTITY a 'b'>]>]]>")
    data = f'<?xml version="1.0"?>\n{body}'.encode()
    assert defuse(data) == (data, False)
