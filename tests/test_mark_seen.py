"""`digest mark-seen`: a clean start, every post the feeds carry today counted as already sent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.conftest import Project, post
from tests.support import statefile


def test_mark_seen_then_only_new_posts_go_out(project: Project) -> None:
    # Years of posts: old ones beyond lookback_days too, all marked.
    project.serve("/blog.xml", [post(1), post(2, 2), post(3, 400)])
    result = project.run("mark-seen")
    assert result.exit_code == 0, result.output
    assert "Marked 4 posts as already sent (4 in 2 feeds)" in result.output
    with statefile.connect(project.root / "state.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM seen_posts").fetchone() == (4,)
        assert db.execute("SELECT COUNT(*) FROM issues").fetchone() == (0,)
    again = project.run("mark-seen")
    assert "Marked 0 posts as already sent (4 in 2 feeds)" in again.output

    nothing = project.run("send")
    assert nothing.exit_code == 0, nothing.output
    assert "Nothing sent: nothing new." in nothing.output
    assert project.smtp.received == []

    project.serve("/blog.xml", [post(1), post(2, 2), post(3, 400), post(4, -1)])
    later = project.now + timedelta(days=2)
    sent = project.run("send", now=later)
    assert "Sent issue with 1 posts: 2 delivered" in sent.output
    text = project.smtp.received[0].part("plain")
    assert "Post number 4" in text and "Post number 1\n" not in text


def test_mark_seen_fails_naming_a_feed_it_could_not_read(project: Project) -> None:
    project.write_config(
        feeds=(
            f"  - name: From the blog\n    url: {project.feeds.url('/blog.xml')}\n"
            f"  - name: Missing\n    url: {project.feeds.url('/missing.xml')}\n"
        )
    )
    result = project.run("mark-seen")
    assert result.exit_code == 1
    assert "Marked 2 posts as already sent (2 in 2 feeds)" in result.output
    assert "Error: 1 feed could not be read, so their posts are not marked (feed 'Missing'" in (
        result.output
    )
    assert "HTTP 404 Not Found); run `digest mark-seen` again" in result.output


def test_init_offers_a_clean_start(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from digest.cli.main import main

    result = CliRunner().invoke(main, ["init", str(tmp_path / "news")])
    assert result.exit_code == 0, result.output
    assert "mark-seen` records every post they carry today as already sent" in result.output
