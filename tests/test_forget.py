"""`digest subscribers forget`: the person leaves every table, and their bytes leave the file.

The state file and its write-ahead log are searched byte by byte for the address in each form
it was ever written in, after a real `digest subscribers forget` process, including while
another process reads an older snapshot of the state.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from digest import store
from digest.bounces.apply import apply_report
from digest.bounces.report import Kind, Report
from digest.config.schema import load_config
from digest.core.models import RenderedIssue
from digest.core.tokens import address_hash, make_token
from digest.store import RateLimit
from tests.conftest import Project, post
from tests.support import reports, statefile
from tests.support.serving import digest_serve

ERIN = "erin@xn--bcher-kva.example"
ERIN_UNICODE = "erin@b\u00fccher.example"
ERIN_SHOUTED = "Erin@B\u00dcCHER.example"
ANN, BOB = "ann@example.com", "bob@example.com"
SECRET = "test-secret"
# Erin's address as bytes, in every form it may have been written, for a case-blind search.
ERIN_BYTES = re.compile(
    re.escape(ERIN.encode()) + b"|" + re.escape(ERIN_UNICODE.encode()), re.IGNORECASE
)


def state_path(project: Project) -> Path:
    return project.root / "state.sqlite3"


def rows(project: Project, sql: str) -> list[tuple[object, ...]]:
    with statefile.connect(state_path(project)) as db:
        return list(db.execute(sql))


def traces(project: Project) -> dict[str, int]:
    """How often Erin's address occurs in the state file and its log, by file name."""
    found = {}
    for path in project.root.iterdir():
        if path.name.startswith("state.sqlite3") and path.suffix != ".lock":
            found[path.name] = len(ERIN_BYTES.findall(path.read_bytes()))
    return found


def totals(project: Project) -> list[str]:
    """`digest history`'s issue lines: each issue's totals and bounce counts."""
    result = project.run("history")
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if "unsubscribed addresses" not in line]


def erin_everywhere(project: Project) -> None:
    """Erin in every table that can hold a person: listed, added, sent to, bounced, reported
    by a provider's webhook, unsubscribed, rate-limited, approving, in a cached preview."""
    project.write_subscribers(f"{ERIN},Erin", f"{ANN},Ann", f"{BOB},Bob")
    added = project.run("subscribers", "add", ERIN_UNICODE, "--source", "open day")
    assert added.exit_code == 0, added.output
    assert project.run("send").exit_code == 0
    dsn = reports.dsn("Erin@XN--BCHER-KVA.example", project.smtp.to(ERIN)[-1].data)
    bounced = project.run("bounces", "--stdin", input=dsn)
    assert bounced.exit_code == 0 and f"Suppressed {ERIN}" in bounced.output, bounced.output
    config = load_config(project.config)
    with store.open_path(state_path(project)) as state:
        webhook = Report(
            Kind.COMPLAINT,
            "mailgun:event-1",
            (BOB,),
            "abuse",
            "complaint",
            text=json.dumps({"recipient": BOB, "cc": ERIN_UNICODE}, ensure_ascii=False),
        )
        apply_report(config, state, SECRET, webhook, "mailgun", project.now)
        bucket = f"address:{address_hash(SECRET, ERIN)}"
        assert state.signups.allow([RateLimit(bucket, timedelta(days=1), 5)], project.now)
        state.editorial.request_approval("2026-12-07T09:00:00+00:00", frozenset(), project.now)
        state.editorial.decide("2026-12-07T09:00:00+00:00", "approved", ERIN, project.now)
    with store.open_path(state_path(project), read_only=True) as state:
        state.previews.remember("k", RenderedIssue("s", f"<p>Hello {ERIN}</p>", "t"), "now")


def test_forget_leaves_no_trace_in_any_table_or_in_the_files(project: Project) -> None:
    erin_everywhere(project)
    before = totals(project)
    assert any("1 hard bounces" in line for line in before), before
    assert sum(traces(project).values()) > 0
    forgot = project.run_process("subscribers", "forget", ERIN_SHOUTED)
    assert forgot.returncode == 0, forgot.stderr
    assert f"Erased everything held about {ERIN}; none of it is left in" in forgot.stdout
    assert forgot.stderr == ""
    assert traces(project) == {"state.sqlite3": 0}  # and no write-ahead log left over
    # Each issue's totals and bounce counts read as before.
    assert totals(project) == before
    hashed = f"forgotten:{address_hash(SECRET, ERIN)}"
    assert rows(project, f"SELECT status FROM deliveries WHERE email = '{hashed}'") == [("sent",)]
    assert rows(project, "SELECT email, kind, detail, report FROM bounce_reports ORDER BY id") == [
        (hashed, "hard", "", ""),
        (BOB, "complaint", "", ""),
    ]
    assert rows(project, "SELECT COUNT(*) FROM rate_events") == [(0,)]
    assert rows(project, "SELECT decided_by FROM approvals") == [("forgotten",)]
    assert rows(project, "SELECT COUNT(*) FROM preview_cache") == [(0,)]
    # Still in the editor's file, she gets nothing more.
    project.serve("/blog.xml", [post(7, 0.1)])
    assert project.run("send", now=project.now + timedelta(days=1)).exit_code == 0
    assert len(project.smtp.to(ERIN)) == 1
    assert len(project.smtp.to(ANN)) == 2


@contextmanager
def reader_holding_a_snapshot(project: Project) -> Iterator[subprocess.Popen[str]]:
    """Another process in the middle of reading the state (as `digest serve` may be)."""
    reader = subprocess.Popen(
        [sys.executable, "-c", statefile.snapshot_reader(state_path(project))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "reading"
        yield reader
    finally:
        if reader.poll() is None:
            finish(reader)


def finish(reader: subprocess.Popen[str]) -> None:
    """Let the reader end its read and exit."""
    assert reader.stdin is not None
    reader.stdin.write("done\n")
    reader.stdin.flush()
    reader.wait(timeout=20)


def test_forget_waits_for_a_reader_of_an_older_snapshot_then_finishes(project: Project) -> None:
    erin_everywhere(project)
    with reader_holding_a_snapshot(project) as reader:
        threading.Timer(1.0, finish, (reader,)).start()  # well within the patience
        forgot = project.run_process("subscribers", "forget", ERIN)
    assert forgot.returncode == 0, forgot.stderr
    assert f"Erased everything held about {ERIN}" in forgot.stdout
    assert traces(project) == {"state.sqlite3": 0}


def test_forget_says_so_when_a_reader_will_not_let_go_and_finishes_when_run_again(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    erin_everywhere(project)
    monkeypatch.setattr("digest.store.erasure.PATIENCE", 1.0)
    with reader_holding_a_snapshot(project):
        held = project.run("subscribers", "forget", ERIN)
        assert held.exit_code == 1, held.output
        assert "Erased everything" not in held.output
        assert (
            f"Error: {ERIN} is erased from every table, but another process is still reading an"
            " older snapshot" in held.output
        )
        assert f"run `digest subscribers forget {ERIN}` again to finish" in held.output
        assert "Traceback" not in held.output
        # Not claimed done, and indeed not done: the old pages are still in the file.
        assert traces(project)["state.sqlite3"] > 0
    again = project.run_process("subscribers", "forget", ERIN)
    assert again.returncode == 0, again.stderr
    assert f"Nothing is held about {ERIN}; none of it is left in" in again.stdout
    assert traces(project) == {"state.sqlite3": 0}


def test_forget_stops_short_of_done_when_a_table_it_does_not_know_holds_the_address(
    project: Project,
) -> None:
    erin_everywhere(project)
    with statefile.connect(state_path(project)) as db:
        db.execute("CREATE TABLE newer_events (payload TEXT)")
        db.execute("INSERT INTO newer_events VALUES (?)", (f"to: {ERIN}",))
    forgot = project.run_process("subscribers", "forget", ERIN)
    assert forgot.returncode == 1
    assert forgot.stderr.strip() == (
        f"Error: {ERIN} is erased from the tables digest knows, but newer_events.payload still"
        " hold it: the erasure is not complete; clear those by hand, then run"
        f" `digest subscribers forget {ERIN}` again to finish"
    )
    assert rows(project, f"SELECT COUNT(*) FROM signups WHERE email = '{ERIN}'") == [(0,)]


def test_an_address_in_published_content_stays_and_is_pointed_out(project: Project) -> None:
    project.serve("/blog.xml", [{**post(1), "summary": f"Write to {ANN} with your news."}])
    assert project.run("send").exit_code == 0
    forgot = project.run_process("subscribers", "forget", ANN)
    assert forgot.returncode == 0, forgot.stderr
    assert f"Erased everything held about {ANN}" in forgot.stdout
    assert forgot.stderr.strip() == (
        f"Warning: {ANN} still appears in published content (issues, parsed_feeds, posts: what"
        " the feeds or the editor wrote), which forget does not change."
    )
    assert rows(project, "SELECT COUNT(*) FROM deliveries WHERE email LIKE 'forgotten:%'") == [(1,)]


def test_an_old_unsubscribe_link_does_not_write_a_forgotten_address_back(project: Project) -> None:
    erin_everywhere(project)
    token = make_token(SECRET, ERIN_UNICODE)  # from a message sent before she was forgotten
    assert project.run_process("subscribers", "forget", ERIN).returncode == 0
    with digest_serve(project) as base:
        answer = httpx.post(
            f"{base}/unsubscribe",
            params={"token": token},
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        )
        assert answer.status_code == 200
    assert rows(project, "SELECT email FROM suppressions") == [(BOB,)]
    assert set(traces(project).values()) == {0}
