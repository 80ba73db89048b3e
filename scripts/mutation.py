"""Mutation scores of the pure modules that guard formats and inputs: `make mutation`.

For each module, mutmut changes one operator, constant or call at a time and runs the unit tests
that import the module; a change no test notices "survives". Each module is run on its own, in a
scratch copy of the project, against only its own unit tests, so its score says what those tests
catch. Mutants that cannot change behaviour are listed, with the reason, in
scripts/mutation-equivalent.txt and count as caught.

    python scripts/mutation.py                   # every module
    python scripts/mutation.py tokens cron       # some of them
    python scripts/mutation.py --survivors       # and list each survivor's diff

Not part of `make test`: it takes minutes per module.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "scripts" / "mutation-equivalent.txt"


@dataclass(frozen=True)
class Target:
    name: str
    path: str  # the module's file, relative to the project
    tests: tuple[str, ...]  # its unit tests: pure, no servers or subprocesses


TARGETS = (
    Target(
        "tokens",
        "digest/core/tokens.py",
        ("tests/test_tokens.py", "tests/test_known_answers.py", "tests/test_properties_tokens.py"),
    ),
    Target(
        "headervalues",
        "digest/core/headervalues.py",
        ("tests/test_headervalues.py", "tests/test_properties_headers.py"),
    ),
    Target(
        "cron",
        "digest/core/cron.py",
        ("tests/test_cron.py", "tests/test_properties_cron.py", "tests/test_schedule.py"),
    ),
    Target(
        "slots",
        "digest/run/slots.py",
        ("tests/test_slots.py", "tests/test_cron.py", "tests/test_schedule.py"),
    ),
    Target(
        "htmltext",
        "digest/render/htmltext.py",
        ("tests/test_htmltext.py", "tests/test_properties_text.py"),
    ),
    Target(
        "message",
        "digest/mail/message.py",
        (
            "tests/test_message.py",
            "tests/test_known_answers.py",
            "tests/test_properties_headers.py",
        ),
    ),
)
# Tests in those files that run the command line in a subprocess, which never imports the mutants:
# they would only slow every run.
DESELECT = "not first_test_send and not first_dry_run and not secret_variable_wins"


def equivalent_mutants() -> dict[str, str]:
    """Mutant name -> why it cannot change behaviour, from scripts/mutation-equivalent.txt."""
    found: dict[str, str] = {}
    for line in EQUIVALENT.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            found[name.strip()] = reason.strip()
    return found


def scratch_copy(target: Target, into: Path) -> None:
    shutil.copytree(ROOT / "digest", into / "digest", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", into / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (into / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    tests = "\n    ".join(target.tests)
    (into / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = digest\n"
        f"only_mutate = {target.path}\n"
        f"pytest_add_cli_args_test_selection =\n    {tests}\n"
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -k\n"
        f"    {DESELECT}\n"
        "use_git_change_detection = false\n",
        encoding="utf-8",
    )


@dataclass(frozen=True)
class Score:
    target: Target
    mutants: int
    caught: int
    survivors: tuple[str, ...]
    equivalent: int

    @property
    def percent(self) -> float:
        return 100.0 * self.caught / self.mutants if self.mutants else 100.0


def run(target: Target, show_survivors: bool) -> Score:
    with tempfile.TemporaryDirectory(prefix=f"mutation-{target.name}-") as folder:
        work = Path(folder)
        scratch_copy(target, work)
        environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        mutmut = [sys.executable, "-m", "mutmut"]
        subprocess.run(
            [*mutmut, "run", "--max-children", str(max(1, (os.cpu_count() or 2)))],
            cwd=work,
            env=environment,
            check=False,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run([*mutmut, "export-cicd-stats"], cwd=work, env=environment, check=True)
        stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())
        listed = subprocess.run(
            [*mutmut, "results"], cwd=work, env=environment, check=True, capture_output=True
        ).stdout.decode()
        survivors = tuple(
            re.sub(r":\s*survived$", "", line.strip())
            for line in listed.splitlines()
            if line.strip().endswith("survived")
        )
        known = equivalent_mutants()
        equivalent = [name for name in survivors if name in known]
        left = tuple(name for name in survivors if name not in known)
        if show_survivors:
            for name in left:
                shown = subprocess.run(
                    [*mutmut, "show", name], cwd=work, env=environment, capture_output=True
                )
                print(shown.stdout.decode(), flush=True)
    total = int(stats["total"]) - int(stats["skipped"])
    caught = total - len(left) - int(stats["no_tests"])
    return Score(target, total, caught, left, len(equivalent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module names (default: all)")
    parser.add_argument("--survivors", action="store_true", help="show each survivor's diff")
    arguments = parser.parse_args()
    chosen = [t for t in TARGETS if not arguments.modules or t.name in arguments.modules]
    unknown = set(arguments.modules) - {t.name for t in TARGETS}
    if unknown:
        names = ", ".join(t.name for t in TARGETS)
        print(f"unknown module(s): {', '.join(sorted(unknown))}; choose from {names}")
        return 2
    scores = []
    for target in chosen:
        print(f"{target.name}: mutating {target.path} ...", flush=True)
        score = run(target, arguments.survivors)
        scores.append(score)
        print(
            f"{target.name}: {score.caught}/{score.mutants} caught ({score.percent:.0f}%),"
            f" {score.equivalent} equivalent",
            flush=True,
        )
        for name in score.survivors:
            print(f"  survived: {name}")
    today = datetime.now(UTC).date().isoformat()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        "\n| module | mutants | caught | equivalent | score | date | machine |"
        "\n|---|---|---|---|---|---|---|"
    )
    for score in scores:
        print(
            f"| {score.target.name} | {score.mutants} | {score.caught} | {score.equivalent} |"
            f" {score.percent:.0f}% |"
            f" {today} | {machine} |"
        )
    return 0 if all(score.percent >= 90 for score in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
