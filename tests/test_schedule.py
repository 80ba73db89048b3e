"""Schedule slots: crontab(5) numbering, the day + time form, DST in 2027, grace and catch-up."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digest import store
from digest.config.schema import ScheduleConfig, load_config
from digest.core.cron import parse_cron
from digest.core.models import DeliveryStatus
from digest.run import schedule
from digest.run.schedule import Clock
from digest.run.slots import Plan, next_slots, plan_due, previous_slot, slot_key
from tests.conftest import Project, post

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
MONDAY_20_MARCH_2027_EVE = datetime(2027, 3, 21, 0, 0, tzinfo=UTC)


def weekdays(cron: str, count: int = 7) -> list[str]:
    """Weekday names of the next slots of a cron expression, in UTC, from a Sunday."""
    slots = next_slots(ScheduleConfig(cron=cron), MONDAY_20_MARCH_2027_EVE, count)
    return [slot.strftime("%a") for slot in slots]


def local(*args: int, zone: ZoneInfo = LONDON, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold)  # type: ignore[misc]


# -- cron numbering ---------------------------------------------------------------------------


def test_one_is_monday_as_in_crontab() -> None:
    assert weekdays("0 8 * * 1", 3) == ["Mon", "Mon", "Mon"]
    first = next_slots(ScheduleConfig(cron="0 8 * * 1"), MONDAY_20_MARCH_2027_EVE, 1)[0]
    assert first == datetime(2027, 3, 22, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("field", ["0", "7", "sun", "SUN"])
def test_zero_and_seven_are_sunday(field: str) -> None:
    assert weekdays(f"0 8 * * {field}", 2) == ["Sun", "Sun"]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("1-5", ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon", "Tue"]),
        ("mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon", "Tue"]),
        ("*/2", ["Sun", "Tue", "Thu", "Sat", "Sun", "Tue", "Thu"]),
        ("1-7/3", ["Sun", "Mon", "Thu", "Sun", "Mon", "Thu", "Sun"]),
        ("5-7", ["Sun", "Fri", "Sat", "Sun", "Fri", "Sat", "Sun"]),
        ("fri-sun", ["Sun", "Fri", "Sat", "Sun", "Fri", "Sat", "Sun"]),
        ("sat,2", ["Tue", "Sat", "Tue", "Sat", "Tue", "Sat", "Tue"]),
    ],
)
def test_weekday_lists_ranges_and_steps(field: str, expected: list[str]) -> None:
    assert weekdays(f"0 8 * * {field}") == expected


def test_day_of_month_or_day_of_week_when_both_are_given() -> None:
    slots = next_slots(ScheduleConfig(cron="0 8 1 * 1"), datetime(2027, 3, 28, tzinfo=UTC), 3)
    assert [s.date().isoformat() for s in slots] == ["2027-03-29", "2027-04-01", "2027-04-05"]


def test_nicknames_expand() -> None:
    assert weekdays("@weekly", 2) == ["Sun", "Sun"]
    assert parse_cron("@daily").hours == (0,)


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("0 8 * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("0 8 * * 8", "day of week: 8 is out of range 0-7 (0 and 7 are Sunday)"),
        ("61 8 * * 1", "minute: 61 is out of range 0-59"),
        ("0 8 * * fri-mon", "day of week: range 'fri-mon' runs backwards"),
        ("0 8 * * funday", "day of week: 'funday' in 'funday' is not a number 0-7 or a name"),
        ("0 8 30 2 *", "never fires: no month has that day"),
        ("*/0 8 * * *", "minute: step in '*/0' must be a whole number above 0"),
        ("@reboot", "unknown shorthand '@reboot'"),
    ],
)
def test_invalid_cron_is_a_config_error_naming_file_line_and_key(
    project: Project, cron: str, problem: str
) -> None:
    project.write_config(f'schedule:\n  cron: "{cron}"\n')
    line = project.config.read_text(encoding="utf-8").splitlines().index(f'  cron: "{cron}"') + 1
    result = project.run("schedule")
    assert result.exit_code == 2
    assert f"config.yaml:{line}: schedule.cron: " in result.output
    assert problem in result.output


# -- the day + time form and `digest schedule` ------------------------------------------------


def test_day_and_time_form_fires_weekly_in_local_time() -> None:
    plan = ScheduleConfig(day="Monday", time="08:00", timezone="Europe/London")
    slots = next_slots(plan, datetime(2027, 3, 20, tzinfo=UTC), 3)
    assert slots == [local(2027, 3, 22, 8, 0), local(2027, 3, 29, 8, 0), local(2027, 4, 5, 8, 0)]
    assert [s.isoformat() for s in slots[:2]] == [
        "2027-03-22T08:00:00+00:00",
        "2027-03-29T08:00:00+01:00",
    ]


def test_schedule_command_prints_only_timestamps(project: Project) -> None:
    project.write_config('schedule:\n  day: monday\n  time: "08:00"\n  timezone: Europe/London\n')
    result = project.run("schedule", "--count", "3", "--after", "2027-10-25")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "2027-10-25T08:00:00+01:00",
        "2027-11-01T08:00:00+00:00",
        "2027-11-08T08:00:00+00:00",
    ]
    default = project.run("schedule")
    assert default.exit_code == 0, default.output
    assert default.output.splitlines()[0] == "2026-12-07T08:00:00+00:00"
    assert len(default.output.splitlines()) == 5


def test_schedule_command_after_datetime_with_offset(project: Project) -> None:
    project.write_config('schedule:\n  cron: "30 1 * * *"\n  timezone: Europe/London\n')
    result = project.run("schedule", "--count", "2", "--after", "2027-03-28T00:00:00+00:00")
    assert result.output.splitlines() == ["2027-03-28T02:00:00+01:00", "2027-03-29T01:30:00+01:00"]


def test_schedule_command_rejects_a_bad_date(project: Project) -> None:
    project.write_config('schedule:\n  cron: "0 8 * * 1"\n')
    result = project.run("schedule", "--after", "next week")
    assert result.exit_code == 2
    assert "'next week' is not an ISO date or date-time" in result.output


def test_no_schedule_in_config_is_a_config_error(project: Project) -> None:
    for command in (("schedule",), ("run", "--once"), ("run",)):
        result = project.run(*command)
        assert result.exit_code == 2, command
        assert "config.yaml: schedule: not set; add schedule: day/time or cron" in result.output


# -- daylight saving time, 2027 -----------------------------------------------------------------


def test_eight_am_london_stays_eight_am_across_bst_start_and_end() -> None:
    plan = ScheduleConfig(cron="0 8 * * *", timezone="Europe/London")
    spring = next_slots(plan, local(2027, 3, 27, 0, 0), 3)
    assert [(s.hour, s.utcoffset()) for s in spring] == [
        (8, timedelta(0)),
        (8, timedelta(hours=1)),
        (8, timedelta(hours=1)),
    ]
    autumn = next_slots(plan, local(2027, 10, 30, 0, 0), 3)
    assert [s.astimezone(UTC).hour for s in autumn] == [7, 8, 8]
    assert all(s.astimezone(LONDON).hour == 8 for s in spring + autumn)


def test_slot_in_the_skipped_hour_fires_once_at_the_first_valid_time_after() -> None:
    plan = ScheduleConfig(cron="30 1 * * *", timezone="Europe/London")
    slots = next_slots(plan, local(2027, 3, 27, 2, 0), 3)
    assert [s.isoformat() for s in slots] == [
        "2027-03-28T02:00:00+01:00",  # 01:30 does not exist; the clock jumps 01:00 -> 02:00
        "2027-03-29T01:30:00+01:00",
        "2027-03-30T01:30:00+01:00",
    ]


def test_every_slot_in_the_skipped_hour_collapses_into_one() -> None:
    plan = ScheduleConfig(cron="0,20,40 * * * *", timezone="Europe/London")
    slots = next_slots(plan, local(2027, 3, 28, 0, 30), 4)
    assert [s.isoformat() for s in slots] == [
        "2027-03-28T00:40:00+00:00",
        "2027-03-28T02:00:00+01:00",
        "2027-03-28T02:20:00+01:00",
        "2027-03-28T02:40:00+01:00",
    ]


def test_slot_in_the_repeated_hour_fires_once() -> None:
    plan = ScheduleConfig(cron="30 1 * * *", timezone="Europe/London")
    slots = next_slots(plan, local(2027, 10, 30, 2, 0), 3)
    assert [s.isoformat() for s in slots] == [
        "2027-10-31T01:30:00+01:00",
        "2027-11-01T01:30:00+00:00",
        "2027-11-02T01:30:00+00:00",
    ]
    # Asked from inside the repeated hour's second pass, the slot has already happened.
    second_pass = local(2027, 10, 31, 1, 10, fold=1)
    assert next_slots(plan, second_pass, 1)[0].isoformat() == "2027-11-01T01:30:00+00:00"
    assert previous_slot(plan, second_pass) == slots[0]


def test_new_york_2027_skipped_and_repeated_hours() -> None:
    spring = ScheduleConfig(cron="30 2 * * *", timezone="America/New_York")
    assert [
        s.isoformat() for s in next_slots(spring, datetime(2027, 3, 13, 12, tzinfo=UTC), 2)
    ] == [
        "2027-03-14T03:00:00-04:00",
        "2027-03-15T02:30:00-04:00",
    ]
    autumn = ScheduleConfig(cron="30 1 * * 0", timezone="America/New_York")
    slots = next_slots(autumn, datetime(2027, 11, 6, tzinfo=UTC), 2)
    assert [s.isoformat() for s in slots] == [
        "2027-11-07T01:30:00-04:00",
        "2027-11-14T01:30:00-05:00",
    ]
    weekly = ScheduleConfig(day="monday", time="08:00", timezone="America/New_York")
    hours = [
        s.astimezone(UTC).hour for s in next_slots(weekly, datetime(2027, 3, 1, tzinfo=UTC), 3)
    ]
    assert hours == [13, 13, 12]  # 08:00 EST, 08:00 EST, then 08:00 EDT after 14 March


def test_previous_slot() -> None:
    plan = ScheduleConfig(day="monday", time="08:00", timezone="Europe/London")
    assert previous_slot(plan, local(2027, 3, 29, 8, 0)) == local(2027, 3, 29, 8, 0)
    assert previous_slot(plan, local(2027, 3, 29, 7, 59)) == local(2027, 3, 22, 8, 0)
    leap = ScheduleConfig(cron="0 8 29 2 *")
    assert previous_slot(leap, datetime(2027, 3, 1, tzinfo=UTC)) == datetime(
        2024, 2, 29, 8, tzinfo=UTC
    )


def test_slot_key_is_utc_iso() -> None:
    assert slot_key(local(2027, 3, 29, 8, 0)) == "2027-03-29T07:00:00+00:00"


# -- what is due at start-up --------------------------------------------------------------------

WEEKLY = ScheduleConfig(day="monday", time="08:00", timezone="Europe/London", grace=6 * 3600)


def test_slot_missed_within_grace_is_due() -> None:
    plan = plan_due(WEEKLY, local(2027, 3, 29, 13, 59), local(2027, 3, 22, 8, 0))
    assert plan.send == local(2027, 3, 29, 8, 0)
    assert plan.skip == ()


def test_slot_missed_beyond_grace_is_skipped_with_older_ones() -> None:
    plan = plan_due(WEEKLY, local(2027, 3, 29, 14, 0), local(2027, 3, 15, 8, 0))
    assert plan.send is None
    assert plan.skip == (local(2027, 3, 22, 8, 0), local(2027, 3, 29, 8, 0))


def test_older_missed_slots_are_skipped_even_when_the_latest_is_sent() -> None:
    plan = plan_due(WEEKLY, local(2027, 3, 29, 9, 0), local(2027, 3, 8, 8, 0))
    assert plan.send == local(2027, 3, 29, 8, 0)
    assert plan.skip == (local(2027, 3, 15, 8, 0), local(2027, 3, 22, 8, 0))


def test_first_start_beyond_grace_skips_nothing_and_sends_nothing() -> None:
    assert plan_due(WEEKLY, local(2027, 3, 30, 9, 0), None) == Plan(None, ())


def test_on_time_slot_is_sent_even_with_zero_grace() -> None:
    strict = ScheduleConfig(day="monday", time="08:00", grace="0s")
    assert strict.grace == 0
    now = datetime(2027, 3, 29, 8, 0, 1, tzinfo=UTC)
    assert plan_due(strict, now, None).send == datetime(2027, 3, 29, 8, 0, tzinfo=UTC)


def test_grace_is_parsed_from_a_duration() -> None:
    assert ScheduleConfig(cron="0 8 * * 1", grace="90m").grace == 5400


# -- firing against real servers, in-process ---------------------------------------------------

SLOT = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # a Monday, the fixture's NOW


def weekly(project: Project, grace: str = "6h") -> None:
    project.write_config(
        f'schedule:\n  day: monday\n  time: "08:00"\n  timezone: Europe/London\n  grace: {grace}\n'
    )


def test_fire_within_grace_sends_once_and_records_the_slot(project: Project) -> None:
    weekly(project)
    config = load_config(project.config)
    result = schedule.fire(config, Clock.starting_at(SLOT + timedelta(hours=5)), threading.Event())
    assert result is not None and result.report is not None
    assert result.slot == SLOT
    assert result.report.sent == 2
    again = schedule.fire(config, Clock.starting_at(SLOT + timedelta(hours=5)), threading.Event())
    assert again is not None and again.report is None
    assert len(project.smtp.received) == 2
    with store.open_path(config.state_path) as state:
        assert state.ledger.issue_for_slot(slot_key(SLOT)) is not None


def test_fire_beyond_grace_sends_nothing_and_records_the_skip(project: Project) -> None:
    weekly(project, grace="1h")
    config = load_config(project.config)
    with store.open_path(config.state_path) as state:
        state.ledger.record_skipped_slot(slot_key(SLOT - timedelta(days=7)), SLOT, "nothing new")
    later = Clock.starting_at(SLOT + timedelta(hours=2))
    assert schedule.fire(config, later, threading.Event()) is None
    assert project.smtp.received == []
    with store.open_path(config.state_path) as state:
        row = state.db.execute(
            "SELECT reason FROM skipped_slots WHERE slot_key = ?", (slot_key(SLOT),)
        ).fetchone()
    assert row is not None and "grace" in row["reason"]


def test_nothing_new_records_the_slot_as_skipped(project: Project) -> None:
    weekly(project)
    project.serve("/blog.xml", [])
    project.serve("/news.xml", [])
    config = load_config(project.config)
    result = schedule.fire(config, Clock.starting_at(SLOT), threading.Event())
    assert result is not None and result.report is not None
    assert result.report.skipped_reason == "nothing new"
    with store.open_path(config.state_path) as state:
        assert state.ledger.slot_handled(slot_key(SLOT))


def test_run_once_sends_the_next_slot_and_not_twice(project: Project) -> None:
    weekly(project)
    sunday = SLOT - timedelta(days=1)
    first = project.run("run", "--once", now=sunday)
    assert first.exit_code == 0, first.output
    assert "Slot 2026-11-30T08:00:00+00:00:" in first.output
    assert "2 delivered, 0 failed, 0 pending" in first.output
    second = project.run("run", "--once", now=sunday)
    assert second.exit_code == 0, second.output
    assert "Slot 2026-11-30T08:00:00+00:00 was already handled; nothing sent." in second.output
    assert len(project.smtp.received) == 2


def test_run_once_exits_1_when_messages_stay_pending(project: Project) -> None:
    weekly(project)
    project.smtp.handler.script.defer["bob@example.com"] = 100
    result = project.run("run", "--once")
    assert result.exit_code == 1, result.output
    assert "1 messages left pending" in result.output


def test_an_address_still_deferred_at_the_next_slot_is_given_up_and_the_new_issue_goes(
    project: Project,
) -> None:
    weekly(project)
    project.smtp.handler.script.defer["bob@example.com"] = 1000
    config = load_config(project.config)
    first = schedule.fire(config, Clock.starting_at(SLOT), threading.Event())
    assert first is not None and first.report is not None
    assert (first.report.sent, first.report.pending) == (1, 1)

    project.serve("/blog.xml", [post(1), post(2, 2), post(30, -6)])
    next_week = SLOT + timedelta(days=7)
    second = schedule.fire(config, Clock.starting_at(next_week), threading.Event())
    assert second is not None and second.report is not None
    assert second.slot == next_week and second.report.issue_id == 2
    assert second.report.post_count == 1

    with store.open_path(config.state_path) as state:
        old = state.ledger.deliveries(1)
        new = state.ledger.deliveries(2)
        unfinished = state.ledger.unfinished_issue()
    assert unfinished is not None and unfinished.id == 2  # bob is still deferred
    assert old["ann@example.com"].status is DeliveryStatus.SENT
    assert old["bob@example.com"].status is DeliveryStatus.FAILED
    assert old["bob@example.com"].reply.startswith("gave up at the next slot; last reply: 451")
    assert new["ann@example.com"].status is DeliveryStatus.SENT
    received = [
        (r.recipients[0], "Post number 30" in r.part("plain")) for r in project.smtp.received
    ]
    assert received == [("ann@example.com", False), ("ann@example.com", True)]


def test_resuming_the_slots_own_issue_does_not_give_up(project: Project) -> None:
    weekly(project)
    project.smtp.handler.script.defer["bob@example.com"] = 1000
    config = load_config(project.config)
    schedule.fire(config, Clock.starting_at(SLOT), threading.Event())
    project.smtp.handler.script.defer.clear()
    retry = schedule.fire(
        config, Clock.starting_at(SLOT + timedelta(minutes=15)), threading.Event()
    )
    assert retry is not None and retry.report is not None
    assert retry.report.resumed and (retry.report.sent, retry.report.pending) == (1, 0)
    assert sorted(r.recipients[0] for r in project.smtp.received) == [
        "ann@example.com",
        "bob@example.com",
    ]


def test_a_running_scheduler_reads_config_afresh_but_keeps_its_schedule_and_state(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    """Each slot reads config.yaml again, so a new title or feed applies at the next slot; a
    changed schedule or state file would move slots under a running process, so those keep
    their start-up values until `digest run` is restarted, and the log says so."""
    project.write_config(
        'schedule:\n  day: monday\n  time: "08:00"\n  timezone: Europe/London\n  grace: 6h\n'
    )
    attempts = schedule.Attempts(
        load_config(project.config), Clock.starting_at(project.now), threading.Event()
    )
    text = project.config.read_text(encoding="utf-8")
    project.config.write_text(
        text.replace("Collaborate Weekly", "Collaborate Daily")
        .replace('time: "08:00"', 'time: "09:30"')
        .replace("state: state.sqlite3", "state: other.sqlite3"),
        encoding="utf-8",
    )
    with caplog.at_level("WARNING", logger="digest.run.schedule"):
        current = attempts.current_config()
    assert current.newsletter.title == "Collaborate Daily"
    assert current.schedule == attempts.started_with.schedule
    assert current.state_path == project.root / "state.sqlite3"
    assert "schedule or state changed in" in caplog.text
    assert "restart digest run to apply them" in caplog.text


def test_a_slot_still_failing_when_its_grace_runs_out_is_left_to_the_next(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    project.write_config(
        'schedule:\n  day: monday\n  time: "08:00"\n  timezone: Europe/London\n  grace: 6h\n'
        "  retry_every: 10m\n"
    )
    attempts = schedule.Attempts(
        load_config(project.config), Clock.starting_at(project.now), threading.Event()
    )
    assert attempts.retry_delay(failed=True) == 600
    assert attempts.retry_delay(failed=False) is None and attempts.failing_since is None
    attempts.failing_since = attempts.clock.now() - timedelta(hours=5, minutes=55)
    with caplog.at_level("ERROR", logger="digest.run.schedule"):
        assert attempts.retry_delay(failed=True) is None
    assert "still failing after 5:55:00 (grace); the next slot will pick up what is left" in (
        caplog.text
    )
    assert attempts.failing_since is None
