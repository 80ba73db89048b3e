"""A config or template mistake found by `digest send` stops it before the issue is frozen."""

from __future__ import annotations

import pytest

from digest.core.errors import TemplateError
from digest.core.models import OutgoingMessage
from tests.conftest import Project
from tests.support import statefile
from tests.support.dkimkey import make_dkim_key

ALL_POSTS = ("Post number 1", "Post number 2", "Post number 10")


def rows(project: Project, sql: str) -> list[tuple[object, ...]]:
    return statefile.rows(project.root / "state.sqlite3", sql)


def assert_nothing_frozen(project: Project) -> None:
    """No issue row, no post carried, nothing delivered or received (or no state file yet)."""
    assert project.smtp.received == []
    if not (project.root / "state.sqlite3").exists():
        return
    assert rows(project, "SELECT id FROM issues") == []
    assert rows(project, "SELECT * FROM issue_posts") == []
    assert rows(project, "SELECT * FROM deliveries") == []
    assert project.smtp.received == []


def assert_everyone_got_every_post(project: Project) -> None:
    for person in ("ann@example.com", "bob@example.com"):
        [message] = project.smtp.to(person)
        text = message.part("plain")
        assert all(title in text for title in ALL_POSTS), text


def test_a_template_error_stops_the_send_before_the_issue_is_frozen(project: Project) -> None:
    broken = project.root / "templates" / "email.txt"
    broken.parent.mkdir()
    broken.write_text(
        "{{ issue.title }}\n\n{% for section in sections %}\n{{ section.titel }}\n{% endfor %}\n",
        encoding="utf-8",
    )
    failed = project.run_process("send")
    assert failed.returncode == 2, failed.stderr
    [line] = failed.stderr.strip().splitlines()
    assert line.startswith(f"Error: {broken}:4: "), line
    assert "has no attribute 'titel'" in line
    assert_nothing_frozen(project)

    broken.unlink()
    fixed = project.run_process("send")
    assert fixed.returncode == 0, fixed.stderr
    assert "Sent issue with 3 posts: 2 delivered, 0 failed, 0 pending." in fixed.stdout
    assert "resumed" not in fixed.stdout
    assert_everyone_got_every_post(project)


def with_dkim(project: Project, key_file: str) -> None:
    text = project.config.read_text(encoding="utf-8")
    settings = f"  dkim:\n    selector: news\n    domain: example.org\n    key_file: {key_file}\n"
    project.config.write_text(
        text.replace("  retry_delay: 0\n", "  retry_delay: 0\n" + settings), encoding="utf-8"
    )


def test_a_missing_dkim_key_stops_the_send_before_the_issue_is_frozen(project: Project) -> None:
    with_dkim(project, "missing.pem")
    failed = project.run_process("send")
    assert failed.returncode == 2, failed.stderr
    [line] = failed.stderr.strip().splitlines()
    assert line == (
        f"Error: {project.config}: smtp.dkim.key_file: cannot read"
        f" {project.root / 'missing.pem'}: No such file or directory"
    )
    assert_nothing_frozen(project)

    key_path, _ = make_dkim_key(project.root)
    key_path.rename(project.root / "missing.pem")
    fixed = project.run_process("send")
    assert fixed.returncode == 0, fixed.stderr
    assert "Sent issue with 3 posts: 2 delivered" in fixed.stdout
    assert_everyone_got_every_post(project)
    assert all(r.message["DKIM-Signature"] for r in project.smtp.received)


def test_an_unusable_dkim_key_stops_the_send_before_the_issue_is_frozen(
    project: Project,
) -> None:
    (project.root / "dkim.pem").write_text("not a key\n", encoding="utf-8")
    with_dkim(project, "dkim.pem")
    failed = project.run_process("send")
    assert failed.returncode == 2, failed.stderr
    assert "is not a usable private key" in failed.stderr
    assert_nothing_frozen(project)


def test_a_message_that_cannot_be_built_stops_the_send_before_the_issue_is_frozen(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest.run.editions

    def broken(*args: object) -> OutgoingMessage:
        raise TemplateError("email.html:3: 'subscriber' has no attribute 'nmae'")

    monkeypatch.setattr(digest.run.editions, "build_message", broken)
    failed = project.run("send")
    assert failed.exit_code == 2, failed.output
    assert "Error: email.html:3: 'subscriber' has no attribute 'nmae'" in failed.output
    assert_nothing_frozen(project)

    monkeypatch.undo()
    fixed = project.run("send")
    assert fixed.exit_code == 0, fixed.output
    assert_everyone_got_every_post(project)
