"""Collection benchmark: 50 feeds on 127.0.0.1 answering after 200 ms, concurrent vs one by one.

Run with `.venv/bin/python bench/collect.py`. Prints wall-clock times for collect() at the default
concurrency and at 50, next to fetching and parsing the same feeds one at a time.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digest.collect import collect
from digest.config import FeedConfig, FetchConfig
from digest.models import FetchStatus
from tests.support.feedserver import FeedServer

FEEDS = 50
DELAY = 0.2
SAMPLE_PATH = Path(__file__).resolve().parents[1] / "digest" / "samples" / "blog.xml"
SAMPLE = SAMPLE_PATH.read_bytes()


def timed(feeds: list[FeedConfig], fetch: FetchConfig) -> float:
    """Seconds for one collect() over the feeds; fails loudly if any feed did not come back."""
    started = time.perf_counter()
    results = collect(feeds, fetch, Path("."), {}, datetime.now(UTC))
    elapsed = time.perf_counter() - started
    assert all(r.status is FetchStatus.OK and len(r.posts) == 8 for r in results)
    return elapsed


def main() -> None:
    """Serve the feeds, then time each way of collecting them."""
    with FeedServer() as server:
        feeds = [
            FeedConfig(name=f"Feed {n}", url=server.add(f"/feed{n}.xml", SAMPLE, delay=DELAY))
            for n in range(FEEDS)
        ]
        default = FetchConfig()
        timed(feeds[:2], default)  # warm up imports and the parser
        concurrent_default = timed(feeds, default)
        concurrent_all = timed(feeds, FetchConfig(concurrency=FEEDS))
        one_by_one = sum(timed([feed], default) for feed in feeds)
        from_disk = [FeedConfig(name="local", url=str(SAMPLE_PATH))] * FEEDS
        parse_only = timed(from_disk, FetchConfig(concurrency=1))
    print(
        f"{FEEDS} feeds of {len(SAMPLE):,} bytes (8 posts),"
        f" each answering after {DELAY * 1000:.0f} ms"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"  one by one (collect() per feed):  {one_by_one:6.2f} s")
    print(f"  collect(), concurrency {default.concurrency} (default): {concurrent_default:6.2f} s")
    print(f"  collect(), concurrency {FEEDS}:           {concurrent_all:6.2f} s")
    print(f"  parsing alone, {FEEDS} files from disk:  {parse_only:6.2f} s")


if __name__ == "__main__":
    main()
