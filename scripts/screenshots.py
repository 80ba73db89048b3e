"""Screenshots of the default email in headless Chromium: 600 and 375 px wide, light and dark.

Renders the sample issue `digest check` uses (every feature on) with the example config.yaml,
swaps the sample image URLs for local placeholder images (the browser gets no network), measures
the page height in a first pass and writes docs/screenshots/email-<width>-<scheme>.png.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digest.config.schema import load_config  # noqa: E402
from digest.core.models import Subscriber  # noqa: E402
from digest.issue.samples import sample_config, sample_issue  # noqa: E402
from digest.render.issue import render_issue  # noqa: E402
from digest.render.personalise import personalise  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
WIDTHS = (600, 375)
SCHEMES = ("light", "dark")
PALETTE = ("#c8553d", "#2d7d6f", "#588b8b", "#f28f3b", "#5b5f97", "#8e7dbe")
MEASURE = (
    "<script>addEventListener('load', () => {document.body.setAttribute('data-height',"
    " document.documentElement.scrollHeight); document.body.setAttribute('data-dark',"
    " matchMedia('(prefers-color-scheme: dark)').matches)})</script>"
)


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("chromium is not installed: run `make screenshots` (it installs Debian's chromium)")


def placeholder_images(folder: Path, accent: str) -> dict[str, str]:
    """Small SVGs standing in for the sample logo and thumbnails, by the URL they replace."""
    logo = folder / "logo.svg"
    logo.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="160" height="40" viewBox="0 0 160 40">'
        f'<circle cx="20" cy="20" r="14" fill="{accent}"/>'
        '<path d="M13 20h14M20 13v14" stroke="#ffffff" stroke-width="4"/>'
        f'<text x="42" y="27" font-family="Helvetica, Arial, sans-serif" font-size="19"'
        f' font-weight="bold" fill="{accent}">Collaborate</text></svg>'
    )
    images = {"https://example.org/logo.png": logo.as_uri()}
    for number in range(1, 40):
        colour = PALETTE[number % len(PALETTE)]
        path = folder / f"thumb-{number}.svg"
        path.write_text(
            '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="72" viewBox="0 0 96 72">'
            f'<rect width="96" height="72" fill="{colour}"/>'
            '<circle cx="70" cy="22" r="10" fill="#ffffff" opacity="0.7"/>'
            '<path d="M0 72 L30 38 L52 58 L66 46 L96 72 Z" fill="#ffffff" opacity="0.45"/></svg>'
        )
        images[f"https://example.org/images/{number}.jpg"] = path.as_uri()
    return images


def run_chromium(
    browser: str, profile: Path, page: Path, width: int, height: int, dark: bool, *action: str
) -> str:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--virtual-time-budget=3000",
        *(("--force-dark-mode", "--blink-settings=preferredColorScheme=0") if dark else ()),
        *action,
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        sys.exit(f"chromium failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return result.stdout


def shrink(png: Path) -> None:
    """Quantise to a 256-colour palette with pngquant when it is installed (about 4x smaller)."""
    pngquant = shutil.which("pngquant")
    if pngquant:
        command = [pngquant, "--force", "--skip-if-larger", "--strip", "--output", str(png)]
        subprocess.run([*command, "--", str(png)], check=False, timeout=60)


def main() -> None:
    config = sample_config(load_config(ROOT / "config.yaml", environ={}))
    rendered = render_issue(sample_issue(config, 3), config)
    reader = Subscriber(email="reader@example.org", name="Sam Reader")
    html, _ = personalise(rendered, reader, "https://news.example.org/unsubscribe?token=sample")
    browser = chromium()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        temp = Path(folder)
        for url, local in placeholder_images(temp, config.theme.accent).items():
            html = html.replace(url, local)
        page, probe = temp / "email.html", temp / "probe.html"
        page.write_text(html, encoding="utf-8")
        probe.write_text(html.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
        for width in WIDTHS:
            for scheme in SCHEMES:
                dark = scheme == "dark"
                dom = run_chromium(browser, temp / "profile", probe, width, 800, dark, "--dump-dom")
                height = re.search(r'data-height="(\d+)"', dom)
                applied = re.search(r'data-dark="(true|false)"', dom)
                if not height or not applied or (applied.group(1) == "true") != dark:
                    sys.exit(f"could not measure the page or set the {scheme} scheme")
                target = OUT / f"email-{width}-{scheme}.png"
                run_chromium(
                    browser,
                    temp / "profile",
                    page,
                    width,
                    int(height.group(1)),
                    dark,
                    f"--screenshot={target}",
                )
                shrink(target)
                size = f"{target.stat().st_size / 1024:.0f} KB"
                print(f"{target.relative_to(ROOT)}: {width}x{height.group(1)}, {scheme}, {size}")


if __name__ == "__main__":
    main()
