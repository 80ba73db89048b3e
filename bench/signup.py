"""How long the sign-up form's answer takes, by the standing of the address: it must not tell.

A real `digest serve` on 127.0.0.1 (its own process), with an SMTP sink (aiosmtpd's, in a
process of its own) taking the confirmation emails. Before it starts, the state file is given
addresses of each standing, N of each, so that every POST meets its address in that standing
for the first time:

- new: never seen;
- pending: signed up a day ago, not confirmed;
- confirmed: subscribed;
- suppressed: unsubscribed;
- rate-limited: sent a confirmation email moments ago (over `per_address_every`).

The POSTs are interleaved (each round takes one address of every standing, in a shuffled
order) over one kept-alive connection, and each is timed from sending the request to having
read the whole answer. Between two POSTs the script waits PAUSE seconds, so each answer is
timed on a server that has finished the background work of the one before (what this measures
is whether an answer's own time depends on its address). It prints the median and 90th
percentile per standing and the largest gap between two medians; the goal is that gap within
GOAL_MS.

With `--back-to-back` there is no pause: each POST follows the answer to the one before, so
the server is never idle and every answer shares the machine with earlier sign-ups' background
work. That background work is not this answer's, so the medians should still agree; the times
themselves are much longer, since the sign-ups then arrive faster than they are carried out.

Run: `.venv/bin/python bench/signup.py [N] [--back-to-back]` (N defaults to 200).
"""

from __future__ import annotations

import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.goals import record
from digest import store
from digest.config.schema import load_config
from digest.readers.signup import rate_limits
from digest.store.suppressions import SuppressionKind

STANDINGS = ("new", "pending", "confirmed", "suppressed", "rate-limited")
DEFAULT_COUNT = 200
WARM_UP = 30
PAUSE = 0.05
GOAL_MS = 1.0
SECRET = "bench-secret-of-thirty-two-bytes-or-more"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited: {process.communicate()[1].decode()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start within 30 s")


def write_project(root: Path, smtp_port: int) -> Path:
    config = root / "config.yaml"
    config.write_text(
        "newsletter:\n"
        "  title: Bench Weekly\n"
        '  from: "Bench <digest@example.org>"\n'
        '  unsubscribe_url: "https://example.org/unsubscribe?token={token}"\n'
        "feeds:\n  - name: Blog\n    url: https://example.org/feed.xml\n"
        "subscribers: subscribers.csv\n"
        f"smtp:\n  host: 127.0.0.1\n  port: {smtp_port}\n  security: none\n"
        "state: state.sqlite3\n"
        f"secret: {SECRET}\n"
        "signup:\n  enabled: true\n  per_ip_per_hour: 1000000\n",
        encoding="utf-8",
    )
    (root / "subscribers.csv").write_text("email,name\n", encoding="utf-8")
    return config


def addresses(standing: str, count: int) -> list[str]:
    label = standing.replace("-", "")
    return [f"{label}{n}@bench.example.net" for n in range(count)]


def prepare_state(config_path: Path, count: int) -> None:
    """Give the state file `count` addresses of each standing but "new"."""
    config = load_config(config_path)
    now = datetime.now(UTC)
    with store.open(config) as state, state.transaction():
        for address in addresses("pending", count):
            state.signups.request(
                address, "", None, now - timedelta(days=1), page="", ip="", consent_sha256=""
            )
        for address in addresses("confirmed", count):
            state.signups.add(address, "", None, "bench", now - timedelta(days=1))
        for address in addresses("suppressed", count):
            state.suppressions.suppress(
                address, now - timedelta(days=1), "bench", kind=SuppressionKind.MANUAL
            )
        for address in addresses("rate-limited", count):
            state.signups.allow(rate_limits(config, SECRET, address, ""), now)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    arguments = [argument for argument in sys.argv[1:] if not argument.startswith("--")]
    count = int(arguments[0]) if arguments else DEFAULT_COUNT
    pause = 0.0 if "--back-to-back" in sys.argv else PAUSE
    with tempfile.TemporaryDirectory(prefix="digest-bench-signup-") as folder:
        root = Path(folder)
        smtp_port, port = free_port(), free_port()
        config = write_project(root, smtp_port)
        prepare_state(config, count + WARM_UP)
        environment = {
            k: v for k, v in os.environ.items() if k not in ("DIGEST_NOW", "DIGEST_SECRET")
        }
        sink = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                f"127.0.0.1:{smtp_port}",
                "-c",
                "aiosmtpd.handlers.Sink",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "digest",
                "--config",
                str(config),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-preview",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=environment,
        )
        try:
            wait_for_port(smtp_port, sink, "the SMTP sink")
            wait_for_port(port, server, "digest serve")
            timings = run(f"http://127.0.0.1:{port}", count, pause)
        finally:
            server.terminate()
            sink.terminate()
            server.wait(timeout=30)
            sink.wait(timeout=30)
    report(timings, count, pause)


def run(base: str, count: int, pause: float) -> dict[str, list[float]]:
    """Time `count` POSTs of each standing, interleaved, after WARM_UP untimed rounds."""
    pools = {standing: addresses(standing, count + WARM_UP) for standing in STANDINGS}
    # "new" addresses were never put in the state; give them their own names.
    pools["new"] = [f"fresh{n}@bench.example.net" for n in range(count + WARM_UP)]
    timings: dict[str, list[float]] = {standing: [] for standing in STANDINGS}
    shuffle = random.Random(8058)
    answers: set[str] = set()
    with httpx.Client(timeout=30) as client:
        for round_number in range(count + WARM_UP):
            order = list(STANDINGS)
            shuffle.shuffle(order)
            for standing in order:
                fields = {"email": pools[standing][round_number], "name": "", "website": ""}
                time.sleep(pause)
                started = time.perf_counter()
                answer = client.post(f"{base}/subscribe", data=fields)
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    raise SystemExit(f"{standing}: {answer.status_code} {answer.text[:200]}")
                answers.add(answer.text)
                if round_number >= WARM_UP:
                    timings[standing].append(elapsed * 1000)
    if len(answers) != 1:
        raise SystemExit("the answers differ between standings")
    return timings


def report(timings: dict[str, list[float]], count: int, pause: float) -> None:
    spacing = f"{pause * 1000:g} ms apart" if pause else "back to back"
    print(
        f"Sign-up answer time by the address's standing ({count} POSTs each, interleaved,"
        f" {spacing}):"
    )
    print(f"  {'standing':<14}{'median ms':>11}{'p90 ms':>9}")
    medians = {}
    for standing in STANDINGS:
        medians[standing] = statistics.median(timings[standing])
        p90 = percentile(timings[standing], 0.9)
        print(f"  {standing:<14}{medians[standing]:>11.3f}{p90:>9.3f}")
    gap = max(medians.values()) - min(medians.values())
    met = gap <= GOAL_MS
    print(f"  largest gap between medians: {gap:.3f} ms (goal: within {GOAL_MS:g} ms)")
    record(
        f"sign-up answer: largest gap between medians by standing ({spacing})",
        "",
        f"{gap:.3f} ms",
        f"<= {GOAL_MS:g} ms",
        met,
    )


if __name__ == "__main__":
    main()
