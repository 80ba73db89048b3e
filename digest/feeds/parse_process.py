"""A second Python process that parses feed bodies, so that parsing uses two cores, not one GIL.

The parent sends (parse function, bytes, URL, content type, now) over a socket pair and gets back
the FeedResult and the log records the parse made, which it re-emits. Up to DEPTH bodies are sent
ahead, so the process never idles while the parent waits for the GIL to hand it the next one.
Any trouble with the process (it cannot start, dies, answers garbage, or is stuck) makes `parse`
return None: the caller then parses in its own thread, as if there were no second process.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection

from digest.core.models import FeedResult
from digest.feeds.parse import ParseFunction, parse_safely

logger = logging.getLogger(__name__)

DEPTH = 2  # bodies in the process at once: one parsed, one waiting
POLL = 0.05  # how often a waiting thread checks whether its feed was given up on
KILL_WAIT = 2.0  # seconds to reap the process once killed
PARENT_CHECK = 0.25  # how often the second process checks that its parent is still there
READY = b"ready"
_CHILD = "import sys; from digest.feeds.parse_process import serve; serve(int(sys.argv[1]))"


@dataclass
class _Answer:
    """One request's answer, filled in by the receiving thread."""

    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    records: list[logging.LogRecord] = field(default_factory=list)


class ParseProcess:
    """The parent's end: try_acquire a place, parse, release it; close() kills the process
    whatever it is doing, and so does a parse given up on (it may be stuck for good)."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        connection: Connection,
        on_ready: Callable[[], None],
    ) -> None:
        self._process = process
        self._connection = connection
        self._on_ready = on_ready
        self._lock = threading.Lock()  # the fields below
        self._sending = threading.Lock()  # one message on the socket at a time, and its closing
        self._ready = False
        self._broken = False
        self._closed = False
        self._taken = 0  # places taken by try_acquire
        self._answers: dict[int, _Answer] = {}
        self._next = 0
        self.parsed = 0  # feeds parsed there, for the log and tests
        self._receiver = threading.Thread(
            target=self._receive, name="parse process answers", daemon=True
        )
        self._receiver.start()

    @classmethod
    def start(cls, on_ready: Callable[[], None] = lambda: None) -> ParseProcess | None:
        """Start the process (it imports the parser while the caller waits on the network), or
        None if it cannot be started here. `on_ready` is called once it can take parses."""
        try:
            mine, theirs = socket.socketpair()
            with mine, theirs:
                process = subprocess.Popen(
                    [sys.executable, "-c", _CHILD, str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                connection = Connection(mine.detach())
            level = logging.getLogger("digest").getEffectiveLevel()
            try:
                connection.send((list(sys.path), level))
                return cls(process, connection, on_ready)
            except BaseException:
                connection.close()
                _kill(process)
                raise
        except Exception as error:
            logger.debug("parsing on one core: no second process: %s", _line(error))
            return None

    @property
    def usable(self) -> bool:
        """Whether the process may still take parses (it is not broken nor closed)."""
        return not (self._broken or self._closed)

    @property
    def pid(self) -> int:
        """The process's id, for tests."""
        return self._process.pid

    def try_acquire(self) -> bool:
        """Take a place in the process for one parse if it is up and has one free; never waits."""
        with self._lock:
            if not self._ready or self._broken or self._closed or self._taken >= DEPTH:
                return False
            self._taken += 1
            return True

    def release(self) -> None:
        """Give back a place taken by try_acquire."""
        with self._lock:
            self._taken -= 1

    def parse(
        self,
        parse: ParseFunction,
        data: bytes,
        url: str,
        content_type: str | None,
        now: datetime,
        abandoned: Callable[[], bool],
    ) -> FeedResult | None:
        """parse_safely(...) done in the process, its log records re-emitted here; None if the
        process could not do it (the caller parses itself). Only between try_acquire and release.
        """
        try:
            request = pickle.dumps((parse, data, url, content_type, now), pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # e.g. a function defined inside a test
            logger.debug("parsing %s in its thread: %s", url, _line(error))
            return None
        answer = _Answer()
        with self._lock:
            if self._broken or self._closed:
                return None
            ident, self._next = self._next, self._next + 1
            self._answers[ident] = answer
        try:
            with self._sending:
                self._connection.send_bytes(ident.to_bytes(8, "big"))
                self._connection.send_bytes(request)
            del request
            while not answer.done.wait(POLL):
                if abandoned():
                    self._fail("was stopped: a parse there was given up on")
                    return None
        except Exception as error:
            self._fail(f"failed: {_line(error)}")
            return None
        finally:
            with self._lock:
                self._answers.pop(ident, None)
        for record in answer.records:
            target = logging.getLogger(record.name)
            if target.isEnabledFor(record.levelno):
                target.handle(record)
        if not isinstance(answer.result, FeedResult):
            logger.debug("parsing %s in its thread: %s", url, answer.result)
            return None
        with self._lock:
            self.parsed += 1
        return answer.result

    def close(self) -> None:
        """Kill the process and reap it; a parse still waiting on it then gets None."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _kill(self._process)
        self._receiver.join(KILL_WAIT)
        logger.debug("second process closed after parsing %d feeds", self.parsed)

    def _receive(self) -> None:
        """Hand each answer to the thread waiting for it, until the process is gone."""
        try:
            if self._connection.recv_bytes() != READY:
                raise ValueError("it did not start")
            with self._lock:
                self._ready = True
            self._on_ready()
            while True:
                ident, result, records = self._connection.recv()
                with self._lock:
                    answer = self._answers.get(ident)
                if answer is not None:
                    answer.result, answer.records = result, records
                    answer.done.set()
        except Exception as error:
            if not self._closed:
                self._fail(f"failed: {_line(error)}")
        finally:
            with self._lock:
                self._broken = True
                waiting = list(self._answers.values())
            for answer in waiting:
                answer.result = "the second process is gone"
                answer.done.set()
            with self._sending:
                self._connection.close()

    def _fail(self, why: str) -> None:
        """Stop using the process for good: kill it (it may be stuck) and say why at debug."""
        with self._lock:
            first, self._broken = not self._broken, True
        if first:
            logger.debug("parsing on one core from now on: the second process %s", why)
        _kill(self._process)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap, so no zombie or stuck process outlives collection."""
    try:
        process.kill()
        process.wait(KILL_WAIT)
    except Exception as error:  # already reaped, or not dying: nothing more to do here
        logger.debug("could not reap the second process: %s", _line(error))


def _line(error: BaseException) -> str:
    """An exception as one short line."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


# -- in the second process ----------------------------------------------------------------


class _Keep(logging.Handler):
    """Keeps every record, made picklable, to go back with the parse that made it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)


def serve(fd: int) -> None:
    """The second process's loop: parse each request until the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(
        target=_exit_with_parent, args=(os.getppid(),), name="parent watch", daemon=True
    ).start()
    connection = Connection(fd)
    try:
        path, level = connection.recv()
        sys.path[:] = path
        keep = _Keep()
        root = logging.getLogger()
        root.addHandler(keep)
        root.setLevel(level)
        importlib.import_module("digest.feeds.parse")
        importlib.import_module("feedparser")  # imported now, while the parent waits on the network
        connection.send_bytes(READY)
        while True:
            ident = int.from_bytes(connection.recv_bytes(), "big")
            request = connection.recv_bytes()
            try:
                function, data, url, content_type, now = pickle.loads(request)
            except Exception as error:  # e.g. a parse function this process cannot import
                _answer(connection, ident, f"could not read the request: {_line(error)}", [])
                continue
            del request
            result = parse_safely(function, data, url, content_type, now)
            del data
            keep.records, records = [], keep.records
            _answer(connection, ident, result, records)
    except EOFError:
        return


def _exit_with_parent(parent: int) -> None:
    """End this process at once, mid-parse too, when its parent is gone (killed outright, say:
    a closed socket is noticed only between parses)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK)
    os._exit(0)


def _answer(
    connection: Connection, ident: int, result: object, records: list[logging.LogRecord]
) -> None:
    """Send one answer; a result that cannot be pickled goes back as its reason instead."""
    try:
        connection.send((ident, result, records))
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        connection.send((ident, f"could not send the result: {_line(error)}", []))
