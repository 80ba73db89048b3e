"""A preferences link changes an existing subscriber and never makes one, through `digest serve`.

Saving updates someone the subscriber file lists or a confirmed sign-up, and nobody else.
Whoever the editor took off the file, or who asked to be forgotten, is not brought back by the
link in an old issue: it answers that the link is no longer valid.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from tests.conftest import Project, post
from tests.support.serving import Serving, serving
from tests.test_signup import enable_signup, link_in, rows, sign_up, wait_for_mail

ANN, BOB, CAROL = "ann@example.com", "bob@example.com", "carol@example.net"
NO_LONGER = "This link is no longer valid"


@pytest.fixture
def sent(project: Project) -> Iterator[tuple[Project, Serving]]:
    """Sign-up on, Carol added by the editor, and one issue sent to Ann, Bob and Carol."""
    enable_signup(project)
    added = project.run("subscribers", "add", CAROL, "--name", "Carol", "--source", "phone")
    assert added.exit_code == 0, added.output
    assert project.run("send").exit_code == 0
    with serving(project, "--no-preview") as served:
        yield project, served


def save(link: str, name: str, section: str = "From the blog") -> httpx.Response:
    return httpx.post(link, data={"action": "save", "name": name, "section": section}, timeout=10)


def next_issue(project: Project, days: int = 1) -> set[str]:
    """Send the next issue (a new post first); who got it."""
    before = len(project.smtp.received)
    project.serve("/blog.xml", [post(30 + days, 0.1 - days)])
    result = project.run("send", now=project.now + timedelta(days=days))
    assert result.exit_code == 0, result.output
    return {r for item in project.smtp.received[before:] for r in item.recipients}


def assert_no_longer_valid(answer: httpx.Response) -> None:
    assert answer.status_code == 410, answer.text
    assert NO_LONGER in answer.text and "Nothing was changed." in answer.text
    assert "Traceback" not in answer.text


def test_an_old_link_does_not_bring_back_someone_taken_off_the_file(
    sent: tuple[Project, Serving],
) -> None:
    project, served = sent
    link = link_in(project.smtp.to(ANN)[0], "preferences", served)
    project.write_subscribers("bob@example.com,Bob")  # the editor takes Ann off the list
    assert_no_longer_valid(httpx.get(link, timeout=10))
    assert_no_longer_valid(save(link, "Ann again"))
    assert_no_longer_valid(httpx.post(link, data={"action": "unsubscribe"}, timeout=10))
    assert rows(project, f"SELECT * FROM signups WHERE email = '{ANN}'") == []
    assert rows(project, "SELECT COUNT(*) FROM suppressions") == [(0,)]
    assert next_issue(project) == {BOB, CAROL}


def test_choices_saved_while_listed_end_with_the_listing(sent: tuple[Project, Serving]) -> None:
    project, served = sent
    link = link_in(project.smtp.to(ANN)[0], "preferences", served)
    saved = save(link, "Ann B")
    assert saved.status_code == 200 and "Saved." in saved.text
    assert next_issue(project) == {ANN, BOB, CAROL}
    project.write_subscribers("bob@example.com,Bob")
    assert next_issue(project, days=2) == {BOB, CAROL}
    assert_no_longer_valid(save(link, "Ann C"))
    assert rows(project, f"SELECT name FROM signups WHERE email = '{ANN}'") == [("Ann B",)]


def test_a_confirmed_sign_up_changes_their_own_preferences(sent: tuple[Project, Serving]) -> None:
    project, served = sent
    link = link_in(project.smtp.to(CAROL)[0], "preferences", served)
    saved = save(link, "Carol D", "Latest news")
    assert saved.status_code == 200 and "Saved." in saved.text
    assert rows(project, f"SELECT name, status, sections FROM signups WHERE email = '{CAROL}'") == [
        ("Carol D", "confirmed", '["Latest news"]')
    ]


def test_an_old_link_of_a_forgotten_reader_is_no_longer_valid_even_if_still_listed(
    sent: tuple[Project, Serving],
) -> None:
    project, served = sent
    links = {
        address: link_in(project.smtp.to(address)[0], "preferences", served)
        for address in (ANN, CAROL)
    }
    for address in (ANN, CAROL):
        forgot = project.run_process("subscribers", "forget", address)
        assert forgot.returncode == 0, forgot.stderr
    for link in links.values():
        assert_no_longer_valid(httpx.get(link, timeout=10))
        assert_no_longer_valid(save(link, "Back again"))
        assert_no_longer_valid(httpx.post(link, data={"action": "unsubscribe"}, timeout=10))
    assert rows(project, "SELECT email FROM signups") == []
    assert rows(project, "SELECT COUNT(*) FROM suppressions") == [(0,)]
    assert next_issue(project) == {BOB}  # the file still lists Ann


def test_the_anonymous_form_does_not_change_a_listed_readers_choices(
    sent: tuple[Project, Serving],
) -> None:
    project, served = sent
    link = link_in(project.smtp.to(ANN)[0], "preferences", served)
    assert save(link, "Ann B").status_code == 200
    # Anyone can type Ann's address into the form; only her confirmation makes it hers.
    asked = sign_up(served, ANN, name="Someone else", section=["Latest news"])
    assert asked.status_code == 200, asked.text
    confirmation = wait_for_mail(project, ANN, 2)[-1]
    assert rows(project, f"SELECT name, status, sections FROM signups WHERE email = '{ANN}'") == [
        ("Ann B", "listed", '["From the blog"]')
    ]
    confirmed = httpx.post(link_in(confirmation, "confirm", served), timeout=10)
    assert confirmed.status_code == 200, confirmed.text
    assert rows(project, f"SELECT name, status, sections FROM signups WHERE email = '{ANN}'") == [
        ("Ann B", "confirmed", '["From the blog"]')
    ]
    project.write_subscribers("bob@example.com,Bob")  # a sign-up of her own now: she stays
    assert next_issue(project) == {ANN, BOB, CAROL}


def test_a_listed_reader_with_a_pending_sign_up_keeps_the_choices_saved(
    sent: tuple[Project, Serving],
) -> None:
    project, served = sent
    assert sign_up(served, ANN, name="Ann", section=["Latest news"]).status_code == 200
    confirmation = wait_for_mail(project, ANN, 2)[-1]
    link = link_in(project.smtp.to(ANN)[0], "preferences", served)
    assert save(link, "Ann B").status_code == 200
    assert rows(project, f"SELECT name, status FROM signups WHERE email = '{ANN}'") == [
        ("Ann B", "listed")
    ]
    before = len(project.smtp.received)
    assert next_issue(project) == {ANN, BOB, CAROL}
    [to_ann] = [m for m in project.smtp.received[before:] if ANN in m.recipients]
    assert b"Ann B" in to_ann.data
    # Her confirmation link still works, and makes her choices a sign-up of her own.
    assert httpx.post(link_in(confirmation, "confirm", served), timeout=10).status_code == 200
    assert rows(project, f"SELECT name, status FROM signups WHERE email = '{ANN}'") == [
        ("Ann B", "confirmed")
    ]
