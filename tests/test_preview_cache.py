"""An unchanged issue's preview comes from the cache in the state file, equal to a fresh one."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

import digest.render.issue
from digest import store
from digest.config.schema import load_config
from digest.core.models import Issue, RenderedIssue
from digest.run.preview import preview
from tests.conftest import Project, post

CHECK_IMPORTS = """
import sys
from digest.cli.main import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    heavy = ("premailer", "jinja2", "css_inline", "feedparser")
    print("loaded:", sorted(m for m in heavy if m in sys.modules))
"""


def renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the renders the preview makes from now on."""
    counted: list[int] = []
    original = digest.render.issue.render_issue

    def counting(issue: Issue, config: object) -> RenderedIssue:
        counted.append(1)
        return original(issue, config)  # type: ignore[arg-type]

    monkeypatch.setattr(digest.render.issue, "render_issue", counting)
    return counted


def test_an_unchanged_preview_is_served_from_the_cache_and_equals_a_fresh_one(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(project.config)
    store.open(config).close()  # a project that has sent before has its state file
    counted = renders(monkeypatch)
    _, first_html, first_text = preview(config, project.now)
    prepared, html, text = preview(config, project.now + timedelta(minutes=5))
    assert len(counted) == 1, "the second preview was rendered again"
    _, fresh_html, fresh_text = preview(config, project.now, cache=False)
    assert (html, text) == (first_html, first_text) == (fresh_html, fresh_text)
    assert prepared.issue.post_count == 3 and "Post number 10" in html


def test_a_changed_feed_template_or_config_renders_anew(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(project.config)
    store.open(config).close()
    counted = renders(monkeypatch)
    preview(config, project.now)
    project.serve("/news.xml", [post(10, 1, site="https://example.org/news"), post(11)])
    _, html, _ = preview(config, project.now)
    assert "Post number 11" in html and len(counted) == 2
    templates = project.root / "templates"
    templates.mkdir()
    (templates / "email.html").write_text(
        '{% extends "bundled/email.html" %}{% block footer %}<p>Changed footer</p>{% endblock %}',
        encoding="utf-8",
    )
    _, footer, _ = preview(config, project.now)
    assert "Changed footer" in footer and len(counted) == 3
    project.write_config("digest:\n  max_posts_per_section: 1\n")
    _, html, _ = preview(load_config(project.config), project.now)
    assert html != footer and len(counted) == 4
    _, again, _ = preview(load_config(project.config), project.now)
    assert again == html and len(counted) == 4


def test_a_cached_preview_command_does_not_load_the_inliner_or_jinja(project: Project) -> None:
    store.open(load_config(project.config)).close()
    out = project.root / "preview.html"
    command = [sys.executable, "-c", CHECK_IMPORTS, "--config", str(project.config)]
    command += ["preview", "--out", str(out)]
    first = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    assert "'premailer'" in first.stdout
    fresh = out.read_text(encoding="utf-8")
    second = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    assert "loaded: []" in second.stdout, second.stdout
    assert out.read_text(encoding="utf-8") == fresh


def test_a_preview_without_a_state_file_creates_none(project: Project) -> None:
    config = load_config(project.config)
    preview(config, project.now)
    preview(config, project.now)
    assert not (project.root / "state.sqlite3").exists()
