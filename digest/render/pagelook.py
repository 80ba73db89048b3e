"""The look every public page shares: the newsletter's name, logo, language, colours and links.

Sign-up, confirmation, preferences, unsubscribe, approval, error and archive pages are all
drawn in one frame (digest/pages/frame.html) with one stylesheet (digest/pages/style.css),
from the same theme as the email, so a reader who clicks through from an issue stays in the
same design, light or dark as their device is. This module holds what that frame is given;
who builds it decides where its links point (the archive's pages link relatively, so an
uploaded copy works anywhere; the public app's pages link to the configured addresses).
"""

from __future__ import annotations

from dataclasses import dataclass

from digest.config.schema import Config
from digest.core.cron import parse_cron
from digest.render.theme import ThemeView, readable_on, theme_view

PAGE_BACKGROUND = "#f2f4f7"  # the pages' light grey; cards on it are white

# Cron numbers weekdays from Sunday = 0.
CRON_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


@dataclass(frozen=True)
class Link:
    """One link of a page's navigation."""

    href: str
    text: str


@dataclass(frozen=True)
class PageLook:
    """What the shared frame draws around a page's content."""

    title: str  # the newsletter's title
    language: str  # html lang, as newsletter.language says
    theme: ThemeView
    accent: str  # the header's and buttons' colour: the theme's, kept readable under its text
    link: str  # links on the light page and its white cards
    logo_url: str
    logo_width: int
    logo_height: int
    home: str  # where the title or logo leads ("" for no link)
    nav: tuple[Link, ...]
    privacy_url: str  # signup.privacy_url, or ""


def page_look(config: Config, home: str = "", nav: tuple[Link, ...] = ()) -> PageLook:
    """The frame of a page of this newsletter, with the given home link and navigation."""
    newsletter = config.newsletter
    theme = theme_view(config)
    return PageLook(
        title=newsletter.title,
        language=newsletter.language,
        theme=theme,
        accent=readable_on(theme.accent, theme.on_accent),
        link=readable_on(theme.accent, PAGE_BACKGROUND),
        logo_url=newsletter.logo_url or "",
        logo_width=newsletter.logo_width,
        logo_height=newsletter.logo_height,
        home=home,
        nav=nav,
        privacy_url=config.signup.privacy_url or "",
    )


def part_of_day(hour: int) -> str:
    """Morning, afternoon, evening or night, as a reader would say when an email comes."""
    if 5 <= hour < 12:
        return "morning"
    if 12 <= hour < 17:
        return "afternoon"
    if 17 <= hour < 22:
        return "evening"
    return "night"


def how_often(config: Config) -> str:
    """How often the newsletter comes, in words for the sign-up page ("Every Monday morning"),
    from the schedule; "" when there is no schedule or it is too irregular to say simply."""
    schedule = config.schedule
    if schedule is None:
        return ""
    if schedule.day and schedule.time:
        hour = int(schedule.time.split(":", 1)[0])
        return f"Every {schedule.day.capitalize()} {part_of_day(hour)}"
    if not schedule.cron:
        return ""
    try:
        cron = parse_cron(schedule.cron)
    except ValueError:
        return ""
    if cron.days_restricted or len(cron.months) != 12:
        return ""
    parts = {part_of_day(hour) for hour in cron.hours}
    when = f" {parts.pop()}" if len(parts) == 1 else ""
    if not cron.weekdays_restricted or len(cron.weekdays) == 7:
        return f"Every day{when}" if len(cron.hours) == 1 else ""
    if cron.weekdays == (1, 2, 3, 4, 5):
        return f"Every weekday{when}"
    days = [CRON_WEEKDAYS[day] for day in sorted(cron.weekdays, key=lambda d: (d + 6) % 7)]
    if len(days) == 1:
        return f"Every {days[0]}{when}"
    return f"Every {', '.join(days[:-1])} and {days[-1]}{when}"
