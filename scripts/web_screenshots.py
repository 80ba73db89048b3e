"""Screenshots of the public pages in headless Chromium: the sign-up form, its confirmation
page, the archive index and an issue page, from a `digest demo` run served by `digest serve`.

Writes docs/screenshots/signup-form.png, signup-confirm.png, archive-index.png and
archive-issue.png. Needs Debian's chromium and the dev extras (playwright).
"""

from __future__ import annotations

import os
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

from digest.config.schema import load_config  # noqa: E402
from digest.core.tokens import make_purpose_token  # noqa: E402
from digest.run.demo import run_demo  # noqa: E402
from digest.run.editions import signing_secret  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
PORT = 8025  # the demo's config points its links here
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


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        result = run_demo(Path(folder) / "demo", now)
        config = load_config(result.config)
        token = make_purpose_token(
            signing_secret(config), "confirm", "reader@example.org", now + timedelta(days=7)
        )
        command = [sys.executable, "-m", "digest", "--config", str(result.config), "serve"]
        server = subprocess.Popen(
            [*command, "--port", str(PORT), "--no-preview"],
            env={**os.environ, "DIGEST_NOW": now.isoformat()},
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for(PORT)
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
                browser.close()
        finally:
            server.terminate()
            server.wait()
    for name in ("signup-form", "signup-confirm", "archive-index", "archive-issue"):
        path = OUT / f"{name}.png"
        if shutil.which("pngquant"):
            subprocess.run(
                ["pngquant", "--force", "--skip-if-larger", "--output", str(path), str(path)],
                check=False,
            )
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
