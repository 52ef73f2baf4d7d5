"""The scheduler: posts each occurrence of every feature's schedule once, on time, in its room.

The database is the source of truth. APScheduler (3.11, `AsyncIOScheduler` in the configured
time zone) is only the alarm clock: at start, and after any change, the jobs of the coming
`horizon` are rebuilt from the features' data, one job per occurrence with the occurrence's key
as its id. A delivery is recorded under that key in the same transaction that queues its
message (with a transaction id derived from the key), so a crash between firing and sending
neither loses nor repeats it. What was missed while the bot was down is sent late if it is
within `grace` (or the occurrence's own), else recorded and logged as skipped. A digest (one
post for several items, e.g. joins announced together) carries the keys of the items it
covers; they are recorded with its own key in that transaction, all or none.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.matrix.render import page_labels, paginate
from commands.framework import Clock
from commands.i18n import Catalog
from commands.schedule import Occurrence, OccurrenceSource
from storage import Storage
from storage.deliveries import Delivery
from storage.outbox import OutgoingMessage

log = logging.getLogger(__name__)

HORIZON = timedelta(days=2)  # jobs exist for this far ahead; the rest is planned later
REPLAN_EVERY = timedelta(minutes=15)
LATE_AFTER = timedelta(minutes=1)  # fired later than this counts as late
# Two readings of the same clock a moment apart differ by less than this; a larger difference
# between our clock and the real one is a clock set elsewhere (a test's), not reading time.
CLOCK_SKEW_MIN = timedelta(seconds=1)
PAUSE_FOR_JOBS = 100  # adding this many jobs or more at once pauses APScheduler meanwhile


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def delivery_txn_id(key: str, page: int) -> str:
    return f"sched-{hashlib.sha256(key.encode()).hexdigest()[:32]}-{page}"


class Scheduler:
    def __init__(
        self,
        storage: Storage,
        sources: Sequence[OccurrenceSource],
        *,
        clock: Clock,
        timezone: ZoneInfo,
        grace: timedelta,
        catalog: Catalog,
        default_language: str,
        on_queued: Callable[[str], None],
        horizon: timedelta = HORIZON,
    ) -> None:
        self._storage = storage
        self._sources = {source.name: source for source in sources}
        self._clock = clock
        self._tz = timezone
        self._grace = grace
        self._catalog = catalog
        self._default_language = default_language
        self._on_queued = on_queued
        self._horizon = horizon
        # source -> key -> the occurrence its job delivers: a re-plan touches only what changed
        self._planned: dict[str, dict[str, Occurrence]] = {name: {} for name in self._sources}
        self._aps: AsyncIOScheduler | None = None

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        # misfire_grace_time=None: a job late because the loop was busy still runs (APScheduler's
        # default of 1 s would drop it silently); our own grace check decides instead.
        self._aps = AsyncIOScheduler(
            timezone=self._tz,
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )
        self._aps.start()
        await self.catch_up()
        await self.plan_all()
        # Re-planning is bookkeeping, not a calendar time: a plain interval is right here.
        self._aps.add_job(self._replan, IntervalTrigger(seconds=REPLAN_EVERY.total_seconds()),
                          id="scheduler:replan", replace_existing=True)

    def stop(self) -> None:
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None

    def job_ids(self) -> list[str]:
        return sorted(job.id for job in self._aps.get_jobs()) if self._aps else []

    async def schedule_changed(self, source_name: str) -> None:
        """A feature's data changed (a workshop added or cancelled): plan its jobs anew."""
        await self.plan(source_name)

    async def _replan(self) -> None:
        await self.catch_up()
        await self.plan_all()

    # -- planning --------------------------------------------------------------------------------

    async def plan_all(self) -> None:
        for name in self._sources:
            await self.plan(name)

    async def plan(self, source_name: str) -> None:
        if self._aps is None:
            return
        source = self._sources[source_name]
        now = self._clock.now()
        coming = await source.occurrences(now, now + self._horizon)
        delivered = await self._storage.deliveries.recorded(o.key for o in coming)
        wanted = {o.key: o for o in coming if o.key not in delivered}
        planned = self._planned[source_name]
        for key in planned.keys() - wanted.keys():
            if self._aps.get_job(key) is not None:
                self._aps.remove_job(key)
        # A job already there for the same occurrence (moment, room, items) stays; one that
        # fired meanwhile is gone and added again (`deliver` knows it was delivered).
        new = [o for key, o in wanted.items()
               if planned.get(key) != o or self._aps.get_job(key) is None]
        # Paused, a running APScheduler does not wake up to look at its jobs after every single
        # one added (with 10,000 that is most of the start-up); nothing awaits in between.
        # Only for many: pausing and resuming is logged.
        pause = len(new) >= PAUSE_FOR_JOBS
        if pause:
            self._aps.pause()
        try:
            for occurrence in new:
                self._aps.add_job(self.deliver, DateTrigger(run_date=self._alarm(occurrence.due)),
                                  args=[occurrence], id=occurrence.key, replace_existing=True)
        finally:
            if pause:
                self._aps.resume()
        self._planned[source_name] = wanted

    def _alarm(self, due: datetime) -> datetime:
        """When APScheduler, which rings on the real clock, must fire for `due` on our clock.

        The same moment in production. A clock set to another day (a test's) fires as far ahead
        of the real now as `due` is ahead of the clock's now, never at once because the real
        calendar has moved past the clock's date.
        """
        skew = self._clock.now().astimezone(UTC) - datetime.now(UTC)
        return due if abs(skew) < CLOCK_SKEW_MIN else due.astimezone(UTC) - skew

    async def catch_up(self) -> None:
        """Deliver what fell due since the last look (late within the grace, else skipped)."""
        now = self._clock.now()
        checked = await self._storage.deliveries.checked_until()
        since = (datetime.fromtimestamp(checked / 1000, self._tz) if checked is not None
                 else now - self._grace)
        for source in self._sources.values():
            for occurrence in await source.occurrences(since, now):
                await self.deliver(occurrence)
        await self._storage.deliveries.set_checked_until(_ms(now))

    # -- delivering ------------------------------------------------------------------------------

    async def deliver(self, occurrence: Occurrence) -> str:
        """Post one occurrence unless it was recorded before; returns what happened."""
        deliveries = self._storage.deliveries
        if await deliveries.get(occurrence.key) is not None:
            return "already"
        now = self._clock.now()
        late_by = now - occurrence.due
        grace = self._grace if occurrence.grace is None else occurrence.grace
        if late_by > grace:
            log.warning("skipped %s: due %s, %d min ago, beyond the grace period",
                        occurrence.key, occurrence.due.isoformat(), late_by // timedelta(minutes=1))
            return await self._skip(occurrence, now)
        late = late_by > LATE_AFTER
        source = self._sources[occurrence.source]
        reply = await source.render(occurrence, late)
        if reply is None:  # no longer applies (cancelled, moved): remember, post nothing
            log.info("%s no longer applies; nothing posted", occurrence.key)
            return await self._skip(occurrence, now)
        language = (await self._storage.rooms.language(occurrence.room_id)
                    or self._default_language)
        # In a thread: each page in it, replying to its root for clients without threads.
        contents = paginate(reply.text, page_labels(self._catalog, language),
                            reply.in_thread_of, mentions=reply.mentions,
                            thread_root=reply.in_thread_of)
        messages = [OutgoingMessage(delivery_txn_id(occurrence.key, page), occurrence.room_id,
                                    content,
                                    record_as=reply.record_as if page == 0 else None)
                    for page, content in enumerate(contents)]
        status = "late" if late else "sent"
        try:
            async with self._storage.db.transaction():
                await self._record(occurrence, now, status)
                await self._storage.outbox.add(messages, created_at=_ms(now))
        except _AlreadyRecorded:
            return "already"  # delivered meanwhile by the other path (job or catch-up)
        log.info("%s: %s into %s", occurrence.key, status, occurrence.room_id)
        self._on_queued(occurrence.room_id)
        return status

    async def _skip(self, occurrence: Occurrence, now: datetime) -> str:
        try:
            await self._record(occurrence, now, "skipped")
        except _AlreadyRecorded:
            return "already"
        return "skipped"

    async def _record(self, occurrence: Occurrence, now: datetime, status: str) -> None:
        """Record the occurrence under each of its keys (in the caller's transaction, if any);
        raises _AlreadyRecorded if any key was recorded before, which rolls all back."""
        async with self._storage.db.transaction():
            for key in occurrence.keys:
                delivery = Delivery(key, occurrence.source, occurrence.room_id,
                                    _ms(occurrence.due), _ms(now), status)
                if not await self._storage.deliveries.record(delivery):
                    raise _AlreadyRecorded(key)


class _AlreadyRecorded(Exception):
    """A delivery key was recorded before: roll back, post nothing."""
