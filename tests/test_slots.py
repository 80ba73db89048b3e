"""The pure slot arithmetic on its own: every answer follows from the schedule and `now`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.config.schema import ScheduleConfig, load_config
from digest.core.errors import ConfigError
from digest.run.slots import (
    MAX_SKIPPED_RECORDS,
    ON_TIME,
    Plan,
    cron_text,
    describe,
    next_slots,
    parse_when,
    plan_due,
    previous_slot,
    require_schedule,
    slot_key,
    slots_between,
)

LONDON = ZoneInfo("Europe/London")
TOKYO = ZoneInfo("Asia/Tokyo")
WEEKLY = ScheduleConfig(day="monday", time="08:00", timezone="Europe/London", grace=6 * 3600)


def test_day_and_time_become_a_crontab_line_and_cron_is_kept_as_written() -> None:
    assert cron_text(WEEKLY) == "0 8 * * mon"
    assert cron_text(ScheduleConfig(day="friday", time="17:05")) == "5 17 * * fri"
    assert cron_text(ScheduleConfig(cron="*/15 9-17 * * 1-5")) == "*/15 9-17 * * 1-5"


def test_describe_says_when_where_and_the_grace() -> None:
    assert describe(WEEKLY) == "every monday at 08:00 Europe/London, grace 6:00:00"
    assert describe(ScheduleConfig(cron="0 8 * * 1", grace="90m")) == (
        "cron '0 8 * * 1' UTC, grace 1:30:00"
    )


def test_require_schedule_names_the_config_file(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        "newsletter:\n  title: T\n  from: T <t@example.org>\n"
        "feeds:\n  - name: Blog\n    url: https://example.org/feed.xml\n",
        encoding="utf-8",
    )
    config = load_config(config_path)
    with pytest.raises(ConfigError, match=r"config\.yaml: schedule: not set"):
        require_schedule(config)
    with_schedule = replace(config, schedule=WEEKLY)
    assert require_schedule(with_schedule) is WEEKLY


def test_next_slots_are_strictly_after_and_in_the_schedules_zone() -> None:
    at_the_slot = datetime(2027, 3, 29, 8, 0, tzinfo=LONDON)
    slots = next_slots(WEEKLY, at_the_slot, 2)
    assert slots == [
        datetime(2027, 4, 5, 8, 0, tzinfo=LONDON),
        datetime(2027, 4, 12, 8, 0, tzinfo=LONDON),
    ]
    assert all(slot.tzinfo == LONDON for slot in slots)


def test_a_leap_day_schedule_looks_back_years_for_its_previous_slot() -> None:
    leap = ScheduleConfig(cron="0 8 29 2 *")
    now = datetime(2031, 1, 1, tzinfo=UTC)
    assert previous_slot(leap, now) == datetime(2028, 2, 29, 8, 0, tzinfo=UTC)
    assert next_slots(leap, now, 1) == [datetime(2032, 2, 29, 8, 0, tzinfo=UTC)]


def test_a_slot_in_the_hour_skipped_in_spring_is_given_in_the_schedules_zone() -> None:
    # 01:30 does not exist in London on 28 March 2027: the slot is 02:00 BST, the first valid
    # moment after it, and it reads as 02:00 on the schedule's clock, not as 01:00 UTC.
    nightly = ScheduleConfig(cron="30 1 * * *", timezone="Europe/London")
    latest = previous_slot(nightly, datetime(2027, 3, 28, 2, 10, tzinfo=LONDON))
    assert latest == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert latest is not None and latest.tzinfo == LONDON
    assert (latest.hour, latest.minute) == (2, 0)


def test_next_slots_stop_at_the_end_of_the_calendar() -> None:
    # The calendar ends with 9999: asked for three slots, the schedule has two left to give.
    weekly_utc = ScheduleConfig(day="monday", time="08:00")
    assert next_slots(weekly_utc, datetime(9999, 12, 20, tzinfo=UTC), 3) == [
        datetime(9999, 12, 20, 8, 0, tzinfo=UTC),
        datetime(9999, 12, 27, 8, 0, tzinfo=UTC),
    ]


def test_nothing_is_due_or_skipped_before_the_first_slot_there_is() -> None:
    # Slots are counted from 1970 on: a clock set before then has no slot to send or skip,
    # whether or not one was ever recorded.
    weekly_utc = ScheduleConfig(day="monday", time="08:00")
    long_ago = datetime(1969, 12, 1, tzinfo=UTC)
    assert previous_slot(weekly_utc, long_ago) is None
    assert plan_due(weekly_utc, long_ago, None) == Plan(None, ())
    assert plan_due(weekly_utc, long_ago, long_ago - timedelta(days=30)) == Plan(None, ())


def test_slots_between_excludes_both_ends_and_is_capped() -> None:
    start = datetime(2027, 3, 1, 8, 0, tzinfo=LONDON)
    end = datetime(2027, 3, 22, 8, 0, tzinfo=LONDON)
    assert slots_between(WEEKLY, start, end) == [
        datetime(2027, 3, 8, 8, 0, tzinfo=LONDON),
        datetime(2027, 3, 15, 8, 0, tzinfo=LONDON),
    ]
    minutely = ScheduleConfig(cron="* * * * *")
    many = slots_between(minutely, start, start + timedelta(days=3))
    assert len(many) == MAX_SKIPPED_RECORDS
    assert many[0] == start + timedelta(minutes=1)


def test_a_slot_already_recorded_is_due_again_only_for_the_caller_to_see_it_handled() -> None:
    slot = datetime(2027, 3, 29, 8, 0, tzinfo=LONDON)
    assert plan_due(WEEKLY, slot + timedelta(hours=1), slot) == Plan(slot, ())


def test_on_time_wins_over_a_shorter_grace_and_grace_over_on_time() -> None:
    short = ScheduleConfig(day="monday", time="08:00", timezone="Europe/London", grace="1m")
    slot = datetime(2027, 3, 29, 8, 0, tzinfo=LONDON)
    just_in = slot + ON_TIME - timedelta(seconds=1)
    assert plan_due(short, just_in, None).send == slot
    assert plan_due(short, slot + ON_TIME, None) == Plan(None, ())
    assert plan_due(WEEKLY, slot + timedelta(hours=5, minutes=59), None).send == slot


def test_parse_when_reads_naive_times_in_the_schedules_zone() -> None:
    assert parse_when("2027-03-29", WEEKLY) == datetime(2027, 3, 29, tzinfo=LONDON)
    assert parse_when(" 2027-07-01T08:00 ", WEEKLY) == datetime(2027, 7, 1, 8, tzinfo=LONDON)
    with_offset = parse_when("2027-07-01T08:00+02:00", WEEKLY)
    assert with_offset.utcoffset() == timedelta(hours=2)
    with pytest.raises(ValueError):
        parse_when("next monday", WEEKLY)


# -- the machine's own time zone plays no part ------------------------------------------------
# Slots are reasoned about in the schedule's zone and recorded in UTC. A machine whose local zone
# is UTC cannot tell "UTC" from "local time" apart, so these tests set the process's zone (TZ and
# time.tzset, undone afterwards) to zones on both sides of UTC. `make test` also runs the
# schedule tests under TZ=Asia/Tokyo.


@pytest.fixture(params=["Asia/Tokyo", "America/New_York", "Europe/London"])
def machine_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    zone = str(request.param)
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    assert datetime(2027, 7, 1, tzinfo=UTC).astimezone().utcoffset() == (
        datetime(2027, 7, 1, tzinfo=UTC).astimezone(ZoneInfo(zone)).utcoffset()
    )
    yield zone
    monkeypatch.undo()
    time.tzset()


def test_a_slots_key_is_its_utc_time_whatever_the_machines_zone(machine_zone: str) -> None:
    assert slot_key(datetime(2027, 3, 29, 8, 0, tzinfo=LONDON)) == "2027-03-29T07:00:00+00:00"
    assert slot_key(datetime(2027, 7, 1, 8, 0, tzinfo=TOKYO)) == "2027-06-30T23:00:00+00:00"
    assert slot_key(datetime(2027, 7, 1, 8, 0, tzinfo=UTC)) == "2027-07-01T08:00:00+00:00"


def test_next_slots_start_from_the_moment_given_whatever_the_machines_zone(
    machine_zone: str,
) -> None:
    # Sunday 28 March 2027, 23:30 in London is already Monday morning in Tokyo and still
    # Sunday evening in New York: the next slot is Monday 08:00 London either way.
    after = datetime(2027, 3, 28, 23, 30, tzinfo=LONDON)
    expected = [
        datetime(2027, 3, 29, 8, 0, tzinfo=LONDON),
        datetime(2027, 4, 5, 8, 0, tzinfo=LONDON),
    ]
    assert next_slots(WEEKLY, after, 2) == expected
    daily_utc = ScheduleConfig(cron="0 1 * * *")
    assert next_slots(daily_utc, datetime(2027, 7, 1, 0, 30, tzinfo=UTC), 1) == [
        datetime(2027, 7, 1, 1, 0, tzinfo=UTC)
    ]
    assert previous_slot(WEEKLY, after) == datetime(2027, 3, 22, 8, 0, tzinfo=LONDON)
    monday_morning = datetime(2027, 3, 29, 7, 30, tzinfo=LONDON)  # 15:30 in Tokyo
    assert next_slots(WEEKLY, monday_morning, 1) == expected[:1]


@pytest.mark.parametrize("zone", [UTC, TOKYO, ZoneInfo("America/New_York")])
def test_next_slots_read_a_moment_given_in_another_zone_as_the_same_instant(zone: object) -> None:
    # Monday 29 March 2027, 07:30 in London is 15:30 in Tokyo, after that day's 08:00: read as a
    # wall time in the schedule's zone it would skip the slot half an hour away.
    after = datetime(2027, 3, 29, 7, 30, tzinfo=LONDON)
    moved = after.astimezone(zone)  # type: ignore[arg-type]
    assert next_slots(WEEKLY, moved, 2) == [
        datetime(2027, 3, 29, 8, 0, tzinfo=LONDON),
        datetime(2027, 4, 5, 8, 0, tzinfo=LONDON),
    ]
    assert previous_slot(WEEKLY, moved) == datetime(2027, 3, 22, 8, 0, tzinfo=LONDON)
    assert slots_between(WEEKLY, moved, after + timedelta(days=7)) == [
        datetime(2027, 3, 29, 8, 0, tzinfo=LONDON)
    ]
