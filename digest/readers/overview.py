"""What `digest subscribers` shows: the list in numbers, and who is kept off it and why (the
reader's own unsubscribe, a bounce or a complaint); and what its export holds about each person.
Both read without changing the state."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from digest import store
from digest.config.schema import Config
from digest.readers import audience
from digest.readers.subscribers import load_subscribers

# How each kind of bounce or complaint suppression is named, in this order of first appearance.
BOUNCE_GROUPS = {
    store.SuppressionKind.COMPLAINT: "complaint",
    store.SuppressionKind.SOFT_BOUNCES: "soft bounces",
    store.SuppressionKind.REFUSED: "refused during the send",
    store.SuppressionKind.HARD_BOUNCE: "hard bounce",
}


@dataclass(frozen=True)
class Overview:
    """The subscriber file and the state, counted."""

    listed: int  # distinct addresses in the subscriber file
    unsubscribed: tuple[store.Suppression, ...]  # suppressions of addresses in the file
    unsubscribed_elsewhere: int  # suppressions of addresses not in the file
    bounced: dict[str, tuple[store.Suppression, ...]]  # bounce and complaint suppressions by kind
    counts: audience.Counts
    invalid: tuple[str, ...]  # subscriber file rows skipped
    duplicates: tuple[str, ...]  # subscriber file rows ignored


def by_bounce_kind(rows: Iterable[store.Suppression]) -> dict[str, tuple[store.Suppression, ...]]:
    """The bounce and complaint suppressions among rows, grouped under their kind's name, each
    group in the rows' order; other suppressions are left out."""
    groups: dict[str, list[store.Suppression]] = {}
    for row in rows:
        if row.kind.is_bounce:
            groups.setdefault(BOUNCE_GROUPS[row.kind], []).append(row)
    return {name: tuple(group) for name, group in groups.items()}


def overview(config: Config) -> Overview:
    """The list as `digest subscribers` counts it."""
    subscriber_list = load_subscribers(config.subscribers_path)
    with store.open(config, read_only=True) as state:
        suppressions = state.suppressions.all()
        secret = audience.forgetting_secret(state, config.secret)
        counted = audience.counts(state, subscriber_list, secret, audience.section_titles(config))
    listed = {s.email for s in subscriber_list.subscribers}
    unsubscribed = tuple(row for row in suppressions if row.email in listed)
    return Overview(
        listed=len(listed),
        unsubscribed=unsubscribed,
        unsubscribed_elsewhere=len(suppressions) - len(unsubscribed),
        bounced=by_bounce_kind(suppressions),
        counts=counted,
        invalid=subscriber_list.invalid,
        duplicates=subscriber_list.duplicates,
    )


def export(config: Config) -> list[dict[str, Any]]:
    """Everything held about each person in the file or the state (see audience.export)."""
    subscriber_list = load_subscribers(config.subscribers_path)
    with store.open(config, read_only=True) as state:
        return audience.export(state, subscriber_list)
