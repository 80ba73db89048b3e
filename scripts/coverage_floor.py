"""Fail `make test` when digest's line or branch coverage falls below its floor.

coverage.py's own `fail_under` counts lines and branches together, so one figure could hide a fall
in the other; this reads `coverage json`'s totals and holds each to its own floor. The floors sit
a little below the figures last measured (in docs/development.md), so work elsewhere in digest/
does not fail the run by a rounding step, while a change that leaves a real gap does. Raise them
when the figures rise; never lower them to let a change through.

Usage: python scripts/coverage_floor.py build/coverage/coverage.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LINES_FLOOR = 95.0
BRANCHES_FLOOR = 90.5
GAPS_SHOWN = 8


def main(argv: list[str]) -> int:
    """Print the totals and the files with the most left unrun; 1 if a floor is not reached."""
    if len(argv) != 1:
        print("usage: python scripts/coverage_floor.py COVERAGE_JSON", file=sys.stderr)
        return 2
    report = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    totals = report["totals"]
    lines = _percent(totals["covered_lines"], totals["num_statements"])
    branches = _percent(totals["covered_branches"], totals["num_branches"])
    gaps = sorted(
        (
            (summary["missing_lines"] + summary["missing_branches"], name, summary)
            for name, summary in ((name, data["summary"]) for name, data in report["files"].items())
        ),
        reverse=True,
    )
    print("Most left unrun (`.venv/bin/coverage report -m` lists every line):")
    for _, name, summary in gaps[:GAPS_SHOWN]:
        if summary["missing_lines"] + summary["missing_branches"]:
            print(
                f"  {name}: {summary['missing_lines']} lines, "
                f"{summary['missing_branches']} branches"
            )
    print(
        f"Coverage of digest/: lines {lines:.2f}% ({totals['covered_lines']} of "
        f"{totals['num_statements']}), branches {branches:.2f}% ({totals['covered_branches']} of "
        f"{totals['num_branches']}); floors {LINES_FLOOR}% and {BRANCHES_FLOOR}%."
    )
    failed = []
    if lines < LINES_FLOOR:
        failed.append(f"lines {lines:.2f}% < {LINES_FLOOR}%")
    if branches < BRANCHES_FLOOR:
        failed.append(f"branches {branches:.2f}% < {BRANCHES_FLOOR}%")
    if failed:
        print(f"Coverage below its floor: {'; '.join(failed)}. Test the new code.", file=sys.stderr)
        return 1
    return 0


def _percent(covered: int, total: int) -> float:
    """covered out of total as a percentage; nothing to cover counts as all of it."""
    return 100.0 * covered / total if total else 100.0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
