"""Render an issue once (subject, inlined HTML, text) and fill in each subscriber cheaply."""

from __future__ import annotations

import html as html_lib
import importlib.util
import logging
import re
import secrets
import string
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
import nh3
from markupsafe import Markup

from digest.config import Config
from digest.errors import ConfigError, TemplateError
from digest.inline import inline_css
from digest.models import Issue, Post, RenderedIssue, Section, Subscriber
from digest.theme import theme_view

logger = logging.getLogger(__name__)

# Per-subscriber slots. An issue rendered now marks them with its own random marker, drawn after
# the feeds were read, so no feed text or config string can contain one: personalisation fills
# only what the templates put there. Issues frozen by 0.1.0 (marker "") keep these fixed forms.
NAME_PLACEHOLDER = "%%DIGEST_NAME%%"
EMAIL_PLACEHOLDER = "%%DIGEST_EMAIL%%"
UNSUBSCRIBE_PLACEHOLDER = "%%DIGEST_UNSUBSCRIBE_URL%%"
RECIPIENT_PLACEHOLDER = "%%DIGEST_RECIPIENT%%"
SLOT_FIELDS = ("NAME", "EMAIL", "RECIPIENT", "UNSUBSCRIBE_URL")
MARKER_BYTES = 16

BUNDLED_TEMPLATES = Path(__file__).parent / "templates"
HTML_TEMPLATE = "email.html"
TEXT_TEMPLATE = "email.txt"
DEFAULT_SUBJECT = "{title}: {count} new posts, {date}"
SUBJECT_FIELDS = ("title", "date", "count")
MAX_SUBJECT = 150
MAX_TITLE = 300
MAX_AUTHOR = 120
TEXT_WIDTH = 78
CLIP_WARNING_BYTES = 90 * 1024
PREHEADER_LENGTH = 140
SAMPLE_POST_CAP = 100

TEMPLATE_VARIABLES: dict[str, str] = {
    "subject": "The subject line of this issue.",
    "issue.title": "The newsletter's title (newsletter.title).",
    "issue.date": "The issue's date, formatted with newsletter.date_format in the schedule's zone.",
    "issue.date_iso": "The issue's date as YYYY-MM-DD.",
    "issue.count": "How many posts the issue carries.",
    "sections": "The sections in config order; each has title, anchor, count and posts.",
    "section.title": "A section heading (the feed's name, or its `section`).",
    "section.anchor": "A slug of the heading, for id= and #links.",
    "section.count": "How many posts the section carries.",
    "section.posts": "The section's posts, newest first.",
    "post.title": "The post's title as plain text (autoescaped in HTML templates).",
    "post.link": "The post's http(s) URL; empty when the feed gave no usable link.",
    "post.date": "The post's date, formatted like issue.date.",
    "post.date_iso": "The post's date as YYYY-MM-DD.",
    "post.author": "The author's name, or empty.",
    "post.excerpt": "A short plain-text excerpt, cut at a word boundary.",
    "post.excerpt_text": 'The excerpt in lines, list items as "- " lines, for the text part.',
    "post.summary_html": "The feed's summary as sanitised HTML (safe to output as is).",
    "post.image_url": "An absolute http(s) thumbnail URL, or empty.",
    "post.categories": "The post's categories (a list of text).",
    "intro_html": "newsletter.intro rendered from Markdown and sanitised, or empty.",
    "intro_text": "newsletter.intro as plain text (links as text (URL)), or empty.",
    "preheader": "The hidden preview line mail lists show: the top post titles.",
    "newsletter": "Every newsletter.* key of config.yaml, e.g. newsletter.title, .logo_url,"
    " .logo_width, .logo_height, .archive_url, .footer, .address, .language.",
    "theme.accent": "theme.accent from config.yaml (six-digit hex).",
    "theme.font": "theme.font from config.yaml (a CSS font stack).",
    "theme.link": "The accent, darkened if needed to reach WCAG AA contrast on white.",
    "theme.link_dark": "The accent, lightened if needed to reach 6:1 contrast in dark mode.",
    "theme.on_accent": "Black or white: whichever reads best on the accent colour.",
    "subscriber.name": "Placeholder for the subscriber's name (may be empty).",
    "subscriber.email": "Placeholder for the subscriber's email address.",
    "subscriber.recipient": 'Placeholder for "Name (address)", or just the address.',
    "unsubscribe_url": "Placeholder for the subscriber's unsubscribe URL (https or mailto:).",
}


@dataclass(frozen=True)
class PostView:
    """A post as templates see it: bounded, with dates formatted and unsafe URLs dropped."""

    title: str
    link: str
    date: str
    date_iso: str
    author: str
    excerpt: str
    excerpt_text: str
    summary_html: Markup
    image_url: str
    categories: tuple[str, ...]


@dataclass(frozen=True)
class SectionView:
    """A section as templates see it."""

    title: str
    anchor: str
    posts: tuple[PostView, ...]

    @property
    def count(self) -> int:
        """How many posts the section carries."""
        return len(self.posts)


@dataclass(frozen=True)
class IssueView:
    """The issue as templates see it."""

    title: str
    date: str
    date_iso: str
    count: int
    sections: tuple[SectionView, ...]


@dataclass(frozen=True)
class SubscriberView:
    """Slots standing in for the subscriber, filled per message by personalise()."""

    name: str
    email: str
    recipient: str


def new_marker() -> str:
    """A fresh random marker for one issue's per-subscriber slots (128 bits, hex)."""
    return secrets.token_hex(MARKER_BYTES)


def slot(marker: str, field: str) -> str:
    """The text standing for one per-subscriber `field` in an issue rendered with `marker`."""
    if field not in SLOT_FIELDS:
        raise ValueError(f"unknown per-subscriber field {field!r}")
    return f"%%DIGEST_{field}_{marker}%%" if marker else f"%%DIGEST_{field}%%"


@cache
def _slot_pattern(marker: str) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(slot(marker, field)) for field in SLOT_FIELDS))


# ---------------------------------------------------------------- text helpers


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return cut.rstrip(" ,;:-") + "…"


def _safe_url(url: str) -> str:
    url = url.strip()
    if any(ch in url for ch in "\r\n\t ") or urlsplit(url).scheme.lower() not in ("http", "https"):
        return ""
    return url


def format_date(moment: datetime, date_format: str, zone: ZoneInfo) -> str:
    """The moment in `zone`, with %-d style (no padding) supported on every platform."""
    local = moment.astimezone(zone)
    unpadded = re.sub(
        r"%-([dmHIMSjy])", lambda m: str(int(local.strftime("%" + m.group(1)))), date_format
    )
    return local.strftime(unpadded)


def _zone(config: Config) -> ZoneInfo:
    return ZoneInfo(config.schedule.timezone if config.schedule else "UTC")


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "section"
    slug, n = base, 2
    while slug in used:
        slug, n = f"{base}-{n}", n + 1
    used.add(slug)
    return slug


def wrap_text(text: str, width: int = TEXT_WIDTH) -> str:
    """Wrap long lines at `width` without breaking URLs or words; tidy blank lines."""
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.rstrip()
        if len(line) <= width:
            lines.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        lines.extend(
            textwrap.wrap(
                line,
                width,
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return tidy + "\n"


def _heading(text: str, char: str = "=") -> str:
    """Wrapped heading text with an underline as long as its longest line."""
    lines = textwrap.wrap(text, TEXT_WIDTH, break_long_words=False) or [""]
    return "\n".join(lines) + "\n" + char * min(TEXT_WIDTH, max(len(x) for x in lines))


@cache
def _markdown() -> Callable[[str], str]:
    """CommonMark with raw HTML off; built on first use, as most commands never need it."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    return parser.render


def markdown_html(text: str) -> str:
    """Markdown to sanitised HTML: raw HTML is not allowed through, links are http(s)/mailto."""
    rendered = _markdown()(text)
    return nh3.clean(
        rendered,
        tags={"p", "a", "em", "strong", "br", "ul", "ol", "li", "code", "blockquote"},
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener",
    ).strip()


def markdown_text(text: str) -> str:
    """Markdown as plain text for people: paragraphs, dashed list items, links as text (URL)."""
    html = markdown_html(text)

    def link(match: re.Match[str]) -> str:
        url, label = html_lib.unescape(match.group(1)), match.group(2)
        plain = re.sub(r"<[^>]+>", "", label)
        return plain if html_lib.unescape(plain) == url else f"{label} ({url})"

    html = re.sub(r'<a href="([^"]*)"[^>]*>(.*?)</a>', link, html, flags=re.DOTALL)
    html = re.sub(r"<li>", "- ", html)
    html = re.sub(r"<br ?/?>|</li>", "\n", html)
    html = re.sub(r"</(p|ul|ol|blockquote)>", "\n\n", html)
    plain = html_lib.unescape(re.sub(r"<[^>]+>", "", html))
    return re.sub(r"\n{3,}", "\n\n", plain).strip()


# ---------------------------------------------------------------- views


def _post_view(post: Post, date_format: str, zone: ZoneInfo) -> PostView:
    published = post.published
    return PostView(
        title=_one_line(post.title, MAX_TITLE) or "(untitled)",
        link=_safe_url(post.link),
        date=format_date(published, date_format, zone) if published else "",
        date_iso=published.astimezone(zone).strftime("%Y-%m-%d") if published else "",
        author=_one_line(post.author, MAX_AUTHOR),
        excerpt=" ".join(post.excerpt.split()),
        excerpt_text="\n".join(line.rstrip() for line in post.excerpt_text.splitlines())
        or " ".join(post.excerpt.split()),
        summary_html=Markup(post.summary_html),
        image_url=_safe_url(post.image_url),
        categories=tuple(post.categories),
    )


def _issue_view(issue: Issue, config: Config) -> IssueView:
    zone = _zone(config)
    date_format = config.newsletter.date_format
    used: set[str] = set()
    sections = tuple(
        SectionView(
            title=_one_line(section.title, MAX_TITLE),
            anchor=_slug(section.title, used),
            posts=tuple(_post_view(p, date_format, zone) for p in section.posts),
        )
        for section in issue.sections
        if section.posts
    )
    return IssueView(
        title=_one_line(issue.title, MAX_TITLE),
        date=format_date(issue.date, date_format, zone),
        date_iso=issue.date.astimezone(zone).strftime("%Y-%m-%d"),
        count=sum(s.count for s in sections),
        sections=sections,
    )


def render_subject(config: Config, issue: IssueView) -> str:
    """The subject from newsletter.subject (or the default): one line, bounded length."""
    template = config.newsletter.subject or DEFAULT_SUBJECT
    where = f"{config.source}: newsletter.subject"
    try:
        fields = [
            field for _, field, _, _ in string.Formatter().parse(template) if field is not None
        ]
    except ValueError as error:
        raise TemplateError(
            f"{where}: {error} in {template!r}; write {{{{ and }}}} for literal braces"
        ) from None
    for field in fields:
        if field not in SUBJECT_FIELDS:
            shown = f"{{{field}}}" if field else "{}"
            raise TemplateError(
                f"{where}: unknown variable {shown} in {template!r};"
                " available: {title}, {date}, {count}"
            )
    text = template.format(title=issue.title, date=issue.date, count=issue.count)
    return _one_line(text, MAX_SUBJECT)


def preheader(issue: IssueView) -> str:
    """The preview line mail lists show under the subject: the top post titles."""
    titles = [post.title for section in issue.sections for post in section.posts[:2]]
    return _one_line(" · ".join(titles), PREHEADER_LENGTH)


def template_context(issue: Issue, config: Config, marker: str) -> dict[str, Any]:
    """Everything the templates can use; TEMPLATE_VARIABLES documents each name."""
    view = _issue_view(issue, config)
    intro = config.newsletter.intro or ""
    return {
        "subject": render_subject(config, view),
        "issue": view,
        "sections": view.sections,
        "intro_html": Markup(markdown_html(intro)) if intro.strip() else "",
        "intro_text": markdown_text(intro) if intro.strip() else "",
        "preheader": preheader(view),
        "newsletter": config.newsletter,
        "theme": theme_view(config),
        "subscriber": SubscriberView(
            name=slot(marker, "NAME"),
            email=slot(marker, "EMAIL"),
            recipient=slot(marker, "RECIPIENT"),
        ),
        "unsubscribe_url": slot(marker, "UNSUBSCRIBE_URL"),
    }


# ---------------------------------------------------------------- templates


@cache
def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept in a private per-user temp folder: each command starts faster."""
    try:
        return jinja2.FileSystemBytecodeCache()
    except RuntimeError:  # no usable private temp folder; compiling each time still works
        return None


def template_environment(config: Config) -> jinja2.Environment:
    """The editor's templates/ folder first, then the bundled templates; strict and autoescaped."""
    from digest.loader import template_loader

    loader = template_loader(config.templates_dir)
    env = jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(["html", "htm"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["heading"] = _heading
    return env


def _template_frame(traceback: TracebackType | None) -> tuple[str, int] | None:
    found = None
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename
        if not filename.endswith(".py") and Path(filename).is_file():
            found = (filename, traceback.tb_lineno)
        traceback = traceback.tb_next
    return found


def _source_line(filename: str, line: int) -> str:
    try:
        lines = Path(filename).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def _template_error(error: Exception, name: str, context: Mapping[str, Any]) -> TemplateError:
    available = ", ".join(sorted(context))
    if isinstance(error, jinja2.TemplateNotFound):
        return TemplateError(
            f"template {error.name!r} (needed by {name}) not found in the templates/ folder"
            f" beside config.yaml or the bundled templates"
        )
    if isinstance(error, jinja2.TemplateSyntaxError):
        where: tuple[str, int] | None = (error.filename or name, error.lineno)
        message = f"syntax error: {error.message}"
    else:
        where = _template_frame(error.__traceback__)
        message = str(error) if isinstance(error, jinja2.UndefinedError) else repr(error)
    if where is None:
        return TemplateError(f"{name}: {message}; available variables: {available}")
    filename, line = where
    source = _source_line(filename, line)
    shown = f" in `{_one_line(source, 120)}`" if source else ""
    return TemplateError(f"{filename}:{line}: {message}{shown}; available variables: {available}")


def _render_template(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except TemplateError:
        raise
    except Exception as error:  # any failure inside a template is the template's fault
        raise _template_error(error, name, context) from None


# ---------------------------------------------------------------- inlining

# ---------------------------------------------------------------- public API


def _size_warnings(html: str) -> tuple[str, ...]:
    size = len(html.encode("utf-8"))
    if size <= CLIP_WARNING_BYTES:
        return ()
    return (
        f"the email's HTML is {size / 1024:.0f} KB, over 90 KB: Gmail clips messages over"
        " about 102 KB behind a 'View entire message' link; lower digest.max_posts_per_section"
        " or trim the templates",
    )


def render_issue(
    issue: Issue, config: Config, *, inliner: str | None = None, marker: str | None = None
) -> RenderedIssue:
    """Render once per issue: subject, HTML with CSS inlined and the text part, with slots marked
    by `marker` (a new random one by default) left for per-subscriber values. No clock, no network.
    """
    inliner = inliner or config.inliner
    if inliner == "css_inline" and importlib.util.find_spec("css_inline") is None:
        raise ConfigError(
            f"{config.source}: inliner: css_inline is not installed;"
            " run pip install 'digest[fast]' or set inliner: premailer"
        )
    marker = new_marker() if marker is None else marker
    context = template_context(issue, config, marker)
    env = template_environment(config)
    html = inline_css(_render_template(env, HTML_TEMPLATE, context), inliner)
    text = wrap_text(_render_template(env, TEXT_TEMPLATE, context))
    return RenderedIssue(
        subject=context["subject"],
        html=html,
        text=text,
        warnings=_size_warnings(html),
        marker=marker,
    )


def personalise(
    rendered: RenderedIssue, subscriber: Subscriber, unsubscribe_url: str
) -> tuple[str, str]:
    """(html, text) for one subscriber: the issue's own slots filled in, escaped in the HTML."""
    name = " ".join(subscriber.name.split())
    email = subscriber.email.strip()
    marker = rendered.marker
    values = {
        slot(marker, "NAME"): name,
        slot(marker, "EMAIL"): email,
        slot(marker, "RECIPIENT"): f"{name} ({email})" if name else email,
        slot(marker, "UNSUBSCRIBE_URL"): unsubscribe_url.strip(),
    }
    escaped = {key: html_lib.escape(value, quote=True) for key, value in values.items()}
    pattern = _slot_pattern(marker)
    html = pattern.sub(lambda m: escaped[m.group(0)], rendered.html)
    text = pattern.sub(lambda m: values[m.group(0)], rendered.text)
    return html, text


# ---------------------------------------------------------------- sample data

SAMPLE_DATE = datetime(2017, 12, 1, 8, 0, tzinfo=UTC)
SAMPLE_TITLES = (
    "“Integrated” <budgets> & the care workforce: what the spending review means",
    "Five lessons from a decade of community health partnerships",
    "Why local councils are rethinking how they buy services",
    "Data sharing between hospitals and social care: a practical guide",
    "Interview: running a food bank network through the winter",
    "What the new planning rules mean for small housing associations",
)


def sample_issue(config: Config, posts_per_section: int = 3) -> Issue:
    """A realistic issue with every feature (authors, images, hostile titles) for checks."""
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
                    link=f"https://example.org/posts/{number}-{_slug(title, set())}",
                    published=SAMPLE_DATE - timedelta(hours=7 * number),
                    author=""
                    if n == 1
                    else ("Priya Natarajan", "Tom Ellis", "Ngozi Okafor")[n % 3],
                    summary_html="<p>A short summary of the post with a <a"
                    ' href="https://example.org/more">link</a>.</p>',
                    excerpt="The spending review settled budgets for three years, but the detail"
                    " matters for services on the ground. We look at what changes, who gains,"
                    " and what the sector should ask for next.",
                    image_url=f"https://example.org/images/{number}.jpg" if n % 2 == 0 else "",
                    categories=("Policy", "Health"),
                )
            )
        sections.append(Section(title=heading, posts=tuple(posts)))
    return Issue(title=config.newsletter.title, date=SAMPLE_DATE, sections=tuple(sections))


def sample_config(config: Config) -> Config:
    """The config with every optional newsletter feature switched on, to exercise the templates."""
    newsletter = config.newsletter
    filled = newsletter.model_copy(
        update={
            "intro": newsletter.intro
            or "Welcome to this week's issue. **Thank you** for reading, and [tell us what you"
            " think](https://example.org/feedback).",
            "logo_url": newsletter.logo_url or "https://example.org/logo.png",
            "archive_url": newsletter.archive_url or "https://example.org/newsletter/latest",
            "footer": newsletter.footer or "You signed up for this newsletter on our website.",
            "address": newsletter.address or "1 Example Street\nLondon N1 1AA",
        }
    )
    return config.model_copy(update={"newsletter": filled})


def check_templates(config: Config) -> list[str]:
    """Render the templates on sample data with every feature on; warnings, or TemplateError."""
    full = sample_config(config)
    render_issue(sample_issue(full), full)
    render_issue(sample_issue(config, 1), config)
    per_section = config.digest.max_posts_per_section
    sections = max(1, len({feed.heading for feed in config.feeds}))
    largest = min(per_section, max(1, SAMPLE_POST_CAP // sections))
    biggest = render_issue(sample_issue(config, largest), config)
    return [
        f"a full issue ({sections * largest} posts) would be too big: {warning}"
        for warning in biggest.warnings
    ]
