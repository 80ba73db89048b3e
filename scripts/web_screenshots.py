"""Screenshots of the web pages in headless Chromium: the sign-up form, its confirmation
page, the archive index and an issue page, from a `digest demo` run served by `digest serve`;
and the workbench's Reports page, after a made-up half year of weekly issues is written into
the demo's state (`seed_history`: invented counts, no real person).

Writes docs/screenshots/signup-form.png, signup-confirm.png, archive-index.png,
archive-issue.png and workbench-reports.png. Needs Debian's chromium and the dev extras
(playwright).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digest import store  # noqa: E402
from digest.config.schema import Config, load_config  # noqa: E402
from digest.core.models import Delivery, DeliveryStatus  # noqa: E402
from digest.core.tokens import make_purpose_token  # noqa: E402
from digest.run.demo import run_demo  # noqa: E402
from digest.run.editions import signing_secret  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
PORT = 8025  # the demo's config points its links here
WORKBENCH_PORT = 8026
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("digest serve did not start")


def seed_history(config: Config, now: datetime, weeks: int = 20) -> None:
    """Weekly issues before the demo's own, to a list that grows from 400 readers, with a few
    bounces, unsubscribes and preference changes each, and one issue with too many complaints:
    something for the Reports page's charts to show. Counts only; the addresses are made up."""
    readers = 400
    with store.open(config) as state, state.transaction():
        for week in range(weeks, 0, -1):
            sent_at = now - timedelta(weeks=week)
            issue = state.ledger.create_issue(
                subject=f"Week {weeks - week + 1}", html="", text="", posts=(), now=sent_at
            )
            for number in range(readers):
                status = DeliveryStatus.FAILED if number % 97 == 5 else DeliveryStatus.SENT
                state.ledger.record_delivery(
                    issue, Delivery(f"reader{number}@example.org", status), sent_at
                )
            state.ledger.finish_issue(issue, sent_at)
            complaints = 2 if week == 6 else week % 2
            for number in range(week % 3 + complaints):
                state.bounces.record(
                    report_key=f"seed-{issue}-{number}",
                    now=sent_at + timedelta(days=1),
                    source="imap",
                    kind="complaint" if number < complaints else "hard",
                    outcome="suppressed",
                    email=f"reader{number}@example.org",
                    issue_id=issue,
                )
            for _ in range(week % 4 + 1):
                state.reports.record(
                    store.ReaderEvent.UNSUBSCRIBE, issue, sent_at + timedelta(days=2)
                )
            for _ in range(week % 3):
                state.reports.record(
                    store.ReaderEvent.PREFERENCES, issue, sent_at + timedelta(days=1)
                )
            joined = 6 + week % 5
            for number in range(joined):
                state.signups.add(
                    f"new{week}-{number}@example.org", "", None, "form", sent_at + timedelta(days=3)
                )
            readers += joined - week % 4 - 1


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        result = run_demo(Path(folder) / "demo", now)
        config = load_config(result.config)
        # The Reports page is shown from a state of its own, so the demo's issue stays apart.
        history = result.config.with_name("config-reports.yaml")
        text = result.config.read_text(encoding="utf-8")
        history.write_text(re.sub(r"(?m)^state: .*$", "state: reports.sqlite3", text), "utf-8")
        seed_history(load_config(history), now)
        token = make_purpose_token(
            signing_secret(config), "confirm", "reader@example.org", now + timedelta(days=7)
        )
        command = [sys.executable, "-m", "digest", "--config", str(result.config), "serve"]
        server = subprocess.Popen(
            [*command, "--port", str(PORT), "--no-preview"],
            env={**os.environ, "DIGEST_NOW": now.isoformat()},
            stdout=subprocess.DEVNULL,
        )
        workbench = subprocess.Popen(
            [sys.executable, "-m", "digest", "--config", str(history), "serve"]
            + ["--port", "0", "--workbench-port", str(WORKBENCH_PORT)],
            env={**os.environ, "DIGEST_NOW": now.isoformat()},
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for(PORT)
            wait_for(WORKBENCH_PORT)
            base = f"http://127.0.0.1:{PORT}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 760, "height": 860})
                page.goto(f"{base}/subscribe")
                page.get_by_label("Email address").fill("reader@example.org")
                page.get_by_label("Name").fill("Rhiannon")
                page.screenshot(path=str(OUT / "signup-form.png"), full_page=True)
                page.goto(f"{base}/confirm?token={token}")
                page.screenshot(path=str(OUT / "signup-confirm.png"), full_page=True)
                page.set_viewport_size({"width": 900, "height": 700})
                page.goto(f"{base}/archive/")
                page.screenshot(path=str(OUT / "archive-index.png"), full_page=True)
                page.locator("main a[href*='/issues/']").first.click()
                page.wait_for_load_state("load")
                page.screenshot(path=str(OUT / "archive-issue.png"))
                page.set_viewport_size({"width": 1000, "height": 900})
                page.goto(f"http://127.0.0.1:{WORKBENCH_PORT}/reports")
                page.locator("#rates summary").click()
                page.screenshot(path=str(OUT / "workbench-reports.png"), full_page=True)
                browser.close()
        finally:
            for process in (server, workbench):
                process.terminate()
                process.wait()
    for name in (
        "signup-form",
        "signup-confirm",
        "archive-index",
        "archive-issue",
        "workbench-reports",
    ):
        path = OUT / f"{name}.png"
        if shutil.which("pngquant"):
            subprocess.run(
                ["pngquant", "--force", "--skip-if-larger", "--output", str(path), str(path)],
                check=False,
            )
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
