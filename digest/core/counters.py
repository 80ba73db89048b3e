"""What digest counts as it works (messages, bounces, sign-ups, webhooks, feed fetches), for
the Prometheus metrics `metrics.listen` serves.

Every capability counts through `count()`, which does nothing until `enable()` has been called:
with metrics off (the default) prometheus_client is not even imported, so a plain `digest send`
pays nothing for it. `digest run` and `digest serve` call `enable()` (digest.metrics) before
they start working, when `metrics.listen` is set.

No label carries personal data: each label's values come from a fixed set declared here (any
other value is counted as "other"), except `feed`, which is a feed's configured name. Counters
live in the process and start at zero with it, as Prometheus counters do (rate() and
increase() see the restart); each known label combination is created at zero on `enable()`,
so that the first increment after a start is seen as one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

OTHER = "other"
FREE = None  # a label whose values are not from a fixed set (feed names)


@dataclass(frozen=True)
class CounterSpec:
    """One counter: its name (without `_total`), help text, and each label with the values it
    may take (FREE: any, such as a feed's configured name)."""

    name: str
    help: str
    labels: tuple[tuple[str, frozenset[str] | None], ...] = ()

    def label_values(self, given: Mapping[str, str]) -> tuple[str, ...]:
        """The values to count under, in label order; an unknown value becomes "other"."""
        if set(given) != {name for name, _ in self.labels}:
            raise ValueError(f"{self.name} takes labels {[name for name, _ in self.labels]}")
        values = []
        for name, allowed in self.labels:
            value = str(given[name])
            values.append(value if allowed is None or value in allowed else OTHER)
        return tuple(values)

    def initial(self) -> list[tuple[str, ...]]:
        """Every combination of the fixed label values, created at zero on start (none when a
        label is FREE: those appear when first counted)."""
        combinations: list[tuple[str, ...]] = [()]
        for _, allowed in self.labels:
            if allowed is None:
                return []
            combinations = [(*done, value) for done in combinations for value in sorted(allowed)]
        return combinations


MESSAGES = CounterSpec(
    "digest_messages",
    "Newsletter messages by outcome: sent (the server accepted it), failed (refused for good, or"
    " given up at the next slot), deferred (a temporary refusal: tried again later).",
    (("outcome", frozenset({"sent", "failed", "deferred"})),),
)
# What digest did with a bounce or complaint report (digest.bounces.apply).
REPORT_OUTCOMES = frozenset(
    {"suppressed", "counted", "dropped_signup", "forged", "untied", "already_suppressed"}
)
BOUNCES = CounterSpec(
    "digest_bounces",
    "Bounce reports recorded (by mail or a provider's webhook), by kind (hard, soft) and what"
    " was done: suppressed, counted, dropped_signup, forged, untied, already_suppressed.",
    (("kind", frozenset({"hard", "soft"})), ("outcome", REPORT_OUTCOMES)),
)
COMPLAINTS = CounterSpec(
    "digest_complaints",
    "Complaint (spam) reports recorded, by what was done (as for digest_bounces_total).",
    (("outcome", REPORT_OUTCOMES),),
)
SIGNUPS = CounterSpec(
    "digest_signups",
    "Sign-up forms carried out: queued (a confirmation email waits in the outbox),"
    " already_subscribed, rate_limited, honeypot (a bot filled the hidden field).",
    (("outcome", frozenset({"queued", "already_subscribed", "rate_limited", "honeypot"})),),
)
CONFIRMATIONS = CounterSpec(
    "digest_confirmations", "Sign-ups confirmed by their owner's link: new subscribers."
)
UNSUBSCRIBES = CounterSpec(
    "digest_unsubscribes",
    "Readers unsubscribed by their own link: one-click (RFC 8058), web (the page's button),"
    " preferences (the preferences page).",
    (("source", frozenset({"one-click", "web", "preferences"})),),
)
WEBHOOK_REQUESTS = CounterSpec(
    "digest_webhook_requests",
    "Requests to the bounce webhooks, by provider and outcome: accepted, refused (signature,"
    " credentials, stale or replayed), malformed, too_large, too_slow (the body never came),"
    " busy (the state was busy).",
    (
        ("provider", frozenset({"mailgun", "sendgrid", "postmark"})),
        (
            "outcome",
            frozenset({"accepted", "refused", "malformed", "too_large", "too_slow", "busy"}),
        ),
    ),
)
FEED_FETCHES = CounterSpec(
    "digest_feed_fetches",
    "Feed fetches by feed (its configured name) and outcome: ok, not_modified, failed.",
    (("feed", FREE), ("outcome", frozenset({"ok", "not_modified", "failed"}))),
)

ALL = (
    MESSAGES,
    BOUNCES,
    COMPLAINTS,
    SIGNUPS,
    CONFIRMATIONS,
    UNSUBSCRIBES,
    WEBHOOK_REQUESTS,
    FEED_FETCHES,
)

_lock = threading.Lock()
_registry: CollectorRegistry | None = None
_counters: dict[str, Any] = {}


def enable() -> CollectorRegistry:
    """Start counting (once per process; later calls give the same registry): a registry with
    every counter at zero, and the process's own metrics (CPU, memory, start time)."""
    global _registry
    with _lock:
        if _registry is not None:
            return _registry
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            PlatformCollector,
            ProcessCollector,
            disable_created_metrics,
        )

        # A `_created` series beside each counter is noise for Prometheus.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        for spec in ALL:
            counter = Counter(
                spec.name, spec.help, [name for name, _ in spec.labels], registry=registry
            )
            if spec.labels:
                for values in spec.initial():
                    counter.labels(*values)
            _counters[spec.name] = counter
        _registry = registry
        return registry


def enabled() -> bool:
    """Whether this process counts (metrics.listen is set for it)."""
    return _registry is not None


def count(spec: CounterSpec, amount: int = 1, **labels: str) -> None:
    """Add `amount` to a counter under these labels; nothing while counting is off."""
    counter = _counters.get(spec.name)
    if counter is None or amount <= 0:
        return
    values = spec.label_values(labels)
    (counter.labels(*values) if values else counter).inc(amount)
