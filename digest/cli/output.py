"""What the commands print and how: the two consoles (results on standard output, warnings and
errors on standard error), counted nouns, a send's summary, and the send's progress display.
"""

from __future__ import annotations

import io
import logging
import time
from typing import IO, TYPE_CHECKING, cast

from rich.console import Console

from digest.core.models import Delivery, DeliveryStatus, SendReport

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

# With JSON logs, what the commands say on standard error becomes records of this logger, so
# that standard error stays one JSON object a line (and addresses in it are masked).
said = logging.getLogger("digest.cli")


class LogLines(io.TextIOBase):
    """A text stream that turns each line written to it into a log record: "Error: ..." at
    ERROR, "Warning: ..." at WARNING, anything else at INFO."""

    def __init__(self) -> None:
        super().__init__()
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._log(line)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            line, self._pending = self._pending, ""
            self._log(line)

    @staticmethod
    def _log(line: str) -> None:
        if not line.strip():
            return
        for prefix, level in (("Error: ", logging.ERROR), ("Warning: ", logging.WARNING)):
            if line.startswith(prefix):
                said.log(level, "%s", line[len(prefix) :])
                return
        said.info("%s", line)


def errors_as_log_records() -> None:
    """Send what `err` prints through logging (for --log-format json): each line one record of
    the `digest.cli` logger, which always shows them, as the console would have."""
    err.file = cast("IO[str]", LogLines())
    said.setLevel(logging.INFO)


def open_in_browser(url: str) -> bool:
    """Open url in the user's browser; False when none can be opened here (a server, a pipe)."""
    import webbrowser

    return webbrowser.open(url)


def plural(number: int, noun: str) -> str:
    """'1 feed', '2 feeds'."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def print_problems(lines: tuple[str, ...]) -> None:
    """Each problem as a warning on standard error: results stay alone on standard output."""
    for line in lines:
        err.print(f"Warning: {line}", markup=False)


def print_report_problems(report: SendReport) -> None:
    """A send's feed problems and the subscriber rows it skipped, as warnings."""
    print_problems(report.feed_problems)
    print_problems(
        tuple(f"invalid subscriber skipped: {row}" for row in report.skipped_subscribers)
    )


def summarise(report: SendReport, verb: str) -> None:
    """A send in one line (or why nothing was sent), after its warnings."""
    print_report_problems(report)
    if report.skipped_reason:
        out.print(f"Nothing sent: {report.skipped_reason}.")
        return
    resumed = f" (resumed issue {report.issue_id})" if report.resumed else ""
    out.print(
        f"{verb} issue with {report.post_count} posts{resumed}: {report.sent} delivered,"
        f" {report.failed} failed, {report.pending} pending."
    )


class SendProgress:
    """A live bar (sent, failed, pending, rate, ETA) on a terminal; else a line every 10 s."""

    INTERVAL = 10.0

    def __init__(self, console: Console) -> None:
        self.console = console
        self.counts = {status: 0 for status in DeliveryStatus}
        self.total = 0
        self.started = time.monotonic()
        self.last_line = self.started
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> SendProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
        elif self.total:
            self._line()

    def start(self, total: int, already_done: int) -> None:
        """Show the bar (or the first line) once the number of messages is known."""
        self.total, self.started = total, time.monotonic()
        self.last_line = self.started
        if already_done:
            self.console.print(
                f"Resuming: {already_done} already handled, {total} to send.", markup=False
            )
        if self.console.is_terminal and total:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("Sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[summary]}"),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.task = self.bar.add_task("send", total=total, summary="", rate="")
            self.bar.start()

    def advance(self, delivery: Delivery) -> None:
        """Count one settled recipient and refresh the display."""
        self.counts[delivery.status] += 1
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, advance=1, summary=self._summary(), rate=self._rate())
        elif time.monotonic() - self.last_line >= self.INTERVAL:
            self._line()

    def _summary(self) -> str:
        sent, failed, pending = (self.counts[s] for s in DeliveryStatus)
        return f"{sent} sent, {failed} failed, {pending} pending"

    def _rate(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return f"{sum(self.counts.values()) / elapsed:.0f} msg/s"

    def _line(self) -> None:
        self.last_line = time.monotonic()
        done = sum(self.counts.values())
        self.console.print(
            f"Sending: {done}/{self.total} ({self._summary()}), {self._rate()}", markup=False
        )
