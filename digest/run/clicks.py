"""What `digest clicks` shows: one issue's tracked post links, each with how often people
followed it and how often link scanners and prefetchers did, read without changing the state."""

from __future__ import annotations

from dataclasses import dataclass

from digest import store
from digest.config.schema import Config
from digest.core.errors import DigestError
from digest.store import LinkCount


@dataclass(frozen=True)
class IssueClicks:
    """One issue's click counts; `issue_id` None when no issue was sent with tracked links."""

    issue_id: int | None
    links: tuple[LinkCount, ...]

    @property
    def people(self) -> int:
        """Requests counted as people's, over every link."""
        return sum(link.people for link in self.links)

    @property
    def scanners(self) -> int:
        """Requests counted as link scanners' and prefetchers', over every link."""
        return sum(link.scanners for link in self.links)


def click_counts(config: Config, issue_id: int | None = None) -> IssueClicks:
    """The counts of issue `issue_id`, else of the latest issue sent with tracked links.
    DigestError when there is no such issue."""
    with store.open(config, read_only=True) as state:
        if issue_id is None:
            issue_id = state.clicks.latest_tracked_issue()
            if issue_id is None:
                return IssueClicks(None, ())
        elif not state.clicks.issue_exists(issue_id):
            raise DigestError(f"there is no issue {issue_id}; `digest history` lists the issues")
        return IssueClicks(issue_id, tuple(state.clicks.counts(issue_id)))
