"""A newsletter whose state is a PostgreSQL database: `digest send` as a user runs it, twice,
then `digest history`, against a real server (tests/support/postgres.py)."""

from __future__ import annotations

import pytest

from tests.conftest import Project
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 (fixtures)


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
