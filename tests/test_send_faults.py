"""`digest send` against a real SMTP server that rejects, defers, drops and refuses."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from tests.conftest import Project
from tests.support import statefile

ANN, BOB = "ann@example.com", "bob@example.com"


def rows(project: Project, sql: str) -> list[tuple[object, ...]]:
    return statefile.rows(project.root / "state.sqlite3", sql)


def deliveries(project: Project) -> dict[str, tuple[object, ...]]:
    found = rows(project, "SELECT email, status, reply FROM deliveries ORDER BY email")
    return {str(row[0]): row[1:] for row in found}


def set_smtp(project: Project, **options: object) -> None:
    """Add keys under smtp: in the project's config.yaml."""
    extra = "".join(f"  {key}: {value}\n" for key, value in options.items())
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text.replace("smtp:\n", "smtp:\n" + extra, 1), encoding="utf-8")


def test_a_rejected_address_is_recorded_failed_and_the_rest_are_delivered(
    project: Project,
) -> None:
    project.write_subscribers("ann@example.com,Ann", "bob@example.com,Bob", "cy@example.com,Cy")
    project.smtp.script.reject = {BOB: "550 5.1.1 <bob@example.com>: No such user"}
    result = project.run("send")
    assert result.exit_code == 0, result.output
    assert "2 delivered, 1 failed, 0 pending" in result.output
    assert project.smtp.counts() == Counter([ANN, "cy@example.com"])
    assert deliveries(project)[BOB] == ("failed", "550 5.1.1 <bob@example.com>: No such user")
    assert deliveries(project)[ANN][0] == "sent"
    # a failed address is final: the next run does not try it again
    again = project.run("send", now=project.now + timedelta(hours=1))
    assert "Nothing sent: nothing new." in again.output
    assert project.smtp.handler.rcpt_attempts[BOB] == 1


def test_a_deferred_address_is_retried_within_the_run(project: Project) -> None:
    project.smtp.script.defer = {ANN: 2}
    result = project.run("send")
    assert result.exit_code == 0, result.output
    assert "2 delivered, 0 failed, 0 pending" in result.output
    assert project.smtp.counts() == Counter([ANN, BOB])
    assert project.smtp.handler.rcpt_attempts[ANN] == 3


def test_deferred_past_the_retries_is_pending_exit_1_and_the_next_run_sends_only_those(
    project: Project,
) -> None:
    set_smtp(project, retries=1)
    project.smtp.script.defer = {ANN: 100}
    first = project.run("send")
    assert first.exit_code == 1
    assert "1 delivered, 0 failed, 1 pending" in first.output
    assert "1 messages left pending after temporary failures" in first.output
    assert deliveries(project)[ANN] == ("pending", "451 4.3.0 Try again later")
    assert rows(project, "SELECT finished_at FROM issues") == [(None,)]
    project.smtp.script.defer = {}
    second = project.run("send", now=project.now + timedelta(hours=1))
    assert second.exit_code == 0, second.output
    assert "(resumed issue 1): 1 delivered, 0 failed, 0 pending" in second.output
    assert project.smtp.counts() == Counter([ANN, BOB])
    resumed_text = project.smtp.to(ANN)[0].part("plain")
    assert f"({ANN})." in resumed_text and "%%DIGEST_" not in resumed_text
    assert deliveries(project)[ANN][0] == "sent"
    assert rows(project, "SELECT COUNT(*) FROM issues WHERE finished_at IS NOT NULL") == [(1,)]


def test_dropped_connections_are_reopened_and_everyone_gets_exactly_one(
    project: Project,
) -> None:
    people = [f"reader{n}@example.com" for n in range(20)]
    project.write_subscribers(*people)
    project.smtp.script.drop_at = {2, 9, 10, 15}
    result = project.run("send")
    assert result.exit_code == 0, result.output
    assert "20 delivered, 0 failed, 0 pending" in result.output
    assert project.smtp.counts() == Counter(people)


def test_a_slow_server_still_gets_everyone_once(project: Project) -> None:
    people = [f"reader{n}@example.com" for n in range(12)]
    project.write_subscribers(*people)
    project.smtp.script.data_delay = 0.1
    result = project.run("send")
    assert result.exit_code == 0, result.output
    assert project.smtp.counts() == Counter(people)
    assert project.smtp.peak_connections == 8  # smtp.connections, default 8


def test_wrong_port_is_an_error_line_exit_1_and_nothing_is_recorded(project: Project) -> None:
    from tests.support.smtpserver import free_port

    text = project.config.read_text(encoding="utf-8")
    port = free_port()
    project.config.write_text(text.replace(f"port: {project.smtp.port}", f"port: {port}"))
    result = project.run("send")
    assert result.exit_code == 1
    assert f"Error: SMTP 127.0.0.1:{port}: cannot connect" in result.output
    assert "Traceback" not in result.output
    assert rows(project, "SELECT COUNT(*) FROM issues") == [(0,)]
    assert rows(project, "SELECT COUNT(*) FROM deliveries") == [(0,)]


def test_authentication_failure_is_an_error_line_and_the_posts_wait(project: Project) -> None:
    from tests.support.smtpserver import SmtpServer

    with SmtpServer(auth=("digest", "secret")) as server:
        text = project.config.read_text(encoding="utf-8")
        project.config.write_text(
            text.replace(f"port: {project.smtp.port}", f"port: {server.port}")
        )
        set_smtp(project, username="digest", password="wrong")
        result = project.run("send")
        assert result.exit_code == 1
        assert "authentication failed (535" in result.output
        assert "check smtp.username and smtp.password" in result.output
        assert rows(project, "SELECT COUNT(*) FROM issues") == [(0,)]
        assert server.received == []
        text = project.config.read_text(encoding="utf-8")
        project.config.write_text(text.replace("password: wrong", "password: secret"))
        fixed = project.run("send")
        assert fixed.exit_code == 0, fixed.output
        assert "Sent issue with 3 posts: 2 delivered" in fixed.output
        assert server.counts() == Counter([ANN, BOB])


def test_non_ascii_address_goes_with_smtputf8(project: Project) -> None:
    project.write_subscribers("zoë@example.com,Zoë", "ann@example.com,Ann")
    result = project.run("send")
    assert result.exit_code == 0, result.output
    received = project.smtp.to("zoë@example.com")
    assert len(received) == 1 and "SMTPUTF8" in received[0].mail_options


def test_non_ascii_address_fails_when_the_server_lacks_smtputf8(project: Project) -> None:
    from tests.support.smtpserver import SmtpServer

    with SmtpServer(smtputf8=False) as server:
        text = project.config.read_text(encoding="utf-8")
        project.config.write_text(
            text.replace(f"port: {project.smtp.port}", f"port: {server.port}")
        )
        project.write_subscribers("zoë@example.com,Zoë", "ann@example.com,Ann")
        result = project.run("send")
        assert result.exit_code == 0, result.output
        assert "1 delivered, 1 failed, 0 pending" in result.output
        assert server.counts() == Counter([ANN])
        status, reply = deliveries(project)["zoë@example.com"]
        assert status == "failed" and "SMTPUTF8" in str(reply)


def test_duplicates_get_one_message_and_invalid_rows_are_reported_with_line_numbers(
    project: Project,
) -> None:
    project.write_subscribers(
        "ann@example.com,Ann",
        "ANN@Example.com,Ann again",
        "not-an-address,Nobody",
        "bob@example.com,Bob",
        ",No address",
    )
    result = project.run_process("send")
    assert result.returncode == 0, result.stderr
    assert "subscribers.csv:4: 'not-an-address'" in result.stderr
    assert "subscribers.csv:6: no email address" in result.stderr
    assert project.smtp.counts() == Counter([ANN, BOB])


def test_progress_lines_when_not_on_a_terminal(project: Project) -> None:
    result = project.run("send")
    assert "Sending: 2/2 (2 sent, 0 failed, 0 pending)" in result.output
