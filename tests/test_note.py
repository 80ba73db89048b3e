"""`digest note`: Markdown above the sections of the next issue only, then cleared."""

from __future__ import annotations

import stat
import sys
from datetime import timedelta
from pathlib import Path

from digest import store
from tests.conftest import Project, post
from tests.test_schedule_run import SLOT, SLOT_LOG, Daemon, rows, weekly

NOTE = "The **AGM** is on 5 December: [book a place](https://example.org/agm)."


def test_note_goes_out_once_in_both_parts_then_is_cleared(project: Project) -> None:
    weekly(project)
    result = project.run("note", NOTE)
    assert result.exit_code == 0, result.output
    assert "The next issue will carry this note" in result.output
    assert project.run("note", "--show").output.strip() == NOTE

    with Daemon(project, SLOT + timedelta(hours=1)) as daemon:
        daemon.wait_for(f"{SLOT_LOG}: issue 1")
        assert daemon.terminate() == 0, daemon.log
    assert len(project.smtp.received) == 2
    for message in project.smtp.received:
        html, text = message.part("html"), message.part("plain")
        assert "<strong>AGM</strong>" in html
        assert 'href="https://example.org/agm"' in html
        # Above the sections: before the first section heading.
        assert html.index("AGM") < html.index("From the blog")
        assert "AGM is on 5 December: book a place (https://example.org/agm)" in text
        assert text.index("AGM") < text.index("From the blog")
    assert project.run("note", "--show").output.strip() == "No note for the next issue."
    assert rows(project, "SELECT text FROM editor_note") == []

    project.serve("/blog.xml", [post(1), post(2, 2), post(3, -3)])
    with Daemon(project, SLOT + timedelta(days=7, hours=1)) as daemon:
        daemon.wait_for("slot 2026-12-07T08:00:00+00:00: issue 2")
        assert daemon.terminate() == 0, daemon.log
    assert len(project.smtp.received) == 4
    for message in project.smtp.received[2:]:
        assert "Post number 3" in message.part("plain")
        assert "AGM" not in message.part("html") and "AGM" not in message.part("plain")


def test_note_from_a_file_from_the_editor_and_cleared(project: Project, tmp_path: Path) -> None:
    written = tmp_path / "note.md"
    written.write_text("From a *file*.\n", encoding="utf-8")
    assert project.run("note", "--file", str(written)).exit_code == 0
    assert project.run("note", "--show").output.strip() == "From a *file*."
    preview = project.run("preview", "--text")
    assert preview.exit_code == 0, preview.output
    assert "From a file." in preview.output

    # $EDITOR gets the current note and its saved text becomes the note.
    script = tmp_path / "fake-editor"
    script.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "path = sys.argv[1]\n"
        "old = open(path, encoding='utf-8').read()\n"
        "open(path, 'w', encoding='utf-8').write(old.strip() + ' And edited.')\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    from click.testing import CliRunner

    from digest.cli.main import main

    edited = CliRunner().invoke(
        main,
        ["--config", str(project.config), "note"],
        env={"EDITOR": str(script), "VISUAL": str(script), "DIGEST_NOW": SLOT.isoformat()},
    )
    assert edited.exit_code == 0, edited.output
    assert project.run("note", "--show").output.strip() == "From a *file*. And edited."

    assert project.run("note", "--clear").exit_code == 0
    assert project.run("note", "--show").output.strip() == "No note for the next issue."
    both = project.run("note", "text", "--clear")
    assert both.exit_code == 2 and "only one" in both.output
    missing = project.run("note", "--file", str(tmp_path / "absent.md"))
    assert missing.exit_code == 2
    assert "cannot read the note" in missing.output


def test_a_sent_issue_keeps_its_note_while_the_next_note_waits(project: Project) -> None:
    project.run("note", "First note.")
    assert project.run("send").exit_code == 0
    project.run("note", "Second note.")
    with store.open_path(project.root / "state.sqlite3", read_only=True) as state:
        (sent,) = [summary.issue for summary in state.ledger.history()]
        waiting = state.editorial.note()
    assert "First note." in sent.text and "Second note." not in sent.text
    assert waiting == "Second note."
