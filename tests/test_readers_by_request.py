"""The list's changes on a person's request and its overview, called as the library (the
command only prints what these return): what each keeps in the state and what it reports."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest import store
from digest.config.schema import load_config
from digest.core.errors import DigestError
from digest.readers import by_request
from digest.readers.overview import by_bounce_kind, overview
from tests.conftest import Project
from tests.support import statefile

NOW = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)
ANN, BOB = "ann@example.com", "bob@example.org"


def test_unsubscribe_then_resubscribe_says_what_changed(project: Project) -> None:
    project.write_subscribers(f"{ANN},Ann")
    config = load_config(project.config)
    assert by_request.unsubscribe(config, ANN, NOW) is True
    assert by_request.unsubscribe(config, ANN, NOW) is False
    assert statefile.rows(
        project.root / "state.sqlite3", "SELECT email, kind FROM suppressions"
    ) == [(ANN, "manual")]
    assert by_request.resubscribe(config, ANN) == by_request.Resubscribed(removed=True, listed=True)
    assert by_request.resubscribe(config, ANN) == by_request.Resubscribed(
        removed=False, listed=False
    )
    by_request.unsubscribe(config, BOB, NOW)
    # Bob is not in the file: resubscribed, but nothing will be sent to him.
    assert by_request.resubscribe(config, BOB) == by_request.Resubscribed(
        removed=True, listed=False
    )


def test_someone_who_unsubscribed_cannot_be_added_back_by_the_editor(project: Project) -> None:
    project.write_subscribers()
    config = load_config(project.config)
    assert by_request.add_in_person(config, ANN, "Ann", None, "open day", NOW) is True
    assert by_request.add_in_person(config, ANN, "Ann", None, "open day", NOW) is False
    by_request.unsubscribe(config, BOB, NOW)
    with pytest.raises(DigestError, match="only they can undo that"):
        by_request.add_in_person(config, BOB, "Bob", None, "open day", NOW)
    signed = statefile.rows(project.root / "state.sqlite3", "SELECT email, status FROM signups")
    assert signed == [(ANN, "confirmed")]


def test_erase_leaves_nothing_of_the_address(project: Project) -> None:
    project.write_subscribers()
    config = load_config(project.config)
    by_request.add_in_person(config, ANN, "Ann", None, "open day", NOW)
    erased = by_request.erase(config, ANN, NOW)
    assert erased.found and not erased.unerased and not erased.bytes_left
    assert ANN.encode() not in (project.root / "state.sqlite3").read_bytes()
    assert overview(config).counts.forgotten == 1


def test_overview_splits_the_files_unsubscribes_from_the_rest(project: Project) -> None:
    project.write_subscribers(f"{ANN},Ann", "not an address,X", f"{ANN},Ann again")
    config = load_config(project.config)
    by_request.unsubscribe(config, ANN, NOW)
    by_request.unsubscribe(config, BOB, NOW)
    seen = overview(config)
    assert seen.listed == 1
    assert [row.email for row in seen.unsubscribed] == [ANN]
    assert seen.unsubscribed_elsewhere == 1
    assert seen.bounced == {}
    assert len(seen.invalid) == 1 and len(seen.duplicates) == 1


def test_bounce_suppressions_are_grouped_by_kind_in_order() -> None:
    kinds = store.SuppressionKind
    rows = [
        store.Suppression("a@example.com", NOW, kinds.HARD_BOUNCE, "imap", "550 no such user"),
        store.Suppression("b@example.com", NOW, kinds.MANUAL, "manual"),
        store.Suppression("c@example.com", NOW, kinds.COMPLAINT, "webhook"),
        store.Suppression("d@example.com", NOW, kinds.HARD_BOUNCE, "imap"),
    ]
    groups = by_bounce_kind(rows)
    assert list(groups) == ["hard bounce", "complaint"]
    assert [row.email for row in groups["hard bounce"]] == ["a@example.com", "d@example.com"]
