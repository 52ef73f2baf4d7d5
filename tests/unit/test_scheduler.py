"""The scheduler with a moved clock: once on time, once after a restart, late or skipped, DST."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.pipeline.scheduler import Scheduler, delivery_txn_id
from commands.framework import Reply
from commands.i18n import Text
from commands.schedule import (
    Occurrence,
    before,
    local_time,
    reminder_horizon,
    reminders_within,
)
from tests.unit.fakes import CATALOG, ROOM

BERLIN = ZoneInfo("Europe/Berlin")


class MovableClock:
    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment


class DailySource:
    """Something at `at` local time every day, posted `offset` before, into ROOM."""

    name = "daily"

    def __init__(self, at: time, offset: timedelta = timedelta(0)) -> None:
        self.at, self.offset = at, offset
        self.cancelled: set[str] = set()
        self.rendered: list[tuple[str, bool]] = []

    async def occurrences(self, start: datetime, end: datetime) -> list[Occurrence]:
        found = []
        day = start.astimezone(BERLIN).date() - timedelta(days=2)
        while day <= end.astimezone(BERLIN).date() + timedelta(days=2):
            event = local_time(day, self.at, BERLIN)
            due = before(event, self.offset)
            if start <= due < end:
                found.append(Occurrence(f"daily:{day.isoformat()}:{ROOM}", self.name, due, ROOM,
                                        day.isoformat()))
            day += timedelta(days=1)
        return found

    async def render(self, occurrence: Occurrence, late: bool) -> Reply | None:
        if occurrence.subject in self.cancelled:
            return None
        self.rendered.append((occurrence.subject, late))
        return Reply(Text.raw(f"Erinnerung {occurrence.subject}"), mentions=("@a:example.org",))


def make_scheduler(storage, source, clock, grace=timedelta(hours=1)) -> tuple[Scheduler, list]:
    woken: list[str] = []
    scheduler = Scheduler(storage, [source], clock=clock, timezone=BERLIN, grace=grace,
                          catalog=CATALOG, default_language="de", on_queued=woken.append)
    return scheduler, woken


def at(day: int, month: int, hour: int, minute: int = 0, year: int = 2026) -> datetime:
    return local_time(date(year, month, day), time(hour, minute), BERLIN)


async def outbox_bodies(storage) -> list[str]:
    rows = await storage.db.fetchall("SELECT content FROM outbox ORDER BY seq")
    import json

    return [json.loads(r[0])["body"] for r in rows]


async def test_an_occurrence_is_delivered_once(storage):
    source = DailySource(time(18))
    clock = MovableClock(at(3, 12, 18))
    scheduler, woken = make_scheduler(storage, source, clock)
    [occurrence] = await source.occurrences(at(3, 12, 17), at(3, 12, 19))
    assert await scheduler.deliver(occurrence) == "sent"
    assert await scheduler.deliver(occurrence) == "already"
    assert await outbox_bodies(storage) == ["Erinnerung 2026-12-03"]
    message = await storage.outbox.next_for_room(ROOM)
    assert message.txn_id == delivery_txn_id(occurrence.key, 0)
    assert message.content["m.mentions"] == {"user_ids": ["@a:example.org"]}
    assert message.content["msgtype"] == "m.notice"
    assert woken == [ROOM]


async def test_a_restart_between_firing_and_sending_sends_once(storage):
    source = DailySource(time(18))
    clock = MovableClock(at(3, 12, 18))
    first, _ = make_scheduler(storage, source, clock)
    [occurrence] = await source.occurrences(at(3, 12, 17), at(3, 12, 19))
    await first.deliver(occurrence)  # fired; the message sits in the outbox, unsent
    second, _ = make_scheduler(storage, source, clock)  # "after the restart"
    await second.catch_up()
    await second.deliver(occurrence)
    assert await storage.outbox.count() == 1
    assert await storage.deliveries.count() == 1


async def test_missed_within_grace_is_sent_late_once_older_is_skipped_and_logged(storage, caplog):
    caplog.set_level(logging.WARNING, logger="bot.pipeline.scheduler")
    source = DailySource(time(18))
    clock = MovableClock(at(1, 12, 12))
    scheduler, _ = make_scheduler(storage, source, clock)
    await scheduler.catch_up()  # the bot ran until Dec 1, 12:00
    clock.moment = at(3, 12, 18, 30)  # down from then until Dec 3, 18:30
    await scheduler.catch_up()
    assert await storage.deliveries.count("skipped") == 2  # Dec 1 and Dec 2
    assert await storage.deliveries.count("late") == 1  # Dec 3, 30 min late
    assert source.rendered == [("2026-12-03", True)]
    assert await outbox_bodies(storage) == ["Erinnerung 2026-12-03"]
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 2 and "daily:2026-12-01" in skipped[0]
    await scheduler.catch_up()  # looking again changes nothing
    assert await storage.deliveries.count() == 3 and await storage.outbox.count() == 1


async def test_first_start_looks_back_only_the_grace_period(storage):
    source = DailySource(time(18))
    clock = MovableClock(at(3, 12, 18, 30))
    scheduler, _ = make_scheduler(storage, source, clock)
    await scheduler.catch_up()
    assert await storage.deliveries.count() == 1  # Dec 3 late; nothing from before
    assert source.rendered == [("2026-12-03", True)]


async def test_something_that_no_longer_applies_is_not_posted(storage):
    source = DailySource(time(18))
    source.cancelled.add("2026-12-03")
    clock = MovableClock(at(3, 12, 18))
    scheduler, _ = make_scheduler(storage, source, clock)
    [occurrence] = await source.occurrences(at(3, 12, 17), at(3, 12, 19))
    assert await scheduler.deliver(occurrence) == "skipped"
    assert await storage.outbox.count() == 0


@pytest.mark.parametrize("change_day", [date(2026, 3, 29), date(2026, 10, 25)])
async def test_18_00_stays_18_00_across_the_clock_change(change_day):
    source = DailySource(time(18), offset=timedelta(days=1))
    start = local_time(change_day - timedelta(days=3), time(0), BERLIN)
    found = await source.occurrences(start, start + timedelta(days=6))
    assert [o.due.astimezone(BERLIN).time() for o in found] == [time(18)] * len(found)
    assert len(found) == 6
    utc_hours = {o.due.utcoffset() for o in found}
    assert len(utc_hours) == 2  # the offset from UTC did change in between


async def test_a_job_at_02_30_on_the_last_sunday_of_october_fires_once(storage):
    source = DailySource(time(2, 30))
    clock = MovableClock(at(24, 10, 12))
    scheduler, _ = make_scheduler(storage, source, clock, grace=timedelta(hours=1))
    await scheduler.catch_up()
    # Walk through the repeated hour in 10-minute steps, looking each time.
    moment = at(25, 10, 1)
    while moment < at(25, 10, 5):
        clock.moment = moment
        await scheduler.catch_up()
        moment = moment + timedelta(minutes=10)
    assert await outbox_bodies(storage) == ["Erinnerung 2026-10-25"]
    assert await storage.deliveries.count() == 1


async def test_jobs_are_planned_under_their_keys_and_replanned(storage):
    source = DailySource(time(18))
    clock = MovableClock(at(3, 12, 12))
    scheduler, _ = make_scheduler(storage, source, clock)
    await scheduler.start()
    try:
        assert scheduler.job_ids() == [
            f"daily:2026-12-03:{ROOM}", f"daily:2026-12-04:{ROOM}", "scheduler:replan"]
        [today, _] = await source.occurrences(at(3, 12, 12), at(5, 12, 12))
        await scheduler.deliver(today)
        await scheduler.schedule_changed("daily")
        assert f"daily:2026-12-03:{ROOM}" not in scheduler.job_ids()  # delivered: no job
    finally:
        scheduler.stop()


def test_reminders_within_a_window_across_the_autumn_clock_change():
    start = local_time(date(2026, 10, 25), time(18), BERLIN)  # the day the clocks go back
    offsets = [timedelta(days=1), timedelta(hours=1)]
    found = reminders_within(start, offsets, local_time(date(2026, 10, 24), time(0), BERLIN),
                             local_time(date(2026, 10, 25), time(16, 30), BERLIN))
    # A day before is 18:00 on the wall clock (25 hours earlier); the hour before is not due yet.
    assert found == [(timedelta(days=1), local_time(date(2026, 10, 24), time(18), BERLIN))]
    assert start.astimezone(UTC) - found[0][1].astimezone(UTC) == timedelta(hours=25)
    assert reminder_horizon(start, offsets) == start + timedelta(days=1, hours=2)
    assert reminder_horizon(start, []) == start + timedelta(hours=2)
