"""What the CLI shows while it works: the send's progress on a terminal and in a log, and
printed lines turned into log records for --log-format json."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from digest.cli.output import LogLines, SendProgress
from digest.core.models import Delivery, DeliveryStatus


def deliveries() -> list[Delivery]:
    return [
        Delivery("ann@example.com", DeliveryStatus.SENT),
        Delivery("bob@example.com", DeliveryStatus.FAILED, "550 5.1.1 No such user"),
        Delivery("cat@example.com", DeliveryStatus.PENDING, "451 Try again"),
    ]


def test_a_terminal_shows_a_bar_counting_what_was_sent_failed_and_is_pending() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    with SendProgress(console) as progress:
        progress.start(3, already_done=2)
        for delivery in deliveries():
            progress.advance(delivery)
        assert progress.bar is not None
        progress.bar.refresh()
        shown = screen.getvalue()
    assert "Resuming: 2 already handled, 3 to send." in shown
    assert "Sending" in shown and "3/3" in shown
    assert "1 sent, 1 failed, 1 pending" in shown and "msg/s" in shown


def test_without_a_terminal_progress_is_a_line_now_and_then_and_one_at_the_end() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=False, width=120)
    with SendProgress(console) as progress:
        progress.INTERVAL = 0.0  # a line for every recipient, rather than every 10 s
        progress.start(3, already_done=0)
        for delivery in deliveries():
            progress.advance(delivery)
    lines = screen.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "Sending: 1/3 (1 sent",
        "Sending: 2/3 (1 sent",
        "Sending: 3/3 (1 sent",
        "Sending: 3/3 (1 sent",
    ]
    assert lines[-1].startswith("Sending: 3/3 (1 sent, 1 failed, 1 pending), ")
    assert "\x1b" not in screen.getvalue()


def test_printed_lines_become_log_records_at_their_level(caplog: pytest.LogCaptureFixture) -> None:
    stream = LogLines()
    with caplog.at_level(logging.INFO, logger="digest.cli"):
        stream.write("Error: the state is locked\nWarning: a feed")
        stream.write(" is slow\n\n   \nSent 2.\nhalf a line")
        assert stream.writable()
        stream.flush()
        stream.flush()  # nothing left: no record
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "the state is locked"),
        ("WARNING", "a feed is slow"),
        ("INFO", "Sent 2."),
        ("INFO", "half a line"),
    ]
