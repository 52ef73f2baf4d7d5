"""Planning many jobs at once, and re-planning only what changed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.base import STATE_RUNNING

from bot.pipeline.scheduler import PAUSE_FOR_JOBS
from commands.framework import Reply
from commands.i18n import Text
from commands.schedule import Occurrence
from tests.unit.fakes import ROOM
from tests.unit.test_scheduler import BERLIN, MovableClock, make_scheduler, outbox_bodies


class ListSource:
    """Whatever occurrences the test puts in `items`."""

    name = "list"

    def __init__(self, items: list[Occurrence]) -> None:
        self.items = items

    async def occurrences(self, start: datetime, end: datetime) -> list[Occurrence]:
        return [o for o in self.items if start <= o.due < end]

    async def render(self, occurrence: Occurrence, late: bool) -> Reply | None:
        return Reply(Text.raw(f"Post {occurrence.subject}"))


def item(number: int, due: datetime, room: str = ROOM) -> Occurrence:
    return Occurrence(f"list:{number}", "list", due, room, str(number))


async def test_many_jobs_at_once_are_all_planned_and_the_scheduler_keeps_running(storage):
    now = datetime.now(BERLIN)
    count = PAUSE_FOR_JOBS + 50
    soon = item(0, now + timedelta(seconds=0.3))
    later = [item(n, now + timedelta(hours=1, minutes=n)) for n in range(1, count)]
    source = ListSource([soon, *later])
    scheduler, woken = make_scheduler(storage, source, MovableClock(now))
    await scheduler.start()
    try:
        assert len(scheduler.job_ids()) == count + 1  # and the re-planning job
        assert scheduler._aps.state == STATE_RUNNING
        for _ in range(60):  # the first one fires on its own (APScheduler runs on real time)
            if await outbox_bodies(storage):
                break
            await asyncio.sleep(0.05)
        assert await outbox_bodies(storage) == ["Post 0"]
        assert woken == [ROOM]
    finally:
        scheduler.stop()


async def test_a_replan_keeps_unchanged_jobs_and_replaces_changed_ones(storage):
    now = datetime.now(BERLIN)
    first, second, third = (item(n, now + timedelta(hours=n)) for n in (1, 2, 3))
    source = ListSource([first, second, third])
    scheduler, _ = make_scheduler(storage, source, MovableClock(now))
    await scheduler.start()
    try:
        kept = scheduler._aps.get_job(first.key)
        moved_job = scheduler._aps.get_job(second.key)
        moved = item(2, now + timedelta(hours=5))
        other_room = item(3, third.due, room="!other:example.org")
        source.items = [first, moved, other_room, item(4, now + timedelta(hours=4))]
        await scheduler.schedule_changed("list")
        assert scheduler._aps.get_job(first.key) is kept  # untouched
        assert scheduler._aps.get_job(second.key) is not moved_job
        assert scheduler._aps.get_job(second.key).next_run_time == moved.due
        assert scheduler._aps.get_job(third.key).args == (other_room,)
        assert set(scheduler.job_ids()) == {"list:1", "list:2", "list:3", "list:4",
                                            "scheduler:replan"}
        source.items = [first]
        await scheduler.schedule_changed("list")
        assert scheduler.job_ids() == ["list:1", "scheduler:replan"]
    finally:
        scheduler.stop()


async def test_a_restarted_scheduler_plans_every_job_again(storage):
    now = datetime.now(BERLIN)
    source = ListSource([item(1, now + timedelta(hours=1))])
    scheduler, _ = make_scheduler(storage, source, MovableClock(now))
    await scheduler.start()
    scheduler.stop()
    await scheduler.start()
    try:
        assert scheduler.job_ids() == ["list:1", "scheduler:replan"]
    finally:
        scheduler.stop()


async def test_a_clock_set_to_another_day_fires_as_far_ahead_as_on_that_clock(storage):
    # APScheduler rings on the real clock. A job for one hour after a clock set a year back
    # (or ahead) must not fire at once (nor a year late): it rings one real hour from now.
    for skew in (timedelta(days=-365), timedelta(days=365)):
        clock_now = datetime.now(BERLIN) + skew
        source = ListSource([item(1, (clock_now.astimezone(UTC) + timedelta(hours=1)))])
        scheduler, _ = make_scheduler(storage, source, MovableClock(clock_now))
        await scheduler.start()
        try:
            ring = scheduler._aps.get_job("list:1").next_run_time
            assert abs(ring - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(seconds=5)
        finally:
            scheduler.stop()
