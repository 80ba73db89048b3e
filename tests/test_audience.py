"""The list: the file merged with sign-ups, sections per subscriber, export and erasure."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest

from digest.core.models import Subscriber
from digest.core.tokens import address_hash, check_purpose_token, make_purpose_token, verify_token
from digest.readers.audience import merge
from tests.conftest import Project, post
from tests.support import statefile

ANN, BOB, CAROL = "ann@example.com", "bob@example.com", "carol@example.net"
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def rows(project: Project, sql: str) -> list[tuple[object, ...]]:
    return statefile.rows(project.root / "state.sqlite3", sql)


def sections_of(project: Project, address: str) -> list[str]:
    """The section headings in the text part of the latest message to `address`."""
    lines = project.smtp.to(address)[-1].part("plain").splitlines()
    return [
        line
        for line, underline in itertools.pairwise(lines)
        if line and underline and set(underline) == {"-"}
    ]


def test_merge_prefers_the_sign_up_and_suppression_and_erasure_win() -> None:
    listed = [Subscriber(ANN, "Ann"), Subscriber(BOB, "Bob"), Subscriber("dan@example.org")]
    signed = [Subscriber("Ann@Example.com", "Ann B", ("News",)), Subscriber(CAROL, "Carol")]
    merged = merge(
        listed, signed, {BOB}, {address_hash("s3cret", "dan@example.org")}, secret="s3cret"
    )
    assert merged.subscribers == (
        Subscriber(ANN, "Ann B", ("News",)),
        Subscriber(CAROL, "Carol"),
    )
    assert (merged.suppressed, merged.forgotten) == (1, 1)


def test_an_added_subscriber_gets_the_next_issue_with_consent_on_record(project: Project) -> None:
    added = project.run("subscribers", "add", CAROL, "--name", "Carol", "--source", "open day")
    assert added.exit_code == 0, added.output
    assert "carol@example.net is subscribed (source: open day)" in added.output
    again = project.run("subscribers", "add", CAROL, "--source", "open day")
    assert "already subscribed" in again.output
    assert project.run("send").exit_code == 0
    assert len(project.smtp.to(CAROL)) == 1
    assert rows(project, "SELECT email, event, source FROM consents ORDER BY id") == [
        (CAROL, "added", "open day"),
        (ANN, "listed", "file"),
        (BOB, "listed", "file"),
    ]
    counts = project.run("subscribers")
    assert re.search(r"Signed up and confirmed\s*│\s*1", counts.output), counts.output
    assert re.search(r"Will receive the next issue\s*│\s*3", counts.output), counts.output


def test_adding_refuses_unknown_sections_and_unsubscribed_people(project: Project) -> None:
    wrong = project.run("subscribers", "add", CAROL, "--source", "x", "--section", "Sport")
    assert wrong.exit_code == 2
    assert "no section 'Sport'; the sections are: From the blog, Latest news" in wrong.output
    assert project.run("unsubscribe", CAROL).exit_code == 0
    refused = project.run("subscribers", "add", CAROL, "--source", "x")
    assert refused.exit_code == 1
    assert "carol@example.net unsubscribed; only they can undo that" in refused.output


def test_export_holds_everything_about_each_person(project: Project) -> None:
    project.run("subscribers", "add", CAROL, "--name", "Carol", "--source", "phone call")
    assert project.run("send").exit_code == 0
    project.run("unsubscribe", BOB)
    exported = project.run("subscribers", "export")
    assert exported.exit_code == 0, exported.output
    people = {person["email"]: person for person in json.loads(exported.output)}
    assert set(people) == {ANN, BOB, CAROL}
    assert people[ANN]["in_subscriber_file"] is True and people[ANN]["name"] == "Ann"
    assert people[ANN]["deliveries"] == {"sent": 1}
    assert [event["event"] for event in people[ANN]["consent"]] == ["listed"]
    assert people[BOB]["unsubscribed_by"] == "manual"
    assert people[CAROL]["signup_status"] == "confirmed"
    assert people[CAROL]["consent"][0]["source"] == "phone call"
    as_csv = project.run("subscribers", "export", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [row["email"] for row in table] == sorted([ANN, BOB, CAROL])
    assert json.loads(table[0]["deliveries"]) == {"sent": 1}


def test_forget_leaves_nothing_personal_in_the_state_file(project: Project) -> None:
    assert project.run("send").exit_code == 0
    project.run("unsubscribe", ANN)
    forgot = project.run("subscribers", "forget", ANN)
    assert forgot.exit_code == 0, forgot.output
    assert "Erased everything held about ann@example.com" in forgot.output
    state_files = [p for p in project.root.iterdir() if p.name.startswith("state.sqlite3")]
    for path in state_files:
        assert b"ann@example.com" not in path.read_bytes(), path.name
    hashed = rows(project, "SELECT email FROM deliveries ORDER BY email")
    assert hashed[0][0] == BOB and str(hashed[1][0]).startswith("forgotten:")
    # Still in the editor's file, but the next issue does not go to her.
    project.serve("/blog.xml", [post(5, 0.1)])
    assert project.run("send", now=project.now + timedelta(days=1)).exit_code == 0
    assert len(project.smtp.to(ANN)) == 1 and len(project.smtp.to(BOB)) == 2
    exported = json.loads(project.run("subscribers", "export").output)
    assert [person["email"] for person in exported] == [ANN, BOB]  # the file still lists her
    assert exported[0]["consent"] == [] or exported[0]["consent"][0]["event"] == "listed"


def test_each_subscriber_gets_the_sections_they_chose(project: Project) -> None:
    project.add_newsletter_lines("  choosable_sections: true\n")
    project.write_subscribers("ann@example.com,Ann")
    for address, section in ((BOB, "Latest news"), (CAROL, "From the blog")):
        added = project.run("subscribers", "add", address, "--source", "x", "--section", section)
        assert added.exit_code == 0, added.output
    result = project.run("send")
    assert result.exit_code == 0, result.output
    assert sections_of(project, ANN) == ["From the blog", "Latest news"]
    assert sections_of(project, BOB) == ["Latest news"]
    assert sections_of(project, CAROL) == ["From the blog"]
    subjects = {a: project.smtp.to(a)[0].message["Subject"] for a in (ANN, BOB, CAROL)}
    assert "3 new posts" in subjects[ANN]
    assert "1 new posts" in subjects[BOB] and "2 new posts" in subjects[CAROL]
    assert rows(project, "SELECT choice, post_count FROM issue_variants ORDER BY choice") == [
        ('["From the blog"]', 2),
        ('["Latest news"]', 1),
    ]


def test_a_choice_with_nothing_new_gets_nothing_unless_told_otherwise(project: Project) -> None:
    project.add_newsletter_lines("  choosable_sections: true\n")
    project.serve("/news.xml", [])
    project.run("subscribers", "add", CAROL, "--source", "x", "--section", "Latest news")
    assert project.run("send").exit_code == 0
    assert project.smtp.to(CAROL) == [] and len(project.smtp.to(ANN)) == 1
    project.config.write_text(
        project.config.read_text(encoding="utf-8") + "signup:\n  empty_choice: send_all\n",
        encoding="utf-8",
    )
    project.serve("/blog.xml", [post(7, 0.1)])
    assert project.run("send", now=project.now + timedelta(days=1)).exit_code == 0
    assert sections_of(project, CAROL) == ["From the blog"]


def test_every_message_links_to_its_own_preferences_page(project: Project) -> None:
    project.config.write_text(
        project.config.read_text(encoding="utf-8") + "signup:\n  enabled: true\n",
        encoding="utf-8",
    )
    assert project.run("send").exit_code == 0
    text = project.smtp.to(ANN)[0].part("plain")
    (link,) = re.findall(r"https://example\.org/preferences\?token=\S+", text)
    token = unquote(link.split("token=", 1)[1])
    assert check_purpose_token("test-secret", "preferences", token, NOW).address == ANN
    assert check_purpose_token("test-secret", "confirm", token, NOW).problem == "invalid"
    assert verify_token("test-secret", token) is None  # not an unsubscribe token
    html = project.smtp.to(ANN)[0].part("html")
    assert "Manage your subscription" in html


@pytest.mark.parametrize("change", ["purpose", "address", "expiry", "signature", "secret"])
def test_purpose_tokens_refuse_any_change(change: str) -> None:
    good = make_purpose_token("k" * 32, "confirm", ANN, NOW + timedelta(days=7))

    def flipped(at: int) -> str:
        # The sealed part: a 16-byte tag, then the 8-byte expiry, then the address.
        swapped = "B" if good[at] != "B" else "C"
        return good[:at] + swapped + good[at + 1 :]

    tampered = {
        "purpose": good,
        "address": flipped(len(good) - 3),
        "expiry": flipped(len("p2.") + 26),
        "signature": flipped(len("p2.") + 2),
        "secret": good,
    }[change]
    purpose = "preferences" if change == "purpose" else "confirm"
    secret = "other" * 8 if change == "secret" else "k" * 32
    assert check_purpose_token(secret, purpose, tampered, NOW).problem == "invalid"
    assert check_purpose_token("k" * 32, "confirm", good, NOW).address == ANN


def test_purpose_tokens_expire() -> None:
    token = make_purpose_token("k" * 32, "confirm", ANN, NOW + timedelta(days=7))
    assert check_purpose_token("k" * 32, "confirm", token, NOW + timedelta(days=6)).address == ANN
    late = check_purpose_token("k" * 32, "confirm", token, NOW + timedelta(days=7))
    assert (late.address, late.problem) == (None, "expired")
