"""Real-world bounces from many MTAs, read from flufl.bounce's own test corpus.

flufl.bounce 4.0 (Apache License 2.0, by Barry Warsaw and the GNU Mailman developers) ships
these messages, and the addresses each one reports, inside its installed package; the tests
read them from there and none are copied into this repository.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest import store
from digest.bounces.report import Kind, read_report
from digest.core.addresses import canonical_or_none
from digest.core.models import Delivery, DeliveryStatus
from tests.conftest import Project
from tests.support import reports, statefile
from tests.support.bounce_samples import flufl_samples


def corpus() -> tuple[Path, list[tuple[str, set[str], bool]]] | None:
    """flufl.bounce's data folder and (file, addresses, temporary) for each known message."""
    samples = flufl_samples()
    if samples is None:
        return None
    known = [(s.name, set(s.recipients), s.temporary) for s in samples]
    return samples[0].path.parent, known


FOUND = corpus()
needs_corpus = pytest.mark.skipif(
    FOUND is None, reason="flufl.bounce's corpus is not in the installed package (pin 4.0)"
)


@needs_corpus
def test_every_known_address_bounce_in_the_corpus_is_attributed(project: Project) -> None:
    assert FOUND is not None
    data, known = FOUND
    now = datetime.now(UTC)
    addresses = sorted({address for _, expected, _ in known for address in expected})
    with store.open_path(project.root / "state.sqlite3") as state:
        issue = state.ledger.create_issue(subject="s", html="h", text="t", posts=[], now=now)
        for address in addresses:
            state.ledger.record_delivery(
                issue, Delivery(address, DeliveryStatus.SENT, "250 OK"), now
            )
    missed, auto_replies = [], []
    last = 0
    for name, expected, _temporary in known:
        message = (data / name).read_bytes()
        result = project.run("bounces", "--stdin", input=message, now=now)
        assert result.exit_code == 0, f"{name}: {result.output}"
        with statefile.connect(project.root / "state.sqlite3") as db:
            row = db.execute(
                "SELECT id, email, outcome, kind FROM bounce_reports WHERE id > ?", (last,)
            ).fetchone()
        last = row[0] if row else last
        acted = row is not None and row[2] in ("suppressed", "already_suppressed", "counted")
        if expected and not (acted and row[1] in expected):
            missed.append((name, expected, row))
        if row is not None and row[3] == "auto_reply":
            auto_replies.append(name)
    assert missed == [], missed
    assert auto_replies == ["qmail_08.txt"]  # the one real auto-reply among them


@needs_corpus
def test_the_corpus_is_read_for_its_recipients_and_its_warnings_are_soft() -> None:
    """Each failed recipient found (all but two notices, whose prose names another address
    first), nothing that is not an address recorded, and every warning that delivery is
    still being tried (flufl.bounce's "temporary") read as a soft bounce."""
    assert FOUND is not None
    data, known = FOUND
    missed, hard_warnings = [], []
    for name, expected, temporary in known:
        report = read_report((data / name).read_bytes())
        assert all(canonical_or_none(a) == a for a in report.recipients), (name, report)
        if expected and not expected <= set(report.recipients):
            missed.append(name)
        if temporary and report.kind is not Kind.SOFT:
            hard_warnings.append((name, report.kind))
    assert sorted(missed) == ["sendmail_01.txt", "simple_14.txt"]
    assert hard_warnings == []
    assert sum(1 for _, _, temporary in known if temporary) == 11


@needs_corpus
def test_no_message_in_the_corpus_crashes_or_is_taken_for_an_auto_reply(project: Project) -> None:
    assert FOUND is not None
    data, _ = FOUND
    for path in sorted(data.glob("*.txt")):
        result = project.run("bounces", "--stdin", input=path.read_bytes())
        assert result.exit_code == 0, f"{path.name}: {result.output}"
        assert "Traceback" not in result.output
    with statefile.connect(project.root / "state.sqlite3") as db:
        kinds = dict(db.execute("SELECT kind, COUNT(*) FROM bounce_reports GROUP BY kind"))
        suppressions = db.execute("SELECT COUNT(*) FROM suppressions").fetchone()
    assert kinds.get("auto_reply") == 1  # qmail_08.txt, a real "Auto reply"
    assert kinds.get("hard", 0) + kinds.get("soft", 0) > 100  # read as the bounces they are...
    assert suppressions == (0,)  # ...but none names an address digest mailed: nothing changes


def test_auto_replies_are_never_taken_for_bounces(project: Project) -> None:
    now = datetime.now(UTC)
    with store.open_path(project.root / "state.sqlite3") as state:
        issue = state.ledger.create_issue(subject="s", html="h", text="t", posts=[], now=now)
        for address in ("ann@example.com", "bob@example.com"):
            state.ledger.record_delivery(
                issue, Delivery(address, DeliveryStatus.SENT, "250 OK"), now
            )
    for message in (reports.out_of_office(), reports.vacation()):
        result = project.run("bounces", "--stdin", input=message, now=now)
        assert "1 auto-replies ignored" in result.output
    with statefile.connect(project.root / "state.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM suppressions").fetchone() == (0,)
