"""A feed entry as a Post: identity, dates, safe links and HTML, images; and feed health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.config.schema import FeedConfig, FetchConfig
from digest.core.models import FetchStatus, Post
from digest.feeds.collect import check_feeds, normalise_link, parse_feed
from digest.store import FeedRecord
from tests.support.feedserver import FeedServer

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
FEED_URL = "https://example.org/blog/feed.xml"


def rss(items: str, extra_ns: str = "") -> bytes:
    """An RSS 2.0 channel around the given item markup."""
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0" {extra_ns}><channel>'
        f"<title>Blog</title><link>https://example.org/</link>{items}</channel></rss>"
    ).encode()


def only_post(data: bytes, url: str = FEED_URL) -> Post:
    """The single post of a feed."""
    result = parse_feed(data, url, NOW)
    assert result.status is FetchStatus.OK, result.error
    [post] = result.posts
    return post


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("HTTPS://Example.ORG:443/a/b?x=1#frag", "https://example.org/a/b?x=1"),
        ("http://example.org:80/", "http://example.org/"),
        ("http://example.org:8080/p", "http://example.org:8080/p"),
        ("https://example.org", "https://example.org/"),
        (
            "https://example.org/p?utm_source=news&id=7&UTM_Medium=x&fbclid=abc&gclid=1",
            "https://example.org/p?id=7",
        ),
        ("https://example.org/p?b=2&a=1", "https://example.org/p?b=2&a=1"),
        ("https://example.org/Case/Path", "https://example.org/Case/Path"),
        ("javascript:alert(1)", ""),
        ("mailto:someone@example.org", ""),
        ("not a url", ""),
    ],
)
def test_normalise_link(url: str, key: str) -> None:
    assert normalise_link(url) == key


def test_identity_prefers_id_then_link_then_a_hash() -> None:
    items = (
        "<item><guid isPermaLink='false'>tag:example.org,2026:1</guid>"
        "<link>https://example.org/1</link><title>One</title></item>"
        "<item><link>https://example.org/2</link><title>Two</title></item>"
        "<item><title>Three</title><pubDate>Fri, 27 Nov 2026 09:30:00 +0000</pubDate></item>"
        "<item><title>Four</title></item>"
    )
    posts = parse_feed(rss(items), FEED_URL, NOW).posts
    assert [p.key for p in posts[:2]] == ["tag:example.org,2026:1", "https://example.org/2"]
    assert posts[2].key.startswith("sha256:") and posts[3].key.startswith("sha256:")
    assert posts[2].key != posts[3].key
    assert parse_feed(rss(items), FEED_URL, NOW).posts[2].key == posts[2].key
    assert [p.link_key for p in posts] == ["https://example.org/1", "https://example.org/2", "", ""]


def test_dates_are_utc_and_undated_or_future_posts_have_none() -> None:
    future = (NOW + timedelta(days=3)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    items = (
        "<item><title>Offset</title><link>https://example.org/1</link>"
        "<pubDate>Fri, 27 Nov 2026 10:30:00 +0100</pubDate></item>"
        "<item><title>Undated</title><link>https://example.org/2</link></item>"
        f"<item><title>Future</title><link>https://example.org/3</link><pubDate>{future}</pubDate>"
        "</item>"
    )
    offset, undated, later = parse_feed(rss(items), FEED_URL, NOW).posts
    assert offset.published == datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    assert undated.published is None
    assert later.published is None


def test_atom_updated_stands_in_for_a_missing_published() -> None:
    atom = b"""<feed xmlns="http://www.w3.org/2005/Atom"><title>News</title>
    <entry><id>urn:1</id><title>Only updated</title><link href="https://example.org/u"/>
    <updated>2026-11-20T08:00:00-05:00</updated></entry>
    <entry><id>urn:2</id><title>Both</title><link href="https://example.org/b"/>
    <published>2026-11-01T00:00:00Z</published><updated>2026-11-21T00:00:00Z</updated></entry>
    </feed>"""
    only_updated, both = parse_feed(atom, FEED_URL, NOW).posts
    assert only_updated.published == datetime(2026, 11, 20, 13, 0, tzinfo=UTC)
    assert only_updated.updated == only_updated.published
    assert both.published == datetime(2026, 11, 1, tzinfo=UTC)
    assert both.updated == datetime(2026, 11, 21, tzinfo=UTC)


def test_hostile_titles_become_bounded_plain_text() -> None:
    items = (
        "<item><title>&lt;b&gt;Bold&lt;/b&gt;  news\n\ttoday</title>"
        "<link>https://example.org/1</link></item>"
        "<item><title>\u201cIntegrated\u201d &lt;budgets&gt;</title>"
        "<link>https://example.org/2</link></item>"
        f"<item><title>{'word ' * 200}</title><link>https://example.org/3</link></item>"
        "<item><title>   </title><link>https://example.org/4</link></item>"
        "<item><title>&lt;script&gt;alert(1)&lt;/script&gt;</title>"
        "<link>https://example.org/5</link></item>"
    )
    posts = parse_feed(rss(items), FEED_URL, NOW).posts
    html_title, literal, long_title, empty, script = posts
    assert html_title.title == "Bold news today"
    assert literal.title == "\u201cIntegrated\u201d <budgets>"
    assert len(long_title.title) <= 300 and long_title.title.endswith("word…")
    assert empty.title == "(untitled)"
    # Not HTML feedparser recognises, so it stays literal text; templates escape it.
    assert script.title == "<script>alert(1)</script>"


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(document.cookie)",
        "JaVaScRiPt:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "file:///etc/passwd",
        "ftp://example.org/file",
    ],
)
def test_non_http_links_are_dropped(link: str) -> None:
    post = only_post(rss(f"<item><title>T</title><link>{link}</link></item>"))
    assert post.link == ""
    assert post.link_key == ""


def test_relative_links_resolve_against_the_feed_url_and_xml_base() -> None:
    rss_post = only_post(rss("<item><title>T</title><link>/posts/1?a=b</link></item>"))
    assert rss_post.link == "https://example.org/posts/1?a=b"
    atom = b"""<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://cdn.example.net/site/">
    <title>News</title><entry><id>urn:1</id><title>T</title><link href="news/1"/>
    <summary type="html">&lt;a href="more"&gt;more&lt;/a&gt; &lt;img src="pic.png"&gt;</summary>
    </entry></feed>"""
    atom_post = only_post(atom)
    assert atom_post.link == "https://cdn.example.net/site/news/1"
    assert 'href="https://cdn.example.net/site/more"' in atom_post.summary_html
    assert atom_post.image_url == "https://cdn.example.net/site/pic.png"


def test_summary_html_is_sanitised_for_email() -> None:
    hostile = (
        '<p style="position:fixed" onclick="steal()">Hello <b>there</b></p>'
        "<script>alert(1)</script><style>body{display:none}</style>"
        '<form action="https://evil.example/"><input name="pw"></form>'
        '<a href="javascript:alert(1)">js</a> <a href="/relative">rel</a> '
        '<a href="mailto:hi@example.org">mail</a> <a href="data:text/html,x">data</a>'
        '<img src="x" onerror="alert(1)"><iframe src="https://evil.example/"></iframe>'
    )
    post = only_post(
        rss(
            "<item><title>T</title><link>https://example.org/p/1</link>"
            f"<description><![CDATA[{hostile}]]></description></item>"
        )
    )
    html = post.summary_html
    for forbidden in ("<script", "<style", "onclick", "onerror", "style=", "<form", "<input"):
        assert forbidden not in html
    assert "javascript:" not in html and "data:" not in html and "<iframe" not in html
    assert "<b>there</b>" in html
    assert 'href="https://example.org/relative"' in html
    assert 'href="mailto:hi@example.org"' in html
    assert post.excerpt.startswith("Hello there — js rel mail data")
    assert post.excerpt_text.startswith("Hello there\njs rel mail data")


def test_excerpt_is_bounded_at_a_word_boundary() -> None:
    words = " ".join(f"word{n}" for n in range(200))
    post = only_post(
        rss(
            "<item><title>T</title><link>https://example.org/1</link>"
            f"<description>&lt;p&gt;{words}&lt;/p&gt;</description></item>"
        )
    )
    assert len(post.excerpt) <= 250
    assert post.excerpt.endswith("…")
    assert post.excerpt[:-1].split(" ")[-1] in words.split(" ")


def test_huge_summaries_are_bounded() -> None:
    huge = "<p>" + "lorem ipsum " * 100_000 + "</p>"
    post = only_post(
        rss(
            "<item><title>T</title><link>https://example.org/1</link>"
            f"<description><![CDATA[{huge}]]></description></item>"
        )
    )
    assert len(post.summary_html) <= 20_100
    assert post.summary_html.endswith("</p>")


MEDIA = 'xmlns:media="http://search.yahoo.com/mrss/"'


@pytest.mark.parametrize(
    ("markup", "image"),
    [
        (
            '<media:thumbnail url="https://t.example/pixel.gif" width="1" height="1"/>'
            '<media:thumbnail url="https://img.example/thumb.jpg" width="120" height="90"/>',
            "https://img.example/thumb.jpg",
        ),
        (
            '<media:content url="https://img.example/video.mp4" type="video/mp4"/>'
            '<media:content url="https://img.example/photo.jpg" medium="image"/>',
            "https://img.example/photo.jpg",
        ),
        (
            '<enclosure url="https://img.example/cover.png" type="image/png" length="10"/>',
            "https://img.example/cover.png",
        ),
        (
            "<description><![CDATA[<img src='https://t.example/p.gif' width='1' height='1'>"
            "<p>Text</p><img src='/images/chart.png' width='600'>]]></description>",
            "https://example.org/images/chart.png",
        ),
        (
            "<description><![CDATA[<img src='https://t.example/p.gif' width='1px' height='1px'>"
            "]]></description>",
            "",
        ),
        (
            "<description><![CDATA[<img src='javascript:alert(1)'>]]></description>",
            "",
        ),
    ],
    ids=["thumbnail", "media-content", "enclosure", "first-img", "only-a-pixel", "bad-scheme"],
)
def test_images_are_found_and_tracking_pixels_skipped(markup: str, image: str) -> None:
    post = only_post(
        rss(f"<item><title>T</title><link>https://example.org/1</link>{markup}</item>", MEDIA)
    )
    assert post.image_url == image


def test_author_and_categories() -> None:
    post = only_post(
        rss(
            "<item><title>T</title><link>https://example.org/1</link>"
            "<dc:creator>Amara Okafor</dc:creator><category>Funding</category>"
            "<category>funding</category><category>Policy &amp; Practice</category></item>",
            'xmlns:dc="http://purl.org/dc/elements/1.1/"',
        )
    )
    assert post.author == "Amara Okafor"
    assert post.categories == ("Funding", "Policy & Practice")


def test_bundled_samples_read_cleanly_and_share_one_article() -> None:
    samples = Path(__file__).resolve().parents[1] / "digest" / "samples"
    blog = parse_feed((samples / "blog.xml").read_bytes(), "samples/blog.xml", NOW)
    news = parse_feed((samples / "news.atom").read_bytes(), "samples/news.atom", NOW)
    assert (blog.status, blog.warning, len(blog.posts)) == (FetchStatus.OK, "", 8)
    assert (news.status, news.warning, len(news.posts)) == (FetchStatus.OK, "", 6)
    assert all(p.published and p.author and p.categories for p in blog.posts)
    assert sum(bool(p.image_url) for p in blog.posts) == 1
    shared = {p.link_key for p in blog.posts} & {p.link_key for p in news.posts}
    assert shared == {"https://collaborate.example.org/blog/2026/11/place-based-budgets/"}


def test_check_feeds_reports_moved_gone_stale_and_failing(tmp_path: Path) -> None:
    old_item = (
        "<item><title>Old</title><link>https://example.org/old</link>"
        "<pubDate>Mon, 01 Jun 2026 09:00:00 +0000</pubDate></item>"
    )
    fresh_item = (
        "<item><title>Fresh</title><link>https://example.org/fresh</link>"
        "<pubDate>Fri, 27 Nov 2026 09:00:00 +0000</pubDate></item>"
    )
    with FeedServer() as server:
        server.add("/new.xml", rss(fresh_item))
        feeds = [
            FeedConfig(name="Moved", url=server.add("/moved.xml", status=301, location="/new.xml")),
            FeedConfig(name="Gone", url=server.add("/gone.xml", status=410)),
            FeedConfig(name="Stale", url=server.add("/stale.xml", rss(old_item))),
            FeedConfig(name="Broken", url=server.add("/broken.xml", "x", status=500)),
        ]
        first_failure = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
        records: dict[str, FeedRecord | None] = {
            feeds[3].url: FeedRecord(
                feeds[3].url,
                None,
                None,
                None,
                False,
                "failed",
                "HTTP 500",
                4,
                first_failure,
                None,
                None,
            ),
            feeds[2].url: None,
        }
        rows = check_feeds(feeds, FetchConfig(timeout=3), tmp_path, records, NOW)
        etag_sent = [hit.headers.get("if-none-match") for hit in server.requests]
    moved, gone, stale, broken = rows
    assert moved.status == "ok" and moved.entries == 1
    assert moved.newest == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert moved.problems == (f"moved permanently to {server.url('/new.xml')}: update config.yaml",)
    assert gone.status == "failed" and gone.problems == ("gone: remove this feed",)
    assert stale.problems == ("stale: no new post for 181 days",)
    assert broken.status == "failed"
    assert broken.problems == (
        "HTTP 500 Internal Server Error",
        "failing since 2026-11-01 (4 attempts)",
    )
    assert all(row.elapsed >= 0 for row in rows)
    assert etag_sent == [None] * len(etag_sent)
