"""Theme colours from config.yaml, adjusted so text and links keep WCAG AA contrast."""

from __future__ import annotations

import re
from dataclasses import dataclass

from digest.config.schema import Config

# Colours the default templates put text on, so theme colours can be checked against them.
LIGHT_SURFACE = "#ffffff"
DARK_SURFACE = "#1a1f25"
AA_CONTRAST = 4.5
DARK_LINK_CONTRAST = 6.0  # mid-tone links that merely pass AA look dull on dark grey


@dataclass(frozen=True)
class ThemeView:
    """Theme colours and font, plus colours derived from the accent for contrast."""

    accent: str
    font: str
    link: str
    link_dark: str
    on_accent: str


def _channels(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def relative_luminance(colour: str) -> float:
    """WCAG relative luminance of a six-digit hex colour."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in _channels(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: str, second: str) -> float:
    """WCAG contrast ratio between two hex colours (1 to 21)."""
    a, b = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def _mix(colour: str, target: str, amount: float) -> str:
    mixed = (
        round(c + (t - c) * amount)
        for c, t in zip(_channels(colour), _channels(target), strict=True)
    )
    return "#" + "".join(f"{c:02x}" for c in mixed)


def readable_on(colour: str, background: str, minimum: float = AA_CONTRAST) -> str:
    """The colour, moved towards black or white just enough to reach `minimum` contrast."""
    if contrast_ratio(colour, background) >= minimum:
        return colour
    target = "#000000" if relative_luminance(background) > 0.18 else "#ffffff"
    for step in range(1, 21):
        candidate = _mix(colour, target, step / 20)
        if contrast_ratio(candidate, background) >= minimum:
            return candidate
    return target


def theme_view(config: Config) -> ThemeView:
    """The theme with link colours that pass WCAG AA on the light and dark surfaces."""
    accent = config.theme.accent
    on_accent = (
        "#ffffff"
        if contrast_ratio(accent, "#ffffff") >= contrast_ratio(accent, "#111111")
        else "#111111"
    )
    font = re.sub(r"[^\w\s,'\".-]", "", config.theme.font).strip() or "Helvetica, Arial, sans-serif"
    return ThemeView(
        accent=accent,
        font=font,
        link=readable_on(accent, LIGHT_SURFACE),
        link_dark=readable_on(accent, DARK_SURFACE, DARK_LINK_CONTRAST),
        on_accent=on_accent,
    )
