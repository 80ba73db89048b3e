"""When to send: schedule slots in the editor's time zone, and the `digest run` scheduler.

Slots are wall-clock times in the configured zone. APScheduler 3's CronTrigger matches the cron
fields, but we run it in UTC over wall-clock times and place each wall time in the zone ourselves,
because in a zone with DST CronTrigger 3.11 (a) returns a time that does not exist when a slot
falls in the hour skipped in spring (01:30 on 28 Mar 2027 in London comes back as "01:30+00:00",
really 02:30 BST, an hour late), and (b) fires twice when a slot falls in the hour repeated in
autumn. Here a skipped slot fires once at the first valid moment after it (02:00 BST) and a
repeated one fires once, at its first occurrence.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from digest import pipeline
from digest.config import Config, ScheduleConfig, load_config
from digest.cron import DAY_NAMES, parse_cron
from digest.errors import ConfigError, DigestError, Stopped
from digest.lock import hold_lock
from digest.models import SendReport
from digest.stopping import GracefulStop
from digest.store import State

logger = logging.getLogger(__name__)

ON_TIME = timedelta(minutes=5)
"""A slot reached this late by a running scheduler is still sent, even with grace: 0."""
MAX_SKIPPED_RECORDS = 1000
_LOOK_BACK = tuple(timedelta(days=days) for days in (0.1, 2, 9, 63, 740, 2930))


# -- slots (pure) --------------------------------------------------------------------------


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


# -- firing slots ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """The scheduler's time source: the real clock, shifted by `offset` for rehearsals and tests."""

    offset: timedelta = timedelta(0)

    @classmethod
    def starting_at(cls, start: datetime) -> Clock:
        """A clock that reads `start` now and then runs at the normal rate."""
        return cls(start.astimezone(UTC) - datetime.now(UTC))

    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        return datetime.now(UTC) + self.offset


@dataclass(frozen=True)
class SlotResult:
    """A slot fired (None: only an interrupted issue was finished) and the send's report (None:
    the slot had already been handled)."""

    slot: datetime | None
    report: SendReport | None


def fire(
    config: Config,
    clock: Clock,
    stop: threading.Event,
    *,
    fallback_to_next: bool = False,
) -> SlotResult | None:
    """Skip missed slots, finish an interrupted issue, send the due slot (or else the next)."""
    schedule = require_schedule(config)
    if stop.is_set():
        return None
    wait = max(schedule.grace, ON_TIME.total_seconds())
    with hold_lock(config.state_path, "send", wait=wait, stop=stop, command="run"):
        now = clock.now()
        with State(config.state_path) as state:
            latest = state.latest_slot_key()
            plan = plan_due(schedule, now, datetime.fromisoformat(latest) if latest else None)
            _record_skips(state, plan.skip, now, schedule)
            slot = plan.send
            if fallback_to_next and (slot is None or state.slot_handled(slot_key(slot))):
                upcoming = next_slots(schedule, now, 1)
                slot = upcoming[0] if upcoming else None
            key = slot_key(slot) if slot else None
            handled = key is not None and state.slot_handled(key)
            unfinished = state.unfinished_issue()
        if unfinished is None and (slot is None or handled):
            if slot is not None:
                logger.info("slot %s already handled; nothing to do", slot.isoformat())
                return SlotResult(slot, None)
            return None
        if unfinished is not None:
            logger.info("resuming unfinished issue %d first", unfinished.id)
            report = pipeline.send(config, now, stop=stop, clock=clock.now)
            _log_slot(slot if handled else None, report, schedule, clock.now())
            if stop.is_set() or slot is None or handled:
                return SlotResult(slot, report)
            if report.pending and report.issue_id is not None:
                _give_up(config, report.issue_id, clock.now())
        assert slot is not None and key is not None
        logger.info("slot %s fired", slot.isoformat())
        report = pipeline.send(config, now, slot_key=key, stop=stop, clock=clock.now)
    _log_slot(slot, report, schedule, clock.now())
    return SlotResult(slot, report)


def _give_up(config: Config, issue_id: int, now: datetime) -> None:
    """A new slot has come: stop retrying the old issue's deferred addresses, so it goes."""
    with State(config.state_path) as state:
        given_up = state.give_up_pending(issue_id, now)
    for delivery in given_up:
        logger.warning(
            "issue %d: %s still deferred at the next slot; marked failed (%s)",
            issue_id,
            delivery.email,
            delivery.reply,
        )


def _record_skips(
    state: State, slots: tuple[datetime, ...], now: datetime, schedule: ScheduleConfig
) -> None:
    grace = timedelta(seconds=schedule.grace)
    for slot in slots:
        key = slot_key(slot)
        if state.slot_handled(key):
            continue
        state.record_skipped_slot(key, now, f"missed by more than the grace period ({grace})")
        logger.warning(
            "slot %s missed (the scheduler was not running, %s ago, grace %s): skipped;"
            " its posts roll into the next issue",
            slot.isoformat(),
            _rounded(now.astimezone(UTC) - slot.astimezone(UTC)),
            grace,
        )


def _rounded(delta: timedelta) -> timedelta:
    return timedelta(seconds=int(delta.total_seconds()))


def _log_slot(
    slot: datetime | None, report: SendReport, schedule: ScheduleConfig, now: datetime
) -> None:
    label = slot.isoformat() if slot else "(resuming)"
    upcoming = next_slots(schedule, now, 1)
    following = upcoming[0].isoformat() if upcoming else "none"
    for problem in report.feed_problems:
        logger.warning("%s", problem)
    for row in report.skipped_subscribers:
        logger.warning("invalid subscriber skipped: %s", row)
    if report.skipped_reason:
        logger.info(
            "slot %s: nothing sent (%s); next slot %s",
            label,
            report.skipped_reason,
            following,
        )
        return
    resumed = f" (resumed issue {report.issue_id})" if report.resumed else ""
    logger.info(
        "slot %s: issue %s%s, %d posts, %d delivered, %d failed, %d pending; next slot %s",
        label,
        report.issue_id,
        resumed,
        report.post_count,
        report.sent,
        report.failed,
        report.pending,
        following,
    )


# -- the scheduler process ------------------------------------------------------------------


class SlotTrigger(BaseTrigger):  # type: ignore[misc]
    """APScheduler trigger firing at each slot, on the real clock even when `clock` is shifted."""

    def __init__(self, schedule: ScheduleConfig, clock: Clock) -> None:
        self.schedule = schedule
        self.clock = clock

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """The first slot after the previous firing (or after now), in real time."""
        after = (previous_fire_time or now).astimezone(UTC) + self.clock.offset
        upcoming = next_slots(self.schedule, after, 1)
        return upcoming[0].astimezone(UTC) - self.clock.offset if upcoming else None

    def __str__(self) -> str:
        return f"slots[{cron_text(self.schedule)} {self.schedule.timezone}]"


class Attempts:
    """Slots for `digest run`: config.yaml read afresh each time, failures retried within grace."""

    # A slot that fails (mail server down, a config mistake being fixed) or leaves messages
    # pending is tried again every `schedule.retry_every` until it succeeds or `grace` has passed
    # since the first failure; after that the next slot picks up whatever is left.

    def __init__(self, config: Config, clock: Clock, stop: threading.Event) -> None:
        self.started_with = config
        self.clock = clock
        self.stop = stop
        self.failing_since: datetime | None = None

    def current_config(self) -> Config:
        """config.yaml as it is now; the schedule and state file stay as started."""
        config = load_config(self.started_with.source)
        if (
            config.schedule != self.started_with.schedule
            or config.state_path != self.started_with.state_path
        ):
            logger.warning(
                "schedule or state changed in %s; restart digest run to apply them",
                config.source,
            )
            config = config.model_copy(
                update={"schedule": self.started_with.schedule, "state": self.started_with.state}
            )
        return config

    def run(self) -> bool:
        """One attempt; True when it should be retried."""
        try:
            result = fire(self.current_config(), self.clock, self.stop)
        except Stopped as error:
            logger.warning("%s", error)
            return False
        except DigestError as error:
            logger.error("slot failed: %s", error)
            return True
        except Exception:
            logger.exception("slot failed unexpectedly")
            return True
        report = result.report if result else None
        return report is not None and report.pending > 0

    def retry_delay(self, failed: bool) -> float | None:
        """Seconds until the next attempt, or None when there is nothing to retry (for now)."""
        schedule = require_schedule(self.started_with)
        if not failed or self.stop.is_set():
            self.failing_since = None
            return None
        now = self.clock.now()
        self.failing_since = self.failing_since or now
        deadline = self.failing_since + timedelta(seconds=schedule.grace)
        if now + timedelta(seconds=schedule.retry_every) > deadline:
            logger.error(
                "still failing after %s (grace); the next slot will pick up what is left",
                _rounded(now - self.failing_since),
            )
            self.failing_since = None
            return None
        return schedule.retry_every


def run_once(config: Config, clock: Clock) -> SlotResult | None:
    """Fire the due slot (missed within grace) or else the next one now; stop on SIGTERM."""
    require_schedule(config)
    with hold_lock(config.state_path, "run"), GracefulStop() as stop:
        return fire(config, clock, stop, fallback_to_next=True)


def run_forever(config: Config, clock: Clock) -> None:
    """Send at every slot until SIGTERM/SIGINT; on start, catch up the latest slot within grace."""
    schedule = require_schedule(config)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    with hold_lock(config.state_path, "run") as lock, GracefulStop() as stop:
        scheduler = BackgroundScheduler(
            timezone=ZoneInfo(schedule.timezone),
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        attempts = Attempts(config, clock, stop)

        def attempt() -> None:
            delay = attempts.retry_delay(attempts.run())
            if delay is not None:
                logger.info("retrying in %s", timedelta(seconds=round(delay)))
                scheduler.add_job(
                    attempt,
                    DateTrigger(datetime.now(UTC) + timedelta(seconds=delay)),
                    id="retry",
                    replace_existing=True,
                )

        scheduler.add_job(attempt, id="start-up")
        scheduler.add_job(attempt, SlotTrigger(schedule, clock), id="slots")
        upcoming = next_slots(schedule, clock.now(), 1)
        logger.info(
            "digest run: %s; state %s (lock %s); next slot %s",
            describe(schedule),
            config.state_path,
            lock,
            upcoming[0].isoformat() if upcoming else "none",
        )
        scheduler.start()
        try:
            stop.wait()
        finally:
            stop.set()
            scheduler.shutdown(wait=True)
        logger.info("digest run stopped")
