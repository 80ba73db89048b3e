"""Code run outside coverage measurement, for the few tests that measure it themselves.

`make unit` runs the tests under coverage.py, which traces every line of digest/ in the test
processes and in the `digest` processes they start (through COVERAGE_PROCESS_CONFIG in the
environment). Tracing a loop of a million steps costs seconds, and a test of the rendering
bounds measures the processor time, memory and the 10-second render deadline of exactly such a
loop: measured, the deadline could come before the bound the test is about. Those tests run
that one loop unmeasured; everything else stays measured.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_SUBPROCESS_VARIABLES = ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START")


def unmeasured_environment() -> dict[str, str]:
    """This process's environment, less what would start coverage in a Python child."""
    return {k: v for k, v in os.environ.items() if k not in _SUBPROCESS_VARIABLES}


@contextmanager
def unmeasured() -> Iterator[None]:
    """Pause coverage in this process, if it is measured, for the block."""
    try:
        import coverage
    except ImportError:  # coverage is a dev dependency; a bare pytest may run without it
        yield
        return
    current = coverage.Coverage.current()
    if current is None:
        yield
        return
    current.stop()
    try:
        yield
    finally:
        current.start()
