"""`digest history` over a year of weekly issues, inside the retention window and once their
deliveries are compacted.

Builds a SQLite state with ISSUES issues, each delivered to READERS addresses (written straight
into the file with the issue's tallies, as a send would leave it) and times `digest history`
(the real command, a separate process, over every issue) and the library call behind it: an
issue inside the window is read from its one row of tallies and its first failed deliveries, so
the time does not grow with the readers it had. The baseline beside it is what history did
before it kept tallies: count every delivery row of each issue and list every failed one, in
the same run. Then the issues are compacted as `retention.deliveries` would, and timed again
(one row of counts each). Last, one issue of BIG_ISSUE deliveries is compacted on its own, to
show what a compaction of a large list costs.

Run from the project folder: `.venv/bin/python bench/history.py`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.goals import record
from digest import store
from digest.config.schema import load_config
from digest.run.history import history
from tests.support import statefile

ISSUES = 52
READERS = 20_000  # per issue, before compaction (1,040,000 delivery rows in all)
BIG_ISSUE = 1_000_000
ROUNDS = 5
LIMIT = ("history", "--limit", str(ISSUES))
GOAL = 0.3  # seconds for `digest history` over 52 issues, compacted or not
NOW = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
CONFIG = """newsletter:
  title: Bench Weekly
  from: "Bench <digest@example.org>"
  unsubscribe_url: "https://example.org/unsubscribe?token={token}"
feeds:
  - name: Blog
    url: https://example.org/feed.xml
state: state.sqlite3
secret: bench-secret
"""


def issues_with_deliveries(path: Path, first: int, count: int, readers: int) -> None:
    """`count` finished weekly issues from two years before NOW, each sent to `readers`."""
    for number in range(first, first + count):
        created = (NOW - timedelta(days=730) + timedelta(weeks=number)).isoformat()
        statefile.execute(
            path,
            "INSERT INTO issues (id, created_at, finished_at, subject, html, text, post_count)"
            " VALUES (?, ?, ?, ?, '<p>x</p>', 'x', 12)",
            number,
            created,
            created,
            f"Issue {number}",
        )
        statefile.executemany(
            path,
            "INSERT INTO deliveries (issue_id, email, status, reply, updated_at)"
            " VALUES (?, ?, ?, '', ?)",
            [
                (number, f"reader{n}@example.com", "failed" if n % 100 == 0 else "sent", created)
                for n in range(readers)
            ],
        )
        failed = (readers + 99) // 100
        statefile.execute(
            path,
            "INSERT INTO issue_tallies (issue_id, sent, failed, pending) VALUES (?, ?, ?, 0)",
            number,
            readers - failed,
            failed,
        )


def timed_counting(root: Path) -> float:
    """The median time of what history did before tallies: every delivery row of every issue
    counted by status, and every failed one listed (the baseline)."""
    config = load_config(root / "config.yaml")
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        with store.open(config, read_only=True) as state:
            for issue in range(1, ISSUES + 1):
                state.db.execute(
                    "SELECT status, COUNT(*) FROM deliveries WHERE issue_id = ? GROUP BY status",
                    (issue,),
                ).fetchall()
                state.db.execute(
                    "SELECT email, reply FROM deliveries WHERE issue_id = ? AND status = 'failed'"
                    " ORDER BY email",
                    (issue,),
                ).fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timed_command(root: Path) -> float:
    """The median wall time of `digest history --limit 52`, a process of its own."""
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "digest", "--config", str(root / "config.yaml"), *LIMIT],
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def timed_call(root: Path) -> float:
    """The median time of the library call `digest history` makes."""
    config = load_config(root / "config.yaml")
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        found = history(config, ISSUES)
        times.append(time.perf_counter() - started)
        assert len(found.issues) == ISSUES
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "config.yaml").write_text(CONFIG, encoding="utf-8")
        path = root / "state.sqlite3"
        config = load_config(root / "config.yaml")
        store.open(config).close()
        issues_with_deliveries(path, 1, ISSUES, READERS)
        counting = timed_counting(root)
        whole_call, whole_command = timed_call(root), timed_command(root)
        with store.open(config) as state:
            started = time.perf_counter()
            done = state.ledger.compact(NOW, NOW)
            compacting = time.perf_counter() - started
        assert len(done.issues) == ISSUES and not statefile.value(
            path, "SELECT COUNT(*) FROM deliveries"
        )
        call, command = timed_call(root), timed_command(root)
        issues_with_deliveries(path, ISSUES + 1, 1, BIG_ISSUE)
        with store.open(config) as state:
            started = time.perf_counter()
            state.ledger.compact(NOW, NOW)
            big = time.perf_counter() - started
    print(f"{ISSUES} issues of {READERS:,} deliveries each; medians of {ROUNDS} runs")
    print(f"  counting every delivery row, as before tallies: {counting:.3f} s")
    print(
        f"  before compaction: history call {whole_call:.4f} s,"
        f" `digest history` {whole_command:.3f} s"
    )
    print(f"  compacting all {ISSUES}: {compacting:.2f} s")
    print(f"  after compaction:  history call {call:.4f} s, `digest history` {command:.3f} s")
    print(f"  compacting one issue of {BIG_ISSUE:,} deliveries: {big:.2f} s")
    record(
        f"`digest history`, {ISSUES} issues inside the window",
        f"{counting:.2f} s counting rows ({READERS:,}/issue)",
        f"{whole_command:.2f} s (call {whole_call * 1000:.1f} ms)",
        f"< {GOAL} s",
        whole_command < GOAL,
    )
    record(
        f"`digest history`, {ISSUES} compacted issues",
        f"{whole_command:.2f} s uncompacted ({READERS:,}/issue)",
        f"{command:.2f} s",
        f"< {GOAL} s",
        command < GOAL,
    )


if __name__ == "__main__":
    main()
