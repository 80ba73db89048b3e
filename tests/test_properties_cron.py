"""Cron against a brute-force reading of crontab(5): for random expressions in every field form
(numbers, names, lists, ranges, steps, stars), the next fire times are the first minutes that a
plain minute-by-minute matcher accepts.

The reference is written from the manual page, not from digest.core.cron: a field is a comma list
of items, each `*`, a number or name, or a range `a-b`, optionally followed by `/step`; 7 and 0
are Sunday; and when both day fields are restricted (neither starts with `*`) a day matching
either fires, otherwise a day must match both (Vixie cron's rule).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from digest.config.schema import ScheduleConfig
from digest.core.cron import parse_cron
from digest.run.slots import next_slots
from tests.support.properties import examples

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@dataclass(frozen=True)
class FieldForm:
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name: int = 0


MINUTE = FieldForm(0, 59)
HOUR = FieldForm(0, 23)
DAY = FieldForm(1, 31)
MONTH = FieldForm(1, 12, tuple(MONTHS), 1)
WEEKDAY = FieldForm(0, 7, tuple(DAYS), 0)


# ---------------------------------------------------------------- the reference


def reference_values(text: str, form: FieldForm) -> set[int]:
    def number(word: str) -> int:
        if word.lower() in form.names:
            return form.names.index(word.lower()) + form.first_name
        return int(word)

    values: set[int] = set()
    for item in text.split(","):
        span, _, step = item.partition("/")
        if span == "*":
            low, high = form.low, form.high
        elif "-" in span:
            low, high = (number(part) for part in span.split("-"))
        else:
            low = high = number(span)
        values.update(range(low, high + 1, int(step) if step else 1))
    if form is WEEKDAY:
        values = {value % 7 for value in values}
    return values


def reference_matches(expression: str, moment: datetime) -> bool:
    minute, hour, day, month, weekday = expression.split()
    if moment.minute not in reference_values(minute, MINUTE):
        return False
    if moment.hour not in reference_values(hour, HOUR):
        return False
    if moment.month not in reference_values(month, MONTH):
        return False
    on_day = moment.day in reference_values(day, DAY)
    on_weekday = (moment.weekday() + 1) % 7 in reference_values(weekday, WEEKDAY)
    if day.startswith("*") or weekday.startswith("*"):
        return on_day and on_weekday
    return on_day or on_weekday


def reference_next(expression: str, after: datetime, count: int, years: int = 9) -> list[datetime]:
    """The first `count` minutes after `after` that match, trying every minute (in UTC), days
    that cannot match skipped whole."""
    found: list[datetime] = []
    start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    while len(found) < count and day.year < after.year + years:
        if reference_matches_day(expression, day):
            for minute in range(24 * 60):
                moment = day + timedelta(minutes=minute)
                if moment >= start and reference_matches(expression, moment):
                    found.append(moment)
                    if len(found) == count:
                        break
        day += timedelta(days=1)
    return found


def reference_matches_day(expression: str, day: datetime) -> bool:
    """Whether any minute of `day` could match: the day fields and month alone."""
    _, _, days, months, weekdays = expression.split()
    return reference_matches(f"* * {days} {months} {weekdays}", day)


# ---------------------------------------------------------------- random expressions


def value_text(form: FieldForm, value: int, draw: st.DrawFn) -> str:
    named = form.names and form.low <= value - form.first_name < len(form.names)
    if named and draw(st.booleans()):
        name = form.names[value - form.first_name]
        return draw(st.sampled_from([name, name.upper(), name.capitalize()]))
    return str(value)


@st.composite
def items(draw: st.DrawFn, form: FieldForm) -> str:
    kind = draw(st.sampled_from(["value", "range", "star", "star-step", "range-step"]))
    if kind == "star":
        return "*"
    if kind == "star-step":
        return f"*/{draw(st.integers(1, form.high - form.low + 1))}"
    high = form.high if form is not WEEKDAY else 6  # names run sun-sat; 7 only as a number
    low_value = draw(st.integers(form.low, high))
    if kind == "value":
        return value_text(form, low_value, draw)
    high_value = draw(st.integers(low_value, high))
    span = f"{value_text(form, low_value, draw)}-{value_text(form, high_value, draw)}"
    if kind == "range":
        return span
    return f"{span}/{draw(st.integers(1, form.high - form.low + 1))}"


@st.composite
def fields(draw: st.DrawFn, form: FieldForm) -> str:
    if form is WEEKDAY and draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["7", "0,7", "5-7", "sat,7"]))
    return ",".join(draw(st.lists(items(form), min_size=1, max_size=3)))


@st.composite
def expressions(draw: st.DrawFn) -> str:
    # Minutes and hours sparse enough that the brute force stays quick, days of every kind.
    minute = draw(st.one_of(st.integers(0, 59).map(str), fields(MINUTE)))
    hour = draw(st.one_of(st.integers(0, 23).map(str), fields(HOUR)))
    day = draw(st.one_of(st.just("*"), fields(DAY)))
    month = draw(st.one_of(st.just("*"), fields(MONTH)))
    weekday = draw(st.one_of(st.just("*"), fields(WEEKDAY)))
    return f"{minute} {hour} {day} {month} {weekday}"


moments = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2032, 12, 31), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))


@examples(250)
@given(expressions(), moments)
def test_the_next_fire_times_are_the_first_minutes_crontab_accepts(
    expression: str, after: datetime
) -> None:
    expected = reference_next(expression, after, 3)
    try:
        parse_cron(expression)
    except ValueError as error:
        # Refused only when no day can ever match: a day no month has.
        assert "never fires" in str(error), (expression, error)
        assert expected == [], expression
        return
    slots = next_slots(ScheduleConfig(cron=expression), after, 3)
    assert slots == expected[: len(slots)], expression
    assert len(slots) == 3 or len(expected) < 3


def test_the_reference_reads_the_manual_like_the_examples_in_it() -> None:
    # crontab(5)'s own example: "30 4 1,15 * 5" runs at 4:30 on the 1st and 15th and on Fridays.
    after = datetime(2027, 1, 1, tzinfo=UTC)
    assert reference_next("30 4 1,15 * 5", after, 4) == [
        datetime(2027, 1, 1, 4, 30, tzinfo=UTC),  # the 1st, a Friday too
        datetime(2027, 1, 8, 4, 30, tzinfo=UTC),
        datetime(2027, 1, 15, 4, 30, tzinfo=UTC),
        datetime(2027, 1, 22, 4, 30, tzinfo=UTC),
    ]
    assert reference_next("0 0 30 feb *", after, 1) == []
    assert calendar.isleap(2028) and reference_next("0 0 29 2 *", after, 1) == [
        datetime(2028, 2, 29, tzinfo=UTC)
    ]
