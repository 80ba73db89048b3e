"""Inline an issue's CSS once, keeping the rules that cannot be inlined in one style block."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable

INLINERS = ("premailer", "css_inline")

_KEPT_STYLE = re.compile(
    r"<style\b[^>]*\bdata-keep\b[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE
)
# Comments first, so <style> inside Outlook's conditional comments is left alone.
_LEFTOVER_STYLE = re.compile(r"<!--.*?-->|<style\b[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)
_KEPT_MARKER = "<!--digest-kept-styles-->"


def _premailer(html: str) -> str:
    import cssutils
    import premailer

    cssutils.log.setLevel(logging.CRITICAL)
    cssutils.ser.prefs.minimizeColorHash = False  # keep six-digit colours for old clients
    inliner = premailer.Premailer(
        html,
        base_url=None,
        disable_link_rewrites=True,
        keep_style_tags=False,
        strip_important=False,
        allow_network=False,
        allow_loading_external_files=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        # Giving floated images Outlook's align= parses each image's style with validation,
        # whose first use costs tens of milliseconds; without "float" in the page there are none.
        align_floating_images="float" in html,
    )
    return str(inliner.transform(pretty_print=False))


def _css_inline(html: str) -> str:
    import css_inline

    inliner = css_inline.CSSInliner(
        keep_style_tags=False, keep_at_rules=True, load_remote_stylesheets=False
    )
    return str(inliner.inline(html))


_INLINERS: dict[str, Callable[[str], str]] = {"premailer": _premailer, "css_inline": _css_inline}
_LIBRARIES = {"premailer": ("cssutils", "premailer"), "css_inline": ("css_inline",)}


def load_inliner(inliner: str = "premailer") -> None:
    """Import an inliner's libraries ahead of its first use (they take a few hundred ms)."""
    for library in _LIBRARIES.get(inliner, ()):
        importlib.import_module(library)


def inline_css(html: str, inliner: str = "premailer") -> str:
    """Inline ordinary CSS rules; keep the `<style data-keep>` block (dark mode, phones) as is."""
    try:
        run = _INLINERS[inliner]
    except KeyError:
        raise ValueError(f"unknown inliner {inliner!r}; use one of {', '.join(INLINERS)}") from None
    kept = [match.group(1) for match in _KEPT_STYLE.finditer(html)]
    html = _KEPT_STYLE.sub("", html)
    html = html.replace("</head>", f"{_KEPT_MARKER}</head>", 1)
    inlined = run(html)
    # Rules the inliner could not inline (@media, :hover) join the kept rules in one block.
    leftovers: list[str] = []

    def collect(match: re.Match[str]) -> str:
        if match.group(0).startswith("<!--"):
            return match.group(0)
        leftovers.append(match.group(1))
        return ""

    inlined = _LEFTOVER_STYLE.sub(collect, inlined)
    rules = [css.strip() for css in (*kept, *leftovers) if css.strip()]
    block = "<style>" + "\n".join(rules) + "</style>" if rules else ""
    if _KEPT_MARKER in inlined:
        return inlined.replace(_KEPT_MARKER, block, 1)
    return inlined.replace("</head>", f"{block}</head>", 1)
