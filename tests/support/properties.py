"""Hypothesis settings shared by the property tests (tests/test_properties_*.py).

`make test` must give the same answer on every run, so the examples are derived from each test's
name (`derandomize`), not drawn at random, and nothing is kept between runs. To look further for
a counter-example on your own machine, set DIGEST_PROPERTIES=explore: examples are then random
and there are ten times as many.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXPLORE = os.environ.get("DIGEST_PROPERTIES") == "explore"


def examples(count: int) -> settings:
    """Settings for a property test that tries `count` examples (ten times as many exploring)."""
    return settings(
        max_examples=count * 10 if EXPLORE else count,
        derandomize=not EXPLORE,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        print_blob=EXPLORE,
    )
