"""Dates and times as members type them and as the bot writes them, for every feature.

Reading: a date is day first (`03.12.2026`, `3.12.26`, `03.12.` = the next 3 December,
`3. Dezember`) or ISO (`2026-12-03T10:00`); a slash date is refused as ambiguous. A time range,
a duration (`2h`, `90 Minuten`) and a start too far ahead are answered with a `WhenError` whose
`key` names the catalog message. Writing: `format_when` with the patterns of the `dates`
catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from commands.i18n import Catalog, locale_of
from commands.schedule import local_time
from storage.text import fold

MAX_SPAN = timedelta(days=14)  # longer is a typo more often than a workshop
MAX_YEARS_AHEAD = 5  # a start further ahead is a typo (9999) more often than a plan


# -- reading ------------------------------------------------------------------------------------

_MONTHS = {"jan": 1, "feb": 2, "mar": 3, "mae": 3, "apr": 4, "mai": 5, "may": 5, "jun": 6,
           "jul": 7, "aug": 8, "sep": 9, "okt": 10, "oct": 10, "nov": 11, "dez": 12, "dec": 12}
# Every open-ended run (spaces, letters, digits) is matched possessively (`*+`, `++`): it never
# gives back what it took, so a long run followed by a mismatch costs one pass, not the
# quadratic or cubic number of ways to split it between neighbouring `\s*`. Nothing that
# follows such a run can start with what the run consumes, so the same texts match.
_WEEKDAY = r"(?:(?:mo|di|mi|do|fr|sa|so|mon|tue|wed|thu|fri|sat|sun)[a-z]*+\.?,?\s*+)?"
_SEP = r"(?:\s*+T\s*+|\s*+,?\s*+(?:(?:um|at|ab|von|from)\s++)?)"
_RANGE = r"\s*+(?:[-–—/]|\bbis\b|\bto\b|\buntil\b)\s*+"


def _date_re(p: str) -> str:
    return (rf"(?:(?P<{p}iy>\d{{4}})-(?P<{p}im>\d{{1,2}})-(?P<{p}id>\d{{1,2}})"
            rf"|(?P<{p}d>\d{{1,2}})\.(?P<{p}m>\d{{1,2}})\."
            rf"(?P<{p}y>\d{{4}}(?!\d)|\d{{2}}(?![\d:]))?"
            rf"|(?P<{p}nd>\d{{1,2}})\.?\s*+(?P<{p}mn>[^\W\d_]{{3,}}+)\.?"
            rf"(?:\s++(?P<{p}ny>\d{{4}})(?![\d:]))?)")


def _time_re(p: str) -> str:
    return (rf"(?P<{p}h>\d{{1,2}})(?:[:.h](?P<{p}mi>\d{{2}}))?(?::\d{{2}})?"
            rf"(?P<{p}u>\s*+(?:uhr\b|h\b))?")


_END = rf"(?:{_RANGE}(?:{_WEEKDAY}{_date_re('e')}{_SEP})?{_time_re('e')}(?:\s*+uhr\b)?)?"
# At the start of a line: a date, optionally a time and an end; the title follows.
_HEAD_WHEN = re.compile(
    rf"^\s*+{_WEEKDAY}{_date_re('s')}(?:{_SEP}{_time_re('s')})?{_END}(?=$|[\s,;:|\-–—])",
    re.IGNORECASE)
# A whole value: a date and/or a time, optionally an end.
_VALUE_WHEN = re.compile(
    rf"^\s*+(?:{_WEEKDAY}{_date_re('s')})?(?:{_SEP}{_time_re('s')})?{_END}\s*+$",
    re.IGNORECASE)
_SLASH_DATE = re.compile(r"\b\d{1,4}/\d{1,2}/\d{1,4}\b")
_DURATION = re.compile(
    r"^\s*+(?:(?P<h>\d{1,3}(?:[.,]\d++)?)\s*+(?:h|std|stunden?|hours?)\.?)?\s*+"
    r"(?:(?P<m>\d{1,4})\s*+(?:m|min|minuten?|minutes?)\.?)?\s*+$", re.IGNORECASE)


@dataclass(frozen=True)
class Day:
    """A date as typed: without a year, it means the next such day."""

    day: int
    month: int
    year: int | None


@dataclass(frozen=True)
class When:
    """The parts of a time a moderator typed; any may be missing."""

    start_day: Day | None = None
    start_time: time | None = None
    end_day: Day | None = None
    end_time: time | None = None

    def merged(self, other: When) -> When:
        """`other`'s parts win where it has them."""
        return When(other.start_day or self.start_day, other.start_time or self.start_time,
                    other.end_day or self.end_day, other.end_time or self.end_time)


class WhenError(ValueError):
    """A date or time that cannot be used; `key` names the catalog message."""

    def __init__(self, key: str, value: str = "") -> None:
        super().__init__(key)
        self.key = key
        self.value = value


def _day(found: re.Match[str], p: str) -> Day | None:
    if found.group(f"{p}iy"):
        return Day(int(found.group(f"{p}id")), int(found.group(f"{p}im")),
                   int(found.group(f"{p}iy")))
    if found.group(f"{p}d"):
        year = found.group(f"{p}y")
        return Day(int(found.group(f"{p}d")), int(found.group(f"{p}m")),
                   None if year is None else (int(year) + 2000 if len(year) == 2 else int(year)))
    if found.group(f"{p}nd"):
        month = _MONTHS.get(fold(found.group(f"{p}mn"))[:3])
        if month is None:
            raise WhenError("no_date", found.group(0).strip())
        year = found.group(f"{p}ny")
        return Day(int(found.group(f"{p}nd")), month, int(year) if year else None)
    return None


def _time(found: re.Match[str], p: str) -> time | None:
    hour = found.group(f"{p}h")
    if hour is None:
        return None
    minute = found.group(f"{p}mi")
    try:
        return time(int(hour), int(minute or 0))
    except ValueError:
        text = f"{hour}:{minute}" if minute else hour
        raise WhenError("bad_time", text) from None


def _when(found: re.Match[str]) -> When:
    return When(_day(found, "s"), _time(found, "s"), _day(found, "e"), _time(found, "e"))


def _check_slashes(text: str) -> None:
    slash = _SLASH_DATE.search(text)
    if slash:
        raise WhenError("ambiguous_date", slash.group(0))


def parse_head(text: str) -> tuple[When, str]:
    """`03.12.2026 10:00-12:00 KI in der Verwaltung` → the time, and the rest (the title).
    Without a date at the start: nothing, and the whole text."""
    _check_slashes(text)
    found = _HEAD_WHEN.match(text)
    if found is None:
        return When(), text.strip()
    when = _when(found)
    rest = text[found.end():]
    if (when.start_time is not None and when.end_time is None and found.group("smi") is None
            and not found.group("su")):
        # `03.12.2026 3 Fragen zur KI`: a bare number without `Uhr` is the title's.
        when = replace(when, start_time=None)
        rest = text[found.start("sh"):]
    return when, rest.strip().lstrip(",;:|–—-").strip()


def parse_when_value(text: str, date_only: bool = False) -> When:
    """A value like `03.12.2026`, `10:00-12:00`, `2026-12-03T10:00` or
    `04.12.2026 16:00`; WhenError when it is none."""
    _check_slashes(text)
    if date_only and re.fullmatch(r"\s*\d{1,2}\.\d{1,2}\s*", text):  # `datum=3.12`
        text = text.strip() + "."
    found = _VALUE_WHEN.match(text)
    if found is None or not (found.group("sh") or found.group("sd") or found.group("siy")
                             or found.group("snd")):
        raise WhenError("bad_value", text.strip())
    return _when(found)


_OFFSET = re.compile(r"^\s*(\d{1,4})\s*(d|h|m)\s*$", re.IGNORECASE)
MAX_OFFSET = timedelta(days=60)


def parse_offset(text: str) -> timedelta:
    """`1d`, `2h`, `30m` → a timedelta; ValueError for anything else (or zero, or > 60 days)."""
    found = _OFFSET.match(str(text))
    if not found:
        raise ValueError(f"bad offset {text!r} (expected e.g. 1d, 2h or 30m)")
    amount, unit = int(found.group(1)), found.group(2).lower()
    offset = {"d": timedelta(days=amount), "h": timedelta(hours=amount),
              "m": timedelta(minutes=amount)}[unit]
    if not timedelta(0) < offset <= MAX_OFFSET:
        raise ValueError(f"offset {text!r} must be between 1m and 60d")
    return offset


def offset_label(offset: timedelta) -> str:
    """The shortest spelling `parse_offset` reads back: 1 day → `1d`, 90 minutes → `90m`."""
    minutes = int(offset.total_seconds()) // 60
    if offset.seconds == 0:
        return f"{offset.days}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def parse_duration(text: str) -> timedelta:
    """`2h`, `90m`, `1h30m`, `1,5h`, `90 Minuten` → a timedelta; WhenError otherwise."""
    found = _DURATION.match(text)
    if found is None or not (found.group("h") or found.group("m")):
        raise WhenError("bad_duration", text.strip())
    hours = float((found.group("h") or "0").replace(",", "."))
    duration = timedelta(hours=hours, minutes=int(found.group("m") or 0))
    if not timedelta(0) < duration <= MAX_SPAN:
        raise WhenError("bad_duration", text.strip())
    return duration


def latest_start_day(today: date) -> date:
    """The last day a workshop (or a moved meeting) may start on: `MAX_YEARS_AHEAD` years
    after `today` (from 29 February: the 28th)."""
    try:
        return today.replace(year=today.year + MAX_YEARS_AHEAD)
    except ValueError:
        return today.replace(year=today.year + MAX_YEARS_AHEAD, day=28)


def _typed(day: Day) -> str:
    return f"{day.day:02d}.{day.month:02d}." + (str(day.year) if day.year else "")


def _resolve_day(day: Day, now: datetime, at: time | None, tz: ZoneInfo) -> date:
    """The date of `day`; without a year the next such day from `now` on. A day no workshop
    can have (years ahead, or long past) is a WhenError before any time is computed on it:
    near the ends of the calendar that would overflow."""
    if day.year is not None:
        try:
            resolved = date(day.year, day.month, day.day)
        except ValueError:
            raise WhenError("bad_date", _typed(day)) from None
        today = now.astimezone(tz).date()
        if resolved > latest_start_day(today) + MAX_SPAN:
            raise WhenError("too_far", _typed(day))
        if resolved.year < today.year - 1:  # later ones are answered as past, with the time
            raise WhenError("long_past", _typed(day))
        return resolved
    try:
        for year in (now.year, now.year + 1, now.year + 2, now.year + 3, now.year + 4):
            try:
                candidate = date(year, day.month, day.day)
            except ValueError:  # 29 February: the next leap year
                continue
            if local_time(candidate, at or time(23, 59), tz) > now:
                return candidate
        return date(now.year, day.month, day.day)  # raises: no such day in any year
    except ValueError:
        raise WhenError("bad_date", _typed(day)) from None


def resolve(when: When, duration: timedelta | None, now: datetime, tz: ZoneInfo,
            current: tuple[datetime, datetime] | None = None) -> tuple[datetime, datetime]:
    """Start and end as aware datetimes in `tz`.

    For a new workshop (`current` None) a date, a start time and an end (time or duration)
    are needed. For a change, what was not typed is kept: a new date keeps the times, a new
    start keeps the duration, a new end time keeps the end's day.
    """
    if current is None:
        if when.start_day is None:
            raise WhenError("no_date")
        if when.start_time is None:
            raise WhenError("no_time")
        if when.end_time is None and when.end_day is None and duration is None:
            raise WhenError("no_end")
        if when.end_time is None and duration is None:
            raise WhenError("no_end")
        old_start = old_end = None
    else:
        old_start, old_end = (moment.astimezone(tz) for moment in current)
    start_time = when.start_time or (old_start.time() if old_start else time(0))
    if when.start_day is not None:
        start_date = _resolve_day(when.start_day, now, start_time, tz)
    else:
        assert old_start is not None
        start_date = old_start.date()
    if start_date > latest_start_day(now.astimezone(tz).date()):
        raise WhenError("too_far", start_date.strftime("%d.%m.%Y"))
    start = local_time(start_date, start_time, tz)
    if duration is not None:
        end = (start.astimezone(UTC) + duration).astimezone(tz)
    elif when.end_time is not None or when.end_day is not None:
        span = (old_end.date() - old_start.date()) if old_start and old_end else timedelta(0)
        if when.end_day is not None and when.end_day.year is None:  # the year of the start
            year = start_date.year
            try:
                if date(year, when.end_day.month, when.end_day.day) < start_date:
                    year += 1  # 31.12. – 01.01.
            except ValueError:
                pass  # no such day that year: said by _resolve_day
            end_date = _resolve_day(replace(when.end_day, year=year), now, None, tz)
        elif when.end_day is not None:
            end_date = _resolve_day(when.end_day, now, None, tz)
        else:
            end_date = start_date + span
        end_time = when.end_time or (old_end.time() if old_end else start_time)
        end = local_time(end_date, end_time, tz)
    else:  # a change that moved only the start: the duration stays, on the wall clock
        assert old_start is not None and old_end is not None
        wall = (datetime.combine(start_date, start_time)
                + (old_end.replace(tzinfo=None) - old_start.replace(tzinfo=None)))
        end = local_time(wall.date(), wall.time(), tz)
    if end <= start:
        raise WhenError("end_before_start")
    if end - start > MAX_SPAN:
        raise WhenError("too_long_span")
    return start, end


# -- writing ------------------------------------------------------------------------------------


def format_when(start: datetime, end: datetime, language: str, tz: ZoneInfo,
                catalog: Catalog) -> str:
    """`Do., 03.12.2026, 10:00–12:00 Uhr`; over several days both dates."""
    start, end = start.astimezone(tz), end.astimezone(tz)
    locale = locale_of(language)

    def fmt(moment: datetime, key: str) -> str:
        pattern = catalog.template(language, f"dates.format.{key}")
        return format_datetime(moment, pattern, tzinfo=tz, locale=locale)

    if start.date() == end.date():
        return catalog.template(language, "dates.format.same_day").format(
            date=fmt(start, "date"), start=fmt(start, "time"), end=fmt(end, "time"))
    return catalog.template(language, "dates.format.days").format(
        start_date=fmt(start, "date"), start=fmt(start, "time"),
        end_date=fmt(end, "date"), end=fmt(end, "time"))
