"""digest unsubscribe / resubscribe / subscribers: manual requests; suppressions beat the list."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import Project, post
from tests.support import statefile


def suppressions(project: Project) -> list[tuple[str, str]]:
    with statefile.connect(project.root / "state.sqlite3") as db:
        return list(db.execute("SELECT email, source FROM suppressions ORDER BY email"))


def test_manual_unsubscribe_wins_over_the_list_until_resubscribed(project: Project) -> None:
    result = project.run("unsubscribe", "Bob@Example.com")
    assert result.exit_code == 0, result.output
    assert "bob@example.com is unsubscribed" in result.output
    assert suppressions(project) == [("bob@example.com", "manual")]
    again = project.run("unsubscribe", "bob@example.com")
    assert again.exit_code == 0 and "already unsubscribed" in again.output

    assert project.run("send").exit_code == 0
    assert {r for item in project.smtp.received for r in item.recipients} == {"ann@example.com"}

    back = project.run("resubscribe", "bob@example.com")
    assert back.exit_code == 0 and "bob@example.com is resubscribed" in back.output
    assert suppressions(project) == []
    project.serve("/blog.xml", [post(3, 0.5), post(1), post(2, 2)])
    before = len(project.smtp.received)
    assert project.run("send", now=project.now + timedelta(days=1)).exit_code == 0
    later = {r for item in project.smtp.received[before:] for r in item.recipients}
    assert later == {"ann@example.com", "bob@example.com"}


def test_resubscribe_of_an_address_not_unsubscribed_changes_nothing(project: Project) -> None:
    result = project.run("resubscribe", "ann@example.com")
    assert result.exit_code == 0
    assert "was not unsubscribed" in result.output


def test_resubscribe_warns_when_the_address_is_not_on_the_list(project: Project) -> None:
    assert project.run("unsubscribe", "zoe@example.com").exit_code == 0
    result = project.run("resubscribe", "zoe@example.com")
    assert result.exit_code == 0
    assert "not in subscribers.csv" in result.output


def test_a_malformed_address_is_a_usage_error(project: Project) -> None:
    result = project.run("unsubscribe", "not-an-address")
    assert result.exit_code == 2
    assert "not an email address" in result.output


def test_subscribers_counts_listed_unsubscribed_invalid_and_duplicates(project: Project) -> None:
    project.write_subscribers(
        "ann@example.com,Ann",
        "bob@example.com,Bob",
        "carol@example.com,Carol",
        "[red]not an address,Nobody",
        "ANN@example.com,Ann again",
    )
    assert project.run("unsubscribe", "carol@example.com").exit_code == 0
    assert project.run("unsubscribe", "zoe@example.com").exit_code == 0
    result = project.run("subscribers")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()

    def row(label: str) -> str:
        return next(line for line in lines if label in line)

    assert " 3 " in row("Listed")
    assert " 1 " in row("Unsubscribed") and "carol@example.com (manual" in row("Unsubscribed")
    assert " 2 " in row("Will receive")
    assert " 1 " in row("Invalid") and "subscribers.csv:5" in result.output
    assert "[red]not" in result.output
    assert " 1 " in row("Duplicate") and "subscribers.csv:6" in result.output
    assert "1 more unsubscribed addresses are not on the list." in result.output


def test_check_warns_when_one_click_unsubscribe_cannot_work(project: Project) -> None:
    configured = project.run("check")
    assert configured.exit_code == 0
    assert "unsubscribe_url" not in configured.output

    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text.replace("https://example.org/unsub", "http://example.org/unsub"))
    plain_http = project.run("check")
    assert plain_http.exit_code == 0
    assert "Warning: newsletter.unsubscribe_url should be https (one-click needs it)" in (
        plain_http.output
    )

    project.config.write_text(
        "\n".join(line for line in text.splitlines() if "unsubscribe_url" not in line) + "\n"
    )
    unset = project.run("check")
    assert unset.exit_code == 0
    assert "Warning: newsletter.unsubscribe_url is not set: messages offer only a mailto:" in (
        unset.output
    )
