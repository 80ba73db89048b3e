"""Bounces as each mail system writes them: digest's hand-written set (tests/fixtures/bounces/).

Each message is read on its own (kind, failed recipient, reason, as Sisimai would judge it),
then the whole set goes through `digest bounces --maildir` against a real state, where what
each one does to its reader is checked.
"""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest

from digest import store
from digest.bounces.report import read_report
from digest.core.addresses import canonical_or_none
from digest.core.models import Delivery, DeliveryStatus
from tests.conftest import Project
from tests.support import statefile
from tests.support.bounce_samples import Sample, own_samples

SAMPLES = own_samples()


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_each_message_is_read_as_its_mail_system_meant_it(sample: Sample) -> None:
    report = read_report(sample.path.read_bytes())
    assert (report.kind.value, report.reason or "-") == (
        sample.kind,
        sample.reason or report.reason or "-",
    ), report.detail
    assert sample.recipients <= set(report.recipients), report.recipients
    assert all(canonical_or_none(address) == address for address in report.recipients)
    if sample.kind in ("not_bounce", "auto_reply"):
        assert report.recipients == ()


def test_the_whole_set_through_digest_bounces_acts_on_each_reader_as_it_should(
    project: Project, tmp_path: Path
) -> None:
    with store.open_path(project.root / "state.sqlite3") as state:
        issue = state.ledger.create_issue(
            subject="s", html="h", text="t", posts=[], now=project.now
        )
        for sample in SAMPLES:
            for address in sample.recipients:
                delivery = Delivery(address, DeliveryStatus.SENT, "250 OK")
                state.ledger.record_delivery(issue, delivery, project.now)
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for sample in SAMPLES:
        box.add(sample.path.read_bytes())

    result = project.run("bounces", "--maildir", str(tmp_path / "Maildir"))
    assert result.exit_code == 0, result.output
    quiet = [s for s in SAMPLES if s.kind == "not_bounce"]
    assert f"{len(quiet)} not bounces (left in the mailbox)" in result.output
    assert len(box) == len(quiet)  # the rest were read and taken out of the mailbox

    with statefile.connect(project.root / "state.sqlite3") as db:
        outcomes = dict(db.execute("SELECT email, outcome FROM bounce_reports WHERE email != ''"))
        kinds = dict(db.execute("SELECT kind, COUNT(*) FROM bounce_reports GROUP BY kind"))
        suppressed = dict(db.execute("SELECT email, source FROM suppressions"))
    for sample in SAMPLES:
        for address in sample.recipients:
            if sample.kind == "soft":
                assert outcomes[address] == "counted", sample.name
                assert address not in suppressed, sample.name
            else:
                assert outcomes[address] == "suppressed", sample.name
                source = "complaint" if sample.kind == "complaint" else "bounce"
                assert suppressed[address] == source, sample.name
    assert kinds["auto_reply"] == len([s for s in SAMPLES if s.kind == "auto_reply"])

    shown = project.run("bounces", "--show", "--limit", "100")
    assert shown.exit_code == 0, shown.output
    said = " ".join(shown.output.split())
    assert 'hard ann.lee@example.com: suppressed (userunknown: unknown user: "ann.lee")' in said
    assert "soft bo@example.net: counted (mailboxfull: 552 5.2.2 <bo@example.net>:" in said
    assert "counted: a soft bounce, counted: bounces.soft_limit of them in a row" in said
