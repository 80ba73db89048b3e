"""Leave out and pin: `digest posts`, `digest leave-out`, `digest pin` and the workbench's
POST controls change the next issue; a left-out post never comes back by itself."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx

from digest.core.models import Choice
from digest.issue.group import AlreadySent, build_issue, candidates, short_id
from tests.conftest import Project, post
from tests.support import statefile
from tests.support.serving import serving
from tests.test_group import NOW, TWO_FEEDS, make_config, make_post


def ids(project: Project) -> dict[str, tuple[str, str]]:
    """`digest posts` as {title: (short id, status)}."""
    listed = project.run("posts")
    assert listed.exit_code == 0, listed.output
    found = {}
    for line in listed.output.splitlines():
        match = re.match(
            r"^([0-9a-f]{6})  (in|pinned|left out|not in)\s+\S+  (.+?)  https://", line
        )
        assert match, line
        found[match.group(3)] = (match.group(1), match.group(2))
    return found


def test_pinned_posts_go_in_first_whatever_the_caps_filters_and_date() -> None:
    config = make_config(
        "  - name: Blog\n    url: https://a/feed\n    max_posts: 1\n    exclude: [Sponsored]\n",
        "digest:\n  lookback_days: 7\n",
    )
    posts = {
        "https://a/feed": [
            make_post("https://a/feed", "new", 1),
            make_post("https://a/feed", "older", 2),
            make_post("https://a/feed", "ad", 1, title="Sponsored post"),
            make_post("https://a/feed", "ancient", 30),
        ]
    }
    plain = build_issue(config, posts, AlreadySent(), NOW)
    assert [p.key for p in plain.posts] == ["new"]
    choices = {
        ("https://a/feed", "older"): Choice.PIN,
        ("https://a/feed", "ancient"): Choice.PIN,
        ("https://a/feed", "ad"): Choice.PIN,
        ("https://a/feed", "new"): Choice.LEAVE_OUT,
    }
    pinned = build_issue(config, posts, AlreadySent(), NOW, choices)
    assert [p.key for p in pinned.posts] == ["ad", "older", "ancient"]
    # An earlier issue's post is never sent again, pinned or not.
    sent = AlreadySent(frozenset({("https://a/feed", "older")}))
    assert "older" not in [p.key for p in build_issue(config, posts, sent, NOW, choices).posts]


def test_only_keys_narrows_the_issue_and_the_choices_and_caps_still_apply() -> None:
    config = make_config("  - name: Blog\n    url: https://a/feed\n    max_posts: 1\n")
    posts = {
        "https://a/feed": [
            make_post("https://a/feed", "newest", 1),
            make_post("https://a/feed", "new", 2),
            make_post("https://a/feed", "older", 3),
            make_post("https://a/feed", "pinned", 4),
        ]
    }
    choices = {("https://a/feed", "pinned"): Choice.PIN}
    keys = frozenset({("https://a/feed", "new"), ("https://a/feed", "older")})
    narrowed = build_issue(config, posts, AlreadySent(), NOW, choices, keys)
    assert [p.key for p in narrowed.posts] == ["new"]
    choices[("https://a/feed", "new")] = Choice.LEAVE_OUT
    narrowed = build_issue(config, posts, AlreadySent(), NOW, choices, keys)
    assert [p.key for p in narrowed.posts] == ["older"]


def test_candidates_say_what_the_next_issue_carries() -> None:
    config = make_config(TWO_FEEDS, "digest:\n  max_posts_per_section: 1\n")
    a = [make_post("https://a/feed", "a1", 1), make_post("https://a/feed", "a2", 2)]
    b = [make_post("https://b/feed", "b1", 1), make_post("https://b/feed", "b2", 40)]
    posts = {"https://a/feed": a, "https://b/feed": b}
    # b2 is left out too, but too old to be new: no longer listed.
    choices = {
        ("https://b/feed", "b1"): Choice.LEAVE_OUT,
        ("https://b/feed", "b2"): Choice.LEAVE_OUT,
    }
    found = candidates(config, posts, AlreadySent(), NOW, choices)
    assert [(c.post.key, c.status) for c in found] == [
        ("a1", "in"),
        ("a2", "not in"),
        ("b1", "left out"),
    ]
    assert found[0].short_id == short_id(a[0]) and re.fullmatch("[0-9a-f]{6}", found[0].short_id)


def test_leave_out_and_pin_from_the_command_line(project: Project) -> None:
    listed = ids(project)
    assert set(listed) == {"Post number 1", "Post number 2", "Post number 10"}
    assert {status for _, status in listed.values()} == {"in"}
    two, ten = listed["Post number 2"][0], listed["Post number 10"][0]

    result = project.run("leave-out", two)
    assert result.exit_code == 0, result.output
    assert f"{two} Post number 2: left out of every issue until" in result.output
    result = project.run("pin", ten[:4])  # a unique prefix will do
    assert result.exit_code == 0, result.output
    assert "pinned: in the next issue, first in its section" in result.output
    assert ids(project)["Post number 2"] == (two, "left out")
    assert ids(project)["Post number 10"] == (ten, "pinned")
    # Undoing one choice leaves the other kind alone.
    unchanged = project.run("pin", two, "--undo")
    assert "left out of every issue" in unchanged.output

    missing = project.run("leave-out", "ffffff")
    assert missing.exit_code == 1
    assert "Error: no post 'ffffff' among the next issue's candidates" in missing.output

    sent = project.run("send")
    assert sent.exit_code == 0, sent.output
    assert "Sent issue with 2 posts" in sent.output
    for message in project.smtp.received:
        assert "Post number 2" not in message.part("plain")
    with statefile.connect(project.root / "state.sqlite3") as db:
        # The pin was for that issue; the leave-out stays.
        assert list(db.execute("SELECT choice FROM post_choices")) == [("leave_out",)]

    # Next week: a new post arrives; the left-out post still does not come back by itself.
    project.serve("/blog.xml", [post(1), post(2, 2), post(3, -3)])
    later = project.now + timedelta(days=7)
    again = project.run("send", now=later)
    assert again.exit_code == 0, again.output
    assert "Sent issue with 1 posts" in again.output
    assert "Post number 2" not in project.smtp.received[-1].part("plain")

    # Put back, it goes in the issue after.
    back = project.run("leave-out", two, "--undo", now=later)
    assert back.exit_code == 0, back.output
    assert "Post number 2: in the next issue" in back.output
    assert project.run("send", now=later).exit_code == 0
    assert "Post number 2" in project.smtp.received[-1].part("plain")


def test_workbench_controls_change_state_only_on_post_with_the_form_token(project: Project) -> None:
    two = ids(project)["Post number 2"][0]
    with serving(project) as served:
        page = httpx.get(f"{served.workbench}/preview", timeout=30)
        assert page.status_code == 200
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        assert token, page.text
        assert "form-action 'self'" in page.headers["content-security-policy"]
        action = f"{served.workbench}/posts/{two}/leave-out"
        assert httpx.get(action).status_code == 405
        forged = httpx.post(action, data={"token": "guess"})
        assert forged.status_code == 403 and "reload the preview" in forged.text
        assert httpx.post(action).status_code == 403
        assert ids(project)["Post number 2"][1] == "in"
        unknown = httpx.post(f"{served.workbench}/posts/{two}/shred", data={"token": token[1]})
        assert unknown.status_code == 404
        done = httpx.post(action, data={"token": token[1]})
        assert done.status_code == 303 and done.headers["location"] == "../../preview"
        assert ids(project)["Post number 2"][1] == "left out"
        again = httpx.get(f"{served.workbench}/preview", timeout=30)
        assert 'data-post="' + two + '" data-status="left out"' in again.text


def test_a_post_the_feed_filters_out_is_listed_so_it_can_be_pinned() -> None:
    config = make_config("  - name: Blog\n    url: https://a/feed\n    exclude: [Sponsored]\n")
    ad = make_post("https://a/feed", "ad", 1, title="Sponsored post")
    posts = {"https://a/feed": [ad]}
    found = candidates(config, posts, AlreadySent(), NOW, {})
    assert [(c.post.key, c.status) for c in found] == [("ad", "not in")]
    pinned = candidates(config, posts, AlreadySent(), NOW, {("https://a/feed", "ad"): Choice.PIN})
    assert [(c.post.key, c.status) for c in pinned] == [("ad", "pinned")]
