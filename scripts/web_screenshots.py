"""Screenshots of every public page a reader sees, at 1280 and 375 px wide, in headless Chromium:
sign-up (with and without an error), check your inbox, confirm, subscribed, preferences,
unsubscribe (confirm and done, with "Subscribe again"), subscribed again, the archive index,
an issue, the feed's page and the 404 page; plus the sign-up form in dark mode. From a
`digest demo` run served by `digest serve`. And the workbench's Reports page, after a made-up
half year of weekly issues is written into a state of its own (`seed_history`: invented
counts, no real person).

Writes docs/screenshots/page-NAME-WIDTH.png (and page-signup-375-dark.png) and
workbench-reports.png. Needs Debian's chromium and the dev extras (playwright).
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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digest import store  # noqa: E402
from digest.config.schema import Config, load_config  # noqa: E402
from digest.core.models import Delivery, DeliveryStatus  # noqa: E402
from digest.core.tokens import make_purpose_token, make_token  # noqa: E402
from digest.run.demo import run_demo  # noqa: E402
from digest.run.editions import signing_secret  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
PORT = 8025  # the demo's config points its links here
WORKBENCH_PORT = 8026
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
WIDTHS = (1280, 375)
READER = "amara.okafor@example.com"  # in the demo's subscriber file


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
            if week == 1:  # the latest seeded issue was sent with click counting on
                links = state.clicks.record_links(
                    issue, [f"https://example.org/blog/post-{number}" for number in range(1, 7)]
                )
                clicked_at = sent_at + timedelta(days=1)
                for number, link in enumerate(links.values()):
                    for click in range(40 - 6 * number):
                        state.clicks.count(
                            issue, link, clicked_at, scanner=click % 5 == 0, window=timedelta()
                        )


def pages(base: str, secret: str, now: datetime) -> list[tuple[str, Callable[[Any], None]]]:
    """(name, how to reach the page from a fresh tab) for every page shown."""
    week = now + timedelta(days=7)
    confirm = make_purpose_token(secret, "confirm", "reader@example.org", week)
    preferences = make_purpose_token(secret, "preferences", READER, week)
    unsubscribe = make_token(secret, READER)

    def go(path: str) -> Callable[[Any], None]:
        return lambda page: page.goto(base + path)

    def signup_error(page: Any) -> None:
        page.goto(f"{base}/subscribe")
        page.get_by_label("Email address").fill("reader@example")
        page.get_by_role("button", name="Subscribe").click()

    def check_inbox(page: Any) -> None:
        page.goto(f"{base}/subscribe")
        page.get_by_label("Email address").fill("reader@example.org")
        page.get_by_role("button", name="Subscribe").click()

    def subscribed(page: Any) -> None:
        page.goto(f"{base}/confirm?token={confirm}")
        page.get_by_role("button", name="Confirm").click()

    def unsubscribed(page: Any) -> None:
        page.goto(f"{base}/unsubscribe?token={unsubscribe}")
        page.get_by_role("button", name="Unsubscribe").click()

    def subscribed_again(page: Any) -> None:
        unsubscribed(page)
        page.get_by_role("button", name="Subscribe again").click()

    def issue(page: Any) -> None:
        page.goto(f"{base}/archive/")
        page.locator("main a[href*='/issues/']").first.click()
        page.wait_for_load_state("load")

    def filled_form(page: Any) -> None:
        page.goto(f"{base}/subscribe")
        page.get_by_label("Email address").fill("reader@example.org")
        page.get_by_label("Name").fill("Rhiannon")

    return [
        ("signup", filled_form),
        ("signup-error", signup_error),
        ("check-inbox", check_inbox),
        ("confirm", go(f"/confirm?token={confirm}")),
        ("subscribed", subscribed),
        ("preferences", go(f"/preferences?token={preferences}")),
        ("unsubscribe", go(f"/unsubscribe?token={unsubscribe}")),
        ("unsubscribed", unsubscribed),
        ("subscribed-again", subscribed_again),
        ("archive-index", go("/archive/")),
        ("archive-issue", issue),
        ("feed", go("/feed/")),
        ("not-found", go("/no-such-page")),
    ]


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as folder:
        result = run_demo(Path(folder) / "demo", now)
        # The Reports page is shown from a state of its own, so the demo's issue stays apart.
        history = result.config.with_name("config-reports.yaml")
        text = result.config.read_text(encoding="utf-8")
        history.write_text(re.sub(r"(?m)^state: .*$", "state: reports.sqlite3", text), "utf-8")
        seed_history(load_config(history), now)
        secret = signing_secret(load_config(result.config))
        command = [sys.executable, "-m", "digest", "--config", str(result.config), "serve"]
        server = subprocess.Popen(
            [*command, "--port", str(PORT), "--no-preview"],
            env={**os.environ, "DIGEST_NOW": now.isoformat()},
            stdout=subprocess.DEVNULL,
        )
        reports_command = [sys.executable, "-m", "digest", "--config", str(history), "serve"]
        workbench = subprocess.Popen(
            [*reports_command, "--port", "0", "--workbench-port", str(WORKBENCH_PORT)],
            env={**os.environ, "DIGEST_NOW": now.isoformat()},
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for(PORT)
            wait_for(WORKBENCH_PORT)
            base = f"http://127.0.0.1:{PORT}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                for width in WIDTHS:
                    for name, reach in pages(base, secret, now):
                        page = browser.new_page(viewport={"width": width, "height": 900})
                        reach(page)
                        path = OUT / f"page-{name}-{width}.png"
                        # An issue page is as long as its email: its first screen shows enough.
                        page.screenshot(path=str(path), full_page=name != "archive-issue")
                        written.append(path)
                        page.close()
                page = browser.new_page(viewport={"width": 375, "height": 900})
                page.emulate_media(color_scheme="dark")
                pages(base, secret, now)[0][1](page)
                path = OUT / "page-signup-375-dark.png"
                page.screenshot(path=str(path), full_page=True)
                written.append(path)
                page = browser.new_page(viewport={"width": 1000, "height": 900})
                page.goto(f"http://127.0.0.1:{WORKBENCH_PORT}/reports")
                page.locator("#rates summary").click()
                path = OUT / "workbench-reports.png"
                page.screenshot(path=str(path), full_page=True)
                written.append(path)
                browser.close()
        finally:
            for process in (server, workbench):
                process.terminate()
                process.wait()
    for path in written:
        if shutil.which("pngquant"):
            subprocess.run(
                ["pngquant", "--force", "--skip-if-larger", "--output", str(path), str(path)],
                check=False,
            )
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
