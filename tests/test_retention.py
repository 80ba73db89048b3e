"""Retention: deliveries of issues older than `retention.deliveries` compacted into per-issue
counts, on a SQLite file and a real PostgreSQL database (tests/support/postgres.py).

What is asserted is what is left: the rows searched for any address, the numbers `digest
history` shows before and after, the window's exact edge, a send that goes on after a
compaction, and `forever` keeping everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest import store
from digest.config.fields import SettingsError
from digest.config.schema import RetentionConfig, months_before
from digest.core.models import Delivery, DeliveryStatus
from digest.store.bounces import IssueBounces
from digest.store.location import database_url
from tests.conftest import Project, post
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 (fixtures)

NOW = datetime(2027, 3, 31, 8, 0, tzinfo=UTC)
CUTOFF = months_before(NOW, 13)  # 2026-02-28 08:00 UTC
READERS = ("ann@example.com", "bob@example.com", "cy@example.com", "di@example.com")


@dataclass(frozen=True)
class Where:
    """A Location for store.open."""

    state_path: store.StateLocation


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    """The state's location on each backend."""
    if request.param == "sqlite":
        return Where(tmp_path / "state.sqlite3")
    url: str = request.getfixturevalue("postgres_url")
    return Where(database_url(url))


@pytest.fixture
def state(where: Where) -> Iterator[store.State]:
    with store.open(where) as opened:
        yield opened


def sent_issue(state: store.State, created: datetime, *, finished: bool = True) -> int:
    """An issue created at `created` to READERS: ann and bob got it, cy's server refused it
    (naming the address in its reply), di's is still pending; ann complained, bob bounced."""
    issue = state.ledger.create_issue(
        subject=f"Issue of {created:%Y-%m-%d}", html="<p>x</p>", text="x", posts=[], now=created
    )
    later = created + timedelta(minutes=5)
    for address in READERS[:2]:
        state.ledger.record_delivery(issue, Delivery(address, DeliveryStatus.SENT), later)
    state.ledger.record_delivery(
        issue,
        Delivery("cy@example.com", DeliveryStatus.FAILED, "550 5.1.1 <cy@example.com> unknown"),
        later,
    )
    state.ledger.record_delivery(
        issue, Delivery("di@example.com", DeliveryStatus.PENDING, "451 later"), later
    )
    for kind, address in (("complaint", "ann@example.com"), ("hard", "bob@example.com")):
        state.bounces.record(
            report_key=f"{issue}:{kind}:{address}",
            now=later + timedelta(days=2),
            source="imap",
            kind=kind,
            outcome="suppressed",
            email=address,
            issue_id=issue,
            status="5.1.1" if kind == "hard" else "",
            detail=f"{kind} for {address}",
            report=f"Final-Recipient: rfc822; {address}\n",
        )
    if finished:
        state.ledger.finish_issue(issue, later)
    return issue


def addresses_left(state: store.State, issue: int) -> list[str]:
    """Every value in the issue's deliveries and reports that holds an address (or a part)."""
    found = []
    for table in ("deliveries", "bounce_reports"):
        for row in state.db.execute(f"SELECT * FROM {table} WHERE issue_id = ?", (issue,)):
            found += [str(value) for value in tuple(row) if "@" in str(value)]
    return found


def shown(state: store.State) -> dict[int, tuple[int, int, int, IssueBounces]]:
    """What `digest history` shows of each issue: sent, failed, pending and its reports."""
    bounced = {**state.bounces.by_issue(), **state.ledger.compacted_bounces()}
    return {
        row.issue.id: (row.sent, row.failed, row.pending, bounced.get(row.issue.id, IssueBounces()))
        for row in state.ledger.history()
    }


def test_old_issues_become_counts_with_no_address_left(state: store.State) -> None:
    old = sent_issue(state, NOW - timedelta(days=500))
    recent = sent_issue(state, NOW - timedelta(days=30))
    stray = state.bounces.record(
        report_key="auto-reply-from-eve",
        now=NOW - timedelta(days=450),
        source="imap",
        kind="auto_reply",
        outcome="ignored",
        email="eve@example.com",
        detail="out of office: eve@example.com",
        report="From: eve@example.com\n",
    )
    before = shown(state)

    done = state.ledger.compact(CUTOFF, NOW)

    assert (done.issues, done.deliveries, done.unfinished) == ((old,), 4, ())
    assert done.reports == 3  # the old issue's two, and the stray auto-reply
    assert addresses_left(state, old) == []
    assert state.ledger.deliveries(old) == {}
    [stray_row] = state.db.execute(
        "SELECT email, detail, report, kind, outcome FROM bounce_reports WHERE id = ?", (stray,)
    ).fetchall()
    assert tuple(stray_row) == ("", "", "", "auto_reply", "ignored")
    # The recent issue is untouched, addresses, replies and reports alike.
    assert sorted(state.ledger.deliveries(recent)) == sorted(READERS)
    assert (
        len(addresses_left(state, recent)) == 5 + 2 * 4
    )  # 4 emails, 1 reply; key, email, detail, text
    # The numbers history shows did not move; the old issue's failures are no longer named.
    assert shown(state) == before
    history = {row.issue.id: row for row in state.ledger.history()}
    assert history[old].compacted and history[old].failures == ()
    assert not history[recent].compacted and len(history[recent].failures) == 1
    # Again: nothing more to do, and the counts are not counted twice.
    again = state.ledger.compact(CUTOFF, NOW)
    assert (again.issues, again.deliveries, again.reports) == ((), 0, 0)
    assert shown(state) == before


def test_the_window_is_respected_exactly_at_its_edge(state: store.State) -> None:
    on_the_edge = sent_issue(state, CUTOFF)
    just_older = sent_issue(state, CUTOFF - timedelta(microseconds=1))

    done = state.ledger.compact(CUTOFF, NOW)

    assert done.issues == (just_older,)
    assert addresses_left(state, just_older) == []
    assert sorted(state.ledger.deliveries(on_the_edge)) == sorted(READERS)


def test_an_unfinished_old_issue_is_kept_whole_for_its_resume(state: store.State) -> None:
    unfinished = sent_issue(state, NOW - timedelta(days=500), finished=False)

    done = state.ledger.compact(CUTOFF, NOW)

    assert (done.issues, done.unfinished) == ((), (unfinished,))
    assert sorted(state.ledger.deliveries(unfinished)) == sorted(READERS)
    assert len(addresses_left(state, unfinished)) == 5 + 2 * 4


# -- the window as configured ------------------------------------------------------------------


def test_the_default_window_is_thirteen_calendar_months() -> None:
    assert RetentionConfig().cutoff(NOW) == datetime(2026, 2, 28, 8, 0, tzinfo=UTC)
    assert RetentionConfig().cutoff(datetime(2027, 5, 15, tzinfo=UTC)) == datetime(
        2026, 4, 15, tzinfo=UTC
    )
    assert RetentionConfig(deliveries="2 Years").cutoff(NOW) == datetime(
        2025, 3, 31, 8, 0, tzinfo=UTC
    )
    assert RetentionConfig(deliveries="400 days").cutoff(NOW) == NOW - timedelta(days=400)
    assert RetentionConfig(deliveries=" Forever ").cutoff(NOW) is None


@pytest.mark.parametrize("written", ["soon", "13", "-1 months", "4 weeks", "30 days", "1.5 years"])
def test_a_window_that_is_no_period_or_too_short_is_refused(written: str) -> None:
    with pytest.raises(SettingsError, match="deliveries"):
        RetentionConfig(deliveries=written)


# -- through the commands, as an operator runs them ---------------------------------------------


def history_numbers(project: Project, now: datetime) -> list[list[str]]:
    """The cells of `digest history`'s table, a row per issue."""
    result = project.run("history", now=now)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    return [[cell.strip() for cell in row.strip("│").split("│")] for row in rows]


def use_backend(project: Project, request: pytest.FixtureRequest, backend: str) -> Where:
    """Point the project's state at a fresh PostgreSQL database for "postgres"."""
    if backend == "sqlite":
        return Where(project.root / "state.sqlite3")
    url: str = request.getfixturevalue("postgres_url")
    config = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        config.replace("state: state.sqlite3", f"state: {url}"), encoding="utf-8"
    )
    return Where(database_url(url))


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_send_compacts_what_is_older_and_history_shows_the_same_numbers(
    project: Project, request: pytest.FixtureRequest, backend: str
) -> None:
    where = use_backend(project, request, backend)
    project.smtp.script.reject = {"bob@example.com": "550 5.1.1 <bob@example.com> no such user"}
    first = project.run("send")
    assert first.exit_code == 0, first.output
    year_later = project.now + timedelta(days=366)
    before = history_numbers(project, year_later)
    assert [row[3:] for row in before] == [["1", "1", "0"]]

    # A year later, inside the window: the next send keeps the first issue's deliveries.
    project.smtp.script.reject = {}
    project.write_subscribers("ann@example.com,Ann", "cy@example.com,Cy")
    project.serve("/blog.xml", [post(3, -366), post(1), post(2, 2)])
    assert project.run("send", now=year_later).exit_code == 0
    shown_then = project.run("history", now=year_later).output
    assert "failed bob@example.com" in shown_then

    # Past thirteen months from the first: the send after the third issue compacts it.
    later = project.now + timedelta(days=400)
    project.serve("/blog.xml", [post(4, -400), post(3, -366), post(1), post(2, 2)])
    third = project.run("send", now=later)
    assert third.exit_code == 0, third.output
    after = history_numbers(project, later)
    assert after[-1] == before[0]  # the first issue: the same date, posts and numbers
    assert [row[3:] for row in after] == [["2", "0", "0"], ["2", "0", "0"], ["1", "1", "0"]]
    shown_now = project.run("history", now=later).output
    assert "bob@example.com" not in shown_now
    assert "1 issues older than retention.deliveries show counts only" in shown_now
    with store.open(where) as state:
        assert state.ledger.deliveries(1) == {}
        assert sorted(state.ledger.deliveries(2)) == ["ann@example.com", "cy@example.com"]

    # The next issue goes out as ever, to everyone on the list.
    project.serve("/blog.xml", [post(5, -401), post(4, -400), post(3, -366), post(1), post(2, 2)])
    received = len(project.smtp.received)
    assert project.run("send", now=later + timedelta(days=1)).exit_code == 0
    assert sorted(r for m in project.smtp.received[received:] for r in m.recipients) == [
        "ann@example.com",
        "cy@example.com",
    ]


def test_an_issue_resumed_after_a_compaction_reaches_only_those_it_had_not(
    project: Project,
) -> None:
    first = project.run("send")
    assert first.exit_code == 0, first.output
    later = project.now + timedelta(days=400)
    compacted = project.run("compact", now=later)
    assert compacted.exit_code == 0, compacted.output
    assert "Compacted 1 issues (2 deliveries)" in compacted.output
    assert "from before 2026-12-04 08:00 UTC (13 months ago)" in compacted.output
    project.serve("/blog.xml", [post(3, -400), post(1), post(2, 2)])
    project.smtp.script.defer = {"bob@example.com": 100}
    deferred = project.run("send", now=later)
    assert deferred.exit_code == 1  # bob left pending: the issue is unfinished
    # The compaction after that send leaves the unfinished issue whole, however old it gets.
    again = project.run("compact", now=later + timedelta(days=800))
    assert "Issue 2 is older than that but unfinished" in again.output

    project.smtp.script.defer = {}
    received = len(project.smtp.received)
    resumed = project.run("send", now=later + timedelta(hours=1))
    assert resumed.exit_code == 0, resumed.output
    assert [r for m in project.smtp.received[received:] for r in m.recipients] == [
        "bob@example.com"
    ]
    assert [row[3:] for row in history_numbers(project, later)] == [
        ["2", "0", "0"],
        ["2", "0", "0"],
    ]


def test_forever_keeps_every_delivery(project: Project) -> None:
    project.write_config("retention:\n  deliveries: forever\n")
    assert project.run("send").exit_code == 0
    much_later = project.now + timedelta(days=3650)
    project.serve("/blog.xml", [post(3, -3650), post(1), post(2, 2)])
    assert project.run("send", now=much_later).exit_code == 0
    result = project.run("compact", now=much_later)
    assert result.exit_code == 0, result.output
    assert "forever: every delivery is kept" in result.output
    with store.open_path(project.root / "state.sqlite3") as state:
        assert sorted(state.ledger.deliveries(1)) == ["ann@example.com", "bob@example.com"]
        assert not any(row.compacted for row in state.ledger.history())


def test_a_window_too_short_is_a_config_error_naming_the_key(project: Project) -> None:
    project.write_config("retention:\n  deliveries: 2 weeks\n")
    result = project.run("compact")
    assert result.exit_code != 0
    assert "retention.deliveries" in result.output and "too short" in result.output
    assert "Traceback" not in result.output
