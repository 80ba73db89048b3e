"""Render an issue once: the views templates see, the subject, inlined HTML and the text part."""

from __future__ import annotations

import html as html_lib
import importlib.util
import logging
import re
import string
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import nh3
from markupsafe import Markup

from digest.config.schema import Config
from digest.core.dates import format_date
from digest.core.errors import ConfigError, TemplateError
from digest.core.models import MAX_AUTHOR, MAX_TITLE, Issue, Post, RenderedIssue
from digest.render.htmltext import collapse, link_spans, shorten, web_url
from digest.render.inline import inline_css
from digest.render.personalise import issue_url_placeholder, new_marker, placeholder
from digest.render.templates import TEXT_WIDTH, render_template, template_environment
from digest.render.theme import theme_view

logger = logging.getLogger(__name__)

HTML_TEMPLATE = "email.html"
TEXT_TEMPLATE = "email.txt"
DEFAULT_SUBJECT = "{title}: {count} new posts, {date}"
SUBJECT_FIELDS = ("title", "date", "count")
MAX_SUBJECT = 150
CLIP_WARNING_BYTES = 90 * 1024
PREHEADER_LENGTH = 140

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
    "post.excerpt_html": "The excerpt as HTML with the summary's http(s) links kept (safe to"
    " output as is).",
    "post.excerpt_text": 'The excerpt in lines, list items as "- " lines, links as text (URL),'
    " for the text part.",
    "post.summary_html": "The feed's summary as sanitised HTML (safe to output as is).",
    "post.image_url": "An absolute http(s) thumbnail URL, or empty.",
    "post.categories": "The post's categories (a list of text).",
    "intro_html": "newsletter.intro rendered from Markdown and sanitised, or empty.",
    "intro_text": "newsletter.intro as plain text (links as text (URL)), or empty.",
    "note_html": "The editor's note for this issue only (`digest note`), from Markdown and"
    " sanitised, or empty.",
    "note_text": "The editor's note as plain text, or empty.",
    "preheader": "The hidden preview line mail lists show: the top post titles.",
    "issue_url": "This issue's own web page (archive on), else newsletter.archive_url, or empty.",
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
    "preferences_url": "Placeholder for the subscriber's preferences page (name, sections,"
    " unsubscribe); empty unless sign-up is on.",
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
    excerpt_html: Markup
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


# ---------------------------------------------------------------- text helpers


def _one_line(text: str, limit: int) -> str:
    return shorten(collapse(text), limit)


def _with_links(text: str, links: list[tuple[str, str]], *, html: bool) -> str:
    """The excerpt with each link's text, where it appears whole (in order), linked: an HTML
    link (everything else escaped) or, for the text part, "text (URL)", or the bare URL when
    that is the text. Links whose text the excerpt cut off are left out."""
    pieces: list[str] = []
    cursor = 0
    for label, url in links:
        found = text.find(label, cursor)
        if found < 0:
            continue
        before = text[cursor:found]
        if html:
            link = f'<a href="{html_lib.escape(url, quote=True)}">{html_lib.escape(label)}</a>'
            pieces += [html_lib.escape(before), link]
        else:
            pieces += [before, url if label == url else f"{label} ({url})"]
        cursor = found + len(label)
    rest = text[cursor:]
    pieces.append(html_lib.escape(rest) if html else rest)
    return "".join(pieces)


def _zone(config: Config) -> ZoneInfo:
    return ZoneInfo(config.schedule.timezone if config.schedule else "UTC")


def slug(text: str, used: set[str]) -> str:
    """A short unique id= for a heading; `used` collects the ones already taken."""
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
    excerpt = " ".join(post.excerpt.split())
    excerpt_text = "\n".join(line.rstrip() for line in post.excerpt_text.splitlines()) or excerpt
    links = [(label, url) for label, url in link_spans(post.summary_html) if web_url(url)]
    return PostView(
        title=_one_line(post.title, MAX_TITLE) or "(untitled)",
        link=web_url(post.link),
        date=format_date(published, date_format, zone) if published else "",
        date_iso=published.astimezone(zone).strftime("%Y-%m-%d") if published else "",
        author=_one_line(post.author, MAX_AUTHOR),
        excerpt=excerpt,
        excerpt_html=Markup(_with_links(excerpt, links, html=True)),
        excerpt_text=_with_links(excerpt_text, links, html=False),
        summary_html=Markup(post.summary_html),
        image_url=web_url(post.image_url),
        categories=tuple(post.categories),
    )


def _issue_view(issue: Issue, config: Config) -> IssueView:
    zone = _zone(config)
    date_format = config.newsletter.date_format
    used: set[str] = set()
    sections = tuple(
        SectionView(
            title=_one_line(section.title, MAX_TITLE),
            anchor=slug(section.title, used),
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
        parsed = [
            (field, spec)
            for _, field, spec, _ in string.Formatter().parse(template)
            if field is not None
        ]
    except ValueError as error:
        raise TemplateError(
            f"{where}: {error} in {template!r}; write {{{{ and }}}} for literal braces"
        ) from None
    for field, spec in parsed:
        if spec and (re.search(r"\d{4}|[{}]", spec)):
            raise TemplateError(
                f"{where}: the format {{{field}:{spec}}} in {template!r} is not allowed;"
                " widths and precisions are at most 3 digits, with no nested fields"
            )
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


def _offers_preferences(config: Config) -> bool:
    return config.signup.enabled and config.public_url is not None


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
        "note_html": Markup(markdown_html(issue.note)) if issue.note.strip() else "",
        "note_text": markdown_text(issue.note) if issue.note.strip() else "",
        "preheader": preheader(view),
        "newsletter": config.newsletter,
        "theme": theme_view(config),
        "subscriber": SubscriberView(
            name=placeholder(marker, "NAME"),
            email=placeholder(marker, "EMAIL"),
            recipient=placeholder(marker, "RECIPIENT"),
        ),
        "unsubscribe_url": placeholder(marker, "UNSUBSCRIBE_URL"),
        "preferences_url": placeholder(marker, "PREFERENCES_URL")
        if _offers_preferences(config)
        else "",
        "issue_url": issue_url_placeholder(marker)
        if config.archive.enabled
        else (config.newsletter.archive_url or ""),
    }


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
    """Render once per issue: subject, HTML with CSS inlined and the text part, with placeholders
    marked by `marker` (a new random one by default) left for per-subscriber values. No clock, no
    network.
    """
    inliner = inliner or config.inliner
    if inliner == "css_inline" and importlib.util.find_spec("css_inline") is None:
        raise ConfigError(
            f"{config.source}: inliner: css_inline is not installed;"
            " run pip install 'digest[fast]' or set inliner: premailer"
        )
    marker = new_marker() if marker is None else marker
    context = template_context(issue, config, marker)
    env = template_environment(config.templates_dir)
    html = inline_css(render_template(env, HTML_TEMPLATE, context), inliner)
    text = wrap_text(render_template(env, TEXT_TEMPLATE, context))
    return RenderedIssue(
        subject=context["subject"],
        html=html,
        text=text,
        warnings=_size_warnings(html),
        marker=marker,
    )
