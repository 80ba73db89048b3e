"""The `digest run` scheduler: fire each slot through sending.send, retry within grace, stop
cleanly. APScheduler 3 runs the slots; when they fall is worked out in digest.run.slots."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digest import store
from digest.config.fields import SettingsError
from digest.config.schema import Config, ScheduleConfig, load_config
from digest.core import counters
from digest.core.errors import ConfigError, DigestError, LockHeld, Stopped
from digest.core.models import SendReport
from digest.core.stopping import GracefulStop
from digest.readers import outbox
from digest.run import approval
from digest.run import send as sending
from digest.run.slots import (
    ON_TIME,
    cron_text,
    describe,
    next_slots,
    plan_due,
    require_schedule,
    slot_key,
)
from digest.store import State, backup

logger = logging.getLogger(__name__)

OUTBOX_EVERY = 30.0  # seconds between two looks at the outbox (at most half the lease)
BACKUP_LOOK_EVERY = 3600.0  # seconds between two looks at whether a backup is due
REPORTS_LOOK_EVERY = 600.0  # seconds between two looks at whether an issue's report is due
ASK_EARLY = timedelta(seconds=1)  # the approval job may fire a moment before slot - before


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
    if _sending_elsewhere(config):
        # Another sender (on another host, say) is sending an issue: help send it, then see
        # to the slot as usual (it is most likely the slot that issue was frozen for).
        joined = sending.send(config, clock.now(), stop=stop, clock=clock.now, join=True)
        _log_slot(None, joined, schedule, clock.now())
        if stop.is_set():
            return SlotResult(None, joined)
    with store.lock(config, "send", wait=wait, stop=stop, command="run"):
        now = clock.now()
        with store.open(config) as state:
            latest = state.ledger.latest_slot_key()
            plan = plan_due(schedule, now, datetime.fromisoformat(latest) if latest else None)
            _record_skips(state, plan.skip, now, schedule)
            slot = plan.send
            if fallback_to_next and (slot is None or state.ledger.slot_handled(slot_key(slot))):
                upcoming = next_slots(schedule, now, 1)
                slot = upcoming[0] if upcoming else None
            key = slot_key(slot) if slot else None
            handled = key is not None and state.ledger.slot_handled(key)
            unfinished = state.ledger.unfinished_issue()
        if unfinished is None and (slot is None or handled):
            if slot is not None:
                logger.info(
                    "slot %s already handled; nothing to do",
                    slot.isoformat(),
                    extra={"slot": slot.isoformat(), "event": "slot handled"},
                )
                return SlotResult(slot, None)
            return None
        if unfinished is not None:
            logger.info("resuming unfinished issue %d first", unfinished.id)
            report = sending.send(config, now, stop=stop, clock=clock.now)
            _log_slot(slot if handled else None, report, schedule, clock.now())
            if stop.is_set() or slot is None or handled:
                return SlotResult(slot, report)
            if report.pending and report.issue_id is not None:
                _give_up(config, report.issue_id, clock.now())
        assert slot is not None and key is not None
        logger.info(
            "slot %s fired",
            slot.isoformat(),
            extra={"slot": slot.isoformat(), "event": "slot fired"},
        )
        gate = approval.gate_for(config, slot, now) if schedule.approval.required else None
        report = sending.send(config, now, slot_key=key, stop=stop, clock=clock.now, gate=gate)
    _log_slot(slot, report, schedule, clock.now())
    return SlotResult(slot, report)


def _sending_elsewhere(config: Config) -> bool:
    """Whether another process holds the send lock while an issue is being sent (its queue
    written): then this one joins that send rather than wait for the lock."""
    try:
        with store.lock(config, "send", command="run"):
            return False
    except LockHeld:
        with store.open(config) as state:
            unfinished = state.ledger.unfinished_issue()
        return unfinished is not None and unfinished.queued


def _give_up(config: Config, issue_id: int, now: datetime) -> None:
    """A new slot has come: stop retrying the old issue's deferred addresses, so it goes."""
    with store.open(config) as state:
        given_up = state.ledger.give_up_pending(issue_id, now)
    counters.count(counters.MESSAGES, len(given_up), outcome="failed")
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
        if state.ledger.slot_handled(key):
            continue
        state.ledger.record_skipped_slot(
            key, now, f"missed by more than the grace period ({grace})"
        )
        logger.warning(
            "slot %s missed (the scheduler was not running, %s ago, grace %s): skipped;"
            " its posts roll into the next issue",
            slot.isoformat(),
            _rounded(now.astimezone(UTC) - slot.astimezone(UTC)),
            grace,
            extra={"slot": slot.isoformat(), "event": "slot missed"},
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
            extra={"slot": label, "event": "slot skipped"},
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
        extra={"slot": label, "issue": report.issue_id, "event": "slot sent"},
    )


# -- the scheduler process ------------------------------------------------------------------


class SlotTrigger(BaseTrigger):  # type: ignore[misc]
    """APScheduler trigger firing at each slot (or `lead` before it), on the real clock even when
    `clock` is shifted."""

    def __init__(
        self, schedule: ScheduleConfig, clock: Clock, lead: timedelta = timedelta(0)
    ) -> None:
        self.schedule = schedule
        self.clock = clock
        self.lead = lead

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """The first slot after the previous firing (or after now), in real time."""
        after = (previous_fire_time or now).astimezone(UTC) + self.clock.offset + self.lead
        upcoming = next_slots(self.schedule, after, 1)
        return upcoming[0].astimezone(UTC) - self.lead - self.clock.offset if upcoming else None

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
            try:
                config = replace(
                    config, schedule=self.started_with.schedule, state=self.started_with.state
                )
            except SettingsError as error:
                raise ConfigError(f"{config.source}: {error}") from None
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
        return report is not None and (report.pending > 0 or report.held)

    def ask_approval(self) -> None:
        """At slot minus approval.before (or on start-up inside that window): send the draft."""
        schedule = require_schedule(self.started_with)
        if not schedule.approval.required or self.stop.is_set():
            return
        now = self.clock.now()
        upcoming = next_slots(schedule, now, 1)
        lead = timedelta(seconds=schedule.approval.before)
        if not upcoming or now < upcoming[0] - lead - ASK_EARLY:
            return
        try:
            approval.request_ahead(self.current_config(), upcoming[0], now)
        except DigestError as error:
            logger.error("approval could not be requested: %s", error)
        except Exception:
            logger.exception("approval could not be requested")

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


def poll_bounces(config: Config, clock: Clock) -> None:
    """Read the bounce mailbox once, if one is configured; a failure is logged, never fatal."""
    from digest.bounces.apply import collect_reports

    if not config.bounces.mailbox_configured:
        return
    try:
        tally = collect_reports(config, clock.now())
    except DigestError as error:
        logger.warning("bounces not read this time: %s", error)
        return
    if tally.total:
        logger.info("bounce mailbox: %s", dict(tally.outcomes))


def drain_outbox(config: Config, clock: Clock) -> None:
    """Send the confirmation and welcome emails waiting in the outbox (digest.readers.outbox),
    as every `digest serve` does: a failure is logged, never fatal."""
    drained = outbox.drain_quietly(
        config, lambda: store.open(config), outbox.send_by_smtp(config), clock.now
    )
    if drained.total:
        logger.info(
            "outbox: %d sent, %d for later, %d given up",
            drained.sent,
            drained.later,
            drained.given_up,
        )


def queue_reports(config: Config, clock: Clock) -> None:
    """Queue the report of each issue sent reports.after ago for reports.email_to (the outbox
    then sends it); a failure is logged, never fatal."""
    from digest.reports.mail import queue_due

    if not config.reports.email_to:
        return
    try:
        queue_due(config, clock.now())
    except DigestError as error:
        logger.warning("reports not queued this time: %s", error)


def take_backup(config: Config, clock: Clock) -> None:
    """Take a backup of the state into backup.to when the newest there is backup.every old
    (digest.store.backup), and remove those past backup.keep; a failure is logged, never fatal.

    Looked at on start-up and every hour, so a `digest run` restarted more often than
    backup.every still takes its backups on time."""
    settings = config.backup
    if settings is None:
        return
    try:
        done = backup.take_scheduled(
            config.state_path,
            config.resolve(settings.to),
            clock.now(),
            timedelta(seconds=settings.every),
            settings.keep,
        )
    except DigestError as error:
        logger.error("backup not taken: %s", error, extra={"event": "backup failed"})
        return
    if done.taken is not None:
        logger.info("backup taken: %s", done.taken, extra={"event": "backup taken"})
    for old in done.pruned:
        logger.info("old backup removed (backup.keep): %s", old)


def run_once(config: Config, clock: Clock) -> SlotResult | None:
    """Fire the due slot (missed within grace) or else the next one now; stop on SIGTERM."""
    require_schedule(config)
    with store.lock(config, "run"), GracefulStop() as stop:
        return fire(config, clock, stop, fallback_to_next=True)


def run_forever(config: Config, clock: Clock) -> None:
    """Send at every slot until SIGTERM/SIGINT; on start, catch up the latest slot within grace;
    read the bounce mailbox every bounces.poll_every, on the same single worker thread."""
    schedule = require_schedule(config)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    with store.lock(config, "run") as lock, GracefulStop() as stop:
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
        if schedule.approval.required:
            lead = timedelta(seconds=schedule.approval.before)
            scheduler.add_job(attempts.ask_approval, id="ask-start-up")
            scheduler.add_job(attempts.ask_approval, SlotTrigger(schedule, clock, lead), id="ask")
        if config.bounces.mailbox_configured:
            scheduler.add_job(
                lambda: poll_bounces(attempts.current_config(), clock),
                IntervalTrigger(seconds=config.bounces.poll_every),
                id="bounces",
            )
        if config.reports.email_to:

            def look_at_reports() -> None:
                queue_reports(attempts.current_config(), clock)
                drain_outbox(attempts.current_config(), clock)

            scheduler.add_job(look_at_reports, id="reports-start-up")
            scheduler.add_job(
                look_at_reports, IntervalTrigger(seconds=REPORTS_LOOK_EVERY), id="reports"
            )
        scheduler.add_job(
            lambda: drain_outbox(attempts.current_config(), clock),
            IntervalTrigger(seconds=min(OUTBOX_EVERY, config.signup.send_lease / 2)),
            id="outbox",
        )
        if config.backup is not None:

            def look_at_backups() -> None:
                take_backup(attempts.current_config(), clock)

            scheduler.add_job(look_at_backups, id="backup-start-up")
            scheduler.add_job(
                look_at_backups, IntervalTrigger(seconds=BACKUP_LOOK_EVERY), id="backup"
            )
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
