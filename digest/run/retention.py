"""Retention: deliveries older than `retention.deliveries` compacted into per-issue counts.

Runs after each send and with `digest compact`. After it, the state holds no address for a
delivery of an issue created before the window (an unfinished issue aside: its send goes on),
and no address, detail or text of a bounce or complaint report received before it or about
such an issue; `digest history` shows the same numbers as before. Suppressions and consent
records are not touched: they are kept for as long as the law needs them (the operator's guide,
"Retention").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from digest import store
from digest.config.schema import Config
from digest.store.ledger import Compaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Compacted:
    """What a compaction did, and the window it kept (None: deliveries are kept forever)."""

    window: str
    cutoff: datetime | None
    done: Compaction | None


def compact(config: Config, now: datetime) -> Compacted:
    """Compact what is older than the window at `now`; nothing when it is `forever`."""
    window = config.retention.deliveries
    cutoff = config.retention.cutoff(now)
    if cutoff is None:
        return Compacted(window, None, None)
    with store.open(config) as state:
        done = state.ledger.compact(cutoff, now)
    if done.issues or done.reports:
        logger.info(
            "compacted %d issues (%d deliveries) and %d reports older than %s",
            len(done.issues),
            done.deliveries,
            done.reports,
            window,
        )
    for issue_id in done.unfinished:
        logger.warning(
            "issue %d is older than retention.deliveries (%s) but its send has not finished:"
            " its deliveries are kept until it does (run `digest send`)",
            issue_id,
            window,
        )
    return Compacted(window, cutoff, done)
