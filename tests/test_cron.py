"""crontab(5) expressions as a schedule fires them: names, ranges, steps and the two day fields.

Each test says when a schedule fires (next_slots), not how the expression is held, so a change
that keeps the fields but fires at another time fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.config.schema import ScheduleConfig
from digest.core.cron import MONTH_NAMES, parse_cron
from digest.run.slots import next_slots

NEW_YEARS_EVE = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)


def fires(cron: str, after: datetime, count: int) -> list[datetime]:
    return next_slots(ScheduleConfig(cron=cron), after, count)


@pytest.mark.parametrize(("month", "name"), list(enumerate(MONTH_NAMES, start=1)))
def test_each_month_name_fires_in_that_month(month: int, name: str) -> None:
    assert fires(f"0 8 1 {name} *", NEW_YEARS_EVE, 1) == [datetime(2027, month, 1, 8, tzinfo=UTC)]
    assert fires(f"0 8 1 {name.upper()} *", NEW_YEARS_EVE, 1) == fires(
        f"0 8 1 {month} *", NEW_YEARS_EVE, 1
    )


def test_month_names_make_ranges_and_lists() -> None:
    firsts = [slot.month for slot in fires("0 8 1 mar-may,oct *", NEW_YEARS_EVE, 5)]
    assert firsts == [3, 4, 5, 10, 3]
    assert [slot.month for slot in fires("0 8 1 jan-dec/4 *", NEW_YEARS_EVE, 3)] == [1, 5, 9]


def test_both_day_fields_restricted_fire_on_either_day_at_the_minute_and_hour_given() -> None:
    # crontab(5): "0 8 1 * 1" is 08:00 on the 1st of the month and 08:00 on every Monday.
    assert fires("0 8 1 * 1", datetime(2027, 3, 28, tzinfo=UTC), 4) == [
        datetime(2027, 3, 29, 8, 0, tzinfo=UTC),  # a Monday
        datetime(2027, 4, 1, 8, 0, tzinfo=UTC),  # the 1st, a Thursday
        datetime(2027, 4, 5, 8, 0, tzinfo=UTC),
        datetime(2027, 4, 12, 8, 0, tzinfo=UTC),
    ]
    assert fires("30 17 13 * fri", datetime(2027, 8, 1, tzinfo=UTC), 3) == [
        datetime(2027, 8, 6, 17, 30, tzinfo=UTC),
        datetime(2027, 8, 13, 17, 30, tzinfo=UTC),  # the 13th, a Friday
        datetime(2027, 8, 20, 17, 30, tzinfo=UTC),
    ]


def test_both_day_fields_restricted_keep_the_month() -> None:
    assert fires("15 6 1 jun mon", datetime(2027, 5, 1, tzinfo=UTC), 3) == [
        datetime(2027, 6, 1, 6, 15, tzinfo=UTC),
        datetime(2027, 6, 7, 6, 15, tzinfo=UTC),
        datetime(2027, 6, 14, 6, 15, tzinfo=UTC),
    ]


def test_a_day_field_starting_with_a_star_is_not_either_or() -> None:
    # Vixie cron: a day field starting with "*" (such as "*/2") does not make the two day fields
    # an either-or; a day must match both.
    assert fires("0 8 */2 * mon", datetime(2027, 3, 1, tzinfo=UTC), 2) == [
        datetime(2027, 3, 1, 8, tzinfo=UTC),  # the 1st and a Monday
        datetime(2027, 3, 15, 8, tzinfo=UTC),  # the next odd day that is a Monday
    ]
    assert fires("0 8 1 * */3", datetime(2027, 3, 2, tzinfo=UTC), 2) == [
        datetime(2027, 5, 1, 8, tzinfo=UTC),  # the first 1st that is a Sun, Wed or Sat
        datetime(2027, 8, 1, 8, tzinfo=UTC),
    ]


def test_only_one_day_field_restricted_fires_on_that_one() -> None:
    assert fires("0 8 1 * *", datetime(2027, 3, 2, tzinfo=UTC), 2) == [
        datetime(2027, 4, 1, 8, tzinfo=UTC),
        datetime(2027, 5, 1, 8, tzinfo=UTC),
    ]
    assert fires("0 8 * * 1", datetime(2027, 3, 2, tzinfo=UTC), 1) == [
        datetime(2027, 3, 8, 8, tzinfo=UTC)
    ]


def test_minutes_and_hours_take_lists_ranges_and_steps() -> None:
    assert fires("*/20 9-10 * * *", datetime(2027, 3, 1, tzinfo=UTC), 7) == [
        datetime(2027, 3, 1, 9, 0, tzinfo=UTC),
        datetime(2027, 3, 1, 9, 20, tzinfo=UTC),
        datetime(2027, 3, 1, 9, 40, tzinfo=UTC),
        datetime(2027, 3, 1, 10, 0, tzinfo=UTC),
        datetime(2027, 3, 1, 10, 20, tzinfo=UTC),
        datetime(2027, 3, 1, 10, 40, tzinfo=UTC),
        datetime(2027, 3, 2, 9, 0, tzinfo=UTC),
    ]
    assert [slot.hour for slot in fires("5 1-23/11,7 * * *", NEW_YEARS_EVE, 4)] == [1, 7, 12, 23]


def test_fields_parse_to_what_crontab_means() -> None:
    expression = parse_cron(" 0,30 8-9 1-31/10 feb-apr,DEC Mon-Fri ")
    assert expression.text == "0,30 8-9 1-31/10 feb-apr,DEC Mon-Fri"
    assert expression.minutes == (0, 30)
    assert expression.hours == (8, 9)
    assert expression.days == (1, 11, 21, 31)
    assert expression.months == (2, 3, 4, 12)
    assert expression.weekdays == (1, 2, 3, 4, 5)
    assert expression.either_day
    assert parse_cron("0 8 * * 7").weekdays == (0,)
    assert parse_cron("0 8 * * sat-sun").weekdays == (0, 6)
    everything = parse_cron("* * * * *")
    assert (len(everything.minutes), len(everything.hours), len(everything.days)) == (60, 24, 31)
    assert (everything.months, everything.weekdays) == (tuple(range(1, 13)), tuple(range(7)))
    assert not everything.either_day


@pytest.mark.parametrize(
    ("nickname", "expanded"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_nicknames_fire_as_their_five_fields(nickname: str, expanded: str) -> None:
    assert fires(nickname.upper(), NEW_YEARS_EVE, 3) == fires(expanded, NEW_YEARS_EVE, 3)


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("", "expected 5 fields (minute hour day-of-month month day-of-week), got 0 in ''"),
        ("0 8 * * * *", "expected 5 fields"),
        ("@fortnightly", "unknown shorthand '@fortnightly'; use five fields or one of @yearly"),
        ("0 24 * * *", "hour: 24 is out of range 0-23"),
        ("0 8 0 * *", "day of month: 0 is out of range 1-31"),
        ("0 8 32 * *", "day of month: 32 is out of range 1-31"),
        ("0 8 * 0 *", "month: 0 is out of range 1-12"),
        ("0 8 * 13 *", "month: 13 is out of range 1-12"),
        ("0 8 * foo *", "month: 'foo' in 'foo' is not a number 1-12 or a name (jan, feb,"),
        ("x 8 * * *", "minute: 'x' in 'x' is not a number 0-59\n"),
        ("0 8 * dec-jan *", "month: range 'dec-jan' runs backwards; write it as two ranges"),
        ("0 8 * * 5-1", "day of week: range '5-1' runs backwards"),
        ("0 8 1, * *", "day of month: empty list item"),
        ("5/2 8 * * *", "minute: a step needs a range or '*', as in '*/2'"),
        ("*/x 8 * * *", "minute: step in '*/x' must be a whole number above 0"),
        ("0 8 31 4,6 *", "'0 8 31 4,6 *' never fires: no month has that day"),
        ("0 8 * * -1", "day of week: '' in '-1' is not a number 0-7"),
    ],
)
def test_a_bad_expression_says_what_is_wrong(cron: str, problem: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_cron(cron)
    assert problem.rstrip("\n") in str(raised.value)
    if problem.endswith("\n"):  # the field has no names to offer
        assert "name" not in str(raised.value)


def test_a_day_no_month_has_is_fine_when_the_weekday_can_fire() -> None:
    # "30 Feb or any Monday": crontab fires on the Mondays.
    assert fires("0 8 30 2 mon", datetime(2027, 2, 1, 9, tzinfo=UTC), 1) == [
        datetime(2027, 2, 8, 8, tzinfo=UTC)
    ]
    assert fires("0 8 29 2 *", datetime(2027, 1, 1, tzinfo=UTC), 1) == [
        datetime(2028, 2, 29, 8, tzinfo=UTC)
    ]


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        (
            "@fortnightly",
            "unknown shorthand '@fortnightly'; use five fields or one of @yearly, @annually,"
            " @monthly, @weekly, @daily, @midnight, @hourly",
        ),
        ("0 24 * * *", "hour: 24 is out of range 0-23"),
        ("0 8 * * 8", "day of week: 8 is out of range 0-7 (0 and 7 are Sunday)"),
        ("x 8 * * *", "minute: 'x' in 'x' is not a number 0-59"),
        (
            "0 8 * 1-x *",
            "month: 'x' in '1-x' is not a number 1-12 or a name (jan, feb, mar, apr,"
            " may, jun, jul, aug, sep, oct, nov, dec)",
        ),
        (
            "0 8 * * 1-2-3",
            "day of week: '2-3' in '1-2-3' is not a number 0-7 or a name (sun, mon,"
            " tue, wed, thu, fri, sat)",
        ),
    ],
)
def test_an_error_message_is_exactly_what_the_editor_reads(cron: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_cron(cron)
    assert str(raised.value) == message


def test_a_weekday_range_ending_on_sunday_runs_to_the_end_of_the_week() -> None:
    monday = datetime(2027, 3, 1, 9, tzinfo=UTC)  # a Monday, after 08:00
    week = fires("0 8 * * mon-sun", monday, 7)
    assert [slot.day for slot in week] == [2, 3, 4, 5, 6, 7, 8]
    assert fires("0 8 * * fri-sun", monday, 3) == fires("0 8 * * 5-7", monday, 3)
    sundays = fires("0 8 * * sun-sun", monday, 2)
    assert [slot.day for slot in sundays] == [7, 14]
    assert fires("0 8 * * 0-0", monday, 2) == sundays
