"""A backup taken in the middle of a real send and a sign-up flood restores elsewhere, and the
restored state finishes the send: every reader the backup had not recorded as delivered gets
the issue once, and no reader it had recorded gets it again."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from digest.store import backup
from tests.conftest import Project
from tests.support import statefile
from tests.support.serving import serving
from tests.support.smtpserver import SmtpServer

READERS = [f"reader{n:03d}@example.com" for n in range(300)]


def enable_signup(project: Project) -> None:
    project.add_newsletter_lines("  public_url: https://example.org\n")
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text + "signup:\n  enabled: true\n  per_ip_per_hour: 100000\n", encoding="utf-8"
    )


def issues(smtp: SmtpServer) -> Counter[str]:
    """How many messages each reader received (the flood's confirmation emails left out)."""
    return Counter(r.recipients[0] for r in smtp.received if r.recipients[0] in READERS)


class Flood:
    """Sign-ups posted to `digest serve` one after another until stopped, each remembered
    with the moment its answer came."""

    def __init__(self, public: str) -> None:
        self.public = public
        self.stop = threading.Event()
        self.answered: list[tuple[str, float]] = []
        self.thread = threading.Thread(target=self._post, daemon=True)

    def _post(self) -> None:
        with httpx.Client(timeout=10) as client:
            number = 0
            while not self.stop.is_set():
                address = f"flood{number:04d}@example.net"
                answer = client.post(
                    f"{self.public}/subscribe",
                    data={"email": address, "name": "", "website": ""},
                )
                assert answer.status_code == 200, answer.text
                self.answered.append((address, time.monotonic()))
                number += 1

    def __enter__(self) -> Flood:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_a_backup_mid_send_restores_and_the_send_resumes_with_nothing_lost(
    project: Project, tmp_path: Path
) -> None:
    enable_signup(project)
    project.write_subscribers(*READERS)
    project.smtp.script.data_delay = 0.01
    project.smtp.script.hold_after = 100  # the rest of the send waits until the backup is taken
    copy = tmp_path / "backups" / "mid-send.sqlite3"
    env = {**os.environ, "DIGEST_NOW": project.now.isoformat()}
    digest = [sys.executable, "-m", "digest", "--config", str(project.config)]

    with serving(project, "--no-preview") as served, Flood(served.public) as flood:
        while len(flood.answered) < 20:  # the flood is under way before the send starts
            time.sleep(0.01)
        sending = subprocess.Popen(
            [*digest, "send"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while sum(issues(project.smtp).values()) < 60:
            assert sending.poll() is None, "the send finished before the backup could be taken"
            assert time.monotonic() < deadline, "the send never got going"
            time.sleep(0.01)
        # What the state had committed when the backup began (a sign-up is answered at once
        # and recorded as its confirmation email is handed over, so count rows, not answers).
        before_backup = {
            email
            for (email,) in statefile.rows(
                project.root / "state.sqlite3", "SELECT email FROM signups"
            )
        }
        assert before_backup, "no sign-up was recorded before the backup"
        answered = len(flood.answered)
        taken = subprocess.run([*digest, "backup", str(copy)], env=env, capture_output=True)
        assert taken.returncode == 0, taken.stderr
        assert sending.poll() is None, "the send finished before the backup was taken"
        project.smtp.script.release.set()
        _, errors = sending.communicate(timeout=120)
        assert sending.returncode == 0, errors
        while len(flood.answered) < answered + 20:  # and goes on after it
            time.sleep(0.01)

    # The first state finished the send: every reader once.
    assert issues(project.smtp) == dict.fromkeys(READERS, 1)
    recorded = {
        email
        for (email,) in statefile.rows(copy, "SELECT email FROM deliveries WHERE status = 'sent'")
    }
    assert 60 <= len(recorded) < len(READERS), "the backup was not taken mid-send"
    signed_up = {email for (email,) in statefile.rows(copy, "SELECT email FROM signups")}
    assert before_backup <= signed_up  # every sign-up recorded before the backup is in it
    everyone = {address for address, _ in flood.answered}
    assert signed_up <= everyone and len(everyone) > len(signed_up)

    # Restored into a new folder, against a mail server of its own.
    with SmtpServer() as smtp:
        elsewhere = Project(tmp_path / "elsewhere", project.feeds, smtp)
        elsewhere.root.mkdir()
        elsewhere.write_config()
        enable_signup(elsewhere)
        elsewhere.write_subscribers(*READERS)
        restored = elsewhere.run_process("restore", str(copy))
        assert restored.returncode == 0, restored.stderr
        assert backup.read_info(copy).sha256 in copy.with_name(copy.name + ".json").read_text()

        resumed = elsewhere.run_process("send")
        assert resumed.returncode == 0, resumed.stderr
        assert "(resumed issue 1)" in resumed.stdout
        again = issues(smtp)
    # Every reader the backup had not recorded as delivered got the issue, once; no reader it
    # had recorded got it again.
    assert again == dict.fromkeys(set(READERS) - recorded, 1)
    state = elsewhere.root / "state.sqlite3"
    assert {e for (e,) in statefile.rows(state, "SELECT email FROM signups")} == signed_up
    delivered = statefile.value(state, "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'")
    assert delivered == len(READERS)
