"""Approval before a scheduled send, with real `digest run` processes, aiosmtpd and HTTP."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx

from digest import store
from digest.config.schema import load_config
from digest.core.models import Choice
from digest.core.tokens import APPROVAL_PURPOSE, make_purpose_token
from digest.issue.choices import choose, next_posts, set_note
from digest.run import send as sending
from digest.run.approval import approval_link, gate_for, request_ahead
from digest.run.slots import slot_key
from tests.conftest import Project, post
from tests.support import statefile
from tests.support.serving import serving
from tests.test_schedule_run import SLOT, SLOT_LOG, Daemon, rows, wait_until, weekly

APPROVER = "editor@example.org"
NEXT_SLOT = SLOT + timedelta(days=7)
BLOG = [post(1), post(2, 2)]
NEWER = post(3, 1 / 1440)  # published a minute before the slot, after the draft went out


def with_approval(project: Project, before: str, on_timeout: str = "hold") -> None:
    weekly(project)
    text = project.config.read_text(encoding="utf-8").replace(
        "newsletter:\n", "newsletter:\n  public_url: https://news.example.org\n", 1
    )
    text += (
        "  retry_every: 1s\n"
        f"  approval:\n    required: true\n    before: {before}\n"
        f"    approvers: [{APPROVER}]\n    on_timeout: {on_timeout}\n"
    )
    project.config.write_text(text, encoding="utf-8")


def to(project: Project, address: str) -> list[str]:
    """Subjects of the messages an address received, in order."""
    return [
        str(item.message["Subject"]) for item in project.smtp.received if address in item.recipients
    ]


def status(project: Project) -> list[tuple[str, str]]:
    return [(str(k), str(s)) for k, s in rows(project, "SELECT slot_key, status FROM approvals")]


def carried(project: Project, issue_id: int) -> list[str]:
    """The post keys an issue was frozen with, sorted."""
    found = rows(project, f"SELECT post_key FROM issue_posts WHERE issue_id = {issue_id}")
    return sorted(str(key) for (key,) in found)


def titles(text: str) -> list[str]:
    return sorted(set(re.findall(r"Post number \d+", text)))


def test_approval_is_asked_before_the_slot_and_an_approved_issue_goes_out_once(
    project: Project,
) -> None:
    with_approval(project, "4s")
    with Daemon(project, SLOT - timedelta(seconds=7)) as daemon:
        daemon.wait_for("digest run:")
        assert to(project, APPROVER) == []  # not before slot minus `before`
        daemon.wait_for("approval requested for slot 2026-11-30T08:00:00+00:00")
        wait_until(lambda: len(to(project, APPROVER)) == 1)
        assert to(project, APPROVER)[0].startswith("Approve? Collaborate Weekly")
        draft = next(m for m in project.smtp.received if APPROVER in m.recipients)
        assert "https://news.example.org/approval?token=" in draft.part("plain")
        assert "Post number 1" in draft.part("html")
        # The banner's link is a bulletproof button: a table cell in the accent holding it.
        button = re.search(
            r'<td align="center" bgcolor="#1d4f91"[^>]*><a href="'
            r'https://news\.example\.org/approval\?token=[^"]+"[^>]*>Approve or hold it</a>',
            draft.part("html"),
        )
        assert button, draft.part("html")[:3000]
        assert to(project, "ann@example.com") == []
        (asked,) = rows(project, "SELECT requested_at FROM approvals")
        lead = SLOT - datetime.fromisoformat(asked[0])
        assert timedelta(seconds=3) < lead <= timedelta(seconds=5), lead
        approved = project.run("approve")
        assert approved.exit_code == 0, approved.output
        assert "is approved" in approved.output
        line = daemon.wait_for(f"{SLOT_LOG}: issue 1")
        assert "3 posts, 2 delivered" in line
        time.sleep(2)  # the retry and slot jobs find it handled: nothing more goes out
        assert daemon.terminate() == 0, daemon.log
    assert len(to(project, "ann@example.com")) == 1 and len(to(project, "bob@example.com")) == 1
    assert len(to(project, APPROVER)) == 1
    assert rows(project, "SELECT slot_key FROM issues") == [("2026-11-30T08:00:00+00:00",)]
    assert status(project) == [("2026-11-30T08:00:00+00:00", "approved")]


def test_no_answer_holds_and_tells_the_approvers_then_a_late_approval_sends(
    project: Project,
) -> None:
    with_approval(project, "2s")
    with Daemon(project, SLOT - timedelta(seconds=3)) as daemon:
        daemon.wait_for("approval requested for slot")
        held = daemon.wait_for(f"{SLOT_LOG}: nothing sent (not approved in time")
        assert "approve within grace" in held
        wait_until(lambda: len(to(project, APPROVER)) == 2)
        assert to(project, APPROVER)[1] == "Held: Collaborate Weekly, 2026-11-30"
        notice = [m for m in project.smtp.received if APPROVER in m.recipients][1]
        assert "was not sent: not approved in time" in notice.part("plain")
        # Built like the issue: its head and dark mode, the button to the approver's page.
        held_html = notice.part("html")
        assert "@media (prefers-color-scheme: dark)" in held_html
        assert re.search(
            r'<a class="button-link" href="https://news\.example\.org/approval\?token=[^"]+"',
            held_html,
        )
        assert "https://news.example.org/approval?token=" in notice.part("plain")
        assert to(project, "ann@example.com") == []
        assert rows(project, "SELECT COUNT(*) FROM issues") == [(0,)]

        assert project.run("approve").exit_code == 0  # after the slot, within grace
        line = daemon.wait_for(f"{SLOT_LOG}: issue 1")
        assert "2 delivered" in line
        assert daemon.terminate() == 0, daemon.log
    assert len(to(project, "ann@example.com")) == 1
    assert len(to(project, APPROVER)) == 2  # told of the hold once, not at every retry


def approval_url(project: Project, served_public: str, address: str = APPROVER) -> str:
    """The approval link in the newest draft sent to `address`, on the served public app."""
    draft = [m for m in project.smtp.received if address in m.recipients][-1]
    link = re.search(r"https://news\.example\.org(/approval\?token=\S+)", draft.part("plain"))
    assert link, draft.part("plain")
    return served_public + link[1]


def decisions(project: Project) -> list[tuple[str, str, str, str]]:
    """(slot, status, by, ip) of every decision on record, oldest first."""
    found = rows(project, "SELECT slot_key, status, decided_by, ip FROM approval_decisions")
    return [(str(k), str(s), str(b), str(i)) for k, s, b, i in found]


def test_the_approval_link_changes_nothing_on_get_and_decides_on_post(project: Project) -> None:
    with_approval(project, "2h")
    config = load_config(project.config)
    assert request_ahead(config, SLOT, SLOT - timedelta(hours=2))
    project.now = SLOT - timedelta(hours=1)
    with serving(project) as served:
        url = approval_url(project, served.public)
        for _ in range(2):
            shown = httpx.get(url)
            assert shown.status_code == 200
            assert "Approve this issue?" in shown.text and "requested" in shown.text
            assert '<form method="post">' in shown.text
        assert status(project) == [("2026-11-30T08:00:00+00:00", "requested")]
        forged = httpx.post(url.replace("token=", "token=x"), data={"answer": "approve"})
        assert forged.status_code == 400
        assert status(project) == [("2026-11-30T08:00:00+00:00", "requested")]
        held = httpx.post(url, data={"answer": "hold"})
        assert held.status_code == 200 and "will not be sent" in held.text
    assert status(project) == [("2026-11-30T08:00:00+00:00", "held")]
    assert decisions(project) == [("2026-11-30T08:00:00+00:00", "held", APPROVER, "127.0.0.1")]


def test_an_approval_link_decides_once(project: Project) -> None:
    """Once held (or approved) with a link, pressing either button again says what was decided,
    by whom and when, and changes nothing; the page no longer offers the buttons."""
    with_approval(project, "2h")
    config = load_config(project.config)
    assert request_ahead(config, SLOT, SLOT - timedelta(hours=2))
    project.now = SLOT - timedelta(hours=1)
    with serving(project) as served:
        url = approval_url(project, served.public)
        assert httpx.post(url, data={"answer": "hold"}).status_code == 200
        for answer in ("approve", "hold"):
            again = httpx.post(url, data={"answer": answer})
            assert again.status_code == 409, again.text
            assert "Issue already held" in again.text
            assert f"was held by {APPROVER} on 2026-11-30 at 07:00 UTC" in again.text
            assert "Nothing was changed" in again.text and "digest approve" in again.text
        shown = httpx.get(url)
        assert shown.status_code == 200 and "<form" not in shown.text
        assert f"was held by {APPROVER} on 2026-11-30 at 07:00 UTC" in shown.text
        assert "127.0.0.1" not in shown.text
    assert status(project) == [("2026-11-30T08:00:00+00:00", "held")]
    assert len(decisions(project)) == 1


def test_the_command_line_overrides_a_link_and_both_stay_on_record(project: Project) -> None:
    with_approval(project, "2h")
    config = load_config(project.config)
    assert request_ahead(config, SLOT, SLOT - timedelta(hours=2))
    project.now = SLOT - timedelta(hours=1)
    with serving(project) as served:
        url = approval_url(project, served.public)
        assert httpx.post(url, data={"answer": "approve"}).status_code == 200
        overridden = project.run("hold", now=SLOT - timedelta(minutes=30))
        assert overridden.exit_code == 0, overridden.output
        assert status(project) == [("2026-11-30T08:00:00+00:00", "held")]
        shown = httpx.get(url)
        assert "was held on the command line on 2026-11-30 at 07:30 UTC" in shown.text
        assert f"approved by {APPROVER} on 2026-11-30 at 07:00 UTC" in shown.text
        again = httpx.post(url, data={"answer": "approve"})  # the link still decides once
        assert again.status_code == 409
    assert status(project) == [("2026-11-30T08:00:00+00:00", "held")]
    assert decisions(project) == [
        ("2026-11-30T08:00:00+00:00", "approved", APPROVER, "127.0.0.1"),
        ("2026-11-30T08:00:00+00:00", "held", "command line", ""),
    ]
    with statefile.connect(project.root / "state.sqlite3") as db:
        by, at = db.execute("SELECT decided_by, decided_at FROM approvals").fetchone()
    assert (by, at) == ("command line", "2026-11-30T07:30:00+00:00")


def test_two_approvers_pressing_at_once_decide_once(project: Project) -> None:
    other = "deputy@example.org"
    with_approval(project, "2h")
    project.config.write_text(
        project.config.read_text(encoding="utf-8").replace(
            f"approvers: [{APPROVER}]", f"approvers: [{APPROVER}, {other}]"
        ),
        encoding="utf-8",
    )
    config = load_config(project.config)
    assert request_ahead(config, SLOT, SLOT - timedelta(hours=2))
    project.now = SLOT - timedelta(hours=1)
    with serving(project) as served:
        urls = [approval_url(project, served.public, a) for a in (APPROVER, other)]
        assert urls[0] != urls[1]  # each approver's own link
        presses = [(urls[n % 2], "approve" if n % 2 else "hold") for n in range(8)]
        with ThreadPoolExecutor(len(presses)) as pool:
            answers = list(pool.map(lambda p: httpx.post(p[0], data={"answer": p[1]}), presses))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 7, codes
    ((slot, decided, by, _),) = decisions(project)
    assert status(project) == [(slot, decided)]
    assert by in (APPROVER, other)


def test_a_link_that_names_no_approver_still_decides_once(project: Project) -> None:
    """Drafts sent before links named their approver carry a token naming only the slot."""
    with_approval(project, "2h")
    config = load_config(project.config)
    assert request_ahead(config, SLOT, SLOT - timedelta(hours=2))
    with store.open_path(config.state_path) as state:
        secret = state.secrets.signing_secret(config.secret)
    token = make_purpose_token(secret, APPROVAL_PURPOSE, slot_key(SLOT), SLOT + timedelta(hours=6))
    project.now = SLOT - timedelta(hours=1)
    with serving(project) as served:
        url = f"{served.public}/approval?token={token}"
        assert httpx.post(url, data={"answer": "approve"}).status_code == 200
        again = httpx.post(url, data={"answer": "hold"})
        assert again.status_code == 409
        assert "was approved with the approval link on 2026-11-30 at 07:00 UTC" in again.text
    assert status(project) == [("2026-11-30T08:00:00+00:00", "approved")]


def test_a_post_left_out_after_approval_needs_approval_again(project: Project) -> None:
    with_approval(project, "2h")
    config = load_config(project.config)
    assert request_ahead(config, SLOT, SLOT - timedelta(hours=2))
    assert project.run("approve").exit_code == 0
    two = next(c for c in next_posts(config, SLOT) if c.post.title == "Post number 2")
    choose(config, two.short_id, Choice.LEAVE_OUT, SLOT - timedelta(minutes=30))

    gate = gate_for(config, SLOT, SLOT)
    report = sending.send(config, SLOT, slot_key=slot_key(SLOT), gate=gate)
    assert report.held and report.issue_id is None
    assert report.skipped_reason.startswith("the issue changed after the draft")
    assert status(project) == [("2026-11-30T08:00:00+00:00", "requested")]
    subjects = to(project, APPROVER)
    assert [s.split(" ")[0] for s in subjects] == ["Approve?", "Approve?", "Held:"]
    assert to(project, "ann@example.com") == []

    assert project.run("approve").exit_code == 0
    report = sending.send(config, SLOT, slot_key=slot_key(SLOT), gate=gate)
    assert report.issue_id == 1 and report.post_count == 2 and report.sent == 2


def test_a_note_written_after_approval_needs_approval_again(project: Project) -> None:
    with_approval(project, "2h")
    config = load_config(project.config)
    assert request_ahead(config, SLOT, SLOT - timedelta(hours=2))
    assert project.run("approve").exit_code == 0
    set_note(config, "The AGM moved to **Friday**.", SLOT - timedelta(minutes=30))

    gate = gate_for(config, SLOT, SLOT)
    report = sending.send(config, SLOT, slot_key=slot_key(SLOT), gate=gate)
    assert report.held and report.issue_id is None
    assert report.skipped_reason.startswith("the issue changed after the draft")
    drafts = [m for m in project.smtp.received if APPROVER in m.recipients]
    assert [m.message["Subject"].split(" ")[0] for m in drafts] == ["Approve?", "Approve?", "Held:"]
    assert "The AGM moved to Friday." in drafts[1].part("plain")
    assert to(project, "ann@example.com") == []

    assert project.run("approve").exit_code == 0
    report = sending.send(config, SLOT, slot_key=slot_key(SLOT), gate=gate)
    assert report.issue_id == 1 and report.sent == 2
    sent = next(m for m in project.smtp.received if "ann@example.com" in m.recipients)
    assert "The AGM moved to Friday." in sent.part("plain")


def test_on_timeout_send_sends_an_unanswered_draft_but_never_a_held_one(project: Project) -> None:
    with_approval(project, "2h", on_timeout="send")
    config = load_config(project.config)
    assert request_ahead(config, SLOT, SLOT - timedelta(hours=2))
    assert project.run("hold").exit_code == 0
    gate = gate_for(config, SLOT, SLOT)
    held = sending.send(config, SLOT, slot_key=slot_key(SLOT), gate=gate)
    assert held.held and held.skipped_reason.startswith("held by an approver")
    with statefile.connect(project.root / "state.sqlite3") as db:
        db.execute("UPDATE approvals SET status = 'requested'")
    report = sending.send(config, SLOT, slot_key=slot_key(SLOT), gate=gate)
    assert report.issue_id == 1 and report.sent == 2


def test_a_post_published_after_approval_waits_for_the_next_issue(project: Project) -> None:
    with_approval(project, "4s")
    with Daemon(project, SLOT - timedelta(seconds=5)) as daemon:
        daemon.wait_for("approval requested for slot 2026-11-30T08:00:00+00:00")
        wait_until(lambda: len(to(project, APPROVER)) == 1)
        draft = next(m for m in project.smtp.received if APPROVER in m.recipients)
        shown = ["Post number 1", "Post number 10", "Post number 2"]
        assert titles(draft.part("plain")) == shown
        project.serve("/blog.xml", [NEWER, *BLOG])
        assert project.run("approve").exit_code == 0
        line = daemon.wait_for(f"{SLOT_LOG}: issue 1")
        assert "3 posts, 2 delivered" in line
        assert "1 not in it wait for the next issue" in daemon.wait_for("sending the draft's 3")
        assert daemon.terminate() == 0, daemon.log
    (issue,) = [m for m in project.smtp.received if "ann@example.com" in m.recipients]
    assert titles(issue.part("plain")) == shown and titles(issue.part("html")) == shown
    assert to(project, APPROVER) == [to(project, APPROVER)[0]]  # no new draft, no hold notice
    assert "post-3" not in " ".join(carried(project, 1))
    assert status(project) == [("2026-11-30T08:00:00+00:00", "approved")]

    with Daemon(project, NEXT_SLOT - timedelta(seconds=3)) as daemon:
        daemon.wait_for("approval requested for slot 2026-12-07T08:00:00+00:00")
        wait_until(lambda: len(to(project, APPROVER)) == 2)
        assert project.run("approve", now=NEXT_SLOT).exit_code == 0
        line = daemon.wait_for("slot 2026-12-07T08:00:00+00:00: issue 2")
        assert "1 posts, 2 delivered" in line
        assert daemon.terminate() == 0, daemon.log
    second = [m for m in project.smtp.received if "ann@example.com" in m.recipients][1]
    assert titles(second.part("plain")) == ["Post number 3"]
    assert carried(project, 2) == ["https://example.org/blog/post-3"]


def test_on_timeout_send_sends_what_the_unanswered_draft_showed(project: Project) -> None:
    with_approval(project, "2h", on_timeout="send")
    config = load_config(project.config)
    assert request_ahead(config, SLOT, SLOT - timedelta(hours=2))
    project.serve("/blog.xml", [NEWER, *BLOG])
    report = sending.send(config, SLOT, slot_key=slot_key(SLOT), gate=gate_for(config, SLOT, SLOT))
    assert report.issue_id == 1 and report.post_count == 3 and report.sent == 2
    issue = next(m for m in project.smtp.received if "bob@example.com" in m.recipients)
    assert titles(issue.part("plain")) == ["Post number 1", "Post number 10", "Post number 2"]
    assert [s.split(" ")[0] for s in to(project, APPROVER)] == ["Approve?"]
    assert "https://example.org/blog/post-3" not in carried(project, 1)
    assert [p.post.title for p in next_posts(config, NEXT_SLOT)] == ["Post number 3"]


def test_a_newer_post_over_a_cap_does_not_push_an_approved_one_out(project: Project) -> None:
    with_approval(project, "2h")
    project.config.write_text(
        project.config.read_text(encoding="utf-8") + "digest:\n  max_posts_per_section: 2\n",
        encoding="utf-8",
    )
    project.serve("/news.xml", [])
    config = load_config(project.config)
    assert request_ahead(config, SLOT, SLOT - timedelta(hours=2))
    assert project.run("approve").exit_code == 0
    project.serve("/blog.xml", [NEWER, *BLOG])  # the newest two are now posts 3 and 1
    report = sending.send(config, SLOT, slot_key=slot_key(SLOT), gate=gate_for(config, SLOT, SLOT))
    assert report.issue_id == 1 and report.post_count == 2
    issue = next(m for m in project.smtp.received if "ann@example.com" in m.recipients)
    assert titles(issue.part("plain")) == ["Post number 1", "Post number 2"]
    assert len(to(project, APPROVER)) == 1
    assert [p.post.title for p in next_posts(config, NEXT_SLOT)] == ["Post number 3"]


def test_a_post_pinned_after_approval_stays_pinned_for_the_next_issue(project: Project) -> None:
    with_approval(project, "2h")
    config = load_config(project.config)
    assert request_ahead(config, SLOT, SLOT - timedelta(hours=2))
    assert project.run("approve").exit_code == 0
    project.serve("/blog.xml", [post(4, 1 / 1440), *BLOG])
    newer = next(c for c in next_posts(config, SLOT) if c.post.title == "Post number 4")
    choose(config, newer.short_id, Choice.PIN, SLOT - timedelta(minutes=1))
    report = sending.send(config, SLOT, slot_key=slot_key(SLOT), gate=gate_for(config, SLOT, SLOT))
    assert report.issue_id == 1 and report.post_count == 3
    issue = next(m for m in project.smtp.received if "ann@example.com" in m.recipients)
    assert titles(issue.part("plain")) == ["Post number 1", "Post number 10", "Post number 2"]
    assert len(to(project, APPROVER)) == 1
    assert rows(project, "SELECT post_key, choice FROM post_choices") == [
        ("https://example.org/blog/post-4", "pin")
    ]
    assert [(c.post.title, c.status) for c in next_posts(config, NEXT_SLOT)] == [
        ("Post number 4", "pinned")
    ]


def test_a_link_that_cannot_decide_gets_a_clear_answer_and_changes_nothing(
    project: Project,
) -> None:
    """No token, two tokens, a token naming no slot, a press of no button, an oversized form,
    a slot with no draft and a slot already sent: each gets its own answer, and nothing is
    decided."""
    with_approval(project, "2h")
    config = load_config(project.config)
    assert request_ahead(config, SLOT, SLOT - timedelta(hours=2))
    with store.open_path(config.state_path) as state:
        secret = state.secrets.signing_secret(config.secret)
    until = SLOT + timedelta(hours=6)
    no_slot = make_purpose_token(secret, APPROVAL_PURPOSE, f"next-week {APPROVER}", until)
    project.now = SLOT - timedelta(hours=1)
    with serving(project) as served:

        def link(slot: datetime) -> str:
            return served.public + approval_link(config, secret, slot, APPROVER).removeprefix(
                "https://news.example.org"
            )

        url = approval_url(project, served.public)
        token = url.partition("token=")[2]
        for bad in ("", f"?token={token}&token={token}", f"?token={no_slot}"):
            for answer in (
                httpx.get(served.public + "/approval" + bad),
                httpx.post(served.public + "/approval" + bad, data={"answer": "approve"}),
            ):
                assert answer.status_code == 400, (bad, answer.text)
                assert "This approval link is not valid or has expired" in answer.text
        unpressed = httpx.post(url, data={"answer": "maybe"})
        assert unpressed.status_code == 400 and "Choose Approve or Hold." in unpressed.text
        oversized = httpx.post(url, data={"answer": "approve", "padding": "x" * 20_000})
        assert oversized.status_code == 413 and "Request body too large." in oversized.text

        undrafted = link(NEXT_SLOT)
        shown = httpx.get(undrafted)
        assert shown.status_code == 200 and "not drafted yet" in shown.text
        pressed = httpx.post(undrafted, data={"answer": "approve"})
        assert pressed.status_code == 404
        assert "No draft is waiting for that slot." in pressed.text

        with store.open_path(config.state_path) as state:  # the slot passes unsent
            state.ledger.record_skipped_slot(slot_key(SLOT), SLOT, "not approved in time")
        shown = httpx.get(url)
        assert shown.status_code == 200 and "already sent or skipped" in shown.text
        pressed = httpx.post(url, data={"answer": "approve"})
        assert pressed.status_code == 200
        assert "The issue due 2026-11-30T08:00:00+00:00 is already sent or skipped." in (
            pressed.text
        )
    assert status(project) == [("2026-11-30T08:00:00+00:00", "requested")]
    assert decisions(project) == []
