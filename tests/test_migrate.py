"""`digest migrate --to postgresql://...`: a SQLite state moves whole into an empty PostgreSQL
database (a real server, tests/support/postgres.py), run as a user runs it; a database that is
not empty is refused, and a copy failing half-way leaves the database as empty as it was."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from digest import store
from digest.core.tokens import make_token
from digest.store.location import database_url
from digest.store.migrations import LATEST
from digest.store.transfer import Checksum, copy_to_postgres, dependency_order, encode_row
from tests.conftest import Project
from tests.support import statefile
from tests.support.postgres import connect as connect_database
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 (fixtures)
from tests.support.serving import digest_serve, serving
from tests.test_forget import ANN, ERIN, erin_everywhere
from tests.test_signup import enable_signup, sign_up
from tests.test_unsubscribe_e2e import ONE_CLICK, send_with_a_new_post

FIXTURE = Path(__file__).parent / "fixtures" / "state-0.1.0.sqlite3"
# What the 0.1.0 fixture holds (tests/fixtures/README.md), once upgraded.
FIXTURE_COUNTS = {"meta": 1, "feeds": 3, "issues": 3, "deliveries": 10, "suppressions": 2}


def state_file(project: Project) -> Path:
    return project.root / "state.sqlite3"


def use_state(project: Project, state: str) -> None:
    """Point config.yaml's `state:` elsewhere (the operator's next step)."""
    text = project.config.read_text(encoding="utf-8")
    lines = [f"state: {state}" if line.startswith("state:") else line for line in text.split("\n")]
    project.config.write_text("\n".join(lines), encoding="utf-8")


def without_configured_secret(project: Project) -> None:
    """config.yaml without `secret:`, so links are signed with the secret kept in the state."""
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(text.replace("secret: test-secret\n", ""), encoding="utf-8")


def sqlite_tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the file (SQLite's own left out) with its rows, sorted."""
    return statefile.dump(path, statefile.tables(path))


def postgres_tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the database (the schema's version table left out) with its rows."""
    with connect_database(url) as connection:
        names = [
            str(name)
            for (name,) in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        ]
        return {
            name: sorted(tuple(row) for row in connection.execute(f'SELECT * FROM "{name}"'))
            for name in names
            if name != "digest_schema"
        }


def postgres_table_names(url: str) -> list[str]:
    with connect_database(url) as connection:
        rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return sorted(str(name) for (name,) in rows)


def stored_secret(path: Path) -> str:
    return str(statefile.value(path, "SELECT value FROM meta WHERE key = 'secret'"))


# -- the pure parts ----------------------------------------------------------------------------


def test_rows_that_differ_encode_differently() -> None:
    rows = [(None,), ("",), (5,), ("5",), ("a;", "b"), ("a", ";b"), ("a\n",), (1, None)]
    assert len({encode_row(row) for row in rows}) == len(rows)


def test_the_checksum_follows_the_order_of_rows() -> None:
    first, second = Checksum(), Checksum()
    for row in [(1, "a"), (2, "b")]:
        first.add(row)
    for row in [(2, "b"), (1, "a")]:
        second.add(row)
    assert first.rows == second.rows == 2
    assert first.hexdigest != second.hexdigest


def test_tables_come_after_the_tables_they_reference() -> None:
    order = dependency_order(
        ["deliveries", "archive_issues", "issues", "meta", "zeta"],
        {"deliveries": {"issues"}, "archive_issues": {"issues"}, "issues": {"issues"}},
    )
    assert order.index("issues") < order.index("deliveries")
    assert order.index("issues") < order.index("archive_issues")
    assert sorted(order) == ["archive_issues", "deliveries", "issues", "meta", "zeta"]
    with pytest.raises(ValueError, match="cycle"):
        dependency_order(["a", "b"], {"a": {"b"}, "b": {"a"}})


# -- the command against a real PostgreSQL ----------------------------------------------------


def test_the_0_1_0_state_moves_whole_and_links_already_sent_keep_working(
    project: Project, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue("postgres_url")
    shutil.copyfile(FIXTURE, state_file(project))
    without_configured_secret(project)
    secret = stored_secret(state_file(project))

    moved = project.run_process("migrate", "--to", url)

    assert moved.returncode == 0, moved.stderr
    assert f"first upgraded from schema 0 to {LATEST}" in moved.stdout
    assert "every count and checksum matches" in moved.stdout
    assert f"set `state: {url}` in config.yaml" in moved.stdout
    # The file was upgraded in place, as any writing command would, and is otherwise kept.
    assert statefile.user_version(state_file(project)) == LATEST
    copied, kept = postgres_tables(url), sqlite_tables(state_file(project))
    assert copied == kept
    assert {name: len(copied[name]) for name in FIXTURE_COUNTS} == FIXTURE_COUNTS
    shown = {}
    for line in moved.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if line.startswith("│") and len(cells) == 4:
            shown[cells[0]] = cells[1:]
    assert set(shown) == set(copied)
    assert all(cells == [str(len(copied[name]))] * 2 + ["matches"] for name, cells in shown.items())

    # A new issue takes the next id, not one an old link or report names.
    with connect_database(url) as connection:
        created = connection.execute(
            "INSERT INTO issues (created_at, subject, html, text, post_count)"
            " VALUES ('2026-12-01', 's', 'h', 't', 0) RETURNING id"
        ).fetchone()
        assert created is not None and created[0] == 4
        connection.rollback()

    # The unsubscribe link in a message sent before the move works against the database.
    use_state(project, url)
    token = make_token(secret, ANN)
    with digest_serve(project) as base:
        answer = httpx.post(
            f"{base}/unsubscribe?token={token}",
            content=b"List-Unsubscribe=One-Click",
            headers=ONE_CLICK,
        )
        assert answer.status_code == 200, answer.text
    with connect_database(url) as connection:
        found = connection.execute(
            "SELECT kind FROM suppressions WHERE email = %s", (ANN,)
        ).fetchone()
    assert found == ("unsubscribe",)


def test_a_state_after_a_send_a_signup_a_bounce_and_a_forget_moves_whole_and_runs_on(
    project: Project, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue("postgres_url")
    enable_signup(project)
    erin_everywhere(project)  # a send, a bounce, a complaint, an approval, a cached preview
    forgot = project.run_process("subscribers", "forget", ERIN)
    assert forgot.returncode == 0, forgot.stderr
    with serving(project, "--no-preview") as served:
        assert sign_up(served, "zoe@example.net", name="Zoe").status_code == 200
    path = state_file(project)
    assert statefile.value(path, "SELECT status FROM signups WHERE email = 'zoe@example.net'")
    before = sqlite_tables(path)
    assert all(before[name] for name in ("deliveries", "bounce_reports", "forgotten", "consents"))

    moved = project.run_process("migrate", "--to", url)

    assert moved.returncode == 0, moved.stderr
    assert "upgraded" not in moved.stdout  # already at the latest schema
    assert postgres_tables(url) == before == sqlite_tables(path)

    # The newsletter carries on from the database: Bob complained and Erin is forgotten, so
    # only Ann receives the next issue, which takes the next id.
    use_state(project, url)
    assert send_with_a_new_post(project) == {ANN}
    with connect_database(url) as connection:
        ids = [row[0] for row in connection.execute("SELECT id FROM issues ORDER BY id")]
    assert ids == [1, 2]
    assert sqlite_tables(path) == before  # nothing more was written to the file


def test_a_database_that_is_not_empty_is_refused_and_keeps_what_it_holds(
    project: Project, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue("postgres_url")
    shutil.copyfile(FIXTURE, state_file(project))
    with connect_database(url) as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
        connection.execute("INSERT INTO notes VALUES ('keep me')")

    refused = project.run_process("migrate", "--to", url)

    assert refused.returncode == 1
    assert "is not empty (it holds tables that are not digest's: notes)" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert postgres_table_names(url) == ["notes"]
    with connect_database(url) as connection:
        assert connection.execute("SELECT body FROM notes").fetchall() == [("keep me",)]


def test_a_second_migrate_into_the_same_database_is_refused_and_changes_nothing(
    project: Project, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue("postgres_url")
    shutil.copyfile(FIXTURE, state_file(project))
    assert project.run_process("migrate", "--to", url).returncode == 0
    first = postgres_tables(url)

    with_password = url.replace("digest@", "digest:pa55word@")  # the test server trusts anyone
    again = project.run_process("migrate", "--to", with_password)

    assert again.returncode == 1
    assert "is not empty: digest's tables there hold rows" in again.stderr
    assert "pa55word" not in again.stderr + again.stdout
    assert postgres_tables(url) == first


def add_a_column_the_target_lacks(path: Path) -> tuple[str, str]:
    """A column of a table copied last; what the error names, and how to undo it."""
    statefile.execute(path, "ALTER TABLE webhook_nonces ADD COLUMN extra TEXT")
    return "table webhook_nonces", "ALTER TABLE webhook_nonces DROP COLUMN extra"


def add_a_delivery_of_no_issue(path: Path) -> tuple[str, str]:
    """A row SQLite let in (it checks no foreign keys) and PostgreSQL refuses."""
    statefile.execute(
        path,
        "INSERT INTO deliveries (issue_id, email, status, updated_at)"
        " VALUES (99, 'zed@example.com', 'sent', '2026-11-30')",
    )
    return "deliveries", "DELETE FROM deliveries WHERE issue_id = 99"


@pytest.mark.parametrize("damage", [add_a_column_the_target_lacks, add_a_delivery_of_no_issue])
def test_a_copy_failing_half_way_leaves_the_database_empty(
    project: Project, request: pytest.FixtureRequest, damage: Any
) -> None:
    url: str = request.getfixturevalue("postgres_url")
    shutil.copyfile(FIXTURE, state_file(project))
    store.open_path(state_file(project)).close()  # upgraded, as a writing command does
    named, repair = damage(state_file(project))

    failed = project.run_process("migrate", "--to", url)

    assert failed.returncode == 1, failed.stdout
    assert named in failed.stderr
    assert "rolled back" in failed.stderr or "nothing was written" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert postgres_table_names(url) == []  # not even the schema was left behind
    # Repaired, the same database takes the copy.
    statefile.execute(state_file(project), repair)
    again = project.run_process("migrate", "--to", url)
    assert again.returncode == 0, again.stderr
    assert postgres_tables(url) == sqlite_tables(state_file(project))


def test_rows_stream_through_in_batches(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Batches of two rows: every table larger than a batch still arrives whole."""
    url = database_url(request.getfixturevalue("postgres_url"))
    path = tmp_path / "state.sqlite3"
    shutil.copyfile(FIXTURE, path)

    transfer = copy_to_postgres(path, url, batch=2)

    assert transfer.ok and transfer.upgraded_from == 0
    assert {t.name: t.target_rows for t in transfer.tables}["posts"] == 10
    assert postgres_tables(url.url) == sqlite_tables(path)


def test_what_the_command_is_given_wrong_is_said_in_one_line(project: Project) -> None:
    not_a_url = project.run("migrate", "--to", "state.sqlite3")
    assert not_a_url.exit_code == 2
    assert "--to takes a PostgreSQL database's URL" in not_a_url.output

    missing = project.run("migrate", "--from", "gone.sqlite3", "--to", "postgresql://h/db")
    assert missing.exit_code == 1
    assert "no state file at gone.sqlite3" in missing.output
    assert not Path("gone.sqlite3").exists()

    use_state(project, "postgresql://digest@127.0.0.1:1/digest")
    already = project.run("migrate", "--to", "postgresql://h/db")
    assert already.exit_code == 2
    assert "name the SQLite file to copy with --from PATH" in already.output


def test_every_kind_of_value_encodes_apart_for_the_checksum() -> None:
    """NULL, booleans, whole and real numbers and text each keep their type, so two rows that
    differ only in a value's type never checksum alike; anything else is refused."""
    from digest.store.transfer import encode_row

    values: list[object] = [None, "", 0, False, 0.0, "0", 1, True, 1.0, "1"]
    encoded = {encode_row([value]) for value in values}
    assert len(encoded) == len(values)
    assert encode_row([None, True, 2, 0.5, "é"]) == b"N;b1;i2;f0.5;t2:\xc3\xa9;\n"
    with pytest.raises(TypeError, match="a list value cannot be checksummed"):
        encode_row([["not", "a", "column"]])
