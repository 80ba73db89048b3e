"""A newsletter whose every public page is on: sign-up with sections, the archive, a weekly
schedule, and links that point at the `digest serve` the test runs (so every link is followed
to the real app, not to example.org)."""

from __future__ import annotations

import re
import time

from tests.conftest import Project
from tests.support.smtpserver import Received, free_port

READER = "yara@example.net"


def reader_pages_project(project: Project, extra: str = "") -> int:
    """Configure `project` for the readers' pages; the port `digest serve` must listen on."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    project.write_config(
        'schedule:\n  day: monday\n  time: "08:00"\n  timezone: Europe/London\n'
        "archive:\n  enabled: true\n"
        "signup:\n  enabled: true\n"
        "  privacy_url: https://example.org/privacy\n" + extra
    )
    text = project.config.read_text(encoding="utf-8")
    text = text.replace(
        '  unsubscribe_url: "https://example.org/unsubscribe?token={token}"\n',
        f'  unsubscribe_url: "{base}/unsubscribe?token={{token}}"\n'
        f"  archive_url: {base}\n"
        "  choosable_sections: true\n",
    )
    project.config.write_text(text, encoding="utf-8")
    return port


def mail_to(project: Project, address: str, count: int) -> list[Received]:
    """The first `count` messages to `address`, waiting up to 20 s for them."""
    deadline = time.monotonic() + 20
    while len(project.smtp.to(address)) < count:
        assert time.monotonic() < deadline, f"mail {count} for {address} did not arrive"
        time.sleep(0.05)
    return project.smtp.to(address)


def link_in(message: Received, base: str, path: str) -> str:
    """The link to `path` (with its token) in a message's text part."""
    found = re.search(rf"{re.escape(base)}/{path}\?token=\S+", message.part("plain"))
    assert found, f"no {path} link in the message"
    return found.group(0)
