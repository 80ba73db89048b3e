"""digest.min_posts: a thin week skips its slot and its posts roll over to the next one."""

from __future__ import annotations

from datetime import timedelta

from digest.config.fields import validate
from digest.config.schema import Config
from digest.issue.group import skip_reason
from tests.conftest import Project, post
from tests.test_schedule_run import SLOT, SLOT_LOG, Daemon, recipients, rows, weekly

NEXT_SLOT = SLOT + timedelta(days=7)


def _config(extra: dict[str, object]) -> Config:
    return validate(
        Config,
        {
            "newsletter": {"title": "T", "from": "a@example.org"},
            "feeds": [{"name": "Blog", "url": "https://example.org/feed"}],
            "digest": extra,
        },
    )


def test_skip_reason_names_the_count_and_the_setting() -> None:
    assert skip_reason(_config({}), 1) == ""
    assert skip_reason(_config({}), 0) == "nothing new"
    assert skip_reason(_config({"skip_if_empty": False}), 0) == ""
    thin = _config({"min_posts": 3})
    assert skip_reason(thin, 3) == ""
    assert skip_reason(thin, 1) == (
        "thin week: 1 new post, fewer than digest.min_posts (3); they roll over"
    )
    assert "2 new posts" in skip_reason(thin, 2)


def test_a_thin_week_rolls_over_to_the_next_slot_and_shows_in_history(project: Project) -> None:
    weekly(project)
    project.config.write_text(
        project.config.read_text(encoding="utf-8") + "digest:\n  min_posts: 4\n", encoding="utf-8"
    )
    with Daemon(project, SLOT + timedelta(hours=1)) as daemon:
        line = daemon.wait_for(f"{SLOT_LOG}: nothing sent")
        assert "thin week: 3 new posts, fewer than digest.min_posts (4)" in line
        assert daemon.terminate() == 0, daemon.log
    assert project.smtp.received == []
    assert rows(project, "SELECT slot_key, reason FROM skipped_slots") == [
        (
            "2026-11-30T08:00:00+00:00",
            "thin week: 3 new posts, fewer than digest.min_posts (4); they roll over",
        )
    ]
    history = project.run("history")
    assert history.exit_code == 0, history.output
    assert "Slot 2026-11-30 08:00 UTC skipped: thin week: 3 new posts" in history.output

    # A fourth post arrives during the week: the next slot carries all four.
    project.serve("/blog.xml", [post(1), post(2, 2), post(3, -3)])
    with Daemon(project, NEXT_SLOT + timedelta(hours=1)) as daemon:
        line = daemon.wait_for("slot 2026-12-07T08:00:00+00:00: issue 1")
        assert "4 posts, 2 delivered" in line
        assert daemon.terminate() == 0, daemon.log
    assert recipients(project) == ["ann@example.com", "bob@example.com"]
    assert rows(project, "SELECT slot_key, post_count FROM issues") == [
        ("2026-12-07T08:00:00+00:00", 4)
    ]
    body = project.smtp.received[0].part("plain")
    for number in (1, 2, 3):
        assert f"Post number {number}" in body
