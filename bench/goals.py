"""The goals table `make bench` ends with: each script records its rows, `python -m bench.goals`
prints them together.

A row is what was measured, its baseline from the same run, the figure now, the goal and whether
it is met. Rows go to the file named by BENCH_RESULTS (the Makefile sets it), one JSON object a
line; run on its own, a script records nothing and prints only its own figures.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def record(what: str, baseline: str, now: str, goal: str, met: bool) -> None:
    """Add one row to the goals table, if this run keeps one."""
    target = os.environ.get("BENCH_RESULTS")
    if not target:
        return
    row = {"what": what, "baseline": baseline, "now": now, "goal": goal, "met": met}
    with Path(target).open("a", encoding="utf-8") as file:
        file.write(json.dumps(row) + "\n")


def main() -> None:
    """Print the rows recorded in BENCH_RESULTS as one table, then empty the file."""
    target = Path(os.environ.get("BENCH_RESULTS") or sys.argv[1])
    rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines() if line]
    headers = ("what", "baseline (same run)", "now", "goal", "")
    table = [headers] + [
        (row["what"], row["baseline"], row["now"], row["goal"], "met" if row["met"] else "NOT met")
        for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(headers))]
    print()
    print("Goals of this release, each beside its baseline measured in the same run:")
    for number, line in enumerate(table):
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print(("  " + "  ".join(cells)).rstrip())
        if number == 0:
            print("  " + "  ".join("-" * width for width in widths))
    target.unlink()


if __name__ == "__main__":
    main()
