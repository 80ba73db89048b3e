"""A newsletter whose state is a PostgreSQL database, against a real server
(tests/support/postgres.py): `digest send` as a user runs it, twice, then `digest history`; and
two `digest serve` replicas sharing the state."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Project
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 (fixtures)
from tests.support.serving import digest_serve
from tests.test_unsubscribe_e2e import ONE_CLICK, send_with_a_new_post, unsubscribe_link


def test_send_with_a_postgresql_state_sends_once_and_shows_in_history(
    project: Project, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue("postgres_url")
    config = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        config.replace("state: state.sqlite3", f"state: {url}"), encoding="utf-8"
    )

    first = project.run_process("send")
    assert first.returncode == 0, first.stderr
    assert sorted(r for m in project.smtp.received for r in m.recipients) == [
        "ann@example.com",
        "bob@example.com",
    ]

    second = project.run_process("send")
    assert second.returncode == 0, second.stderr
    assert len(project.smtp.received) == 2  # nothing new: nobody gets a second copy

    history = project.run_process("history")
    assert history.returncode == 0, history.stderr
    header = next(line for line in history.stdout.splitlines() if "Delivered" in line)
    rows = [line for line in history.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 1  # one issue
    columns = [cell.strip() for cell in header.strip("┃").split("┃")]
    cells = [cell.strip() for cell in rows[0].strip("│").split("│")]
    assert dict(zip(columns, cells, strict=True))["Delivered"] == "2"
    assert not (project.root / "state.sqlite3").exists()  # the state is in the database only


def test_two_serve_replicas_on_one_postgresql_state_unsubscribe_into_it(
    project: Project, request: pytest.FixtureRequest
) -> None:
    """Two `digest serve` processes on one database (as behind a load balancer): each takes a
    one-click unsubscribe, both land in the shared state, and the next send skips both."""
    url: str = request.getfixturevalue("postgres_url")
    config = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        config.replace("state: state.sqlite3", f"state: {url}"), encoding="utf-8"
    )
    project.write_subscribers("ann@example.com,Ann", "bob@example.com,Bob", "cy@example.com,Cy")
    assert project.run_process("send").returncode == 0
    with digest_serve(project) as first, digest_serve(project) as second:
        for address, base in (("ann@example.com", first), ("bob@example.com", second)):
            link = unsubscribe_link(project, address, base)
            answer = httpx.post(link, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
            assert answer.status_code == 200, answer.text
    listed = project.run_process("subscribers")
    assert listed.returncode == 0, listed.stderr
    assert "ann@example.com" in listed.stdout and "bob@example.com" in listed.stdout
    assert send_with_a_new_post(project) == {"cy@example.com"}
