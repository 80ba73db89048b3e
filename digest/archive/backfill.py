"""Publish the issues sent before the archive was turned on: `digest archive add-past`.

An issue counts as sent when at least one delivery of it was accepted by the mail server: test
sends, dry runs and previews freeze nothing, and an issue frozen but never delivered (a send
with no subscribers, or one that failed for everyone) reached no one. Each such issue not yet in
the archive gets the next free number, in the order the issues were sent, so numbers stay
unique and no page that already exists moves; the archive lists issues by the time they were
sent, so these take their place among the rest. Withdrawn issues keep their number and stay
withdrawn, and running it again finds nothing left to add.

The page shows the issue's own frozen HTML, the same copy the archive shows for an issue
numbered when it was frozen. An issue sent with per-section variants is shown as its full
version, with every section: the issue's own rendering, of which the variants are subsets.
Its "view in browser" link is left as it was sent (the issue is not rewritten); the link on
the page itself is what the archive gives every issue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from digest import store
from digest.archive import pages as archive
from digest.config.schema import Config
from digest.core.errors import DigestError
from digest.store import State


@dataclass(frozen=True)
class PastIssue:
    """An issue sent before the archive was on, and the number and page it is published at."""

    number: int
    subject: str
    sent_at: datetime
    url: str


@dataclass(frozen=True)
class PastIssues:
    """What `add_past_issues` published (or would), and where the static archive was rewritten."""

    issues: tuple[PastIssue, ...]
    rewritten: Path | None = None


def add_past_issues(config: Config, now: datetime, *, dry_run: bool = False) -> PastIssues:
    """Number and publish every sent issue not yet in the archive, oldest first; with `dry_run`,
    only say which issues would get which numbers, changing nothing."""
    if not config.archive.enabled:
        raise DigestError(
            f"{config.source}: the archive is off; set archive.enabled: true (and"
            " newsletter.archive_url) before adding past issues to it"
        )
    if dry_run:
        with store.open(config, read_only=True) as state:
            return PastIssues(tuple(_number(config, state)))
    # Under the send lock, in one transaction: a send freezing an issue meanwhile cannot take
    # one of these numbers, and a failure publishes none of them.
    with (
        store.lock(config, "send", command="archive add-past"),
        store.open(config) as state,
        state.transaction(),
    ):
        added = tuple(_number(config, state, publish=True))
    rewritten = None
    if added and config.archive.out_dir:
        from digest.archive.files import publish

        rewritten = config.resolve(config.archive.out_dir)
        try:
            publish(config, rewritten, now)
        except DigestError as error:
            raise DigestError(
                f"added {len(added)} past issues to the archive, but {rewritten} was not"
                f" rewritten: {error}; run `digest archive` to write it"
            ) from None
    return PastIssues(added, rewritten)


def _number(config: Config, state: State, *, publish: bool = False) -> list[PastIssue]:
    """The past issues with the numbers they get; recorded only if `publish`."""
    found = []
    number = state.archive.next_number()
    for issue in state.archive.unpublished_sent():
        slug = archive.issue_slug(issue.subject)
        if publish:
            summary = archive.summary_of_frozen(state.archive.post_titles(issue.id), issue.text)
            state.archive.publish(issue.id, number, slug, summary)
        found.append(
            PastIssue(
                number, issue.subject, issue.created_at, archive.issue_url(config, number, slug)
            )
        )
        number += 1
    return found
