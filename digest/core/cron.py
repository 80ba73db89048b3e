"""Standard crontab(5) expressions, parsed and checked: five fields, Sunday is 0 or 7."""

from __future__ import annotations

import calendar
from dataclasses import dataclass

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True)
class _Field:
    label: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, MONTH_NAMES, 1),
    _Field("day of week", 0, 7, DAY_NAMES, 0),
)


@dataclass(frozen=True)
class CronExpression:
    """The times a cron expression matches; weekdays are numbered Sunday = 0 to Saturday = 6."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]
    days_restricted: bool
    weekdays_restricted: bool

    @property
    def either_day(self) -> bool:
        """crontab(5): when both day fields are restricted, a day matching either one fires."""
        return self.days_restricted and self.weekdays_restricted


def parse_cron(text: str) -> CronExpression:
    """Parse 'minute hour day-of-month month day-of-week'; ValueError says what is wrong."""
    expanded = NICKNAMES.get(text.strip().lower(), text)
    if expanded.strip().startswith("@"):
        known = ", ".join(NICKNAMES)
        raise ValueError(f"unknown shorthand {text.strip()!r}; use five fields or one of {known}")
    parts = expanded.split()
    if len(parts) != 5:
        raise ValueError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"
            f" in {text!r}"
        )
    values = [_parse_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = tuple(sorted({day % 7 for day in values[4]}))
    expression = CronExpression(
        text=text.strip(),
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )
    if not expression.either_day and not _some_day_exists(expression.days, expression.months):
        raise ValueError(f"{text.strip()!r} never fires: no month has that day")
    return expression


def _some_day_exists(days: tuple[int, ...], months: tuple[int, ...]) -> bool:
    leap_year = 2028
    return any(day <= calendar.monthrange(leap_year, month)[1] for day in days for month in months)


def _parse_field(text: str, spec: _Field) -> tuple[int, ...]:
    found: set[int] = set()
    for item in text.split(","):
        found.update(_parse_item(item, spec))
    return tuple(sorted(found))


def _parse_item(item: str, spec: _Field) -> range:
    if not item:
        raise ValueError(f"{spec.label}: empty list item")
    span, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise ValueError(f"{spec.label}: step in {item!r} must be a whole number above 0")
        step = int(step_text)
    if span == "*":
        low, high = spec.low, spec.high
    elif "-" in span:
        start, _, end = span.partition("-")
        low, high = _value(start, spec, item), _value(end, spec, item)
        if spec.names == DAY_NAMES and high == 0 and low > 0:
            high = 7  # "fri-sun": Sunday closes the week here
        if low > high:
            raise ValueError(f"{spec.label}: range {item!r} runs backwards; write it as two ranges")
    else:
        if slash:
            raise ValueError(f"{spec.label}: a step needs a range or '*', as in '*/{step}'")
        low = high = _value(span, spec, item)
    return range(low, high + 1, step)


def _value(text: str, spec: _Field, item: str) -> int:
    lowered = text.lower()
    if lowered in spec.names:
        return spec.names.index(lowered) + spec.first_name
    if not lowered.isdigit():
        names = f" or a name ({', '.join(spec.names)})" if spec.names else ""
        raise ValueError(
            f"{spec.label}: {text!r} in {item!r} is not a number {spec.low}-{spec.high}{names}"
        )
    number = int(lowered)
    if not spec.low <= number <= spec.high:
        sunday = " (0 and 7 are Sunday)" if spec.names == DAY_NAMES else ""
        raise ValueError(f"{spec.label}: {number} is out of range {spec.low}-{spec.high}{sunday}")
    return number
