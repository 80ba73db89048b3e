"""Graceful stop on SIGTERM and SIGINT, the one mechanism `digest send` and `digest run` share.

The first signal sets the `stop` event: messages already handed to the SMTP server finish and
are recorded, feeds still being fetched are given up, nothing new starts, and the command ends
as documented. A second signal stops the process at once, exiting 128 + the signal's number
(130 for Ctrl-C, 143 for SIGTERM). That leaves the state consistent: a delivery is committed
only after the server accepted its message, SQLite rolls back a transaction cut short, and the
kernel releases the lock files with the process, so the next run repeats at most the messages
that were in flight.

The signal handler takes no lock (it could interrupt the very thread holding it): the first
signal writes one byte to a pipe, and a watcher thread reads it, logs and sets the event; the
second writes a line to stderr and exits.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_CLOSE = b"\0"  # not a signal number: tells the watcher to end

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class GracefulStop:
    """Use as `with GracefulStop() as stop:`; the first SIGTERM/SIGINT sets `stop`, the second
    ends the process at once. Outside the main thread no handler can be set: `stop` is then
    only set by whoever else holds it."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._received = 0
        self._previous: dict[signal.Signals, Handler] = {}
        self._pipe: tuple[int, int] | None = None
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is not threading.main_thread():
            return self.stop
        self._pipe = os.pipe()
        self._watcher = threading.Thread(target=self._watch, name="digest-stop", daemon=True)
        self._watcher.start()
        for number in SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self.stop

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._pipe is None or self._watcher is None:
            return
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        reader, writer = self._pipe
        os.write(writer, _CLOSE)  # after any signal byte still unread: that one is handled first
        self._watcher.join(timeout=5)
        os.close(writer)
        os.close(reader)
        self._pipe = None

    def _handle(self, number: int, frame: FrameType | None) -> None:
        """The signal handler: first time wake the watcher, second time exit at once."""
        self._received += 1
        assert self._pipe is not None
        if self._received == 1:
            os.write(self._pipe[1], bytes([number]))
            return
        name = signal.Signals(number).name
        os.write(
            2,
            f"{name} received again: stopped at once; the next run repeats at most the"
            " messages that were in flight\n".encode(),
        )
        os._exit(128 + number)

    def _watch(self) -> None:
        """Log the first signal and set `stop`, outside the signal handler."""
        assert self._pipe is not None
        reader = self._pipe[0]
        while True:
            data = os.read(reader, 1)
            if not data or data == _CLOSE:
                return
            logger.warning(
                "%s received: finishing the messages in flight, then stopping"
                " (send it again, or press Ctrl-C again, to stop at once)",
                signal.Signals(data[0]).name,
            )
            self.stop.set()
