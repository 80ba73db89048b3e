"""The live preview: what subscribers get, fetched at most once a minute, errors on the page."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.render.loader import BUNDLED_TEMPLATES
from digest.web.workbench import Workbench, create_workbench_app, strip_reload
from tests.conftest import NOW, Project

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its test client; httpx works the same for these tests.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

PREVIEW_URL = "https://example.org/unsubscribe?token=preview"
WORKBENCH = "http://127.0.0.1:8026"  # the Host the workbench expects when reached locally


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(project: Project, clock: Clock) -> Iterator[TestClient]:
    workbench = Workbench(project.config, lambda: NOW, monotonic=clock)
    with TestClient(create_workbench_app(workbench), base_url=WORKBENCH) as test_client:
        yield test_client


def normalise(text: str, url: str, email: str, name: str) -> str:
    """Per-subscriber fields replaced by markers, so two people's copies compare equal."""
    text = text.replace("\r\n", "\n")
    return text.replace(url, "<URL>").replace(email, "<EMAIL>").replace(name, "<NAME>")


def break_template(project: Project, line: int = 6) -> Path:
    """An editor's copy of email.html with an unknown variable on the given line."""
    folder = project.root / "templates"
    folder.mkdir(exist_ok=True)
    lines = (BUNDLED_TEMPLATES / "email.html").read_text(encoding="utf-8").splitlines()
    lines.insert(line - 1, "{{ issue.no_such_thing }}")
    target = folder / "email.html"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def test_preview_is_what_a_subscriber_receives_minus_personal_fields(
    project: Project, client: TestClient
) -> None:
    page = client.get("/preview")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "digest-preview-reload" in page.text
    text_page = client.get("/preview.txt")
    assert text_page.status_code == 200

    assert project.run("send").exit_code == 0
    received = project.smtp.to("ann@example.com")[0]
    found = re.search(r"<(https://[^>]+)>", received.message["List-Unsubscribe"])
    assert found
    ann_url = found.group(1)
    sent_html = normalise(received.part("html"), ann_url, "ann@example.com", "Ann")
    shown_html = normalise(
        strip_reload(page.text), PREVIEW_URL, "reader@example.org", "Sample Reader"
    )
    assert "<URL>" in shown_html and "Post number 1" in shown_html
    assert shown_html == sent_html
    sent_text = normalise(received.part("plain"), ann_url, "ann@example.com", "Ann")
    shown_text = normalise(text_page.text, PREVIEW_URL, "reader@example.org", "Sample Reader")
    assert shown_text == sent_text


def test_sent_mail_never_carries_the_reload_script(project: Project) -> None:
    assert project.run("send").exit_code == 0
    for item in project.smtp.received:
        assert "<script" not in item.part("html")


def test_feeds_are_fetched_at_most_once_a_minute_while_templates_rerender(
    project: Project, client: TestClient, clock: Clock
) -> None:
    assert client.get("/preview").status_code == 200
    assert len(project.feeds.hits("/blog.xml")) == 1
    folder = project.root / "templates"
    folder.mkdir()
    bundled = (BUNDLED_TEMPLATES / "email.txt").read_text(encoding="utf-8")
    (folder / "email.txt").write_text("EDITED TEMPLATE\n" + bundled, encoding="utf-8")
    clock.value += 30
    text = client.get("/preview.txt")
    assert text.text.startswith("EDITED TEMPLATE")
    assert len(project.feeds.hits("/blog.xml")) == 1
    clock.value += 31
    assert client.get("/preview").status_code == 200
    assert len(project.feeds.hits("/blog.xml")) == 2
    assert len(project.feeds.hits("/news.xml")) == 2


def test_version_changes_after_an_edit(project: Project, client: TestClient) -> None:
    first = client.get("/preview/version").text
    assert client.get("/preview/version").text == first
    assert f'"{first}"' in client.get("/preview").text
    project.config.write_text(project.config.read_text().replace("Weekly", "Daily"))
    second = client.get("/preview/version").text
    assert second != first
    assert "Collaborate Daily" in client.get("/preview").text


def test_a_template_error_shows_file_line_and_expression_on_the_page(
    project: Project, client: TestClient
) -> None:
    target = break_template(project)
    page = client.get("/preview")
    assert page.status_code == 422
    assert f"{target}:6:" in page.text
    assert "issue.no_such_thing" in page.text
    assert "available variables" in page.text
    assert "Traceback" not in page.text
    assert "digest-preview-reload" in page.text
    assert client.get("/preview.txt").status_code == 422
    target.unlink()
    assert client.get("/preview").status_code == 200


def test_a_config_error_shows_on_the_page_escaped(project: Project, client: TestClient) -> None:
    good = project.config.read_text()
    project.config.write_text(
        good.replace("  title: Collaborate Weekly\n", "  title: <b>\n  x: 1\n")
    )
    page = client.get("/preview")
    assert page.status_code == 422
    assert "config.yaml:3: newsletter.x: unknown key" in page.text
    assert "<b>" not in page.text.split("<pre", 1)[1]
    project.config.write_text(good)
    assert client.get("/preview").status_code == 200


@pytest.mark.parametrize("command", [["check"], ["preview", "--text"], ["send"]])
def test_a_broken_template_is_one_line_with_file_and_line_and_exit_2(
    project: Project, command: list[str]
) -> None:
    target = break_template(project, line=4)
    result = project.run(*command)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"Error: {target}:4:")
    assert "issue.no_such_thing" in errors[0] and "available variables" in errors[0]
    assert project.smtp.received == []


def test_preview_open_writes_the_file_and_text_prints_the_text_part(
    project: Project, tmp_path: Path
) -> None:
    out = tmp_path / "next.html"
    result = project.run("preview", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "Post number 1" in out.read_text() and "<script" not in out.read_text()
    text = project.run("preview", "--text")
    assert text.exit_code == 0
    assert "Post number 1" in text.stdout and "<html" not in text.stdout


def test_with_nothing_new_the_preview_says_so_and_shows_sample_posts(
    project: Project, client: TestClient
) -> None:
    assert project.run("send").exit_code == 0
    page = client.get("/preview")
    assert page.status_code == 200
    notice = re.search(r'<div id="preview-notice"[^>]*>([^<]*)</div>', page.text)
    assert notice and notice.group(1).startswith("Nothing new: `digest send` would send nothing")
    assert "Five lessons from a decade of community health partnerships" in page.text
    assert "Post number" not in page.text
    text_page = client.get("/preview.txt")
    assert text_page.text.startswith("[Nothing new: `digest send` would send nothing now.")

    result = project.run("preview", "--out", str(project.root / "p.html"))
    assert result.exit_code == 0
    assert "Nothing new: `digest send` would send nothing now." in result.output
    assert "Preview with sample posts (6 posts," in result.output
    written = (project.root / "p.html").read_text(encoding="utf-8")
    assert "preview-notice" not in written
    assert "Five lessons from a decade of community health partnerships" in written
