"""Each issue's deliveries are tallied by status as outcomes are recorded, so `digest history`
reads one row per issue: on both backends the tallies always equal a count of the delivery
rows, through the queue written at freeze, claims that drop a reader who left, settled
outcomes, a give-up, an erasure and compaction; and a state the previous release wrote is
tallied on upgrade and shows the history it showed before.

The sends that several senders share are checked the same way in tests/test_senders.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import store
from digest.core.models import Delivery, DeliveryStatus
from digest.store import migrations, migrations_postgres
from digest.store.ledger import FAILURES_LISTED
from digest.store.location import DatabaseURL, database_url
from tests.conftest import Project
from tests.support import statefile
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 (fixtures)

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)


@dataclass(frozen=True)
class Where:
    """A Location for store.open."""

    state_path: store.StateLocation


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    if request.param == "sqlite":
        return Where(tmp_path / "state.sqlite3")
    url: str = request.getfixturevalue("postgres_url")
    return Where(database_url(url))


@pytest.fixture
def state(where: Where) -> Iterator[store.State]:
    with store.open(where) as opened:
        yield opened


def counted(state: store.State, issue: int) -> dict[str, int]:
    """The issue's deliveries counted row by row, as history did before it kept tallies."""
    return state.ledger.queue_counts(issue)


def assert_tallied(state: store.State, issue: int, expected: tuple[int, int, int]) -> None:
    tallies = state.ledger.tallies(issue)
    assert tallies == counted(state, issue)
    assert (tallies["sent"], tallies["failed"], tallies["pending"]) == expected


def queued(state: store.State, readers: int) -> int:
    """An issue frozen with `readers` readers queued, as a send freezes one."""
    issue = state.ledger.create_issue(subject="S", html="h", text="t", posts=[], now=NOW)
    with state.transaction():
        state.ledger.queue_listed(
            issue, [(f"reader{n:02d}@example.com", f"R{n}") for n in range(readers)], NOW
        )
        state.ledger.drop_suppressed(issue)
        state.ledger.mark_queued(issue, NOW)
    return issue


def test_tallies_follow_every_outcome_of_a_send(state: store.State) -> None:
    state.suppressions.suppress(
        "reader00@example.com", NOW, "unsubscribed", kind=store.SuppressionKind.UNSUBSCRIBE
    )
    issue = queued(state, 10)
    assert_tallied(state, issue, (0, 0, 9))  # the suppressed reader is not queued

    # A reader who leaves after the freeze is dropped when their batch is claimed.
    state.suppressions.suppress(
        "reader01@example.com", NOW, "unsubscribed", kind=store.SuppressionKind.UNSUBSCRIBE
    )
    batch = state.ledger.claim(issue, "one", NOW, LEASE, 4)
    assert [q.email for q in batch] == [f"reader0{n}@example.com" for n in (2, 3, 4)]
    assert_tallied(state, issue, (0, 0, 8))

    with state.transaction():
        state.ledger.settle(
            issue,
            "one",
            [
                Delivery("reader02@example.com", DeliveryStatus.SENT, "250"),
                Delivery("READER03@example.com", DeliveryStatus.FAILED, "550"),
                Delivery("reader04@example.com", DeliveryStatus.PENDING, "451"),
                Delivery("nobody@example.com", DeliveryStatus.SENT, "250"),  # no such row
            ],
            NOW,
        )
    assert_tallied(state, issue, (1, 1, 6))

    # Another sender takes the rest; the row settled pending is tried again and sent; a row
    # another sender settled keeps its outcome when a slow one settles it late.
    rest = state.ledger.claim(issue, "two", NOW, LEASE, 100)
    assert len(rest) == 6
    with state.transaction():
        state.ledger.settle(
            issue,
            "two",
            [Delivery(q.email, DeliveryStatus.SENT, "250") for q in rest[:3]]
            + [Delivery(q.email, DeliveryStatus.PENDING, "451") for q in rest[3:]],
            NOW,
        )
        state.ledger.settle(
            issue, "one", [Delivery(rest[0].email, DeliveryStatus.FAILED, "late")], NOW
        )
    assert_tallied(state, issue, (4, 1, 3))

    # The same address twice in one batch moves the tally once per change, as the row does.
    with state.transaction():
        state.ledger.settle(
            issue,
            "two",
            [
                Delivery(rest[3].email, DeliveryStatus.FAILED, "550"),
                Delivery(rest[3].email, DeliveryStatus.SENT, "250"),
            ],
            NOW,
        )
    assert_tallied(state, issue, (5, 1, 2))

    state.ledger.give_up_pending(issue, NOW)
    assert_tallied(state, issue, (5, 3, 0))
    state.ledger.record_delivery(issue, Delivery("late@example.com", DeliveryStatus.SENT), NOW)
    state.ledger.record_delivery(issue, Delivery("late@example.com", DeliveryStatus.FAILED), NOW)
    assert_tallied(state, issue, (5, 4, 0))
    [summary] = state.ledger.history()
    assert (summary.sent, summary.failed, summary.pending) == (5, 4, 0)


def test_an_erased_person_counted_once_and_compaction_takes_over(state: store.State) -> None:
    issue = queued(state, 3)
    # One person under two forms of their address, as an earlier release could record them.
    canonical, earlier = "eve@xn--bcher-kva.example", "eve@bücher.example"
    state.ledger.record_delivery(issue, Delivery(canonical, DeliveryStatus.SENT), NOW)
    state.ledger.record_delivery(issue, Delivery(earlier, DeliveryStatus.FAILED), NOW)
    assert_tallied(state, issue, (1, 1, 3))
    report = state.erasure.forget([canonical, earlier], ["hash-of-eve"], NOW, patience=5)
    assert report.found
    # One delivery is kept under the hash; the other form's went, and its count with it.
    assert sum(counted(state, issue).values()) == 4
    assert state.ledger.tallies(issue) == counted(state, issue)

    state.ledger.finish_issue(issue, NOW)
    before = state.ledger.history()[0]
    done = state.ledger.compact(NOW + timedelta(days=1), NOW + timedelta(days=1))
    assert done.issues == (issue,)
    after = state.ledger.history()[0]
    assert after.compacted
    assert (after.sent, after.failed, after.pending) == (before.sent, before.failed, before.pending)
    assert (
        state.ledger.tallies(issue)
        == counted(state, issue)
        == dict.fromkeys(("sent", "failed", "pending"), 0)
    )


def test_history_lists_the_first_failures_and_counts_them_all(state: store.State) -> None:
    issue = queued(state, FAILURES_LISTED + 5)
    batch = state.ledger.claim(issue, "one", NOW, LEASE, 100)
    with state.transaction():
        state.ledger.settle(
            issue, "one", [Delivery(q.email, DeliveryStatus.FAILED, "550") for q in batch], NOW
        )
    [summary] = state.ledger.history()
    assert summary.failed == FAILURES_LISTED + 5
    assert [f.email for f in summary.failures] == [
        f"reader{n:02d}@example.com" for n in range(FAILURES_LISTED)
    ]


def test_the_cli_says_how_many_failed_addresses_it_does_not_show(project: Project) -> None:
    readers = [f"reader{n:02d}@example.com" for n in range(FAILURES_LISTED + 3)]
    project.write_subscribers(*readers)
    project.smtp.script.reject = {r: "550 5.1.1 No such user" for r in readers}
    assert project.run("send").exit_code == 0
    shown = project.run("history")
    assert shown.exit_code == 0, shown.output
    assert f"Issue 1 failed {readers[FAILURES_LISTED - 1]}" in shown.output
    assert readers[FAILURES_LISTED] not in shown.output
    assert "Issue 1: 3 more failed addresses not shown." in shown.output


def summaries(where: Where) -> list[tuple[object, ...]]:
    with store.open(where) as state:
        return [
            (h.issue.id, h.sent, h.failed, h.pending, h.failures, h.compacted)
            for h in state.ledger.history()
        ]


def test_a_state_of_the_previous_release_is_tallied_on_upgrade(where: Where) -> None:
    with store.open(where) as state:
        first = queued(state, 4)
        second = queued(state, 3)
        batch = state.ledger.claim(first, "one", NOW, LEASE, 100)
        with state.transaction():
            state.ledger.settle(
                first,
                "one",
                [
                    Delivery(batch[0].email, DeliveryStatus.SENT, "250"),
                    Delivery(batch[1].email, DeliveryStatus.FAILED, "550 no such user"),
                    Delivery(batch[2].email, DeliveryStatus.PENDING, "451"),
                ],
                NOW,
            )
        state.ledger.finish_issue(second, NOW)
        state.ledger.compact(NOW + timedelta(seconds=1), NOW)  # the second: finished
        assert state.ledger.history()[0].compacted
    before = summaries(where)
    assert [row[1:4] for row in before] == [(0, 0, 3), (1, 1, 2)]
    # The same rows as the previous release left them: no tallies yet.
    if isinstance(where.state_path, Path):
        statefile.execute(where.state_path, "DROP TABLE issue_tallies")
        statefile.execute(where.state_path, f"PRAGMA user_version = {migrations.LATEST - 1}")
    else:
        from tests.support.postgres import connect

        assert isinstance(where.state_path, DatabaseURL)
        with connect(where.state_path.url, autocommit=True) as db:
            db.execute("DROP TABLE issue_tallies")
            db.execute("UPDATE digest_schema SET version = %s", (migrations_postgres.LATEST - 1,))
    assert summaries(where) == before
    with store.open(where) as state:
        assert state.ledger.tallies(first) == counted(state, first)
