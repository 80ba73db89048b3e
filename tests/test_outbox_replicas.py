"""Two `digest serve` replicas on one PostgreSQL database, both draining the outbox: a sign-up on
one gets its confirmation exactly once, the other confirms it, and a replica killed (SIGKILL)
while sending leaves its email to the other once the lease runs out. Real processes, a real
PostgreSQL (tests/support/postgres.py) and a real SMTP server (tests/support/smtpserver.py)."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.conftest import Project
from tests.support.postgres import connect as connect_database
from tests.support.postgres import postgres_cluster, postgres_url  # noqa: F401 (fixtures)
from tests.support.serving import Serving, serving
from tests.support.smtpserver import Received

PUBLIC = "https://example.org"
LEASE = 2  # seconds: signup.send_lease, short so that a takeover comes quickly
REAL_TIME = {"DIGEST_NOW": ""}  # leases run out only if time passes


def on_postgres(project: Project, url: str) -> None:
    text = project.config.read_text(encoding="utf-8").replace(
        "state: state.sqlite3", f"state: {url}"
    )
    text += f"signup:\n  enabled: true\n  send_lease: {LEASE}s\n"
    project.config.write_text(text, encoding="utf-8")


def sign_up(served: Serving, address: str) -> None:
    answer = httpx.post(
        f"{served.public}/subscribe",
        data={"email": address, "name": "", "website": ""},
        timeout=10,
    )
    assert answer.status_code == 200 and "Check your inbox" in answer.text


def mail_to(project: Project, address: str, count: int, timeout: float = 20) -> list[Received]:
    deadline = time.monotonic() + timeout
    while len(project.smtp.to(address)) < count:
        assert time.monotonic() < deadline, f"no mail for {address}"
        time.sleep(0.05)
    return project.smtp.to(address)


def confirm_link(message: Received, served: Serving) -> str:
    (link,) = set(re.findall(rf"{PUBLIC}/confirm\?token=[^\s\"<>]+", message.part("plain")))
    return link.replace(PUBLIC, served.public)


def outbox_rows(url: str) -> list[tuple[str, str]]:
    with connect_database(url, autocommit=True) as db:
        return [(kind, claim) for kind, claim in db.execute("SELECT kind, claim FROM outbox")]


def test_two_replicas_send_each_email_once_and_a_killed_one_is_taken_over(
    project: Project, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue("postgres_url")
    on_postgres(project, url)
    with (
        serving(project, "--no-preview", env=REAL_TIME) as first,
        serving(project, "--no-preview", env=REAL_TIME) as second,
    ):
        sign_up(first, "ann@example.com")
        (confirmation,) = mail_to(project, "ann@example.com", 1)
        assert confirmation.message["Subject"].startswith("Confirm your subscription")
        confirmed = httpx.post(confirm_link(confirmation, second), timeout=10)
        assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
        welcome = mail_to(project, "ann@example.com", 2)[1]
        assert welcome.message["Subject"].startswith("Welcome to")
        # Both replicas look at the outbox every second: over three leases, nothing goes twice.
        time.sleep(3 * LEASE)
        assert len(project.smtp.to("ann@example.com")) == 2
        assert outbox_rows(url) == []

        # The server holds the next message's DATA, then drops it (it is not delivered): the
        # replica sending it is killed meanwhile, its entry claimed.
        script, handler = project.smtp.script, project.smtp.handler
        held = handler.data_commands + 1
        script.data_delay = 4 * LEASE
        script.drop_at = {held}
        sign_up(first, "bob@example.com")
        deadline = time.monotonic() + 20
        while not (rows := outbox_rows(url)) or not rows[0][1]:
            assert time.monotonic() < deadline, "nobody claimed the confirmation"
            time.sleep(0.05)
        ((kind, claim),) = rows
        assert kind == "confirmation"
        holder, other = (
            (first, second) if claim.split(":")[1] == str(first.process.pid) else (second, first)
        )
        assert claim.split(":")[1] == str(holder.process.pid)
        while handler.data_commands < held:
            assert time.monotonic() < deadline, "the claimed email never reached DATA"
            time.sleep(0.05)
        holder.process.kill()
        holder.process.wait(timeout=10)
        script.data_delay = 0
        # The survivor sends it once the lease is over, and only once.
        (bob,) = mail_to(project, "bob@example.com", 1, timeout=30)
        assert bob.message["Subject"].startswith("Confirm your subscription")
        time.sleep(2 * LEASE)
        assert len(project.smtp.to("bob@example.com")) == 1
        assert outbox_rows(url) == []
        assert other.process.poll() is None
    assert "Traceback" not in other.stderr
