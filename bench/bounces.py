"""How well digest reads bounces: its hand-written set plus flufl.bounce's installed corpus.

Prints, for the messages whose answer is known:
- recipient found: the failed recipient(s) among those the report names;
- hard/soft agreement: the kind, against Sisimai's reading (the hand-written set) and, for
  flufl.bounce's messages it calls temporary, soft;
- complaints recognised, and false bounces (a success notice, a read receipt, an auto-reply or
  ordinary mail taken for a bounce or complaint);
- addresses recorded that are not addresses at all (a pipe command, "@").

Run from the project folder: `.venv/bin/python bench/bounces.py`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digest.bounces.report import read_report
from digest.core.addresses import canonical_or_none
from tests.support.bounce_samples import flufl_samples, own_samples

BOUNCES = ("hard", "soft")
REPORTS = ("hard", "soft", "complaint")


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}% ({part}/{whole})" if whole else "n/a"


def main() -> None:
    """Read every sample once and print the figures."""
    own = own_samples()
    flufl = flufl_samples() or []
    found = wanted = agree = judged = complaints = complaint_total = false = quiet = invalid = 0
    misses: list[str] = []
    started = time.perf_counter()
    for sample in own + flufl:
        report = read_report(sample.path.read_bytes())
        kind = str(report.kind)
        named = set(report.recipients)
        invalid += sum(1 for address in named if canonical_or_none(address) != address)
        if sample.recipients and sample.kind in (*REPORTS, "bounce"):
            wanted += 1
            if sample.recipients <= named:
                found += 1
            else:
                misses.append(f"recipient {sample.name}: {sorted(named)}")
        expected = "soft" if sample.temporary else sample.kind
        if expected in BOUNCES:
            judged += 1
            if kind == expected:
                agree += 1
            else:
                misses.append(f"kind {sample.name}: {kind}, expected {expected}")
        if sample.kind == "complaint":
            complaint_total += 1
            complaints += kind == "complaint"
        if sample.kind in ("not_bounce", "auto_reply"):
            quiet += 1
            if kind in REPORTS:
                false += 1
                misses.append(f"false {sample.name}: {kind}")
    elapsed = time.perf_counter() - started
    print(f"Messages read: {len(own)} hand-written, {len(flufl)} from flufl.bounce's corpus")
    print(f"  recipient found:        {percent(found, wanted)}")
    print(f"  hard/soft agreement:    {percent(agree, judged)}")
    print(f"  complaints recognised:  {complaints} of {complaint_total}")
    print(f"  false bounces:          {false} of {quiet} notices that are not bounces")
    print(f"  non-addresses recorded: {invalid}")
    print(f"  time: {elapsed * 1000 / max(1, len(own) + len(flufl)):.1f} ms a message")
    if "-v" in sys.argv[1:]:
        for line in misses:
            print("   ", line)


if __name__ == "__main__":
    main()
