"""SIGKILL in the middle of `digest send`: the rerun finishes the same issue, nobody twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

from digest.config.schema import load_config
from tests.conftest import Project, post
from tests.support import statefile

PEOPLE = [f"reader{n:02d}@example.com" for n in range(50)]


def subjects(project: Project) -> Counter[tuple[str, str]]:
    """(recipient, which issue) for every message received; the issue told apart by its posts."""
    seen: Counter[tuple[str, str]] = Counter()
    for item in project.smtp.received:
        text = item.part("plain")
        issue = "second" if "Post number 3" in text else "first"
        for recipient in item.recipients:
            seen[(recipient.lower(), issue)] += 1
    return seen


def send_until_twelve_arrived(project: Project) -> subprocess.Popen[str]:
    """Start `digest send` to PEOPLE over a slowed server; return once 12 messages arrived.

    The rest would take seconds more, so a busy machine that is slow to send the kill still
    sends it mid-issue."""
    project.write_subscribers(*PEOPLE)
    project.smtp.script.data_delay = 0.25
    env = {**os.environ, "DIGEST_NOW": project.now.isoformat()}
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(project.config), "send"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(project.smtp.received) < 12:
        assert process.poll() is None, "digest send finished before it could be stopped"
        assert time.monotonic() < deadline, "digest send never got going"
        time.sleep(0.01)
    return process


def test_kill_mid_issue_then_rerun_sends_each_subscriber_the_issue_once(
    project: Project,
) -> None:
    process = send_until_twelve_arrived(project)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    reached = len(project.smtp.received)
    assert reached < len(PEOPLE)
    project.smtp.script.data_delay = 0

    project.serve("/blog.xml", [post(3, 0.1), post(1), post(2, 2)])
    resumed = project.run_process("send", now=project.now + timedelta(hours=1))
    assert resumed.returncode == 0, resumed.stderr
    assert "(resumed issue 1)" in resumed.stdout

    first = {a: count for (a, issue), count in subjects(project).items() if issue == "first"}
    assert set(first) == set(PEOPLE)
    repeats = sum(count - 1 for count in first.values())
    assert all(count in (1, 2) for count in first.values())
    # At most the messages in flight when killed: one per connection.
    connections = load_config(project.config).smtp.connections
    assert repeats <= connections, f"{repeats} subscribers got the issue twice"
    assert all(issue == "first" for (_, issue) in subjects(project))

    third = project.run_process("send", now=project.now + timedelta(hours=2))
    assert third.returncode == 0, third.stderr
    assert "Sent issue with 1 posts: 50 delivered" in third.stdout
    second = {a: count for (a, issue), count in subjects(project).items() if issue == "second"}
    assert second == dict.fromkeys(PEOPLE, 1)


def test_ctrl_c_mid_issue_finishes_the_messages_in_flight_and_the_rerun_repeats_nobody(
    project: Project,
) -> None:
    process = send_until_twelve_arrived(project)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert "SIGINT received: finishing the messages in flight, then stopping" in stderr
    assert "Error: stopped: " in stderr and "run `digest send` again to finish the issue" in stderr
    reached = [r.recipients[0] for r in project.smtp.received]
    assert len(reached) < len(PEOPLE)
    with statefile.connect(project.root / "state.sqlite3") as db:
        recorded = [e for (e,) in db.execute("SELECT email FROM deliveries WHERE status = 'sent'")]
    assert sorted(recorded) == sorted(reached)  # every accepted message was recorded

    resumed = project.run_process("send", now=project.now + timedelta(hours=1))
    assert resumed.returncode == 0, resumed.stderr
    assert subjects(project) == {(person, "first"): 1 for person in PEOPLE}
