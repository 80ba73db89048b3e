"""Slot arithmetic, pure: when a schedule's slots fall, which are due and which were missed.

Every function takes the moment it reasons about (`now`, `after`); none reads a clock, a file or
the state, so each is tested on its own. `digest run` (digest.run.schedule) and `digest schedule`
use
them.

Slots are wall-clock times in the configured zone. APScheduler 3's CronTrigger matches the cron
fields (parsed by digest.core.cron with crontab(5) semantics: Sunday is 0 or 7, and when both day
fields are restricted either one matching fires), but we run it in UTC over wall-clock times and
place each wall time in the zone ourselves, because in a zone with DST CronTrigger 3.11 (a)
returns a time that does not exist when a slot falls in the hour skipped in spring (01:30 on 28
Mar 2027 in London comes back as "01:30+00:00", really 02:30 BST, an hour late), and (b) fires
twice when a slot falls in the hour repeated in autumn. Here a skipped slot fires once at the
first valid moment after it (02:00 BST) and a repeated one fires once, at its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from digest.config.schema import Config, ScheduleConfig
from digest.core.cron import DAY_NAMES, parse_cron
from digest.core.errors import ConfigError

ON_TIME = timedelta(minutes=5)
"""A slot reached this late by a running scheduler is still sent, even with grace: 0."""
MAX_SKIPPED_RECORDS = 1000
_LOOK_BACK = tuple(timedelta(days=days) for days in (0.1, 2, 9, 63, 740, 2930))


def require_schedule(config: Config) -> ScheduleConfig:
    """The config's schedule, or a ConfigError saying how to add one."""
    if config.schedule is None:
        raise ConfigError(f"{config.source}: schedule: not set; add schedule: day/time or cron")
    return config.schedule


def cron_text(schedule: ScheduleConfig) -> str:
    """The schedule as a crontab(5) expression; day + time becomes 'M H * * day'."""
    if schedule.cron:
        return schedule.cron
    assert schedule.day and schedule.time, "ScheduleConfig guarantees day + time or cron"
    hour, minute = schedule.time.split(":")
    return f"{int(minute)} {int(hour)} * * {schedule.day[:3]}"


def describe(schedule: ScheduleConfig) -> str:
    """The schedule in words for the log."""
    when = (
        f"cron {schedule.cron!r}" if schedule.cron else f"every {schedule.day} at {schedule.time}"
    )
    return f"{when} {schedule.timezone}, grace {timedelta(seconds=schedule.grace)}"


def slot_key(slot: datetime) -> str:
    """The key a slot is recorded under: its time in UTC, ISO 8601."""
    return slot.astimezone(UTC).isoformat()


def _wall_triggers(schedule: ScheduleConfig) -> tuple[CronTrigger, ...]:
    expression = parse_cron(cron_text(schedule))

    def joined(values: tuple[int, ...]) -> str:
        return ",".join(str(value) for value in values)

    common = {
        "minute": joined(expression.minutes),
        "hour": joined(expression.hours),
        "month": joined(expression.months),
        "second": 0,
        "timezone": UTC,
    }
    days = joined(expression.days)
    weekdays = ",".join(DAY_NAMES[day] for day in expression.weekdays)
    if expression.either_day:
        return (
            CronTrigger(day=days, day_of_week="*", **common),
            CronTrigger(day="*", day_of_week=weekdays, **common),
        )
    return (CronTrigger(day=days, day_of_week=weekdays, **common),)


def _walls(schedule: ScheduleConfig, start: datetime) -> Iterator[datetime]:
    """Naive wall-clock times the schedule matches, from `start` (naive) on, in order."""
    triggers = _wall_triggers(schedule)
    cursor = start.replace(tzinfo=UTC)
    while True:
        found = [t.get_next_fire_time(None, cursor) for t in triggers]
        candidates = [moment for moment in found if moment is not None]
        if not candidates:
            return
        wall: datetime = min(candidates)
        yield wall.replace(tzinfo=None)
        cursor = wall + timedelta(seconds=1)


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """When a wall time happens in a zone: first occurrence if repeated, gap's end if skipped."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first.astimezone(zone)
    # In a gap fold=1 reads the wall time with the offset from after the change, fold=0 with the
    # one from before: the change itself lies between the two readings. Find it to the second.
    earlier = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    after_offset = first.astimezone(zone).utcoffset()
    low, high = 0, max(0, int((first - earlier).total_seconds()))
    while low < high:
        middle = (low + high) // 2
        if (earlier + timedelta(seconds=middle)).astimezone(zone).utcoffset() == after_offset:
            high = middle
        else:
            low = middle + 1
    return (earlier + timedelta(seconds=low)).astimezone(zone)


def next_slots(schedule: ScheduleConfig, after: datetime, count: int) -> list[datetime]:
    """The next `count` slots strictly after `after`, as aware times in the schedule's zone."""
    zone = ZoneInfo(schedule.timezone)
    after_utc = after.astimezone(UTC)
    slots: list[datetime] = []
    walls = _walls(schedule, after_utc.astimezone(zone).replace(tzinfo=None))
    while len(slots) < count and (wall := next(walls, None)) is not None:
        slot = _instant(wall, zone).astimezone(UTC)
        if slot > after_utc and not (slots and slot == slots[-1]):
            slots.append(slot)  # several wall times in one skipped hour become one slot
    return [slot.astimezone(zone) for slot in slots]


def previous_slot(schedule: ScheduleConfig, now: datetime) -> datetime | None:
    """The most recent slot at or before `now`, or None if there was none in eight years."""
    zone = ZoneInfo(schedule.timezone)
    now_utc = now.astimezone(UTC)
    now_wall = now_utc.astimezone(zone).replace(tzinfo=None)
    for window in _LOOK_BACK:
        latest = None
        for wall in _walls(schedule, now_wall - window):
            slot = _instant(wall, zone)
            if slot.astimezone(UTC) > now_utc:
                break
            latest = slot
        if latest is not None:
            return latest
    return None


def slots_between(schedule: ScheduleConfig, start: datetime, end: datetime) -> list[datetime]:
    """Slots strictly after `start` and strictly before `end`, at most MAX_SKIPPED_RECORDS."""
    found: list[datetime] = []
    cursor = start
    while len(found) < MAX_SKIPPED_RECORDS:
        following = next_slots(schedule, cursor, 1)
        if not following or following[0].astimezone(UTC) >= end.astimezone(UTC):
            break
        found.append(following[0])
        cursor = following[0]
    return found


def parse_when(text: str, schedule: ScheduleConfig) -> datetime:
    """An ISO date or date-time; naive ones are read in the schedule's zone. ValueError if bad."""
    zone = ZoneInfo(schedule.timezone)
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        moment = datetime.fromisoformat(text.strip())
    else:
        moment = datetime(day.year, day.month, day.day)
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


@dataclass(frozen=True)
class Plan:
    """What is due at a moment: the slot to send now (if any) and missed slots to skip."""

    send: datetime | None
    skip: tuple[datetime, ...]


def plan_due(schedule: ScheduleConfig, now: datetime, latest_recorded: datetime | None) -> Plan:
    """Send the latest slot if under grace ago; skip those missed since the last recorded one."""
    recent = previous_slot(schedule, now)
    if recent is None:
        return Plan(None, ())
    allowed = max(timedelta(seconds=schedule.grace), ON_TIME)
    in_time = now.astimezone(UTC) - recent.astimezone(UTC) < allowed
    if latest_recorded is None:  # first start: no scheduler ran, so none were missed
        return Plan(recent if in_time else None, ())
    older = slots_between(schedule, latest_recorded, recent)
    return Plan(recent, tuple(older)) if in_time else Plan(None, (*older, recent))
