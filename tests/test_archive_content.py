"""What the archive says about each issue: titled by its lead posts (not "N new posts, date"),
a feed summary of the lead posts with their excerpts, and a web copy without the email's links to
itself; real sends, `digest archive --out` and `digest serve` serving the same."""

from __future__ import annotations

import html
import re
from xml.etree import ElementTree

import httpx
import lxml.html

from digest.archive.pages import without_links_to
from tests.conftest import Project, post
from tests.test_archive import ARCHIVE_URL, enable_archive, files_of, view_in_browser
from tests.test_unsubscribe_e2e import digest_serve

ATOM = "{http://www.w3.org/2005/Atom}"
HOSTILE = {
    "title": 'Budget <script>alert("t")</script> & more',
    "link": "https://example.org/news/budget",
    "guid": "https://example.org/news/budget",
    "summary": '<p>Spending <img src=x onerror="alert(1)"> is up. <script>alert(2)</script></p>',
}


def archived_once(project: Project) -> dict[str, bytes]:
    enable_archive(project)
    project.serve("/news.xml", [{**post(10, 1, site="https://example.org/news"), **HOSTILE}])
    assert project.run("send").exit_code == 0
    out = project.root / "site"
    result = project.run("archive", "--out", str(out))
    assert result.exit_code == 0, result.output
    return files_of(out)


def test_index_and_feed_title_each_issue_by_its_lead_posts(project: Project) -> None:
    files = archived_once(project)
    index = files["archive/index.html"].decode()
    (heading,) = re.findall(r'<h2><a href="[^"]+">([^<]*)</a></h2>', index)
    assert html.unescape(heading) == (
        'Post number 1 · Post number 2 · Budget <script>alert("t")</script> & more'
    )
    assert "new posts" not in heading
    feed = ElementTree.fromstring(files["feed.atom"])
    (entry,) = feed.findall(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}title") == html.unescape(heading)


def test_a_feed_entrys_summary_is_the_lead_posts_with_their_excerpts_sanitised(
    project: Project,
) -> None:
    files = archived_once(project)
    entry = ElementTree.fromstring(files["feed.atom"]).findall(f"{ATOM}entry")[0]
    summary = entry.find(f"{ATOM}summary")
    assert summary is not None and summary.get("type") == "html"
    shown = lxml.html.fragment_fromstring(summary.text or "", create_parent="div")
    assert not shown.xpath("//script | //img | //*[@onerror]")
    links = [(a.text_content(), a.get("href")) for a in shown.xpath("//a")]
    assert links == [
        ("Post number 1", "https://example.org/blog/post-1"),
        ("Post number 2", "https://example.org/blog/post-2"),
        ('Budget <script>alert("t")</script> & more', "https://example.org/news/budget"),
    ]
    text = shown.text_content()
    assert "Summary of post 1." in text and "Spending is up." in text
    assert "alert(2)" not in text


def test_the_web_copy_leaves_out_the_emails_links_to_itself(project: Project) -> None:
    files = archived_once(project)
    (page_name,) = [name for name in files if name.startswith("issues/")]
    page = files[page_name].decode()
    frame = html.unescape(re.search(r'srcdoc="([^"]*)"', page).group(1))  # type: ignore[union-attr]
    assert "View this issue in your browser" not in frame and "Read it online" not in frame
    assert f"{ARCHIVE_URL}/{page_name.removesuffix('index.html')}" not in frame
    assert "Subscribe to Collaborate Weekly" in frame and "Post number 1" in frame
    # The email itself still has both.
    sent = project.smtp.to("annabel.quist@example.com")[0].part("html")
    assert view_in_browser(sent) == f"{ARCHIVE_URL}/{page_name.removesuffix('index.html')}"
    assert "Read it online" in sent
    with digest_serve(project, "--no-preview") as base:
        served = httpx.get(f"{base}/{page_name.removesuffix('index.html')}", timeout=10)
        assert served.content == files[page_name]
        assert httpx.get(f"{base}/feed.atom", timeout=10).content == files["feed.atom"]


def test_links_to_the_issue_itself_go_and_every_other_link_stays() -> None:
    url = "https://news.example.org/digest/issues/4-weekly/"
    email = (
        '<table><tr><td class="topbar" style="x"><a href="https://elsewhere.example/v">View'
        " online</a></td></tr><tr><td><p>"
        '<a href="https://example.org/u">Unsubscribe</a> · <a href="'
        + url
        + '" style="color:#4b5563">Read it online</a> · <a href="https://old.example/issues/'
        "4-weekly/\">Old address</a></p><p><a href='https://example.org/post'>A post</a></p>"
        "</td></tr></table>"
    )
    kept = without_links_to(email, url, "/issues/4-weekly/")
    assert "View online" not in kept and "Read it online" not in kept and "Old address" not in kept
    assert '<a href="https://example.org/u">Unsubscribe</a></p>' in kept
    assert "<a href='https://example.org/post'>A post</a>" in kept
