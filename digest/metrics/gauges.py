"""What the state says now, read at scrape time: readers, pending deliveries, the outbox, the
last successful send, the next slot and each feed's last new post.

Read from the state rather than kept in the process, so every replica (each `digest serve`,
the `digest run`) reports the same truth, and a restart loses nothing. A reading is kept for
CACHE_SECONDS, so a scrape storm costs one read of the state, not one per scrape. No value or
label names a person: the feeds are labelled by their configured names.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from digest import __version__, store
from digest.config.fields import SettingsError
from digest.config.schema import Config, FeedConfig, ScheduleConfig, load_config
from digest.core.errors import DigestError
from digest.readers.audience import audience, forgetting_secret
from digest.readers.subscribers import load_subscribers
from digest.run.slots import next_slots

logger = logging.getLogger(__name__)

CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Reading:
    """The state's numbers at one moment; a time is None when there is none (yet)."""

    readers: int
    pending_deliveries: int
    outbox_size: int
    outbox_oldest: datetime | None
    last_send: datetime | None
    next_slot: datetime | None
    feeds_last_new_post: tuple[tuple[str, datetime], ...]  # (feed name, when), by name


def next_slot(
    schedule: ScheduleConfig | None, latest: str | None, now: datetime
) -> datetime | None:
    """The slot the scheduler must handle next: the first after the latest slot it recorded
    (sent or skipped), else the first after `now`. So a slot nobody handled stays in the past,
    which is what the "send missed" alert looks for. None without a schedule."""
    if schedule is None:
        return None
    after = datetime.fromisoformat(latest) if latest else now
    upcoming = next_slots(schedule, after, 1)
    return upcoming[0] if upcoming else None


def feed_times(
    feeds: Iterable[FeedConfig], by_url: dict[str, datetime]
) -> tuple[tuple[str, datetime], ...]:
    """Each configured feed's last new post under its name (two feeds of one name: the later)."""
    named: dict[str, datetime] = {}
    for feed in feeds:
        when = by_url.get(feed.url)
        if when is not None and (feed.name not in named or named[feed.name] < when):
            named[feed.name] = when
    return tuple(sorted(named.items()))


def read(config: Config, now: datetime) -> Reading:
    """Read the numbers from the state (opened read-only) and the subscriber file."""
    listed = load_subscribers(config.subscribers_path)
    with store.open(config, read_only=True) as state:
        # No secret is needed (nor created) to count the list while nobody has been forgotten.
        secret = forgetting_secret(state, config.secret)
        return Reading(
            readers=len(audience(state, listed, secret).subscribers),
            pending_deliveries=state.ledger.pending_count(),
            outbox_size=state.outbox.size(),
            outbox_oldest=state.outbox.oldest_queued(),
            last_send=state.ledger.last_finished_at(),
            next_slot=next_slot(config.schedule, state.ledger.latest_slot_key(), now),
            feeds_last_new_post=feed_times(config.feeds, state.feeds.last_new_posts()),
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _timestamp(name: str, documentation: str, when: datetime | None) -> list[GaugeMetricFamily]:
    """A gauge of a time as Unix seconds, absent while there is no such time."""
    family = GaugeMetricFamily(name, documentation)
    if when is not None:
        family.add_metric([], when.timestamp())
    return [family]


def families(reading: Reading | None) -> list[GaugeMetricFamily]:
    """The metric families of a reading (None: the state could not be read)."""
    info = GaugeMetricFamily(
        "digest_info",
        "This digest's version, as a label; the value is always 1.",
        labels=["version"],
    )
    info.add_metric([__version__], 1)
    up = _gauge(
        "digest_state_up",
        "1 when the state and the subscriber file were read for this scrape; 0: see the log.",
        0 if reading is None else 1,
    )
    if reading is None:
        return [info, up]
    feeds = GaugeMetricFamily(
        "digest_feed_last_new_post_timestamp_seconds",
        "When digest last saw a post new to it in each feed (by its configured name).",
        labels=["feed"],
    )
    for name, when in reading.feeds_last_new_post:
        feeds.add_metric([name], when.timestamp())
    return [
        info,
        up,
        _gauge(
            "digest_readers",
            "Readers the next issue goes to: the subscriber file and confirmed sign-ups, less"
            " the suppressed and the forgotten.",
            reading.readers,
        ),
        _gauge(
            "digest_deliveries_pending",
            "Deliveries still to be sent: queued for a send under way, or deferred by the server.",
            reading.pending_deliveries,
        ),
        _gauge(
            "digest_outbox_messages",
            "Confirmation and welcome emails waiting in the outbox.",
            reading.outbox_size,
        ),
        *_timestamp(
            "digest_outbox_oldest_timestamp_seconds",
            "When the oldest email still in the outbox was queued (absent: the outbox is empty).",
            reading.outbox_oldest,
        ),
        *_timestamp(
            "digest_last_successful_send_timestamp_seconds",
            "When the last send that delivered anything finished (absent: none yet).",
            reading.last_send,
        ),
        *_timestamp(
            "digest_next_slot_timestamp_seconds",
            "The slot `digest run` must handle next: the first after the last one it recorded."
            " In the past: that slot was missed (absent: no schedule).",
            reading.next_slot,
        ),
        feeds,
    ]


class StateCollector(Collector):
    """The gauges, read through the store when scraped, at most once per CACHE_SECONDS.

    config.yaml is read afresh for each reading (new feeds get their gauge), keeping the state
    and the schedule as started, as `digest run` does; if it cannot be read, the config as
    started is used. `clock` gives the time (DIGEST_NOW in tests), `monotonic` the cache's."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], datetime],
        *,
        cache_seconds: float = CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.started_with = config
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._families: list[GaugeMetricFamily] = []

    def describe(self) -> list[GaugeMetricFamily]:
        """Nothing up front: registering must not read the state."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The families of the latest reading, read again when older than the cache allows."""
        with self._lock:  # concurrent scrapes wait for one reading and share it
            started = self.monotonic()
            if self._read_at is None or started - self._read_at >= self.cache_seconds:
                self._families = families(self._reading())
                self._read_at = self.monotonic()
            found = list(self._families)
        yield from found

    def current_config(self) -> Config:
        """config.yaml as it is now, with the state and schedule as started."""
        started = self.started_with
        try:
            config = load_config(started.source)
            return replace(config, state=started.state, schedule=started.schedule)
        except (DigestError, SettingsError) as error:
            logger.debug("metrics: config.yaml not re-read (%s); using it as started", error)
            return started

    def _reading(self) -> Reading | None:
        try:
            return read(self.current_config(), self.clock())
        except DigestError as error:
            logger.warning("metrics: the state could not be read: %s", error)
            return None
