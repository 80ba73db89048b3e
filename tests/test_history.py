"""What `digest history` reports of each issue's bounces and complaints, computed apart from the
command: which issues are named, their complaint rate, and when it is past the providers' limit."""

from __future__ import annotations

from datetime import UTC, datetime

from digest import store
from digest.run.history import COMPLAINT_RATE_LIMIT, issue_reports
from digest.store.bounces import IssueBounces

WHEN = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)


def summary(issue_id: int, sent: int) -> store.IssueSummary:
    issue = store.StoredIssue(issue_id, WHEN, WHEN, None, "Subject", "<p>", "text", 3)
    return store.IssueSummary(issue=issue, sent=sent, failed=0, pending=0, failures=())


def test_the_complaint_rate_is_complaints_per_hundred_delivered() -> None:
    reports = issue_reports([summary(2, 1000)], {2: IssueBounces(hard=4, soft=1, complaints=3)})
    (only,) = reports
    assert (only.issue_id, only.hard, only.soft, only.complaints) == (2, 4, 1, 3)
    assert only.complaint_rate == 0.3
    assert not only.over_limit  # at the limit is not past it


def test_past_the_limit_is_flagged() -> None:
    (only,) = issue_reports([summary(2, 1000)], {2: IssueBounces(complaints=4)})
    assert only.complaint_rate > COMPLAINT_RATE_LIMIT
    assert only.over_limit


def test_issues_without_reports_or_deliveries_are_left_out_in_order() -> None:
    issues = [summary(3, 10), summary(2, 0), summary(1, 10)]
    bounced = {3: IssueBounces(soft=1), 2: IssueBounces(complaints=1), 1: IssueBounces()}
    assert [row.issue_id for row in issue_reports(issues, bounced)] == [3]
    assert issue_reports([summary(4, 10)], {}) == ()
