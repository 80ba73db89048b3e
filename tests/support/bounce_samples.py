"""Bounce messages with known answers: digest's own hand-written set and flufl.bounce's corpus.

The hand-written set lives in tests/fixtures/bounces/, described line by line in its
expected.txt. flufl.bounce 4.0 (Apache License 2.0, by Barry Warsaw and the GNU Mailman
developers) ships its test messages, and the addresses each one reports, inside its installed
package; they are read from there and none are copied into this repository.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"


@dataclass(frozen=True)
class Sample:
    """One message and what it is: its kind, its failed recipients and, if settled, reason."""

    name: str
    path: Path
    kind: str  # hard, soft, complaint, not_bounce, auto_reply; "bounce" when only that is known
    recipients: frozenset[str]
    reason: str = ""
    temporary: bool = False  # flufl.bounce's word: a warning that delivery is still tried


def own_samples() -> list[Sample]:
    """The hand-written messages, as expected.txt describes them."""
    found = []
    for line in (FIXTURES / "expected.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, kind, recipient, reason = line.split()
        recipients = frozenset() if recipient == "-" else frozenset({recipient})
        reason = "" if reason == "-" else reason
        found.append(Sample(name, FIXTURES / name, kind, recipients, reason))
    return found


def flufl_samples() -> list[Sample] | None:
    """flufl.bounce's messages with the addresses it expects, or None when its corpus is not
    installed. A message it lists with no address is one its detectors find nothing in."""
    spec = importlib.util.find_spec("flufl.bounce")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    data, helpers = package / "tests" / "data", package / "testing" / "helpers.py"
    if not data.is_dir() or not helpers.is_file():
        return None
    tree = ast.parse(helpers.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DATA":
            # A file can be listed once per detector tried on it: merge what they expect.
            merged: dict[str, tuple[set[str], bool]] = {}
            for row in ast.literal_eval(node.value):
                addresses, temporary = merged.setdefault(row[1], (set(), False))
                addresses.update(a.decode().lower() for a in row[2])
                merged[row[1]] = (addresses, temporary or (len(row) > 3 and bool(row[3])))
            return [
                Sample(name, data / name, "bounce", frozenset(found), "", temporary)
                for name, (found, temporary) in sorted(merged.items())
            ]
    return None


def flufl_folder() -> Path | None:
    """The folder of flufl.bounce's messages, if installed."""
    samples = flufl_samples()
    return samples[0].path.parent if samples else None
