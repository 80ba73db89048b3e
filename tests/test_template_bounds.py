"""A runaway template is a one-line error naming it, found fast and with little memory."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from digest.core.errors import TemplateError
from tests.conftest import Project
from tests.support.measuring import unmeasured, unmeasured_environment

# Each runs inside the bundled email.html's post block, so the error names the editor's file.
RUNAWAYS = {
    "output loop": "{% for i in range(10**9) %}x{% endfor %}",
    "silent nested loops": (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "repeated string": '{{ "x" * 10**9 }}',
    "repeated list": "{{ ([1] * 10**9) | length }}",
    "huge power": "{{ 7 ** 1000000000 }}",
    "centre filter": '{{ "x" | center(10**9) }}',
    "format width": '{{ "%999999999s" | format("x") }}',
    "indent filter": '{{ "a\\nb" | indent(10**9) }}',
    "padding method": '{{ "x".ljust(10**9) }}',
    "format method": '{{ "{:>999999999}".format("x") }}',
    "private attribute": "{{ issue.__class__.__mro__ }}",
}


def child_usage(
    command: list[str], cwd: Path
) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run a command in a fresh Python process that reports its child's peak RSS (MB) and
    processor time (seconds: unlike wall-clock time, not stretched by a busy machine)."""
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stdout.write(done.stdout)\n"
        "sys.stderr.write(done.stderr)\n"
        "used = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "sys.stderr.write(f'\\nPEAK {used.ru_maxrss} {used.ru_utime + used.ru_stime}\\n')\n"
        "sys.exit(done.returncode)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, *command],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=unmeasured_environment(),
        timeout=60,
        check=False,
    )
    peak_kb, cpu = done.stderr.rsplit("PEAK ", 1)[1].split()[:2]
    done.stderr = done.stderr.rsplit("\nPEAK ", 1)[0]
    return done, int(peak_kb) / 1024, float(cpu)


@pytest.mark.parametrize("body", RUNAWAYS.values(), ids=RUNAWAYS.keys())
def test_a_runaway_template_is_an_error_naming_it(project: Project, body: str) -> None:
    templates = project.root / "templates"
    templates.mkdir()
    (templates / "email.txt").write_text(
        '{% extends "bundled/email.txt" %}\n{% block intro %}\n' + body + "\n{% endblock %}\n",
        encoding="utf-8",
    )
    done, peak_mb, cpu_seconds = child_usage(
        [sys.executable, "-m", "digest", "--config", str(project.config), "check"], project.root
    )
    assert done.returncode == 2, done.stdout + done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, done.stderr
    assert "email.txt:3:" in error[0], error[0]
    assert "Traceback" not in done.stderr
    assert cpu_seconds < 20, cpu_seconds
    assert peak_mb < 250, peak_mb
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def test_a_runaway_template_during_send_sends_nothing(project: Project) -> None:
    templates = project.root / "templates"
    templates.mkdir()
    (templates / "email.html").write_text(
        '{% extends "bundled/email.html" %}{% block intro %}'
        "{% for i in range(10**9) %}<p>x</p>{% endfor %}{% endblock %}",
        encoding="utf-8",
    )
    with unmeasured():
        result = project.run("send")
    assert result.exit_code == 2, result.output
    assert "email.html:1:" in result.output and "output over" in result.output
    assert project.smtp.received == []


@pytest.mark.parametrize(
    "subject",
    ["{title:>999999999999}", "{count:0999999999d}", "{title:{count}}", "{date:.99999999}"],
)
def test_absurd_subject_formats_are_one_line_errors(project: Project, subject: str) -> None:
    project.add_newsletter_lines(f'  subject: "{subject}"\n')
    result = project.run("check")
    assert result.exit_code == 2, result.output
    assert "newsletter.subject: the format" in result.output
    assert "not allowed" in result.output
    assert "Traceback" not in result.output


def test_modest_subject_formats_still_work(project: Project) -> None:
    project.add_newsletter_lines('  subject: "{title:.10} ({count:>3} posts)"\n')
    assert project.run("send").exit_code == 0
    (message,) = project.smtp.to("ann@example.com")
    assert (
        message.message["Subject"] == "Collaborat ( 3 posts)"
    )  # one line: runs of spaces collapse


def test_the_bounded_filters_and_operators_give_jinja_s_answers_within_bounds(
    tmp_path: Path,
) -> None:
    """Modest uses of what the bounds guard render as plain Jinja would; a missing include is
    named with where it was needed."""
    from digest.render.templates import render_template, template_environment

    (tmp_path / "page.txt").write_text(
        '[{{ "ab" | center(6) }}]{{ "a\\nb" | indent(2) }}|{{ "%3s" | format("x") }}'
        "|{{ 2 * 3 }}|{{ [1] * 2 }}|{{ 2 ** 10 }}|{{ range(3) | list }}",
        encoding="utf-8",
    )
    env = template_environment(tmp_path)
    assert render_template(env, "page.txt", {}) == "[  ab  ]a\n  b|  x|6|[1, 1]|1024|[0, 1, 2]"
    (tmp_path / "broken.txt").write_text('{% include "missing.txt" %}', encoding="utf-8")
    with pytest.raises(TemplateError, match=r"template 'missing\.txt' \(needed by broken\.txt\)"):
        render_template(env, "broken.txt", {})
