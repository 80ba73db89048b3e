"""Feed bytes to clean Posts: feedparser on defused bytes, then plain titles, safe links, HTML."""

from __future__ import annotations

import calendar
import hashlib
import io
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html import escape
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import nh3

from digest import __version__
from digest.core.models import MAX_AUTHOR, MAX_TITLE, FeedResult, FetchStatus, Post
from digest.core.redact import redact_url
from digest.feeds.defuse import defuse
from digest.render.htmltext import (
    collapse,
    error_line,
    html_to_line,
    html_to_text_and_line,
    shorten,
)

if TYPE_CHECKING:
    from types import ModuleType

logger = logging.getLogger(__name__)

MAX_EXCERPT = 250
MAX_LINK = 2000
MAX_CATEGORIES = 20
MAX_HTML_IN = 200_000
MAX_HTML_OUT = 20_000
MAX_POSTS = 500
UNTITLED = "(untitled)"

_TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "oly_enc_id",
        "oly_anon_id",
        "vero_id",
        "wt_mc",
        "__s",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# -- links --------------------------------------------------------------------


def normalise_link(url: str) -> str:
    """Link key for cross-feed dedupe: scheme/host case, default port, fragment, tracking params."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ""
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return ""
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    if parts.username is not None:
        credentials = parts.username + (f":{parts.password}" if parts.password is not None else "")
        host = f"{credentials}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if not _is_tracking(k)]
        if len(kept) != len(pairs):
            query = urlencode(kept)
    return urlunsplit((scheme, host, parts.path or "/", query, ""))


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("utm_") or lowered in _TRACKING_PARAMS


def safe_url(url: str, base: str) -> str:
    """`url` made absolute against `base`, if the result is http(s); otherwise ''."""
    url = _CONTROL.sub("", url or "").strip()
    if not url or len(url) > MAX_LINK:
        return ""
    try:
        absolute = urljoin(base, url) if base else url
        parts = urlsplit(absolute)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return absolute


# -- text and HTML --------------------------------------------------------------


def sanitise_html(html: str, base: str) -> str:
    """Feed HTML made safe for email: nh3 allow-list, absolute http(s)/mailto links, bounded."""

    def absolutise(tag: str, attribute: str, value: str) -> str | None:
        if attribute in ("href", "src", "cite"):
            if value.lower().startswith("mailto:"):
                return value
            return safe_url(value, base) or None
        return value

    cleaned = nh3.clean(
        html[:MAX_HTML_IN],
        clean_content_tags={"script", "style", "template", "noscript", "iframe", "object"},
        url_schemes={"http", "https", "mailto"},
        attribute_filter=absolutise,
        link_rel="noopener noreferrer",
    )
    if len(cleaned) > MAX_HTML_OUT:
        cleaned = nh3.clean(cleaned[:MAX_HTML_OUT], link_rel="noopener noreferrer")
    return cleaned


class _FirstImage(HTMLParser):
    """Finds the first <img> that is not a 1x1 tracking pixel."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "img" or self.found:
            return
        values = {name: value or "" for name, value in attrs}
        if not _is_pixel(values.get("width"), values.get("height")):
            self.found = values.get("src", "")


def _is_pixel(width: Any, height: Any) -> bool:
    sizes = {str(size).strip().lower().removesuffix("px") for size in (width, height) if size}
    return bool(sizes) and sizes <= {"0", "1"}


# -- entries ----------------------------------------------------------------------


def _struct_to_utc(value: Any) -> datetime | None:
    if not isinstance(value, time.struct_time | tuple) or len(value) < 6:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(tuple(value)[:9]), UTC)
    except (OverflowError, ValueError, TypeError, OSError):
        return None


_WEEKDAY_PREFIX = re.compile(r"^\s*[^\W\d]{2,12}\.?,\s*")


def _date(entry: Mapping[str, Any], name: str) -> datetime | None:
    """A date feedparser understood, else an RFC 822 date with a non-English weekday."""
    parsed = _struct_to_utc(_own(entry, f"{name}_parsed"))
    text = _own(entry, name)
    if parsed is not None or not isinstance(text, str) or not _WEEKDAY_PREFIX.match(text):
        return parsed
    try:
        loose = parsedate_to_datetime(_WEEKDAY_PREFIX.sub("", text, count=1))
    except (TypeError, ValueError, IndexError):
        return None
    return loose.astimezone(UTC) if loose.tzinfo else loose.replace(tzinfo=UTC)


def _own(entry: Mapping[str, Any], key: str) -> Any:
    """A key the entry really has; feedparser's `updated` silently falls back to `published`."""
    return dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)


def _text_of(entry: Mapping[str, Any], name: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str):
        return ""
    detail = entry.get(f"{name}_detail") or {}
    if str(detail.get("type", "")).lower() in _HTML_TYPES:
        return collapse(html_to_line(value))
    return collapse(value)


def _entry_html(entry: Mapping[str, Any]) -> str:
    summary = entry.get("summary")
    if isinstance(summary, str) and summary.strip():
        detail = entry.get("summary_detail") or {}
        kind = str(detail.get("type", "text/html")).lower()
        return summary if kind in _HTML_TYPES else _plain_to_html(summary)
    for content in entry.get("content") or ():
        value = content.get("value") if isinstance(content, Mapping) else None
        if isinstance(value, str) and value.strip():
            kind = str(content.get("type", "text/html")).lower()
            return value if kind in _HTML_TYPES else _plain_to_html(value)
    return ""


def _excerpt_lines(text: str) -> str:
    """The excerpt for the text part, from the summary's plain text: one line per paragraph,
    heading or list item, no blanks.

    Blank lines are left out so that each post stays one block in the text part.
    """
    lines = (line for line in text.splitlines() if line.strip())
    return shorten("\n".join(lines), MAX_EXCERPT)


def _plain_to_html(text: str) -> str:
    return escape(text)


def _image(entry: Mapping[str, Any], html: str, base: str) -> str:
    candidates: list[str] = []
    for thumbnail in entry.get("media_thumbnail") or ():
        if isinstance(thumbnail, Mapping) and not _is_pixel(
            thumbnail.get("width"), thumbnail.get("height")
        ):
            candidates.append(str(thumbnail.get("url", "")))
    for media in entry.get("media_content") or ():
        if not isinstance(media, Mapping):
            continue
        is_image = media.get("medium") == "image" or str(media.get("type", "")).startswith("image/")
        if is_image and not _is_pixel(media.get("width"), media.get("height")):
            candidates.append(str(media.get("url", "")))
    for link in entry.get("links") or ():
        if (
            isinstance(link, Mapping)
            and link.get("rel") == "enclosure"
            and str(link.get("type", "")).startswith("image/")
        ):
            candidates.append(str(link.get("href", "")))
    if html:
        finder = _FirstImage()
        finder.feed(html[:MAX_HTML_IN])
        candidates.append(finder.found)
    for candidate in candidates:
        url = safe_url(candidate, base)
        if url:
            return url
    return ""


def _categories(entry: Mapping[str, Any]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for tag in entry.get("tags") or ():
        if not isinstance(tag, Mapping):
            continue
        name = collapse(str(tag.get("label") or tag.get("term") or ""))[:100]
        if name and name.lower() not in {s.lower() for s in seen}:
            seen[name] = None
        if len(seen) >= MAX_CATEGORIES:
            break
    return tuple(seen)


def entry_to_post(entry: Mapping[str, Any], feed_url: str, base: str, now: datetime) -> Post:
    """One feedparser entry as a clean Post."""
    title = shorten(_text_of(entry, "title"), MAX_TITLE) or UNTITLED
    link = safe_url(str(entry.get("link") or ""), base)
    published = _date(entry, "published")
    updated = _date(entry, "updated")
    if updated is not None and updated > now:
        updated = None
    if published is None:
        published = updated
    if published is not None and published > now:
        published = None
    identifier = collapse(str(entry.get("id") or ""))
    if len(identifier) > 1000:
        identifier = "sha256:" + hashlib.sha256(identifier.encode()).hexdigest()
    if not identifier:
        identifier = link
    if not identifier:
        dated = entry.get("published") or entry.get("updated") or ""
        digest = hashlib.sha256(f"{title}\n{dated}".encode()).hexdigest()
        identifier = f"sha256:{digest}"
    raw_html = _entry_html(entry)
    summary_html = sanitise_html(raw_html, link or base) if raw_html else ""
    summary_text, summary_line = html_to_text_and_line(summary_html) if summary_html else ("", "")
    author_detail = entry.get("author_detail") or {}
    author = author_detail.get("name") if isinstance(author_detail, Mapping) else None
    return Post(
        feed_url=feed_url,
        key=identifier,
        link_key=normalise_link(link) if link else "",
        title=title,
        link=link,
        published=published,
        updated=updated,
        author=shorten(collapse(str(author or entry.get("author") or "")), MAX_AUTHOR),
        summary_html=summary_html,
        excerpt=shorten(summary_line, MAX_EXCERPT),
        excerpt_text=_excerpt_lines(summary_text),
        image_url=_image(entry, raw_html, link or base),
        categories=_categories(entry),
    )


# -- whole feeds --------------------------------------------------------------------


def _feedparser() -> ModuleType:
    """feedparser, imported on first use: a feed served from the parse cache never loads it."""
    import feedparser

    module: ModuleType = feedparser
    return module


def _harmless(error: object) -> bool:
    """feedparser's bozo reasons that say nothing is wrong with the content."""
    feedparser = _feedparser()
    return isinstance(error, feedparser.CharacterEncodingOverride | feedparser.NonXMLContentType)


def _first_due(entries: Sequence[Mapping[str, Any]], now: datetime) -> datetime | None:
    """The earliest date in the entries still ahead of `now` (such a date is dropped today, so
    the same bytes parse differently once it comes due), or None."""
    ahead = []
    for entry in entries:
        for name in ("published", "updated"):
            try:
                moment = _date(entry, name)
            except Exception:  # an entry odd enough to be skipped has no date to wait for
                continue
            if moment is not None and moment > now:
                ahead.append(moment)
    return min(ahead) if ahead else None


def parse_key(data: bytes, feed_url: str, content_type: str | None) -> str:
    """A hash of everything parse_feed reads but `now`: the bytes, the address they came from,
    their content type and this release (whose parsing may differ from the last one's)."""
    digest = hashlib.sha256()
    for part in (__version__, feed_url, content_type or ""):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    digest.update(data)
    return digest.hexdigest()


def parse_feed(
    data: bytes, feed_url: str, now: datetime, *, content_type: str | None = None
) -> FeedResult:
    """Parse feed bytes (never fetching anything) into an OK or FAILED FeedResult."""
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{"):
        return _failed(feed_url, "not a feed we can read: JSON Feed is not supported")
    if not stripped:
        return _failed(feed_url, "not a feed we can read: the response was empty")
    data, defused = defuse(data)
    headers = {"content-location": feed_url}
    if content_type:
        headers["content-type"] = content_type
    parsed = _feedparser().parse(io.BytesIO(data), response_headers=headers)
    entries = parsed.get("entries") or []
    error = parsed.get("bozo_exception") if parsed.get("bozo") else None
    feed_title = shorten(_text_of(parsed.get("feed") or {}, "title"), MAX_TITLE)
    if not entries and (not parsed.get("version") or (error and not _harmless(error))):
        reason = error_line(error) if error else "no RSS or Atom feed found"
        failed = _failed(feed_url, f"not a feed we can read: {reason}")
        return replace(failed, feed_title=feed_title)
    warnings = []
    if defused:
        warnings.append("entity declarations in the DOCTYPE were ignored")
    if error is not None and not _harmless(error):
        warnings.append(f"not well-formed, read anyway: {error_line(error)}")
    base = str(parsed.get("href") or "") or feed_url
    posts = []
    entries = entries[:MAX_POSTS]
    for entry in entries:
        try:
            posts.append(entry_to_post(entry, feed_url, base, now))
        except Exception as problem:  # one odd entry must not cost the whole feed
            logger.warning("%s: skipped an entry: %s", redact_url(feed_url), error_line(problem))
    return FeedResult(
        feed_url=feed_url,
        status=FetchStatus.OK,
        posts=tuple(posts),
        warning="; ".join(warnings),
        feed_title=feed_title,
        reparse_after=_first_due(entries, now),
    )


def _failed(feed_url: str, error: str) -> FeedResult:
    return FeedResult(feed_url=feed_url, status=FetchStatus.FAILED, error=error)


class ParseFunction(Protocol):
    """parse_feed's signature."""

    def __call__(
        self, data: bytes, feed_url: str, now: datetime, *, content_type: str | None = None
    ) -> FeedResult: ...


def parse_safely(
    parse: ParseFunction, data: bytes, url: str, content_type: str | None, now: datetime
) -> FeedResult:
    """`parse`, with anything it raises turned into a failed result (the same in either process)."""
    try:
        return parse(data, url, now, content_type=content_type)
    except Exception as error:
        message = f"not a feed we can read: {type(error).__name__}: {error}"
        return FeedResult(url, FetchStatus.FAILED, error=message.splitlines()[0][:300])
