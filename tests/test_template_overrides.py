"""Editors' templates: whole-file overrides, and extending the bundled ones block by block."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jinja2
from jinja2 import nodes

from digest.render.loader import BUNDLED_TEMPLATES, README_EXAMPLE, TEMPLATE_BLOCKS, readme_text
from tests.conftest import Project

FOOTER_CELL = re.compile(r'(<td class="footer"[^>]*>)(.*?)(</td>)', re.DOTALL)
NEW_FOOTER = """\
{% extends "bundled/email.html" %}
{% block footer %}
<p>Thanks for reading {{ issue.title }}. <a href="{{ unsubscribe_url }}">Leave</a></p>
{% endblock %}
"""


def editor_template(project: Project, name: str, text: str) -> Path:
    """Write a file into the editor's templates/ folder beside config.yaml."""
    path = project.root / "templates" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def preview_html(project: Project, name: str) -> str:
    """The next issue's HTML as `digest preview --out` writes it, from a real process."""
    out = project.root / name
    result = project.run_process("preview", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out.read_text(encoding="utf-8")


def without_footer(html: str) -> str:
    """The HTML with the footer cell's content cut out (the cell itself stays)."""
    assert len(FOOTER_CELL.findall(html)) == 1
    return FOOTER_CELL.sub(r"\1\3", html)


def test_extending_and_overriding_only_the_footer_leaves_the_rest_identical(
    project: Project,
) -> None:
    default = preview_html(project, "default.html")
    editor_template(project, "email.html", NEW_FOOTER)
    custom = preview_html(project, "custom.html")

    footer = FOOTER_CELL.search(custom)
    assert footer is not None
    assert "Thanks for reading Collaborate Weekly." in footer.group(2)
    assert "This email was sent to" not in custom
    assert "This email was sent to" in default
    assert without_footer(custom) == without_footer(default)
    assert "Post number 1" in custom


def test_sent_mail_carries_the_extended_footer_and_the_bundled_rest(project: Project) -> None:
    editor_template(
        project,
        "email.html",
        '{% extends "bundled/email.html" %}\n{% block footer %}\n'
        "<p>Forward this to a friend.</p>\n{{ super() }}\n{% endblock %}\n",
    )
    editor_template(
        project,
        "email.txt",
        '{% extends "bundled/email.txt" %}\n{% block intro %}\nHello {{ subscriber.name }}!\n\n'
        "{% endblock %}\n",
    )
    result = project.run_process("send")
    assert result.returncode == 0, result.stderr
    received = project.smtp.to("ann@example.com")[0]
    html, text = received.part("html"), received.part("plain")
    assert "Forward this to a friend." in html
    assert "This email was sent to Ann (ann@example.com)" in html
    assert "Unsubscribe from Collaborate Weekly" in html and "Post number 1" in html
    assert "Hello Ann!" in text
    assert "Post number 10" in text and "Unsubscribe:" in text


def test_a_full_override_of_email_html_still_replaces_it(project: Project) -> None:
    editor_template(
        project,
        "email.html",
        "<html><body><h1>Our own {{ issue.title }}</h1>"
        '<a href="{{ unsubscribe_url }}">Stop</a></body></html>\n',
    )
    html = preview_html(project, "own.html")
    assert "Our own Collaborate Weekly" in html
    assert "Post number 1" not in html and "preheader" not in html


def test_an_editors_post_html_is_used_by_the_extended_email(project: Project) -> None:
    editor_template(project, "email.html", NEW_FOOTER)
    editor_template(project, "post.html", "<p class=mine>{{ post.title }} by us</p>\n")
    html = preview_html(project, "posts.html")
    assert "Post number 1 by us" in html and "Post number 10 by us" in html
    assert 'class="post-title"' not in html


def test_bundled_prefix_always_means_the_shipped_template(project: Project) -> None:
    editor_template(project, "bundled/email.html", "<p>not the shipped one</p>\n")
    editor_template(project, "email.html", NEW_FOOTER)
    html = preview_html(project, "shadow.html")
    assert "not the shipped one" not in html
    assert "Thanks for reading Collaborate Weekly." in html and "Post number 1" in html


def test_autoescape_follows_the_extension_for_bundled_names(project: Project) -> None:
    config = project.config.read_text(encoding="utf-8").replace(
        "  title: Collaborate Weekly\n",
        "  title: Collaborate Weekly\n  footer: 'Read <b>us</b> & more'\n",
    )
    project.config.write_text(config, encoding="utf-8")
    editor_template(
        project,
        "email.html",
        '{% extends "bundled/email.html" %}\n{% block footer %}<p>{{ newsletter.footer }}</p>'
        "{{ unsubscribe_url }}{% endblock %}\n",
    )
    editor_template(
        project,
        "email.txt",
        '{% extends "bundled/email.txt" %}\n{% block footer %}{{ newsletter.footer }}\n'
        "{{ unsubscribe_url }}\n{% endblock %}\n",
    )
    assert project.run("send").exit_code == 0
    received = project.smtp.to("ann@example.com")[0]
    assert "Read &lt;b&gt;us&lt;/b&gt; &amp; more" in received.part("html")
    assert "Read <b>us</b> & more" in received.part("plain")


def test_an_error_in_an_extending_template_names_the_file_and_line(project: Project) -> None:
    path = editor_template(
        project,
        "email.html",
        '{% extends "bundled/email.html" %}\n{% block footer %}\n<p>Thanks</p>\n'
        "<p>{{ newsletter.no_such_key }}</p>\n{% endblock %}\n",
    )
    result = project.run_process("check")
    assert result.returncode == 2
    assert f"{path}:4:" in result.stderr + result.stdout
    assert "no_such_key" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr

    path.write_text(
        '{% extends "bundled/email.html" %}\n{% block footer %}\n{% if %}\n{% endblock %}\n',
        encoding="utf-8",
    )
    result = project.run_process("check")
    assert result.returncode == 2
    assert f"{path}:3: syntax error" in result.stderr + result.stdout


def test_block_table_matches_the_bundled_templates() -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(BUNDLED_TEMPLATES)))
    for template in ("email.html", "email.txt"):
        source = (BUNDLED_TEMPLATES / template).read_text(encoding="utf-8")
        found = [block.name for block in env.parse(source).find_all(nodes.Block)]
        documented = [b.name for b in TEMPLATE_BLOCKS if b.template == template]
        assert sorted(found) == sorted(documented), template
        for required in ("header", "intro", "section", "post", "footer"):
            assert required in found


def run_digest(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m digest ARGS` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "digest", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )


def test_init_leaves_templates_empty_and_check_passes(tmp_path: Path) -> None:
    target = tmp_path / "fresh"
    made = run_digest("init", str(target))
    assert made.returncode == 0, made.stderr
    assert "bundled templates are used" in made.stdout
    assert [p.name for p in (target / "templates").iterdir()] == ["README.txt"]
    readme = (target / "templates" / "README.txt").read_text(encoding="utf-8")
    assert readme == readme_text() and '{% extends "bundled/email.html" %}' in readme
    checked = run_digest("--config", str(target / "config.yaml"), "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK: 2 feeds" in checked.stdout


def test_init_with_templates_copies_them_and_check_passes(tmp_path: Path) -> None:
    target = tmp_path / "full"
    made = run_digest("init", "--templates", str(target))
    assert made.returncode == 0, made.stderr
    assert "copied into" in made.stdout
    copied = sorted(p.name for p in (target / "templates").iterdir())
    bundled = sorted(p.name for p in BUNDLED_TEMPLATES.iterdir())
    assert copied == sorted([*bundled, "README.txt"])
    checked = run_digest("--config", str(target / "config.yaml"), "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    again = run_digest("init", "--templates", str(target))
    assert again.returncode == 2
    assert "already exist" in again.stdout + again.stderr


def test_readme_example_renders_when_saved_as_email_html(project: Project) -> None:
    assert README_EXAMPLE in readme_text()
    editor_template(project, "email.html", README_EXAMPLE)
    html = preview_html(project, "example.html")
    assert "Forward this to a friend who would enjoy it." in html
    assert "Unsubscribe from Collaborate Weekly" in html
    assert project.run("check").exit_code == 0
