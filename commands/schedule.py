"""What features tell the scheduler: their occurrences, and what to post when one is due.

A feature (workshop reminders, NExT-to-meet-you, join announcements) offers an
`OccurrenceSource`. The scheduler in `bot/pipeline/scheduler.py` asks it for the occurrences in a
window, fires each once at its time, and records the delivery under the occurrence's key, so a
restart neither loses nor repeats one. Times are computed on the wall clock of the configured time
zone, so 18:00 stays 18:00 across the clock changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from commands.framework import Reply


@dataclass(frozen=True)
class Occurrence:
    key: str  # unique per delivery: what, which occurrence, which room
    source: str  # the name of the source that made it
    due: datetime  # aware
    room_id: str
    subject: str = ""  # the source's own reference (a workshop number, say)
    # A digest: the further delivery keys this one post settles (one per item it holds). They
    # are recorded with `key` in one transaction: all of them, or none if any was before.
    covers: tuple[str, ...] = ()
    # How late it may still be posted after a downtime; None: the scheduler's grace.
    grace: timedelta | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key, *self.covers)


class OccurrenceSource(Protocol):
    name: str

    async def occurrences(self, start: datetime, end: datetime) -> list[Occurrence]:
        """Every occurrence due in [start, end)."""
        ...

    async def render(self, occurrence: Occurrence, late: bool) -> Reply | None:
        """The message for a due occurrence; None when it no longer applies (cancelled)."""
        ...


def local_time(day: date, at: time, tz: ZoneInfo) -> datetime:
    """`day` at `at` on the wall clock of `tz`. A time that does not exist (02:30 on the day
    clocks go forward) lands an hour later; one that exists twice (02:30 when they go back) is
    taken once, the first time."""
    naive = datetime.combine(day, at)
    aware = naive.replace(tzinfo=tz, fold=0)
    # Round-trip through UTC: a non-existent wall time normalises to the real instant.
    return aware.astimezone(UTC).astimezone(tz)


def before(moment: datetime, offset: timedelta) -> datetime:
    """`offset` before `moment`: whole days on the wall clock (one day before 18:00 is 18:00,
    also across a clock change), hours and minutes as elapsed time (one hour before is 60
    minutes before)."""
    tz = moment.tzinfo
    assert isinstance(tz, ZoneInfo), "aware datetimes in a ZoneInfo time zone only"
    days = timedelta(days=offset.days)
    if days:
        wall = moment.replace(tzinfo=None) - days
        moment = local_time(wall.date(), wall.time(), tz)
    return (moment.astimezone(UTC) - (offset - days)).astimezone(tz)


def reminders_within(start: datetime, offsets: Iterable[timedelta], window_start: datetime,
                     window_end: datetime) -> list[tuple[timedelta, datetime]]:
    """Each reminder `offset` before `start` (see `before`) that falls due in
    [window_start, window_end), with its due time."""
    return [(offset, due) for offset in offsets
            if window_start <= (due := before(start, offset)) < window_end]


def reminder_horizon(window_end: datetime, offsets: Iterable[timedelta]) -> datetime:
    """How far ahead events must be looked at for reminders due before `window_end`: the
    largest offset, plus the hour that whole days on the wall clock can grow by across a clock
    change (and one more to spare)."""
    return window_end + max(offsets, default=timedelta(0)) + timedelta(hours=2)

