"""The web archive end to end: real sends, `digest archive --out`, `digest serve`, withdrawal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import feedparser
import httpx
import pytest

from digest.core.tokens import make_token
from tests.conftest import NOW, Project, post
from tests.test_unsubscribe_e2e import digest_serve

ARCHIVE_URL = "https://news.example.org/digest"
SUBSCRIBERS = {
    "annabel.quist@example.com": "Annabel Quist",
    "bartholomew.ryle@example.com": "Bartholomew Ryle",
}
WEEK = timedelta(days=7)


def enable_archive(project: Project, extra: str = "") -> None:
    """config.yaml with the archive on, published at ARCHIVE_URL."""
    project.write_config("archive:\n  enabled: true\n" + extra)
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text.replace("newsletter:\n", f"newsletter:\n  archive_url: {ARCHIVE_URL}/\n", 1),
        encoding="utf-8",
    )
    project.write_subscribers(*(f"{email},{name}" for email, name in SUBSCRIBERS.items()))


def send_three(project: Project) -> None:
    """Three real sends a week apart, each with new posts."""
    assert project.run("send").exit_code == 0
    for week in (1, 2):
        later = NOW + week * WEEK
        project.serve(
            "/blog.xml",
            [post(100 + week, days_ago=-(week * 7) + 1, site="https://example.org/blog")],
        )
        result = project.run("send", now=later)
        assert result.exit_code == 0, result.output


def view_in_browser(html: str) -> str:
    found = re.search(r'<a href="([^"]+)"[^>]*>View this issue in your browser</a>', html)
    assert found, "no view-in-browser link"
    return found.group(1).replace("&amp;", "&")


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def archived(project: Project) -> Project:
    enable_archive(project)
    send_three(project)
    return project


def test_three_sends_make_an_index_three_pages_and_a_feed(archived: Project) -> None:
    out = archived.root / "site"
    result = archived.run("archive", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "3 issues" in result.output
    files = files_of(out)
    pages = sorted(name for name in files if name.startswith("issues/"))
    assert len(pages) == 3
    assert [name.split("/")[1].split("-")[0] for name in pages] == ["1", "2", "3"]
    assert "archive/index.html" in files and "feed.atom" in files

    index = files["archive/index.html"].decode()
    subjects = re.findall(r'<h2><a href="\.\./issues/([^"]+)/">', index)
    assert [key.split("-")[0] for key in subjects] == ["3", "2", "1"]  # newest first
    assert "3 posts" in index and "1 post" in index

    feed = feedparser.parse(files["feed.atom"])
    assert not feed.bozo, feed.bozo_exception
    assert [entry.link for entry in feed.entries] == [
        f"{ARCHIVE_URL}/issues/{key}/" for key in subjects
    ]
    assert all(entry.summary for entry in feed.entries)

    # Each subscriber's "view in browser" link is that issue's page, in the order sent.
    for email in SUBSCRIBERS:
        received = archived.smtp.to(email)
        assert len(received) == 3
        links = [view_in_browser(message.part("html")) for message in received]
        assert links == [f"{ARCHIVE_URL}/issues/{key}/" for key in reversed(subjects)]
        for message, link in zip(received, links, strict=True):
            assert f"Read it online: {link}" in message.part("plain")

    # Each page names itself canonically and links its neighbours relatively.
    first, second, third = (files[name].decode() for name in pages)
    assert f'<link rel="canonical" href="{ARCHIVE_URL}/issues/{subjects[2]}/">' in first
    assert f'href="../{subjects[1]}/" rel="next"' in first
    assert f'href="../{subjects[2]}/" rel="prev"' in second
    assert 'rel="next"' not in third.split('aria-label="Issues"')[1]


def test_no_page_holds_a_subscribers_address_name_or_token(archived: Project) -> None:
    out = archived.root / "site"
    assert archived.run("archive", "--out", str(out)).exit_code == 0
    secrets = ["%%DIGEST", "token=", "nsubscribe"]
    for email, name in SUBSCRIBERS.items():
        # The token without an issue, and those naming each issue the messages came from.
        for issue in (None, 1, 2, 3, 4, 5):
            token = make_token("test-secret", email, issue)
            secrets += [token, *token.split(".")]
        secrets += [email, name, *name.split()]
    files = files_of(out)
    for name, data in files.items():
        text = data.decode()
        for secret in secrets:
            assert secret.lower() not in text.lower(), f"{secret!r} found in {name}"
    page = next(data.decode() for name, data in files.items() if name.startswith("issues/1-"))
    assert "Subscribe to Collaborate Weekly" in page  # the unsubscribe link became this
    assert "mailto:digest@example.org?subject=Subscribe" in page


def test_digest_serve_answers_with_the_same_bytes_and_withdrawal_is_410(
    archived: Project,
) -> None:
    out = archived.root / "site"
    assert archived.run("archive", "--out", str(out)).exit_code == 0
    files = files_of(out)
    with digest_serve(archived, "--no-preview") as base:
        for name, data in files.items():
            if name == ".digest-archive":
                continue
            path = "/" + name.removesuffix("index.html")
            answer = httpx.get(base + path)
            assert answer.status_code == 200, path
            assert answer.content == data, path
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert "default-src 'none'" in answer.headers["content-security-policy"]
        second = next(n for n in files if n.startswith("issues/2-")).removesuffix("index.html")
        result = archived.run("archive", "withdraw", "2")
        assert result.exit_code == 0, result.output
        assert httpx.get(f"{base}/{second}").status_code == 410
        index = httpx.get(f"{base}/archive/").text
        assert "issues/2-" not in index and "issues/3-" in index and "issues/1-" in index
        feed = feedparser.parse(httpx.get(f"{base}/feed.atom").content)
        assert not feed.bozo
        assert [entry.link.split("/")[-2].split("-")[0] for entry in feed.entries] == ["3", "1"]
        third = next(n for n in files if n.startswith("issues/3-")).removesuffix("index.html")
        neighbours = httpx.get(f"{base}/{third}").text
        assert 'href="../1-' in neighbours  # issue 3's previous is now issue 1
        wrong_slug = httpx.get(f"{base}/issues/1-no-such-slug/", follow_redirects=False)
        assert wrong_slug.status_code == 308
        assert httpx.get(f"{base}/issues/9-nothing/").status_code == 404
    assert archived.run("archive", "--out", str(out)).exit_code == 0
    rewritten = files_of(out)
    assert not any(name.startswith("issues/2-") for name in rewritten)
    assert "issues/2-" not in rewritten["archive/index.html"].decode()


def test_archive_off_keeps_everything_off(project: Project) -> None:
    project.write_config(f"archive:\n  enabled: false\n  out_dir: {project.root / 'site'}\n")
    assert project.run("send").exit_code == 0
    html = project.smtp.to("ann@example.com")[0].part("html")
    assert "View this issue in your browser" not in html
    assert not (project.root / "site").exists()
    result = project.run("archive", "--out", str(project.root / "site"))
    assert result.exit_code != 0 and "archive is off" in result.output
    with digest_serve(project, "--no-preview") as base:
        for path in ("/archive/", "/feed.atom", "/issues/1-x/"):
            assert httpx.get(base + path).status_code == 404


def test_each_real_send_rewrites_the_static_archive_in_out_dir(project: Project) -> None:
    enable_archive(project, "  out_dir: site\n  per_page: 2\n")
    (project.root / "site").mkdir()
    send_three(project)
    files = files_of(project.root / "site")
    assert sum(name.startswith("issues/") for name in files) == 3
    assert {"archive/index.html", "archive/2/index.html", "feed.atom"} <= set(files)
    assert 'href="../../archive/2/" rel="next"' not in files["archive/index.html"].decode()
    assert 'href="../archive/2/" rel="next"' in files["archive/index.html"].decode()
    assert not [p for p in project.root.iterdir() if p.name.startswith(".site")]  # no leftovers


def test_a_folder_digest_did_not_write_is_never_replaced(archived: Project) -> None:
    folder = archived.root / "precious"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    result = archived.run("archive", "--out", str(folder))
    assert result.exit_code != 0
    assert "did not write" in result.output
    assert (folder / "keep.txt").read_text() == "mine"


def test_previews_and_test_sends_point_at_the_preview(project: Project) -> None:
    enable_archive(project)
    result = project.run("send", "--to", "editor@example.com")
    assert result.exit_code == 0, result.output
    html = project.smtp.to("editor@example.com")[0].part("html")
    assert view_in_browser(html) == f"{ARCHIVE_URL}/preview"
    preview = project.root / "preview.html"
    assert project.run("preview", "--out", str(preview)).exit_code == 0
    assert view_in_browser(preview.read_text()) == f"{ARCHIVE_URL}/preview"


def test_feed_text_stays_escaped_on_the_pages(project: Project) -> None:
    enable_archive(project)
    project.serve(
        "/blog.xml",
        [{**post(1), "title": "<script>alert(1)</script> & <b>bold</b>"}],
    )
    assert project.run("send").exit_code == 0
    out = project.root / "site"
    assert project.run("archive", "--out", str(out)).exit_code == 0
    for name, data in files_of(out).items():
        text = data.decode()
        assert "<script>alert" not in text, name
        assert "<b>bold" not in text, name


def test_an_empty_archive_has_an_index_and_an_empty_feed(project: Project) -> None:
    enable_archive(project)
    project.config.write_text(
        project.config.read_text().replace("state: state.sqlite3", "state: data/state.sqlite3")
    )
    out = project.root / "site"
    result = project.run("archive", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "No issues yet" in (out / "archive" / "index.html").read_text()
    feed = feedparser.parse((out / "feed.atom").read_bytes())
    assert not feed.bozo and feed.entries == []


def test_withdrawing_rewrites_the_configured_out_dir(project: Project) -> None:
    enable_archive(project, "  out_dir: site\n")
    send_three(project)
    site = project.root / "site"
    assert sum(1 for _ in (site / "issues").iterdir()) == 3
    result = project.run("archive", "withdraw", "3")
    assert result.exit_code == 0, result.output
    assert "410 Gone" in result.output
    assert sorted(p.name.split("-")[0] for p in (site / "issues").iterdir()) == ["1", "2"]
    again = project.run("archive", "withdraw", "3")
    assert again.exit_code == 0 and "already withdrawn" in again.output
    missing = project.run("archive", "withdraw", "9")
    assert missing.exit_code == 1 and "no archived issue 9" in missing.output


def test_a_resumed_issue_links_to_the_page_it_was_numbered_with(project: Project) -> None:
    enable_archive(project)
    late = "bartholomew.ryle@example.com"
    project.smtp.script.defer = {late: 100}
    first = project.run("send")
    assert first.exit_code == 1 and "pending" in first.output
    project.smtp.script.defer = {}
    resumed = project.run("send", now=NOW + timedelta(hours=1))
    assert resumed.exit_code == 0, resumed.output
    links = {view_in_browser(project.smtp.to(email)[0].part("html")) for email in SUBSCRIBERS}
    assert links == {f"{ARCHIVE_URL}/issues/1-collaborate-weekly-3-new-posts-30-november-2026/"}


def test_images_keep_absolute_urls_and_the_logo_previews_the_link(project: Project) -> None:
    enable_archive(project)
    logo = "https://cdn.example.org/logo.png"
    project.config.write_text(
        project.config.read_text().replace("newsletter:\n", f"newsletter:\n  logo_url: {logo}\n")
    )
    assert project.run("send").exit_code == 0
    out = project.root / "site"
    assert project.run("archive", "--out", str(out)).exit_code == 0
    page = next((out / "issues").iterdir()) / "index.html"
    text = page.read_text()
    assert f'<meta property="og:image" content="{logo}">' in text
    assert f"src=&#34;{logo}&#34;" in text or f"src=&quot;{logo}&quot;" in text


def test_digest_run_writes_the_static_archive_after_its_send(project: Project) -> None:
    enable_archive(project, '  out_dir: site\nschedule:\n  day: monday\n  time: "08:00"\n')
    result = project.run("run", "--once")
    assert result.exit_code == 0, result.output
    pages = list((project.root / "site" / "issues").iterdir())
    assert [page.name.split("-")[0] for page in pages] == ["1"]
    link = view_in_browser(project.smtp.to("annabel.quist@example.com")[0].part("html"))
    assert link == f"{ARCHIVE_URL}/issues/{pages[0].name}/"


def kill_a_write(project: Project, out: Path) -> None:
    """Start `digest archive --out` and SIGKILL it once its temporary folder is there."""
    command = [sys.executable, "-m", "digest", "--config", str(project.config), "archive"]
    environment = {**os.environ, "DIGEST_NOW": NOW.isoformat()}
    before = set(leftovers(out))
    for _ in range(20):
        writer = subprocess.Popen(
            [*command, "--out", str(out)],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while writer.poll() is None:
            if set(leftovers(out)) - before:
                writer.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
        writer.wait(timeout=30)
        if writer.returncode == -signal.SIGKILL and set(leftovers(out)) - before:
            return
    raise AssertionError("no write was caught with its temporary folder in place")


def leftovers(out: Path) -> list[str]:
    return sorted(
        entry.name for entry in out.parent.iterdir() if entry.name.startswith(f".{out.name}.")
    )


def test_the_next_write_clears_what_a_killed_write_left(archived: Project) -> None:
    site = archived.root / "site"
    assert archived.run("archive", "--out", str(site)).exit_code == 0
    whole = files_of(site)
    kill_a_write(archived, site)
    assert len(leftovers(site)) == 1
    # Where renameat2 is missing, a write killed between its two renames leaves the old archive
    # aside and none in `site` until the next write.
    aside = archived.root / ".site.old.abcd1234"
    aside.mkdir()
    site.rename(aside / "old")
    # Folders with similar names that digest did not write stay, and so does the staging
    # folder of an archive written to `site.old` beside it (its own writes clear that).
    for name in (".site.mine1234", ".site.backup"):
        (archived.root / name).mkdir()
        (archived.root / name / "keep.txt").write_text("mine")
    other = archived.root / ".site.old.efgh5678"
    other.mkdir()
    (other / ".digest-archive").write_text("")
    (other / "index.html").write_text("")

    result = archived.run("archive", "--out", str(site))
    assert result.exit_code == 0, result.output
    assert leftovers(site) == [".site.backup", ".site.mine1234", ".site.old.efgh5678"]
    assert (archived.root / ".site.mine1234" / "keep.txt").read_text() == "mine"
    assert files_of(site) == whole


# `digest archive`, killed (SIGKILL, from inside: an exact moment) just after it deletes the
# marker of a folder it is removing.
KILLED_AFTER_THE_MARKER = """
import os, signal, sys
real_unlink = os.unlink
def unlink(path, *args, **kwargs):
    real_unlink(path, *args, **kwargs)
    if os.path.basename(os.fsdecode(path)) == ".digest-archive":
        os.kill(os.getpid(), signal.SIGKILL)
os.unlink = unlink
sys.argv = ["digest", *sys.argv[1:]]
from digest.entry import main
main()
"""


def test_a_write_killed_while_removing_the_old_archive_is_cleared_too(
    archived: Project,
) -> None:
    site = archived.root / "site"
    assert archived.run("archive", "--out", str(site)).exit_code == 0
    whole = files_of(site)
    config = ["--config", str(archived.config), "archive", "--out", str(site)]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_THE_MARKER, *config],
        env={**os.environ, "DIGEST_NOW": NOW.isoformat()},
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # The new archive is in place; the old one was being removed when the write was killed.
    assert files_of(site) == whole
    assert len(leftovers(site)) == 1

    result = archived.run("archive", "--out", str(site))
    assert result.exit_code == 0, result.output
    assert leftovers(site) == []
    assert files_of(site) == whole
