"""How long `digest preview` takes for a 40-post issue, next to premailer alone, in one run.

Feeds are served from 127.0.0.1; the whole command is timed, Python start-up included. The
project has a state file (as after its first send), so an unchanged issue's preview is served
from the preview cache; the "cache cold" row empties the cache before each run, which is what
every preview cost before the cache (the baseline). The runs of each row are interleaved with
the others' and the median shown.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.goals import record
from digest import store
from digest.config.schema import load_config
from digest.issue.prepare import Collection, prepare
from digest.render.inline import inline_css
from digest.render.issue import HTML_TEMPLATE, render_issue, template_context
from digest.render.personalise import new_marker
from digest.render.templates import template_environment
from tests.support import statefile
from tests.support.feedserver import FeedServer

RUNS = 7
NOW = datetime.now(UTC)


def feed(name: str, count: int) -> str:
    items = "".join(
        f"<item><title>{name} post {n}: a realistic headline about public services</title>"
        f"<link>https://example.org/{name}/{n}</link><guid>{name}-{n}</guid>"
        f"<pubDate>{format_datetime(NOW - timedelta(hours=n))}</pubDate>"
        f"<author>writer{n}@example.org (Writer {n})</author>"
        "<description>&lt;p&gt;"
        + "A paragraph of summary text about the post. " * 8
        + "&lt;/p&gt;</description></item>"
        for n in range(count)
    )
    channel = f"<channel><title>{name}</title>{items}</channel>"
    return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'


def main() -> None:
    with FeedServer() as server, tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        server.add("/blog.xml", feed("blog", 20))
        server.add("/news.xml", feed("news", 20))
        (root / "subscribers.csv").write_text("email,name\nreader@example.org,Reader\n")
        (root / "config.yaml").write_text(
            "newsletter:\n  title: Bench Weekly\n  from: bench@example.org\n"
            f"feeds:\n  - name: Blog\n    url: {server.url('/blog.xml')}\n"
            f"  - name: News\n    url: {server.url('/news.xml')}\n"
            "digest:\n  max_posts_per_section: 20\n"
        )
        command = [
            sys.executable,
            "-m",
            "digest",
            "--config",
            str(root / "config.yaml"),
            "preview",
            "--out",
            str(root / "preview.html"),
        ]
        store.open(load_config(root / "config.yaml")).close()  # as after a first send
        state_file = load_config(root / "config.yaml").state_path

        def cold() -> None:
            statefile.execute(state_file, "DELETE FROM preview_cache")

        # As on a user's machine, compiled bytecode is kept between runs.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        config_text = (root / "config.yaml").read_text(encoding="utf-8")
        (root / "fast.yaml").write_text(config_text + "inliner: css_inline\n", encoding="utf-8")
        fast_command = [*command]
        fast_command[fast_command.index(str(root / "config.yaml"))] = str(root / "fast.yaml")

        def timed(run: list[str]) -> float:
            started = time.perf_counter()
            subprocess.run(run, check=True, capture_output=True, env=env)
            return time.perf_counter() - started

        timed(command)  # warm the caches
        timed(fast_command)
        html = (root / "preview.html").read_text(encoding="utf-8")
        # Interleaved, so that a drift in the machine's speed touches every row alike.
        timings, cold_timings, fast_timings, startup = [], [], [], []
        for _ in range(RUNS):
            cold()
            cold_timings.append(timed(command))  # renders, and fills the cache
            timings.append(timed(command))  # served from the cache
            cold()
            fast_timings.append(timed(fast_command))
            startup.append(timed([sys.executable, "-c", "import digest.cli.main"]))

        config = load_config(root / "config.yaml")
        with store.open(config, read_only=True) as state:
            issue = prepare(config, state, datetime.now(UTC), Collection(record=False)).issue
        raw = (
            template_environment(config.templates_dir)
            .get_template(HTML_TEMPLATE)
            .render(template_context(issue, config, new_marker()))
        )

    premailer_runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        inline_css(raw)
        premailer_runs.append(time.perf_counter() - started)
    render_runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        render_issue(issue, config)
        render_runs.append(time.perf_counter() - started)
    print(f"digest preview, {issue.post_count}-post issue ({len(html) / 1024:.0f} KB HTML,")
    print(f"{RUNS} runs, median):")
    rows = [
        ("whole command, unchanged issue (from the cache)", timings),
        ("whole command, cache cold (baseline: renders)", cold_timings),
        ("cache cold with inliner: css_inline", fast_timings),
        ("importing digest (python -c 'import digest.cli.main')", startup),
        ("render_issue in-process (templates + inline)", render_runs),
        ("premailer alone on the same HTML", premailer_runs),
    ]
    for label, runs in rows:
        print(f"  {label + ':':<50}{statistics.median(runs) * 1000:7.0f} ms")
    cached = statistics.median(timings)
    print(f"  goal: under 400 ms for the whole command: {'met' if cached < 0.4 else 'NOT met'}")
    record(
        f"`digest preview`, {issue.post_count}-post issue, whole command",
        f"{statistics.median(cold_timings) * 1000:.0f} ms (renders, as before the cache)",
        f"{cached * 1000:.0f} ms (unchanged issue, from the cache)",
        "under 400 ms",
        cached < 0.4,
    )


if __name__ == "__main__":
    main()
