"""Sample issues with every feature on, for the preview with nothing new and for `digest check`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from digest.config.schema import Config
from digest.core.models import Issue, Post, Section

SAMPLE_POST_CAP = 100

SAMPLE_DATE = datetime(2017, 12, 1, 8, 0, tzinfo=UTC)
SAMPLE_TITLES = (
    "“Integrated” <budgets> & the care workforce: what the spending review means",
    "Five lessons from a decade of community health partnerships",
    "Why local councils are rethinking how they buy services",
    "Data sharing between hospitals and social care: a practical guide",
    "Interview: running a food bank network through the winter",
    "What the new planning rules mean for small housing associations",
)


def slug(text: str, used: set[str]) -> str:
    """digest.render.issue's heading slug, loaded on first use (a cached preview never loads
    Jinja2)."""
    from digest.render.issue import slug as render_slug

    return render_slug(text, used)


SAMPLE_NOTE = (
    "**This is a sample issue.** Nothing is new since the last issue, so `digest send` would"
    " send nothing now: these made-up posts, dated today and without images, only show the"
    " design."
)


def sample_issue(
    config: Config,
    posts_per_section: int = 3,
    *,
    date: datetime = SAMPLE_DATE,
    images: bool = True,
) -> Issue:
    """A realistic issue with every feature (authors, images, hostile titles) for checks.
    `date` is the issue's (its posts are a few hours older each); without `images`, no post
    has a thumbnail (the sample's image addresses are not real images)."""
    headings = list(dict.fromkeys(feed.heading for feed in config.feeds))
    sections = []
    number = 0
    for index, heading in enumerate(headings):
        posts = []
        for n in range(posts_per_section):
            number += 1
            title = SAMPLE_TITLES[(number - 1) % len(SAMPLE_TITLES)]
            posts.append(
                Post(
                    feed_url=f"https://example.org/feed/{index}",
                    key=f"sample-{number}",
                    link_key=f"example.org/posts/{number}",
                    title=title if number <= len(SAMPLE_TITLES) else f"{title} ({number})",
                    link=f"https://example.org/posts/{number}-{slug(title, set())}",
                    published=date - timedelta(hours=7 * number),
                    author=""
                    if n == 1
                    else ("Priya Natarajan", "Tom Ellis", "Ngozi Okafor")[n % 3],
                    summary_html="<p>A short summary of the post with a <a"
                    ' href="https://example.org/more">link</a>.</p>',
                    excerpt="The spending review settled budgets for three years, but the detail"
                    " matters for services on the ground. We look at what changes, who gains,"
                    " and what the sector should ask for next.",
                    image_url=f"https://example.org/images/{number}.jpg"
                    if images and n % 2 == 0
                    else "",
                    categories=("Policy", "Health"),
                )
            )
        sections.append(Section(title=heading, posts=tuple(posts)))
    return Issue(title=config.newsletter.title, date=date, sections=tuple(sections))


def preview_sample(config: Config, now: datetime) -> Issue:
    """What the preview shows when nothing is new: the sample issue dated `now`, with no remote
    images, and labelled a sample in the issue itself (as its note), so a saved or forwarded
    preview says so too."""
    return replace(sample_issue(config, date=now, images=False), note=SAMPLE_NOTE)


def sample_config(config: Config) -> Config:
    """The config with every optional newsletter feature switched on, to exercise the templates."""
    newsletter = config.newsletter
    filled = replace(
        newsletter,
        intro=newsletter.intro
        or "Welcome to this week's issue. **Thank you** for reading, and [tell us what you"
        " think](https://example.org/feedback).",
        logo_url=newsletter.logo_url or "https://example.org/logo.png",
        archive_url=newsletter.archive_url or "https://example.org/newsletter/latest",
        footer=newsletter.footer or "You signed up for this newsletter on our website.",
        address=newsletter.address or "1 Example Street\nLondon N1 1AA",
    )
    return replace(config, newsletter=filled)


def check_templates(config: Config) -> list[str]:
    """Render the templates on sample data with every feature on; warnings, or TemplateError."""
    from digest.render.issue import render_issue
    from digest.render.message import check_messages

    full = sample_config(config)
    render_issue(sample_issue(full), full)
    check_messages(full)
    render_issue(sample_issue(config, 1), config)
    per_section = config.digest.max_posts_per_section
    sections = max(1, len({feed.heading for feed in config.feeds}))
    largest = min(per_section, max(1, SAMPLE_POST_CAP // sections))
    biggest = render_issue(sample_issue(config, largest), config)
    return [
        f"a full issue ({sections * largest} posts) would be too big: {warning}"
        for warning in biggest.warnings
    ]
