"""Send one 40-post issue to 10,000 subscribers via Postfix's smtp-sink, several ways, in one run.

1. digest: the real `digest send` command (a separate process), pool of smtp.connections;
   messages per second over the whole command, and its peak memory (max RSS). The same send to
   1,000 subscribers is run first to show memory stays flat as the list grows.
2. bare: a plain smtplib loop sending one prebuilt message's bytes over one connection.
3. naive: per subscriber, render the issue (Jinja2 + premailer), build the message with the
   email package and send it over a new connection. Timed on a sample and extrapolated.
4. smtp-source: Postfix's own load generator (C), the same message size over 4 sessions, each
   keeping its connection open (-d): about as fast as this machine can push mail to smtp-sink;
   and, as smtp-source runs by default, with a new connection per message.
5. 100,000: the same `digest send` to 100,000 subscribers: peak memory and time per message,
   next to 10,000's, to show memory stays bounded and time grows linearly.
6. sections: `digest send` to 10,000 signed-up subscribers spread over 4 distinct choices of
   sections (choosable_sections), beside the same four-feed issue sent to 10,000 who all get
   every section: the issue is rendered once per choice, never per subscriber.

With `--subscribers N` it measures one thing instead, at any size: `digest send` to N
subscribers, its peak memory (each sending process's own max RSS) and messages per second,
on a SQLite file or, with `--state postgresql://...` (an empty database; emptied before each
run), on PostgreSQL. `--senders K` runs K `digest send` processes on the one state at once
(one freezes the issue, the others join it); with `--max-per-second X` each is capped at X
(smtp.max_per_second), and the same send by one capped sender is run first to compare with.

smtp-sink (Debian package postfix) accepts and discards everything: the figures measure the
sender, not a mail server's disk.

A shared 2-core VM's speed drifts from minute to minute, so 1, 2 and 4 run in ROUNDS rounds,
one after another within each round; each row shows the median, and the goals are judged on the
median of each round's own ratio (digest against the baselines run beside it).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.goals import record
from digest import store
from digest.config.schema import load_config
from digest.core.models import Subscriber
from digest.issue.prepare import Collection, prepare
from digest.render.issue import render_issue
from digest.render.personalise import personalise

SUBSCRIBERS = 10_000
SMALL_LIST = 1_000
LARGE_LIST = 100_000
SOURCE_SESSIONS = 4
ROUNDS = 3
BARE_COUNT = 4_000  # the bare loop is slow: its rate is timed on fewer messages
# The goals of this release, each beside its baseline measured in the same run.
GOAL_VS_BARE = 1.6
GOAL_VS_SOURCE = 0.65
GOAL_LARGE_RSS_MIB = 150
NAIVE_SAMPLE = 300
NOW = datetime.now(UTC)
# As on a user's machine, compiled bytecode is kept between runs.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def feed(name: str, count: int) -> str:
    items = "".join(
        f"<item><title>{name} post {n}: a realistic headline about public services</title>"
        f"<link>https://example.org/{name}/{n}</link><guid>{name}-{n}</guid>"
        f"<pubDate>{format_datetime(NOW - timedelta(hours=n + 1))}</pubDate>"
        f"<author>writer{n}@example.org (Writer {n})</author>"
        "<description>&lt;p&gt;"
        + "A paragraph of summary text about the post. " * 8
        + "&lt;/p&gt;</description></item>"
        for n in range(count)
    )
    channel = f"<channel><title>{name}</title><link>https://example.org/</link>{items}</channel>"
    return f'<?xml version="1.0"?><rss version="2.0">{channel}</rss>'


def make_project(
    root: Path,
    port: int,
    subscribers: int,
    *,
    state: str | None = None,
    max_per_second: float | None = None,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "blog.xml").write_text(feed("blog", 20), encoding="utf-8")
    (root / "news.xml").write_text(feed("news", 20), encoding="utf-8")
    with (root / "subscribers.csv").open("w", encoding="utf-8") as listing:
        listing.write("email,name\n")
        for n in range(subscribers):
            listing.write(f"reader{n}@example.com,Reader {n}\n")
    cap = f"  max_per_second: {max_per_second}\n" if max_per_second else ""
    config = root / "config.yaml"
    config.write_text(
        "newsletter:\n  title: Bench Weekly\n  from: Bench <bench@example.org>\n"
        '  unsubscribe_url: "https://example.org/unsubscribe?token={token}"\n'
        "feeds:\n  - name: Blog\n    url: blog.xml\n  - name: News\n    url: news.xml\n"
        "digest:\n  max_posts_per_section: 20\n"
        f"smtp:\n  host: 127.0.0.1\n  port: {port}\n  security: none\n{cap}"
        "secret: bench-secret\n" + (f"state: {state}\n" if state else ""),
        encoding="utf-8",
    )
    return config


SECTION_FEEDS = ("Blog", "News", "Events", "Reports")
SECTION_CHOICES: tuple[tuple[str, ...] | None, ...] = (
    None,
    ("Blog", "News"),
    ("Events",),
    ("Blog", "Reports"),
)


def make_sections_project(root: Path, port: int, subscribers: int, *, choose: bool) -> Path:
    """Four 10-post feeds; `subscribers` signed up, spread over SECTION_CHOICES if `choose`."""
    root.mkdir(parents=True, exist_ok=True)
    for name in SECTION_FEEDS:
        (root / f"{name.lower()}.xml").write_text(feed(name.lower(), 10), encoding="utf-8")
    (root / "subscribers.csv").write_text("email,name\n", encoding="utf-8")
    feeds = "".join(f"  - name: {name}\n    url: {name.lower()}.xml\n" for name in SECTION_FEEDS)
    config = root / "config.yaml"
    config.write_text(
        "newsletter:\n  title: Bench Weekly\n  from: Bench <bench@example.org>\n"
        '  unsubscribe_url: "https://example.org/unsubscribe?token={token}"\n'
        "  choosable_sections: true\n"
        f"feeds:\n{feeds}"
        "digest:\n  max_posts_per_section: 20\n"
        f"smtp:\n  host: 127.0.0.1\n  port: {port}\n  security: none\n"
        "secret: bench-secret\n",
        encoding="utf-8",
    )
    with store.open(load_config(config)) as state, state.transaction():
        for n in range(subscribers):
            sections = SECTION_CHOICES[n % len(SECTION_CHOICES)] if choose else None
            state.signups.add(f"reader{n}@example.com", f"Reader {n}", sections, "bench", NOW)
    return config


def run_digest(config: Path) -> tuple[float, int, str]:
    """(seconds, peak RSS in KiB, summary line) for one `digest send` process."""
    command = [sys.executable, "-m", "digest", "--config", str(config), "send"]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    out = process.stdout.read() if process.stdout else ""
    err = process.stderr.read() if process.stderr else ""
    if status != 0:
        sys.exit(f"digest send failed:\n{out}\n{err}")
    return elapsed, usage.ru_maxrss, out.strip().splitlines()[-1]


def run_senders(config: Path, senders: int) -> tuple[float, list[int]]:
    """(seconds, each process's peak RSS in KiB) for `senders` `digest send` processes on one
    state, started together; all must finish cleanly."""
    command = [sys.executable, "-m", "digest", "--config", str(config), "send"]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV
        )
        for _ in range(senders)
    ]
    peaks = []
    for process in processes:
        _, status, usage = os.wait4(process.pid, 0)
        err = process.stderr.read() if process.stderr else ""
        if status != 0:
            sys.exit(f"digest send failed:\n{err}")
        peaks.append(usage.ru_maxrss)
    return time.perf_counter() - started, peaks


def fresh_state(config_path: Path) -> None:
    """Empty the state before a run: the SQLite file deleted, or the database's tables dropped."""
    config = load_config(config_path)
    where = config.state_path
    if isinstance(where, store.DatabaseURL):
        import psycopg

        with psycopg.connect(where.url, autocommit=True) as connection:
            connection.execute("DROP SCHEMA public CASCADE")
            connection.execute("CREATE SCHEMA public")
        return
    for suffix in ("", "-wal", "-shm"):
        Path(f"{where}{suffix}").unlink(missing_ok=True)


def delivered(config_path: Path) -> int:
    with store.open(load_config(config_path)) as state:
        return state.ledger.history(1)[0].sent


def scale(sink: str, subscribers: int, state: str | None, senders: int, cap: float | None) -> None:
    """`digest send` to `subscribers` by `senders` processes: time, rate and peak memory."""
    port = free_port()
    with tempfile.TemporaryDirectory() as folder, SinkRunning(sink, port, Path(folder)):
        root = Path(folder)
        where = "PostgreSQL" if state else "SQLite"
        print(f"`digest send` to {subscribers:,} subscribers via smtp-sink, state on {where}")
        print(f"Machine: {machine()}")
        runs = [1, senders] if senders > 1 else [1]
        rates: dict[int, float] = {}
        for count in runs:
            config = make_project(
                root / f"senders-{count}", port, subscribers, state=state, max_per_second=cap
            )
            fresh_state(config)
            elapsed, peaks = run_senders(config, count)
            sent = delivered(config)
            if sent != subscribers:
                sys.exit(f"{sent} of {subscribers} delivered")
            rates[count] = subscribers / elapsed
            capped = f", each capped at {cap:g} msg/s" if cap else ""
            print(
                f"  {count} sender{'s' if count > 1 else ''}{capped}: {elapsed:7.1f} s"
                f"  {rates[count]:7.0f} msg/s  peak RSS "
                + ", ".join(f"{peak / 1024:.0f} MiB" for peak in peaks)
            )
        if senders > 1:
            print(f"  {senders} senders: {rates[senders] / rates[1]:.2f}x one sender's rate")


class SinkRunning:
    """Postfix's smtp-sink on 127.0.0.1:port for the block, its output to a file."""

    def __init__(self, sink: str, port: int, folder: Path) -> None:
        self.sink, self.port, self.folder = sink, port, folder
        self.server: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SinkRunning:
        log = (self.folder / "sink.log").open("wb")
        self.server = subprocess.Popen(
            [self.sink, "-u", "nobody", "-c", f"127.0.0.1:{self.port}", "1024"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("smtp-sink did not start")
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait()


def sample_message(config_path: Path) -> bytes:
    """One subscriber's message exactly as digest built it (read back from a dry run)."""
    command = [sys.executable, "-m", "digest", "--config", str(config_path), "send", "--dry-run"]
    subprocess.run(command, check=True, capture_output=True, env=ENV)
    outbox = next((config_path.parent / "outbox").iterdir())
    return next(outbox.iterdir()).read_bytes()


def run_bare(port: int, data: bytes, count: int) -> float:
    connection = smtplib.SMTP("127.0.0.1", port)
    connection.ehlo()
    started = time.perf_counter()
    for n in range(count):
        connection.sendmail("bench@example.org", [f"reader{n}@example.com"], data)
    elapsed = time.perf_counter() - started
    connection.quit()
    return elapsed


def run_smtp_source(port: int, size: int, count: int, *, keep_open: bool = True) -> float:
    """Seconds for Postfix's smtp-source to send `count` messages of `size` bytes."""
    source = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    command = [
        source,
        *(["-d"] if keep_open else []),
        "-s",
        str(SOURCE_SESSIONS),
        "-m",
        str(count),
        "-l",
        str(size),
        "-f",
        "bench@example.org",
        "-t",
        "reader@example.com",
        f"127.0.0.1:{port}",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def run_naive(config_path: Path, port: int, count: int) -> float:
    config = load_config(config_path)
    with (
        tempfile.TemporaryDirectory() as folder,
        store.open_path(Path(folder) / "naive.sqlite3") as state,
    ):
        prepared = prepare(config, state, NOW, Collection(record=False))
    started = time.perf_counter()
    for n in range(count):
        rendered = render_issue(prepared.issue, config)
        subscriber = Subscriber(f"reader{n}@example.com", f"Reader {n}")
        html, text = personalise(rendered, subscriber, f"https://example.org/u?token={n}")
        message = EmailMessage()
        message["From"] = "Bench <bench@example.org>"
        message["To"] = subscriber.email
        message["Subject"] = rendered.subject
        message["Date"] = format_datetime(NOW)
        message["Message-ID"] = make_msgid(domain="example.org")
        message.set_content(text, cte="quoted-printable")
        message.add_alternative(html, subtype="html", cte="quoted-printable")
        connection = smtplib.SMTP("127.0.0.1", port)
        connection.sendmail("bench@example.org", [subscriber.email], message.as_bytes(policy=SMTP))
        connection.quit()
    return time.perf_counter() - started


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, help="measure one send to this many")
    parser.add_argument("--state", help="a PostgreSQL URL (an empty database) for the state")
    parser.add_argument("--senders", type=int, default=1, help="digest send processes at once")
    parser.add_argument("--max-per-second", type=float, help="smtp.max_per_second of each")
    args = parser.parse_args()
    sink = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
    )
    if sink is None:
        sys.exit(
            "smtp-sink not found: install Postfix (apt-get install postfix), or run `make bench`"
        )
    if args.subscribers:
        scale(sink, args.subscribers, args.state, args.senders, args.max_per_second)
        return
    if args.state or args.senders != 1 or args.max_per_second:
        parser.error("--state, --senders and --max-per-second go with --subscribers")
    port = free_port()
    server = subprocess.Popen(
        [sink, "-u", "nobody", "-c", f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("smtp-sink did not start")
                time.sleep(0.05)
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            small = make_project(root / "small", port, SMALL_LIST)
            small_time, small_rss, _ = run_digest(small)
            big = make_project(root / "big", port, SUBSCRIBERS)
            data = sample_message(big)
            config = load_config(big)
            connections = config.smtp.connections
            rounds: list[dict[str, float]] = []
            digest_rss = 0
            for number in range(ROUNDS):
                for suffix in ("", "-wal", "-shm"):  # each round sends the issue afresh
                    Path(f"{config.state_path}{suffix}").unlink(missing_ok=True)
                digest_time, rss, summary = run_digest(big)
                digest_rss = max(digest_rss, rss)
                with store.open(config) as state:
                    sent = state.ledger.history(1)[0].sent
                if sent != SUBSCRIBERS:
                    sys.exit(f"digest delivered {sent} of {SUBSCRIBERS}: {summary}")
                rounds.append(
                    {
                        "digest": SUBSCRIBERS / digest_time,
                        "bare": BARE_COUNT / run_bare(port, data, BARE_COUNT),
                        "source": SUBSCRIBERS / run_smtp_source(port, len(data), SUBSCRIBERS),
                        "reconnecting": SUBSCRIBERS
                        / run_smtp_source(port, len(data), SUBSCRIBERS, keep_open=False),
                    }
                )
                print(
                    f"  round {number + 1}: "
                    + ", ".join(f"{name} {rate:.0f} msg/s" for name, rate in rounds[-1].items()),
                    file=sys.stderr,
                )
            one_time, _, _ = run_digest(
                make_sections_project(root / "one", port, SUBSCRIBERS, choose=False)
            )
            four_time, four_rss, _ = run_digest(
                make_sections_project(root / "four", port, SUBSCRIBERS, choose=True)
            )
            large_time, large_rss, _ = run_digest(make_project(root / "large", port, LARGE_LIST))
            naive_time = run_naive(big, port, NAIVE_SAMPLE) * SUBSCRIBERS / NAIVE_SAMPLE
    finally:
        server.terminate()
        server.wait()

    def median(name: str) -> float:
        return statistics.median(each[name] for each in rounds)

    def ratio(name: str) -> float:
        """The median over rounds of digest's rate over the baseline's in the same round."""
        return statistics.median(each["digest"] / each[name] for each in rounds)

    rate = {name: median(name) for name in ("digest", "bare", "source", "reconnecting")}
    rate["naive"] = SUBSCRIBERS / naive_time
    digest_time = SUBSCRIBERS / rate["digest"]
    print(f"One {len(data):,}-byte issue (40 posts) to {SUBSCRIBERS:,} subscribers via smtp-sink")
    print(f"Machine: {machine()}; median of {ROUNDS} rounds")
    print(
        f"  digest send ({connections} connections): {digest_time:6.1f} s"
        f"  {rate['digest']:7.0f} msg/s  peak RSS {digest_rss / 1024:.0f} MiB"
        f" ({small_rss / 1024:.0f} MiB for {SMALL_LIST:,} subscribers, {small_time:.1f} s)"
    )
    print(
        f"  bare smtplib loop, 1 connection:  {rate['bare']:7.0f} msg/s"
        f" (timed on {BARE_COUNT:,} messages)"
    )
    print(
        f"  smtp-source -d, {SOURCE_SESSIONS} connections kept open:  {rate['source']:7.0f} msg/s"
    )
    print(
        f"  smtp-source, {SOURCE_SESSIONS} sessions, new connection per message:"
        f"  {rate['reconnecting']:7.0f} msg/s"
    )
    print(
        f"  digest send to {LARGE_LIST:,}: {large_time:6.1f} s"
        f"  {LARGE_LIST / large_time:7.0f} msg/s"
        f"  peak RSS {large_rss / 1024:.0f} MiB; per message"
        f" {digest_time / SUBSCRIBERS * 1e6:.0f} us at {SUBSCRIBERS:,},"
        f" {large_time / LARGE_LIST * 1e6:.0f} us at {LARGE_LIST:,}"
    )
    print(
        f"  naive (render + premailer + new connection per message): {naive_time:6.1f} s"
        f"  {rate['naive']:7.1f} msg/s  (timed on {NAIVE_SAMPLE} messages, extrapolated)"
    )
    one_rate, four_rate = SUBSCRIBERS / one_time, SUBSCRIBERS / four_time
    print(
        f"  sections: everyone gets all 4 sections: {one_rate:7.0f} msg/s;"
        f" spread over 4 choices: {four_rate:7.0f} msg/s ({four_rate / one_rate:.0%} of it),"
        f" peak RSS {four_rss / 1024:.0f} MiB"
    )
    vs_bare, vs_source = ratio("bare"), ratio("source")
    vs_reconnecting = ratio("reconnecting")
    print(
        f"  digest vs bare: {vs_bare:.2f}x; vs smtp-source -d: {vs_source:.2f}x;"
        f" vs smtp-source reconnecting: {vs_reconnecting:.2f}x;"
        f" vs naive: {rate['digest'] / rate['naive']:.0f}x"
        f" (ratios: median of each round's own)"
    )

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    print(f"  goal: at least {GOAL_VS_BARE}x bare smtplib: {verdict(vs_bare >= GOAL_VS_BARE)}")
    print(f"  goal: at least {GOAL_VS_SOURCE}x smtp-source: {verdict(vs_source >= GOAL_VS_SOURCE)}")
    print(
        f"  goal: under {GOAL_LARGE_RSS_MIB} MiB at {LARGE_LIST:,}:"
        f" {verdict(large_rss / 1024 < GOAL_LARGE_RSS_MIB)}"
    )
    sending = f"`digest send`, {SUBSCRIBERS:,} subscribers, smtp-sink"
    record(
        f"{sending}, vs bare smtplib",
        f"{rate['bare']:.0f} msg/s (bare smtplib loop)",
        f"{rate['digest']:.0f} msg/s, {vs_bare:.2f}x",
        f"at least {GOAL_VS_BARE}x",
        vs_bare >= GOAL_VS_BARE,
    )
    record(
        f"{sending}, vs smtp-source",
        f"{rate['source']:.0f} msg/s (smtp-source -d, {SOURCE_SESSIONS} connections)",
        f"{rate['digest']:.0f} msg/s, {vs_source:.2f}x",
        f"at least {GOAL_VS_SOURCE}x",
        vs_source >= GOAL_VS_SOURCE,
    )
    record(
        f"`digest send`, {LARGE_LIST:,} subscribers: peak memory, time per message",
        f"{digest_rss / 1024:.0f} MiB, {digest_time / SUBSCRIBERS * 1e6:.0f} us at {SUBSCRIBERS:,}",
        f"{large_rss / 1024:.0f} MiB, {large_time / LARGE_LIST * 1e6:.0f} us",
        f"under {GOAL_LARGE_RSS_MIB} MiB, time linear",
        large_rss / 1024 < GOAL_LARGE_RSS_MIB,
    )


if __name__ == "__main__":
    main()
