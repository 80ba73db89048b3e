"""Post links through the click redirect: a frozen issue's renderings with each post link
pointing at its signed /r/... path on the public app (`tracking.clicks: aggregate`).

Pure, applied to the renderings as they go out, never to what is stored: the issue frozen in
the state, and so the archive's pages and a resumed send's starting point, keep the straight
links. Only links whose target is one of the issue's post links change: in the HTML part the
href of an `<a>` element whose (unescaped) value is exactly a post link, in the text part a
post link standing on its own (between spaces, line ends, brackets or quotes, or before a
closing punctuation mark). The unsubscribe, preferences and "view in browser" links are never
post links, so they stay as they are.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from digest.core.clicks import redirect_path
from digest.core.models import Issue, RenderedIssue

# An <a> start tag, its attribute values quoted or not (a ">" inside quotes does not end it).
_A_TAG = re.compile(r"""<a\b(?:[^>"']|"[^"]*"|'[^']*')*>""", re.IGNORECASE)
_HREF = re.compile(r"""(\shref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)


def post_links(issue: Issue) -> list[str]:
    """The issue's http(s) post links in the order it shows them, each once."""
    seen: dict[str, None] = {}
    for post in issue.posts:
        if post.link and urlsplit(post.link).scheme in ("http", "https"):
            seen.setdefault(post.link, None)
    return list(seen)


def redirect_urls(
    base_url: str, secret: str, issue_id: int, links: Mapping[str, int]
) -> dict[str, str]:
    """Each tracked post link (URL -> its number) mapped to its redirect under `base_url`."""
    base = base_url.rstrip("/")
    return {url: base + redirect_path(secret, issue_id, number) for url, number in links.items()}


def track_links(rendered: RenderedIssue, redirects: Mapping[str, str]) -> RenderedIssue:
    """The rendering with each post link in `redirects` replaced by its redirect, in both the
    HTML and the text part; unchanged when there is nothing to replace."""
    if not redirects:
        return rendered
    return replace(
        rendered,
        html=_track_html(rendered.html, redirects),
        text=_track_text(rendered.text, redirects),
    )


def _track_html(html: str, redirects: Mapping[str, str]) -> str:
    def href(match: re.Match[str]) -> str:
        raw = next(value for value in match.group(2, 3, 4) if value is not None)
        target = redirects.get(html_lib.unescape(raw))
        if target is None:
            return match.group(0)
        return f'{match.group(1)}"{html_lib.escape(target, quote=True)}"'

    return _A_TAG.sub(lambda tag: _HREF.sub(href, tag.group(0), count=1), html)


def _text_pattern(urls: Iterable[str]) -> re.Pattern[str]:
    # Longest first, so a link that starts with another one is replaced whole.
    alternatives = "|".join(re.escape(url) for url in sorted(urls, key=len, reverse=True))
    return re.compile(rf"""(?<![^\s<(\["'])(?:{alternatives})(?=\Z|[\s>)\]"']|[.,;:!?](?:\s|\Z))""")


def _track_text(text: str, redirects: Mapping[str, str]) -> str:
    return _text_pattern(redirects).sub(lambda match: redirects[match.group(0)], text)
