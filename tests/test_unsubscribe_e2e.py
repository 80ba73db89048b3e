"""One-click unsubscribe through the real `digest serve` process, with a real send around it."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import httpx

from digest.core.tokens import make_token
from tests.conftest import Project, post
from tests.support import statefile
from tests.support.serving import digest_serve

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}


def suppressions(project: Project) -> list[tuple[str, str]]:
    with statefile.connect(project.root / "state.sqlite3") as db:
        return list(db.execute("SELECT email, source FROM suppressions ORDER BY email"))


def unsubscribe_link(project: Project, address: str, base: str) -> str:
    """The https link from the subscriber's List-Unsubscribe header, pointed at the local server."""
    message = project.smtp.to(address)[-1].message
    found = re.search(r"<(https://[^>]+)>", message["List-Unsubscribe"])
    assert found, message["List-Unsubscribe"]
    link = urlsplit(found.group(1))
    assert link.path == "/unsubscribe"
    return f"{base}{link.path}?{link.query}"


def send_with_a_new_post(project: Project) -> set[str]:
    """Publish a new post, send, and return who received the new issue."""
    before = len(project.smtp.received)
    project.serve("/blog.xml", [post(3, 0.5), post(1), post(2, 2)])
    later = project.now + timedelta(days=1)
    result = project.run("send", now=later)
    assert result.exit_code == 0, result.output
    return {r for item in project.smtp.received[before:] for r in item.recipients}


def test_one_click_from_a_received_message_stops_mail_to_that_subscriber_only(
    project: Project,
) -> None:
    assert project.run("send").exit_code == 0
    with digest_serve(project) as base:
        link = unsubscribe_link(project, "ann@example.com", base)
        html = project.smtp.to("ann@example.com")[-1].part("html")
        assert urlsplit(link).query.removeprefix("token=") in html
        confirm = httpx.get(link)
        assert confirm.status_code == 200
        assert "<form" in confirm.text
        assert suppressions(project) == []
        response = httpx.post(
            link, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK, follow_redirects=False
        )
        assert response.status_code == 200
        assert "location" not in response.headers
        assert "ann@example.com" in response.text
    assert suppressions(project) == [("ann@example.com", "one-click")]
    assert send_with_a_new_post(project) == {"bob@example.com"}
    history = project.run("history")
    assert "1 unsubscribed addresses are skipped on every send." in history.output


def test_tampered_or_foreign_tokens_get_400_and_change_nothing(project: Project) -> None:
    assert project.run("send").exit_code == 0
    with digest_serve(project) as base:
        link = unsubscribe_link(project, "ann@example.com", base)
        tampered = link[:-3] + ("A" if link[-3] != "A" else "B") + link[-2:]
        # 0.1.0's readable form of ann@example.com's token, with bob's address put in.
        readable_ann = "YW5uQGV4YW1wbGUuY29t.juqfs9iyKvCWxQBTbt--mQ"
        bob_as_ann = f"{base}/unsubscribe?token={readable_ann.replace('YW5u', 'Ym9i', 1)}"
        foreign = f"{base}/unsubscribe?token={make_token('another-secret', 'ann@example.com')}"
        for bad in (tampered, bob_as_ann, foreign, f"{base}/unsubscribe"):
            response = httpx.post(bad, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
            assert response.status_code == 400, bad
            assert "not valid" in response.text
        assert httpx.get(f"{base}/nowhere").status_code == 404
    assert suppressions(project) == []
    assert send_with_a_new_post(project) == {"ann@example.com", "bob@example.com"}


def test_tokens_survive_restarts_with_the_secret_kept_in_the_state(project: Project) -> None:
    project.config.write_text(project.config.read_text().replace("secret: test-secret\n", ""))
    with digest_serve(project):
        pass  # the first start creates the secret in the state database
    with statefile.connect(project.root / "state.sqlite3") as db:
        (secret,) = db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
    assert project.run("send").exit_code == 0
    with digest_serve(project) as base:
        link = unsubscribe_link(project, "bob@example.com", base)
        # The link names issue 1, the issue its message belongs to.
        assert urlsplit(link).query == f"token={make_token(secret, 'bob@example.com', 1)}"
        response = httpx.post(link, content=b"List-Unsubscribe=One-Click", headers=ONE_CLICK)
        assert response.status_code == 200
    assert suppressions(project) == [("bob@example.com", "one-click")]


def test_serve_reports_a_port_in_use_as_one_line(project: Project) -> None:
    with digest_serve(project) as base:
        port = base.rsplit(":", 1)[1]
        result = project.run_process("serve", "--port", port)
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr
