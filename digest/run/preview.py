"""The preview: the next issue as a sample subscriber would get it, served from the preview
cache in the state when nothing it depends on has changed."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from digest import __version__, store
from digest.archive import pages as archive
from digest.config.schema import Config
from digest.core.dates import format_date
from digest.core.models import (
    Issue,
)
from digest.feeds.collect import collect
from digest.issue.prepare import (
    Collection,
    Collector,
    Prepared,
    feed_problems,
    next_issue,
    render_issue,
)
from digest.issue.samples import preview_sample
from digest.mail.message import (
    IssueEnvelope,
    envelope_for,
)
from digest.render.personalise import personalise, stamp_issue_url
from digest.run.editions import PREVIEW_SUBSCRIBER

logger = logging.getLogger(__name__)


# The shipped templates (as digest.render.loader names them; not imported from there, so that a
# cached
# preview does not load Jinja2).
BUNDLED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


_SOME_DAY = datetime(2000, 1, 1, tzinfo=UTC)  # stands for the issue's date, keyed as its day


def preview_key(config: Config, issue: Issue) -> str:
    """A hash of everything a preview's rendering depends on: digest's version, the config, the
    issue (posts, dates, sections) and every template file, the editor's and the bundled ones."""
    digest = hashlib.sha256()
    for part in (__version__, repr(config), _dated(issue, config), archive.preview_url(config)):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    for folder in (config.templates_dir, BUNDLED_TEMPLATES):
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(folder)).encode("utf-8", "surrogatepass") + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _dated(issue: Issue, config: Config) -> str:
    """The issue as templates see it, each date as its formatted day (a preview made a minute
    later, whose undated posts are dated "now", is still the same preview)."""
    zone = ZoneInfo(config.schedule.timezone if config.schedule else "UTC")
    date_format = config.newsletter.date_format

    def day(moment: datetime | None) -> str:
        if moment is None:
            return ""
        return format_date(moment, date_format, zone) + moment.astimezone(zone).strftime("%F")

    # Every other field of the issue (its title, the editor's note) as it is.
    parts = [repr(replace(issue, date=_SOME_DAY, sections=())), day(issue.date)]
    for section in issue.sections:
        parts.append(section.title)
        for post in section.posts:
            parts += [repr(replace(post, published=None, updated=None)), day(post.published)]
    return "\n".join(parts)


def preview(
    config: Config, now: datetime, *, collector: Collector = collect, cache: bool = True
) -> tuple[Prepared, str, str]:
    """The next issue as a sample subscriber would get it (html, text); records nothing.

    An issue whose inputs are unchanged since an earlier preview is served from the cache in
    the state file (see digest.store.previews), without rendering or inlining again.
    """
    with store.open(config, read_only=True) as state:
        issue, sources, results = next_issue(
            config, state, now, Collection(record=False, collector=collector)
        )
        # With nothing new (so nothing would be sent), sample posts stand in, flagged `sample`,
        # so an editor working on the templates still sees them filled.
        sample = issue.post_count == 0 and config.digest.skip_if_empty
        if sample:
            issue = preview_sample(config, now)
        key = preview_key(config, issue) if cache else ""
        rendered = state.previews.cached(key) if cache else None
    if rendered is None:
        rendered = stamp_issue_url(render_issue(issue, config), archive.preview_url(config))
        if cache:
            with store.open(config, read_only=True) as state:
                state.previews.remember(key, rendered, now.isoformat())
    prepared = Prepared(
        issue, rendered, results, sources, feed_problems(config.feeds, results), sample=sample
    )
    envelope = envelope_for(config, prepared.rendered, now)
    html, text = personalise(prepared.rendered, PREVIEW_SUBSCRIBER, preview_unsubscribe(envelope))
    return prepared, html, text


def preview_unsubscribe(envelope: IssueEnvelope) -> str:
    template = envelope.unsubscribe_url_template
    return template.replace("{token}", "preview") if template else f"mailto:{envelope.sender}"
