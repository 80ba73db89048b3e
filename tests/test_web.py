"""The web apps in-process: unsubscribe rules, safety headers, body limits, caching and reloads."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its test client; httpx works the same for these tests.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from digest.config.schema import FeedConfig, FetchConfig
from digest.core.models import FeedResult, FetchStatus
from digest.core.tokens import make_token
from digest.web.common import is_one_click
from digest.web.public import PublicSite, create_public_app
from digest.web.workbench import (
    FeedCache,
    Workbench,
    create_workbench_app,
    exposure_warnings,
    inject_reload,
    result_size,
    strip_reload,
)
from tests.conftest import NOW, Project
from tests.support import statefile

ONE_CLICK = {"content-type": "application/x-www-form-urlencoded"}
# An unsubscribe token as 0.1.0 made it for ann@example.com with "test-secret" (it names the
# address readably; it is no longer made, but every one already sent must keep working).
READABLE_ANN = "YW5uQGV4YW1wbGUuY29t.juqfs9iyKvCWxQBTbt--mQ"
WORKBENCH = "http://127.0.0.1:8026"  # the Host the workbench expects when reached locally


def suppressions(project: Project) -> list[tuple[str, str]]:
    path = project.root / "state.sqlite3"
    if not path.exists():
        return []
    with statefile.connect(path) as db:
        return list(db.execute("SELECT email, source FROM suppressions ORDER BY email"))


@pytest.fixture
def client(project: Project) -> Iterator[TestClient]:
    site = PublicSite(project.config, lambda: NOW)
    with TestClient(create_public_app(site), follow_redirects=False) as test_client:
        yield test_client


def test_get_shows_a_confirmation_form_and_changes_nothing(
    project: Project, client: TestClient
) -> None:
    token = make_token("test-secret", "ann@example.com")
    response = client.get("/unsubscribe", params={"token": token})
    assert response.status_code == 200
    assert '<form method="post">' in response.text
    assert "ann@example.com" in response.text
    assert suppressions(project) == []


def test_one_click_post_suppresses_and_answers_200_not_a_redirect(
    project: Project, client: TestClient
) -> None:
    token = make_token("test-secret", "Ann@Example.com")
    response = client.post(
        "/unsubscribe",
        params={"token": token},
        content=b"List-Unsubscribe=One-Click",
        headers=ONE_CLICK,
    )
    assert response.status_code == 200
    assert "location" not in response.headers
    assert "ann@example.com" in response.text
    assert suppressions(project) == [("ann@example.com", "one-click")]
    again = client.post("/unsubscribe", params={"token": token}, data={"confirm": "yes"})
    assert again.status_code == 200
    assert suppressions(project) == [("ann@example.com", "one-click")]


def test_a_token_sent_by_0_1_0_still_unsubscribes_with_one_click(
    project: Project, client: TestClient
) -> None:
    shown = client.get("/unsubscribe", params={"token": READABLE_ANN})
    assert shown.status_code == 200 and "ann@example.com" in shown.text
    response = client.post(
        "/unsubscribe",
        params={"token": READABLE_ANN},
        content=b"List-Unsubscribe=One-Click",
        headers=ONE_CLICK,
    )
    assert response.status_code == 200
    assert suppressions(project) == [("ann@example.com", "one-click")]


def test_form_post_from_the_confirmation_page_is_recorded_as_web(
    project: Project, client: TestClient
) -> None:
    token = make_token("test-secret", "bob@example.com")
    response = client.post("/unsubscribe", params={"token": token}, data={"confirm": "yes"})
    assert response.status_code == 200
    assert suppressions(project) == [("bob@example.com", "web")]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        make_token("another-secret", "ann@example.com"),
        make_token("test-secret", "ann@example.com")[:-2] + "AA",
        # 0.1.0's form (ann@example.com) with another address put in.
        READABLE_ANN.replace("YW5u", "Ym9i", 1),
        "x" * 2000,
    ],
)
def test_bad_tokens_get_400_and_record_nothing(
    project: Project, client: TestClient, token: str
) -> None:
    for method in ("GET", "POST"):
        response = client.request(method, "/unsubscribe", params={"token": token})
        assert response.status_code == 400
        assert "not valid" in response.text and "Nothing was changed" in response.text
        assert response.headers["content-type"].startswith("text/html")
    assert suppressions(project) == []


def test_missing_or_repeated_token_is_400(project: Project, client: TestClient) -> None:
    assert client.post("/unsubscribe").status_code == 400
    token = make_token("test-secret", "ann@example.com")
    assert client.post(f"/unsubscribe?token={token}&token={token}").status_code == 400
    assert suppressions(project) == []


def test_pages_escape_what_they_show(project: Project, client: TestClient) -> None:
    token = make_token("test-secret", '"<script>alert(1)</script>"@example.com')
    response = client.get("/unsubscribe", params={"token": token})
    assert response.status_code == 200
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text


def test_bodies_over_8_kb_are_refused_with_413(project: Project, client: TestClient) -> None:
    token = make_token("test-secret", "ann@example.com")
    big = b"List-Unsubscribe=One-Click&" + b"x" * 9000
    response = client.post("/unsubscribe", params={"token": token}, content=big, headers=ONE_CLICK)
    assert response.status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"y" * 1024

    chunked = client.post("/unsubscribe", params={"token": token}, content=chunks())
    assert chunked.status_code == 413
    assert suppressions(project) == []


def test_health_unknown_paths_and_methods(client: TestClient) -> None:
    health = client.get("/healthz")
    assert (health.status_code, health.text) == (200, "ok\n")
    assert client.get("/admin").status_code == 404
    assert client.get("/unsubscribe/extra").status_code == 404
    assert client.put("/unsubscribe?token=x").status_code == 405


def test_responses_carry_safety_headers(client: TestClient) -> None:
    token = make_token("test-secret", "ann@example.com")
    response = client.get("/unsubscribe", params={"token": token})
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "set-cookie" not in response.headers


def test_the_public_app_serves_no_preview_and_the_workbench_no_unsubscribe(
    project: Project,
) -> None:
    site = PublicSite(project.config, lambda: NOW)
    with TestClient(create_public_app(site)) as test_client:
        assert test_client.get("/preview").status_code == 404
        assert test_client.get("/preview/version").status_code == 404
        assert test_client.get("/healthz").status_code == 200
    workbench = Workbench(project.config, lambda: NOW)
    with TestClient(create_workbench_app(workbench), base_url=WORKBENCH) as test_client:
        token = make_token("test-secret", "ann@example.com")
        assert test_client.post("/unsubscribe", params={"token": token}).status_code == 404
        assert test_client.get("/preview/version").status_code == 200


def test_one_click_body_recognised_in_both_encodings() -> None:
    assert is_one_click("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click")
    multipart = (
        b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\r\n--b--\r\n"
    )
    assert is_one_click("multipart/form-data; boundary=b", multipart)
    assert not is_one_click("application/x-www-form-urlencoded", b"confirm=yes")
    assert not is_one_click("application/x-www-form-urlencoded", b"")


def test_reload_script_is_injected_before_body_end_and_strips_cleanly() -> None:
    document = "<html><body><p>Hi</p></body></html>"
    injected = inject_reload(document, "abc123", "n0nce")
    assert injected.index("digest-preview-reload") < injected.index("</body>")
    assert '"abc123"' in injected and 'nonce="n0nce"' in injected
    assert strip_reload(injected) == document
    assert strip_reload(document) == document


def test_version_changes_when_a_watched_file_changes(project: Project) -> None:
    workbench = Workbench(project.config, lambda: NOW)
    first = workbench.version()
    assert workbench.version() == first
    time.sleep(0.01)
    project.config.write_text(
        project.config.read_text().replace("Collaborate Weekly", "Collaborate Daily")
    )
    second = workbench.version()
    assert second != first
    (project.root / "templates").mkdir()
    third = workbench.version()
    assert third != second
    (project.root / "templates" / "issue.html").write_text("{{ nonsense")
    fourth = workbench.version()
    assert fourth != third
    project.write_subscribers("carol@example.com,Carol")
    assert workbench.version() != fourth


class CountingCollector:
    """A stand-in for collect() that records which feeds it was asked for."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(
        self,
        feeds: Sequence[FeedConfig],
        fetch: FetchConfig,
        base_dir: Path,
        known: dict[str, Any],
        now: datetime,
    ) -> list[FeedResult]:
        self.calls.append([feed.url for feed in feeds])
        return [FeedResult(feed.url, FetchStatus.OK) for feed in feeds]


def test_feed_cache_fetches_each_feed_at_most_once_a_minute(tmp_path: Path) -> None:
    clock = [1000.0]
    collector = CountingCollector()
    cache = FeedCache(collector, ttl=60, monotonic=lambda: clock[0])
    feeds = [
        FeedConfig(name="Blog", url="https://example.org/blog.xml"),
        FeedConfig(name="News", url="https://example.org/news.xml"),
    ]
    fetch = FetchConfig()
    first = cache.collect(feeds, fetch, tmp_path, {}, NOW)
    assert [r.feed_url for r in first] == [f.url for f in feeds]
    clock[0] += 59
    cache.collect(feeds, fetch, tmp_path, {}, NOW)
    assert len(collector.calls) == 1
    renamed = [feeds[0], FeedConfig(name="News!", url="https://example.org/news.xml")]
    cache.collect(renamed, fetch, tmp_path, {}, NOW)
    assert collector.calls[-1] == ["https://example.org/news.xml"]
    clock[0] += 2
    cache.collect(feeds, fetch, tmp_path, {}, NOW)
    assert collector.calls[-1] == [f.url for f in feeds]
    assert len(collector.calls) == 3


def test_feed_cache_rereads_a_local_feed_file_when_it_changes(tmp_path: Path) -> None:
    collector = CountingCollector()
    cache = FeedCache(collector, ttl=60, monotonic=lambda: 0.0)
    (tmp_path / "feed.xml").write_text("<rss/>")
    feeds = [FeedConfig(name="Local", url="feed.xml")]
    cache.collect(feeds, FetchConfig(), tmp_path, {}, NOW)
    cache.collect(feeds, FetchConfig(), tmp_path, {}, NOW)
    assert len(collector.calls) == 1
    (tmp_path / "feed.xml").write_text("<rss version='2.0'/>")
    cache.collect(feeds, FetchConfig(), tmp_path, {}, NOW)
    assert len(collector.calls) == 2


def test_feed_cache_is_bounded_by_entries_and_size_and_drops_the_oldest(tmp_path: Path) -> None:
    collector = CountingCollector()
    cache = FeedCache(collector, ttl=60, monotonic=lambda: 0.0, max_entries=3)
    feeds = [FeedConfig(name=f"F{n}", url=f"https://example.org/{n}.xml") for n in range(5)]
    for feed in feeds:
        cache.collect([feed], FetchConfig(), tmp_path, {}, NOW)
    assert len(cache) == 3
    cache.collect(feeds[2:], FetchConfig(), tmp_path, {}, NOW)
    assert len(collector.calls) == 5  # the three newest are still cached
    cache.collect(feeds[:1], FetchConfig(), tmp_path, {}, NOW)
    assert collector.calls[-1] == [feeds[0].url]  # the oldest was dropped

    one = result_size(FeedResult(feeds[0].url, FetchStatus.OK))
    small = FeedCache(CountingCollector(), ttl=60, monotonic=lambda: 0.0, max_bytes=2 * one)
    results = small.collect(feeds, FetchConfig(), tmp_path, {}, NOW)
    assert [r.feed_url for r in results] == [f.url for f in feeds]
    assert len(small) == 2 and small.size <= 2 * one


def test_workbench_password_is_http_basic_with_any_user_name(project: Project) -> None:
    workbench = Workbench(project.config, lambda: NOW)
    app = create_workbench_app(workbench, "s3cret pass")
    with TestClient(app, base_url=WORKBENCH) as test_client:
        refused = test_client.get("/preview/version")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic ")
        assert test_client.get("/preview/version", auth=("editor", "wrong")).status_code == 401
        assert test_client.get("/preview/version", auth=("", "s3cret pass")).status_code == 200
        bad = {"authorization": "Basic !!!"}
        assert test_client.get("/preview/version", headers=bad).status_code == 401


@pytest.mark.parametrize(
    ("host", "password", "warned"),
    [
        ("127.0.0.1", None, False),
        ("127.0.0.2", None, False),
        ("::1", None, False),
        ("[::1]", None, False),
        ("localhost", None, False),
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("192.168.1.5", None, True),
        ("editor.example.org", None, True),
        ("0.0.0.0", "pass", False),
    ],
)
def test_a_workbench_beyond_this_machine_without_a_password_is_warned_about(
    host: str, password: str | None, warned: bool
) -> None:
    warnings = exposure_warnings(host, password)
    assert bool(warnings) is warned
    if warned:
        assert warnings[0].startswith("the editor's preview is public")
