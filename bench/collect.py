"""Collection benchmark: 50 feeds, each on its own host and answering after 200 ms, in one run.

Run with `.venv/bin/python bench/collect.py`. Each feed is a real HTTP server on its own loopback
address (127.0.0.2 to 127.0.0.51, which Linux routes to lo). Prints the whole `digest preview`
command (Python start-up included) at the defaults, beside the same command with the previous
release's behaviour (one global limit of 8, fetch.per_host not limiting: the baseline), and
collect() in-process, one by one, and parsing alone. With no state file the preview renders
the issue every time; the row with a state file (as after a first send) shows the same command
when the unchanged issue comes from the preview cache.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.goals import record
from digest import store
from digest.config.schema import FeedConfig, FetchConfig, load_config
from digest.core.models import FetchStatus
from digest.feeds.collect import collect
from tests.support.feedserver import FeedServer

FEEDS = 50
DELAY = 0.2
RUNS = 5
GOAL = 1.5
SAMPLE_PATH = Path(__file__).resolve().parents[1] / "digest" / "samples" / "blog.xml"
SAMPLE = SAMPLE_PATH.read_bytes()
BEFORE = "fetch:\n  concurrency: 8\n  per_host: 8\n"  # the previous defaults' behaviour


def timed(feeds: list[FeedConfig], fetch: FetchConfig) -> float:
    """Seconds for one collect() over the feeds; fails loudly if any feed did not come back."""
    started = time.perf_counter()
    results = collect(feeds, fetch, Path("."), {}, datetime.now(UTC))
    elapsed = time.perf_counter() - started
    assert all(r.status is FetchStatus.OK and len(r.posts) == 8 for r in results)
    return elapsed


def preview_seconds(
    root: Path, feeds: list[FeedConfig], extra: str, *, state_file: bool = False
) -> float:
    """Median seconds of the whole `digest preview` command over the feeds; with `state_file`,
    as after a first send, so that the unchanged issue comes from the preview cache."""
    listed = "".join(f"  - name: {feed.name}\n    url: {feed.url}\n" for feed in feeds)
    config = root / "config.yaml"
    config.write_text(
        f"newsletter:\n  title: Bench Weekly\n  from: bench@example.org\nfeeds:\n{listed}{extra}",
        encoding="utf-8",
    )
    loaded = load_config(config)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{loaded.state_path}{suffix}").unlink(missing_ok=True)
    if state_file:
        store.open(loaded).close()
    command = [sys.executable, "-m", "digest", "--config", str(config), "preview", "--out"]
    command.append(str(root / "preview.html"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(command, check=True, capture_output=True, env=env)  # warm the caches
    timings = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    """Serve the feeds, each on its own host, then time each way of collecting them."""
    with ExitStack() as stack, tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "subscribers.csv").write_text("email,name\nreader@example.org,Reader\n")
        servers = [stack.enter_context(FeedServer(f"127.0.0.{n + 2}")) for n in range(FEEDS)]
        feeds = [
            FeedConfig(name=f"Feed {n}", url=server.add(f"/feed{n}.xml", SAMPLE, delay=DELAY))
            for n, server in enumerate(servers)
        ]
        default = FetchConfig()
        timed(feeds[:2], default)  # warm up imports and the parser
        preview_now = preview_seconds(root, feeds, "")
        preview_cached = preview_seconds(root, feeds, "", state_file=True)
        preview_before = preview_seconds(root, feeds, BEFORE)
        concurrent_default = timed(feeds, default)
        concurrent_before = timed(feeds, FetchConfig(concurrency=8, per_host=8))
        one_by_one = sum(timed([feed], default) for feed in feeds)
        from_disk = [FeedConfig(name="local", url=str(SAMPLE_PATH))] * FEEDS
        parse_only = timed(from_disk, FetchConfig(concurrency=1))
        peaks = max(server.peak for server in servers)
    print(
        f"{FEEDS} feeds of {len(SAMPLE):,} bytes (8 posts), each on its own host"
        f" (127.0.0.2-{FEEDS + 1}) answering after {DELAY * 1000:.0f} ms"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"  whole `digest preview`, defaults ({RUNS} runs, median):        {preview_now:6.2f} s")
    print(f"  whole `digest preview`, one global limit of 8 (baseline):  {preview_before:6.2f} s")
    print(f"  the same, state file present (issue from the preview cache): {preview_cached:6.2f} s")
    print(
        f"  collect(), defaults (concurrency {default.concurrency}, per_host {default.per_host}):"
        f"       {concurrent_default:6.2f} s"
    )
    print(f"  collect(), one global limit of 8 (baseline):              {concurrent_before:6.2f} s")
    print(f"  collect() one feed at a time:                              {one_by_one:6.2f} s")
    print(f"  parsing alone, {FEEDS} files from disk:                      {parse_only:6.2f} s")
    print(f"  most requests one host answered at once: {peaks}")
    met = "met" if preview_now < GOAL else "NOT met"
    print(f"  goal: whole preview under {GOAL} s, start-up included: {met}")
    record(
        f"{FEEDS} feeds on {FEEDS} hosts, {DELAY * 1000:.0f} ms each, whole `digest preview`",
        f"{preview_before:.2f} s (one global limit of 8)",
        f"{preview_now:.2f} s ({preview_cached:.2f} s from the preview cache)",
        f"under {GOAL} s",
        preview_now < GOAL,
    )


if __name__ == "__main__":
    main()
