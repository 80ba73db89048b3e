"""One person, one key: an address in any of its forms names the same subscriber everywhere.

Erin's mailbox can be written `erin@bücher.example`, `Erin@BÜCHER.example` or
`erin@xn--bcher-kva.example`. Whichever form the subscriber file, the command line, the sign-up
form, a bounce or an old unsubscribe link uses, digest keeps the canonical one, so every
unsubscribe, resubscribe, erasure and de-duplication matches the address as listed.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from digest import store
from digest.bounces.apply import DROPPED_SIGNUP, SUPPRESSED, apply_report
from digest.bounces.report import Kind, Report
from digest.config.schema import load_config
from digest.core.tokens import delivery_tag, make_purpose_token, make_token
from digest.readers.subscribers import load_subscribers
from digest.store.migrations import MIGRATIONS
from tests.conftest import Project, post
from tests.support import statefile
from tests.support.serving import digest_serve, serving
from tests.test_signup import enable_signup

ERIN = "erin@xn--bcher-kva.example"  # the canonical form
ERIN_UNICODE = "erin@b\u00fccher.example"
ERIN_SHOUTED = "Erin@B\u00dcCHER.example"
ANN = "ann@example.com"
SECRET = "test-secret"


def recipients(project: Project, since: int = 0) -> list[str]:
    """Every envelope recipient of the messages received (from message `since` on), sorted."""
    return sorted(r for item in project.smtp.received[since:] for r in item.recipients)


def send(project: Project, days: int = 0) -> list[str]:
    """`digest send` as a real process (a new post first, after the first day); who got it."""
    before = len(project.smtp.received)
    if days:
        project.serve("/blog.xml", [post(20 + days, 0.1 - days)])
    result = project.run_process("send", now=project.now + timedelta(days=days))
    assert result.returncode == 0, result.stderr
    return recipients(project, before)


def suppressions(project: Project) -> list[tuple[str, str]]:
    with statefile.connect(project.root / "state.sqlite3") as db:
        return list(db.execute("SELECT email, source FROM suppressions ORDER BY email"))


def test_unsubscribing_the_ascii_form_stops_mail_to_the_unicode_form_listed(
    project: Project,
) -> None:
    project.write_subscribers(f"{ERIN_UNICODE},Erin", f"{ANN},Ann")
    done = project.run_process("unsubscribe", ERIN)
    assert done.returncode == 0, done.stderr
    assert f"{ERIN} is unsubscribed" in done.stdout
    assert send(project) == [ANN]
    assert suppressions(project) == [(ERIN, "manual")]


def test_unsubscribe_resubscribe_and_forget_match_whatever_form_is_given(
    project: Project,
) -> None:
    project.write_subscribers(f"{ERIN},Erin", f"{ANN},Ann")
    assert project.run("unsubscribe", ERIN_SHOUTED).exit_code == 0
    assert send(project) == [ANN]
    again = project.run("resubscribe", ERIN_UNICODE)
    assert again.exit_code == 0, again.output
    assert f"{ERIN} is resubscribed." in again.output
    assert "Warning" not in again.output  # she is on the list, in another form
    assert send(project, days=1) == [ANN, ERIN]
    forgot = project.run("subscribers", "forget", ERIN_SHOUTED)
    assert forgot.exit_code == 0, forgot.output
    assert f"Erased everything held about {ERIN}" in forgot.output
    assert send(project, days=2) == [ANN]


def test_one_mailbox_listed_and_added_in_different_forms_gets_one_copy(project: Project) -> None:
    project.write_subscribers(
        f"{ERIN},Erin", f"{ERIN_SHOUTED},Erin again", f"{ANN},Ann", "ANN@Example.com,Ann again"
    )
    added = project.run("subscribers", "add", ERIN_UNICODE, "--name", "Erin", "--source", "phone")
    assert added.exit_code == 0, added.output
    assert send(project) == [ANN, ERIN]
    [erins] = project.smtp.to(ERIN)
    assert "SMTPUTF8" not in erins.mail_options and erins.data.isascii()
    listed = load_subscribers(project.root / "subscribers.csv")
    assert listed.duplicates == (f"subscribers.csv:3: {ERIN}", f"subscribers.csv:5: {ANN}")


def test_a_test_send_goes_to_the_canonical_address(project: Project) -> None:
    result = project.run_process("send", "--to", ERIN_SHOUTED)
    assert result.returncode == 0, result.stderr
    [received] = project.smtp.received
    assert received.recipients == (ERIN,)
    assert "SMTPUTF8" not in received.mail_options
    refused = project.run("send", "--to", "erin@")
    assert refused.exit_code == 2
    assert "'erin@' is not an email address" in refused.output


def test_an_old_unsubscribe_link_naming_the_unicode_form_unsubscribes_the_listed_reader(
    project: Project,
) -> None:
    project.write_subscribers(f"{ERIN},Erin", f"{ANN},Ann")
    assert send(project) == [ANN, ERIN]
    old_link_token = make_token(SECRET, ERIN_UNICODE)  # what an earlier release put in her mail
    with digest_serve(project) as base:
        answer = httpx.post(
            f"{base}/unsubscribe",
            params={"token": old_link_token},
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        )
    assert answer.status_code == 200, answer.text
    assert suppressions(project) == [(ERIN, "one-click")]
    assert send(project, days=1) == [ANN]


def test_a_bounce_naming_the_unicode_form_is_tied_to_the_canonical_sign_up(
    project: Project,
) -> None:
    config = load_config(project.config)
    with store.open_path(config.state_path) as state:
        state.signups.request(ERIN, "", None, project.now, page="", ip="", consent_sha256="")
        # The confirmation went out before the upgrade, tagged over the Unicode form.
        tag = delivery_tag(SECRET, "s", ERIN_UNICODE)
        report = Report(Kind.HARD, "dsn-1", (ERIN_UNICODE,), "5.1.1", "no such user", (("s", tag),))
        outcome, address = apply_report(config, state, SECRET, report, "stdin", project.now)
        assert (outcome, address) == (DROPPED_SIGNUP, ERIN)
        assert state.signups.signup(ERIN) is None


def test_the_sign_up_form_keeps_the_canonical_form() -> None:
    from digest.readers.signup import normalised_address

    assert normalised_address(f"  {ERIN_SHOUTED} ") == (ERIN, "")
    assert normalised_address("Zo\u00eb@Example.COM") == ("zo\u00eb@example.com", "")
    address, problem = normalised_address("erin@")
    assert (
        address == ""
        and problem == "Enter an email address in the right format, like name@example.com."
    )


def test_a_confirmation_link_sent_before_the_upgrade_confirms_the_canonical_sign_up(
    project: Project,
) -> None:
    """Erin signed up with the Unicode form on an earlier release, which kept it so and put it
    in her confirmation link; the upgrade rewrote her sign-up to the canonical form."""
    state = project.root / "state.sqlite3"
    with statefile.connect(state, autocommit=True) as db:
        for migration in MIGRATIONS[:9]:  # the schema of the last release before the upgrade
            for step in migration:
                assert isinstance(step, str)
                db.execute(step)
        db.execute("PRAGMA user_version = 9")
        db.execute(
            "INSERT INTO signups (email, name, status, sections, source, created_at, updated_at)"
            " VALUES (?, 'Erin', 'pending', NULL, 'form', ?, ?)",
            (ERIN_UNICODE, project.now.isoformat(), project.now.isoformat()),
        )
    enable_signup(project)
    project.write_subscribers(f"{ANN},Ann")
    token = make_purpose_token(SECRET, "confirm", ERIN_UNICODE, project.now + timedelta(days=1))
    with serving(project, "--no-preview") as served:
        answer = httpx.post(f"{served.public}/confirm", params={"token": token}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert "You are subscribed" in answer.text
    with statefile.connect(state) as db:
        assert list(db.execute("SELECT email, status FROM signups")) == [(ERIN, "confirmed")]
    assert send(project) == [ANN, ERIN]


def test_a_bounce_of_an_issue_sent_before_the_upgrade_suppresses_the_canonical_address(
    project: Project,
) -> None:
    """An earlier release mailed issue 1 to the Unicode form (and tagged the delivery over it);
    the bounce names that form, and the upgrade has rewritten the delivery."""
    config = load_config(project.config)
    with statefile.connect(config.state_path, autocommit=True) as db:
        for migration in MIGRATIONS[:9]:  # the schema of the last release before the upgrade
            for step in migration:
                assert isinstance(step, str)
                db.execute(step)
        db.execute("PRAGMA user_version = 9")
        db.execute(
            "INSERT INTO issues (id, created_at, subject, html, text, post_count)"
            " VALUES (1, '2026-11-30T08:00:00+00:00', 's', 'h', 't', 1)"
        )
        db.execute(
            "INSERT INTO deliveries (issue_id, email, status, updated_at)"
            " VALUES (1, ?, 'sent', '2026-11-30T08:00:01+00:00')",
            (ERIN_UNICODE,),
        )
    tag = delivery_tag(SECRET, "1", ERIN_UNICODE)
    report = Report(Kind.HARD, "dsn-2", (ERIN_UNICODE,), "5.1.1", "no such user", (("1", tag),))
    with store.open_path(config.state_path) as state:
        outcome, address = apply_report(config, state, SECRET, report, "stdin", project.now)
    assert (outcome, address) == (SUPPRESSED, ERIN)
    assert suppressions(project) == [(ERIN, "bounce")]
