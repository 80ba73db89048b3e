"""The public web archive: each sent issue's page, the paginated index and the Atom feed.

One builder serves both ways of publishing: `digest archive --out DIR` writes its files
(digest.archive.files) and `digest serve` answers with the same bytes (digest.web.archive).
Links between pages are relative, so an uploaded copy works wherever it is put; the canonical
URL, Open Graph tags and the feed's links are absolute, under newsletter.archive_url.

An issue is titled in the index and the feed by its lead posts' titles (`headline`): its subject
can only say the newsletter's title, the date and the post count, which the index already shows,
so every subject reads alike. A feed entry's summary is the lead posts, linked, with their
excerpts (`lead_posts`, as last stored, in the order the issue shows them).

An issue page shows the email as it was sent: the frozen HTML, with every per-subscriber placeholder
filled with a neutral value (digest.render.personalise.depersonalise) and its links to itself
("View this issue in your browser", "Read it online") taken out, inside a sandboxed frame
(`srcdoc`) of a page that is itself valid HTML5. Not a web version re-rendered from the posts:
the posts are not frozen with the issue (only their keys are), so a re-render would show
today's templates and today's feed text, not what readers got; and an email's markup
(Outlook conditionals, xmlns and presentational attributes) is not valid HTML5, so it is kept
out of the page's own markup. The sandbox allows no scripts: feed text inside stays inert.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    import jinja2

from digest.config.schema import Config
from digest.core.dates import format_date
from digest.core.models import MAX_TITLE, Issue, RenderedIssue
from digest.mail.message import sender_address
from digest.render.htmltext import collapse, shorten, web_url
from digest.render.pagelook import PAGE_BACKGROUND, Link, PageLook, page_look
from digest.render.personalise import depersonalise
from digest.render.theme import readable_on
from digest.store import State
from digest.store.archive import ArchivedIssue, ArchivedPost

PAGES = Path(__file__).resolve().parent.parent / "pages"
MAX_SLUG = 60
MAX_SUMMARY = 300
SUMMARY_TITLES = 5
MAX_HEADLINE = 120
FEED_LEAD_POSTS = 3
MAX_FEED_EXCERPT = 300
ATOM = "http://www.w3.org/2005/Atom"
FRAME_ID = "issue-frame"
# Grows the frame to the email's height once it has loaded (the frame itself runs no script).
FIT_SCRIPT = (
    "(function(){var f=document.getElementById('" + FRAME_ID + "');"
    "function fit(){try{var d=f.contentDocument;if(d&&d.documentElement){"
    "f.style.height=d.documentElement.scrollHeight+'px';}}catch(e){}}"
    "f.addEventListener('load',fit);window.addEventListener('resize',fit);fit();})();"
)
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(FIT_SCRIPT.encode()).digest()).decode()
# The page's policy; the frame's document inherits it, so email images (any http(s) URL) and
# the email's inline styles are allowed, and nothing else: no script but the fitting one.
PAGE_POLICY = (
    "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True)
class Site:
    """What every archive page needs from the config."""

    base_url: str  # newsletter.archive_url without a trailing slash
    title: str
    language: str
    date_format: str
    zone: ZoneInfo
    per_page: int
    subscribe_url: str
    link_colour: str
    logo_url: str
    look: PageLook  # the frame shared with the public app's pages (links set per page)

    def issue_url(self, entry: ArchivedIssue) -> str:
        """The issue page's absolute URL."""
        return f"{self.base_url}/issues/{entry.key}/"

    def date(self, moment: datetime) -> str:
        """A date as the newsletter writes it."""
        return format_date(moment, self.date_format, self.zone)


def site_for(config: Config) -> Site:
    """The archive's settings from config.yaml (archive_url is required with the archive on)."""
    newsletter = config.newsletter
    return Site(
        base_url=(newsletter.archive_url or "").rstrip("/"),
        title=newsletter.title,
        language=newsletter.language,
        date_format=newsletter.date_format,
        zone=ZoneInfo(config.schedule.timezone if config.schedule else "UTC"),
        per_page=config.archive.per_page,
        subscribe_url=subscribe_url(config),
        link_colour=readable_on(config.theme.accent, PAGE_BACKGROUND),
        logo_url=newsletter.logo_url or "",
        look=page_look(config),
    )


def subscribe_url(config: Config) -> str:
    """Where Subscribe links go: archive.subscribe_url, else the sign-up page when sign-up is
    on, else a mailto: to the sender."""
    if config.archive.subscribe_url:
        return config.archive.subscribe_url
    if config.signup.enabled and config.public_url:
        return f"{config.public_url}/subscribe"
    return f"mailto:{sender_address(config.newsletter.from_address)}?subject=Subscribe"


# ---------------------------------------------------------------- naming, at freeze time


def issue_slug(subject: str) -> str:
    """A URL-safe slug of the subject: lower-case ASCII words joined by hyphens."""
    ascii_text = unicodedata.normalize("NFKD", subject).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(words) > MAX_SLUG:
        words = words[:MAX_SLUG].rsplit("-", 1)[0]
    return words or "issue"


def issue_url(config: Config, number: int, slug: str) -> str:
    """The absolute URL an issue numbered `number` is published at."""
    return f"{(config.newsletter.archive_url or '').rstrip('/')}/issues/{number}-{slug}/"


def preview_url(config: Config) -> str:
    """Where previews and test sends point "view in browser": `digest serve`'s live preview."""
    return f"{(config.newsletter.archive_url or '').rstrip('/')}/preview"


def summary_of(issue: Issue) -> str:
    """One line for the index, the feed and link previews: the top post titles."""
    return _summary([post.title for section in issue.sections for post in section.posts])


def summary_of_frozen(titles: Iterable[str], text: str) -> str:
    """The summary of an issue numbered after it was sent, from what the state holds of it.

    Its posts were frozen by key only, so their titles are the ones last stored for those keys;
    only the titles the issue's frozen plain text shows are kept, in the order it shows them,
    so the summary names what readers got (a title the feed has changed since is left out,
    leaving just the post count).
    """
    shown = collapse(text)
    found: dict[str, int] = {}
    for title in titles:
        clean = shorten(collapse(title), MAX_TITLE)
        where = shown.find(clean) if clean else -1
        if where >= 0:
            found.setdefault(clean, where)
    return _summary(sorted(found, key=found.__getitem__))


def _summary(titles: Sequence[str]) -> str:
    """The first few titles, joined and bounded."""
    cleaned = [collapse(title) for title in titles]
    return shorten(" · ".join(title for title in cleaned[:SUMMARY_TITLES] if title), MAX_SUMMARY)


def sent_order(entry: ArchivedIssue) -> tuple[datetime, int]:
    """Sorts issues by when they were sent: a number given later to an earlier issue (one sent
    before the archive was on) does not move it."""
    return entry.issue.created_at, entry.number


def headline(entry: ArchivedIssue) -> str:
    """The issue's title in the index and the feed: its top post titles (the summary), else
    its subject."""
    return shorten(entry.summary, MAX_HEADLINE) if entry.summary else entry.issue.subject


def lead_posts(state: State, issues: Sequence[ArchivedIssue]) -> dict[int, list[ArchivedPost]]:
    """Each issue's lead posts for its feed entry, by issue number: those whose titles its
    summary names, in that order (the order the issue showed them), at most FEED_LEAD_POSTS."""
    leads: dict[int, list[ArchivedPost]] = {}
    for entry in issues:
        shown = entry.summary
        found: dict[str, tuple[int, ArchivedPost]] = {}
        for post in state.archive.posts(entry.issue.id):
            title = shorten(collapse(post.title), MAX_TITLE)
            where = shown.find(title) if title else -1
            if where >= 0 and title not in found:
                found[title] = (where, post)
        ordered = sorted(found.values(), key=lambda pair: pair[0])
        leads[entry.number] = [post for _, post in ordered[:FEED_LEAD_POSTS]]
    return leads


def feed_summary(entry: ArchivedIssue, leads: Sequence[ArchivedPost]) -> str:
    """A feed entry's summary as HTML: each lead post's title (linked, http(s) only) and excerpt,
    every feed text escaped, then how many more posts the issue has; without lead posts, the
    one-line description."""
    if not leads:
        return html.escape(describe(entry))
    parts: list[str] = []
    for post in leads:
        title = html.escape(shorten(collapse(post.title), MAX_TITLE))
        link = web_url(post.link)
        heading = f'<a href="{html.escape(link, quote=True)}">{title}</a>' if link else title
        excerpt = html.escape(shorten(collapse(post.excerpt), MAX_FEED_EXCERPT))
        parts.append(
            f"<p><strong>{heading}</strong>" + (f"<br>{excerpt}" if excerpt else "") + "</p>"
        )
    more = entry.issue.post_count - len(leads)
    if more > 0:
        parts.append(f"<p>And {more} more {'post' if more == 1 else 'posts'}.</p>")
    return "".join(parts)


def describe(entry: ArchivedIssue) -> str:
    """The issue in one line for the feed and link previews: how many posts, and which."""
    count = entry.issue.post_count
    posts = f"{count} post" if count == 1 else f"{count} posts"
    return f"{posts}: {entry.summary}" if entry.summary else posts


# ---------------------------------------------------------------- pages


@cache
def _environment() -> jinja2.Environment:
    import jinja2  # only when pages are built: the public app starts without it

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(PAGES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(name: str, site: Site, *, root: str, **context: Any) -> bytes:
    template = _environment().get_template(name)
    look = replace(site.look, home=f"{root}archive/", nav=_navigation(site, root))
    text = template.render(
        site=site, look=look, root=root, policy=PAGE_POLICY, fit_script=FIT_SCRIPT, **context
    )
    return text.encode("utf-8")


def _navigation(site: Site, root: str) -> tuple[Link, ...]:
    """The archive's links, relative to a page `root` below the archive's folder."""
    return (
        Link(f"{root}archive/", "All issues"),
        Link(f"{root}feed/", "Feed"),
        Link(site.subscribe_url, "Subscribe"),
    )


def page_count(site: Site, issues: Sequence[ArchivedIssue]) -> int:
    """How many index pages there are (one, even when empty)."""
    return max(1, math.ceil(len(issues) / site.per_page))


def index_path(page: int) -> str:
    """Where index page `page` lives, as a folder path relative to the archive's root."""
    return "archive/" if page == 1 else f"archive/{page}/"


def index_page(site: Site, issues: Sequence[ArchivedIssue], page: int) -> bytes | None:
    """Index page `page` (1 is newest) of the published issues, newest first; None past the end."""
    pages = page_count(site, issues)
    if not 1 <= page <= pages:
        return None
    root = "../" if page == 1 else "../../"
    shown = issues[(page - 1) * site.per_page : page * site.per_page]
    return _render(
        "index.html",
        site,
        root=root,
        page=page,
        pages=pages,
        newer=root + index_path(page - 1) if page > 1 else "",
        older=root + index_path(page + 1) if page < pages else "",
        canonical=f"{site.base_url}/{index_path(page)}",
        entries=[
            {
                "href": f"{root}issues/{entry.key}/",
                "subject": headline(entry),
                "date": site.date(entry.issue.created_at),
                "date_iso": entry.issue.created_at.astimezone(site.zone).date().isoformat(),
                "count": entry.issue.post_count,
                "summary": "",  # the headline is the summary
            }
            for entry in shown
        ],
    )


def issue_page(site: Site, issues: Sequence[ArchivedIssue], entry: ArchivedIssue) -> bytes:
    """The page of `entry` (read with its content), linked to its neighbours among `issues`."""
    ordered = sorted([e for e in issues if e.number != entry.number] + [entry], key=sent_order)
    where = ordered.index(entry)
    older = ordered[where - 1] if where > 0 else None
    newer = ordered[where + 1] if where + 1 < len(ordered) else None
    frozen = RenderedIssue(
        entry.issue.subject, entry.issue.html, entry.issue.text, marker=entry.issue.marker
    )
    email = without_links_to(
        depersonalise(frozen, site.subscribe_url, f"Subscribe to {site.title}"),
        site.issue_url(entry),
        f"/issues/{entry.key}/",
    )
    return _render(
        "issue.html",
        site,
        root="../../",
        canonical=site.issue_url(entry),
        number=entry.number,
        subject=entry.issue.subject,
        description=describe(entry),
        date=site.date(entry.issue.created_at),
        published=entry.issue.created_at.astimezone(UTC).isoformat(),
        count=entry.issue.post_count,
        email=_frame_document(email),
        older={"href": f"../{older.key}/", "subject": headline(older)} if older else None,
        newer={"href": f"../{newer.key}/", "subject": headline(newer)} if newer else None,
    )


_TOPBAR_ROW = re.compile(
    r"<tr\b[^>]*>\s*<td\b[^>]*\bclass=[\"'][^\"']*\btopbar\b[^>]*>.*?</td>\s*</tr>",
    re.DOTALL | re.IGNORECASE,
)


def without_links_to(email: str, url: str, path: str) -> str:
    """The web copy without what only makes sense in a mailbox: the bundled template's "View
    this issue in your browser" row, and every link to the issue's own page (`url`, or any
    address ending in `path`, for an archive moved since), with the " · " before it."""
    email = _TOPBAR_ROW.sub("", email)
    own = f"(?:{re.escape(html.escape(url, quote=True))}|[^\"'<>]*{re.escape(path)})"
    link = rf"(?: · )?<a\b[^>]*\bhref=([\"']){own}\1[^>]*>.*?</a>"
    return re.sub(link, "", email, flags=re.DOTALL | re.IGNORECASE)


def _frame_document(email: str) -> str:
    """The email for the frame: links open in the whole tab, not inside the frame."""
    base = '<base target="_top">'
    match = re.search(r"<head\b[^>]*>", email, re.IGNORECASE)
    if match is None:
        return base + email
    return email[: match.end()] + base + email[match.end() :]


def gone_page(site: Site) -> bytes:
    """What a withdrawn issue's address answers (with 410 Gone)."""
    return _render("gone.html", site, root="../../", canonical="")


def feed_page(site: Site) -> bytes:
    """A page for people at the feed's link: what a feed is for and the address to copy into a
    feed reader (a browser shows the feed itself as raw XML)."""
    return _render(
        "feed.html", site, root="../", canonical=f"{site.base_url}/feed/", feed_url=_feed_url(site)
    )


def _feed_url(site: Site) -> str:
    return f"{site.base_url}/feed.atom"


def feed(
    site: Site,
    issues: Sequence[ArchivedIssue],
    now: datetime,
    leads: Mapping[int, Sequence[ArchivedPost]] | None = None,
) -> bytes:
    """An Atom feed of the published issues, newest first, one entry per issue: titled by its
    headline, its summary the lead posts with their excerpts (`leads`, see lead_posts)."""
    ElementTree.register_namespace("", ATOM)

    def add(parent: ElementTree.Element, tag: str, text: str = "", **attributes: str) -> None:
        child = ElementTree.SubElement(parent, f"{{{ATOM}}}{tag}", attributes)
        if text:
            child.text = text

    root = ElementTree.Element(f"{{{ATOM}}}feed")
    root.set("{http://www.w3.org/XML/1998/namespace}lang", site.language)
    newest = max((entry.issue.created_at for entry in issues), default=now)
    add(root, "title", site.title)
    add(root, "subtitle", f"Every issue of {site.title}, as sent.")
    add(root, "id", f"{site.base_url}/feed.atom")
    add(root, "link", rel="self", type="application/atom+xml", href=f"{site.base_url}/feed.atom")
    add(root, "link", rel="alternate", type="text/html", href=f"{site.base_url}/archive/")
    add(root, "updated", _atom_time(newest))
    author = ElementTree.SubElement(root, f"{{{ATOM}}}author")
    add(author, "name", site.title)
    for entry in issues:
        item = ElementTree.SubElement(root, f"{{{ATOM}}}entry")
        add(item, "title", headline(entry))
        add(item, "id", site.issue_url(entry))
        add(item, "link", rel="alternate", type="text/html", href=site.issue_url(entry))
        add(item, "published", _atom_time(entry.issue.created_at))
        add(item, "updated", _atom_time(entry.issue.created_at))
        add(item, "summary", feed_summary(entry, (leads or {}).get(entry.number, ())), type="html")
    ElementTree.indent(root)
    body = ElementTree.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="utf-8"?>\n{body}\n'.encode()


def _atom_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def site_files(
    site: Site,
    issues: Sequence[ArchivedIssue],
    now: datetime,
    leads: Mapping[int, Sequence[ArchivedPost]] | None = None,
) -> Iterator[tuple[str, bytes]]:
    """Every file of the static archive as (relative path, bytes): index pages, issues, the
    feed and its page for people."""
    for page in range(1, page_count(site, issues) + 1):
        document = index_page(site, issues, page)
        if document is not None:
            yield f"{index_path(page)}index.html", document
    for entry in issues:
        yield f"issues/{entry.key}/index.html", issue_page(site, issues, entry)
    yield "feed/index.html", feed_page(site)
    yield "feed.atom", feed(site, issues, now, leads)
