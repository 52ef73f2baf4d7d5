"""Reading and checking the rule NExT-to-meet-you's dates follow: an iCalendar recurrence rule
(RFC 5545 `RRULE`) as calendars export it, e.g. `FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12;BYMINUTE=0`.

Every part is checked here and a refusal (`RuleError`) names its reason in the members'
language (`rule_problem`); dateutil then reads the dates. The rule gives the days; its time of
day, if it has one, is when the dates start (`start_time_of`). Used by the `[meet]` settings
(`bot/settings.py`, `commands.meet_schedule.MeetConfig`) and by `!treffen regel`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from dateutil.rrule import rrule, rrulestr

from commands.i18n import Catalog, Text

DEFAULT_RULE = "FREQ=MONTHLY;BYDAY=TH;BYSETPOS=2"  # every second Thursday of the month
ANCHOR = date(2026, 1, 1)  # where a rule with INTERVAL counts from, unless it says DTSTART=
DEFAULT_START = time(12)
MAX_RULE_LENGTH = 300
FIRST_ANCHOR_YEAR, LAST_ANCHOR_YEAR = 2000, 2100  # DTSTART: dateutil counts from it each time
_FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")  # nothing more often than daily
_TIME_PARTS = ("BYHOUR", "BYMINUTE", "BYSECOND")  # one time of day: when the dates start
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_PARTS = ("FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS",
          "BYYEARDAY", "BYWEEKNO", "WKST", *_TIME_PARTS, "DTSTART")  # RFC 5545 and DTSTART
# The numeric parts: (lowest, highest, also counted from the end as negative numbers).
_NUMBER_PARTS = {"INTERVAL": (1, 999, False), "COUNT": (1, 9999, False),
                 "BYMONTH": (1, 12, False), "BYMONTHDAY": (1, 31, True),
                 "BYYEARDAY": (1, 366, True), "BYWEEKNO": (1, 53, True),
                 "BYSETPOS": (1, 366, True), "BYHOUR": (0, 23, False),
                 "BYMINUTE": (0, 59, False), "BYSECOND": (0, 59, False)}
_ONE_VALUE = ("INTERVAL", "COUNT", *_TIME_PARTS)


def parse_start_time(text: str) -> time:
    """`12:00`, `9:30`, `12:00:30` → a time; ValueError otherwise."""
    found = re.fullmatch(r"\s*(\d{1,2})[:.](\d{2})(?::(\d{2}))?\s*", str(text))
    if not found:
        raise ValueError(f"bad time {text!r} (expected e.g. 12:00)")
    return time(int(found.group(1)), int(found.group(2)), int(found.group(3) or 0))


@dataclass(frozen=True)
class Rule:
    """A parsed rule: its dates, and the time of day it gives (None: the configured one)."""

    dates: rrule  # one occurrence per date, at midnight
    time: time | None  # from BYHOUR/BYMINUTE/BYSECOND, or from DTSTART=…T120000
    time_parts: str = ""  # the parts that say so, as written in messages: `BYHOUR=12;BYMINUTE=0`


class RuleError(ValueError):
    """Why a rule cannot be used: the catalog message `meet.rule_problems.<key>` with
    `values` (see `rule_problem`)."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


def rule_problem(error: RuleError, catalog: Catalog, language: str) -> Text:
    return catalog.text(language, f"meet.rule_problems.{error.key}", **error.values)


def _check_numbers(name: str, value: str, low: int, high: int, signed: bool) -> list[int]:
    """The comma-separated whole numbers of part `name`, each in [low, high] (or, `signed`,
    counted from the end: [-high, -low])."""
    numbers = []
    for item in value.split(","):
        if not re.fullmatch(r"[+-]?\d{1,4}", item.strip()):
            raise RuleError("not_a_number", name=Text.code(name), item=Text.code(item))
        number = int(item)
        if not (low <= number <= high or (signed and -high <= number <= -low)):
            raise RuleError("out_of_range_signed" if signed else "out_of_range",
                            name=Text.code(f"{name}={value}"), item=Text.code(item),
                            low=low, high=high)
        numbers.append(number)
    return numbers


def _check_weekdays(value: str, frequency: str) -> None:
    """BYDAY: `TH`, `2TH`, `-1FR`, comma-separated; a position only where it means something
    (within the month or the year)."""
    for item in value.split(","):
        found = re.fullmatch(r"([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)", item.strip())
        if found is None or found.group(1) in ("0", "+0", "-0", "00", "+00", "-00"):
            raise RuleError("bad_weekday", name=Text.code("BYDAY"), item=Text.code(item))
        if found.group(1) is None:
            continue
        if frequency not in ("MONTHLY", "YEARLY"):
            raise RuleError("ordinal_needs_month", item=Text.code(f"BYDAY={item}"),
                            freq=Text.code(f"FREQ={frequency}"))
        highest = 5 if frequency == "MONTHLY" else 53  # weeks in a month, in a year
        if not 1 <= abs(int(found.group(1))) <= highest:
            raise RuleError("out_of_range_signed", name=Text.code(f"BYDAY={value}"),
                            item=Text.code(item), low=1, high=highest)


def _check_moment(name: str, value: str, with_utc: bool) -> tuple[date, time | None]:
    """DTSTART or UNTIL: `20260108`, `20260108T120000` (UNTIL also with `Z`)."""
    found = re.fullmatch(r"(\d{8})(?:T(\d{4})(\d{2})?(Z)?)?", value)
    try:
        if found is None or (found.group(4) and not with_utc):
            raise ValueError
        day = datetime.strptime(found.group(1), "%Y%m%d").date()
        at = (datetime.strptime(found.group(2) + (found.group(3) or "00"), "%H%M%S").time()
              if found.group(2) else None)
    except ValueError:
        raise RuleError("bad_date", name=Text.code(name), value=Text.code(value)) from None
    return day, at


@functools.lru_cache(maxsize=32)
def parse_rule(text: str) -> Rule:
    """An RRULE as calendars export it (`FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12;BYMINUTE=0`; an
    `RRULE:` prefix is fine), with an optional `DTSTART=YYYYMMDD[THHMMSS]` part that anchors a
    rule with INTERVAL. The parts are checked here, each refusal (a RuleError) naming its
    reason; dateutil's rrulestr then reads the dates. A time of day in the rule (BYHOUR with
    BYMINUTE and BYSECOND, or DTSTART's) is the time the dates start."""
    body = text.strip()
    if len(body) > MAX_RULE_LENGTH:
        raise RuleError("too_long", max=MAX_RULE_LENGTH)
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    values: dict[str, str] = {}
    for part in (p.strip() for p in body.split(";")):
        if not part:
            continue
        name, equals, value = (s.strip() for s in part.partition("="))
        name, value = name.upper(), value.upper()
        if name not in _PARTS:
            raise RuleError("unknown_part", name=Text.code(name or part),
                            known=", ".join(_PARTS))
        if not equals or not value:
            raise RuleError("no_value", part=Text.code(part))
        if name in values:
            raise RuleError("twice", name=Text.code(name))
        values[name] = value
    frequency = values.get("FREQ")
    if frequency is None:
        raise RuleError("no_freq")
    if frequency in ("HOURLY", "MINUTELY", "SECONDLY"):
        raise RuleError("too_often", value=Text.code(f"FREQ={frequency}"))
    if frequency not in _FREQUENCIES:
        raise RuleError("bad_freq", value=Text.code(f"FREQ={frequency}"))
    for name, (low, high, signed) in _NUMBER_PARTS.items():
        if name in values:
            numbers = _check_numbers(name, values[name], low, high, signed)
            if len(numbers) > 1 and name in _ONE_VALUE:
                raise RuleError("one_time" if name in _TIME_PARTS else "one_value",
                                name=Text.code(name), value=Text.code(values[name]))
    if "BYDAY" in values:
        _check_weekdays(values["BYDAY"], frequency)
    if values.get("WKST", "MO") not in _WEEKDAYS:
        raise RuleError("bad_weekday", name=Text.code("WKST"), item=Text.code(values["WKST"]))
    if "COUNT" in values and "UNTIL" in values:
        raise RuleError("count_and_until")
    anchor, anchor_time = ANCHOR, None
    if "DTSTART" in values:
        anchor, anchor_time = _check_moment("DTSTART", values["DTSTART"], with_utc=False)
        if not FIRST_ANCHOR_YEAR <= anchor.year <= LAST_ANCHOR_YEAR:
            raise RuleError("anchor_year", value=Text.code(f"DTSTART={values['DTSTART']}"),
                            low=FIRST_ANCHOR_YEAR, high=LAST_ANCHOR_YEAR)
    if "UNTIL" in values:  # the dates are days: UNTIL's day is the last one
        values["UNTIL"] = _check_moment("UNTIL", values["UNTIL"], with_utc=True)[0].strftime(
            "%Y%m%d")
    at, time_parts = _rule_time(values, anchor_time)
    dates_body = ";".join(f"{n}={v}" for n, v in values.items()
                          if n not in _TIME_PARTS and n != "DTSTART")
    try:
        dates = rrulestr(dates_body, dtstart=datetime.combine(anchor, time()))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        # dateutil's own reason is English and may quote the rule oddly: the rule as read says
        # it in the member's language. Reached only by a combination the checks above pass.
        raise RuleError("unreadable", rule=Text.code(dates_body)) from None
    if not isinstance(dates, rrule):
        raise RuleError("unreadable", rule=Text.code(dates_body))
    # A rule that never falls on a day would make dateutil search to the year 9999 on every
    # look-up (seconds each): refused here.
    first = _first_day(dates_body, anchor, int(values.get("INTERVAL", 1)))
    if first is None or ("UNTIL" in values
                         and first > datetime.strptime(values["UNTIL"], "%Y%m%d").date()):
        raise RuleError("never")
    return Rule(dates, at, time_parts)


def _first_day(dates_body: str, anchor: date, interval: int) -> date | None:
    """The first day of the rule from `anchor` on, None if there is none, in bounded time.
    dateutil looks for a first date until the year 9999; but the calendar repeats every 400
    years (146,097 days, a whole number of weeks) and a rule with INTERVAL=n is in the same
    phase again after 400 × n years, so the search runs from that point of the cycle near
    the year 9999 instead, through at most two cycles."""
    cycle = 400 * interval
    shift = max(0, (datetime.max.year - anchor.year - cycle) // cycle * cycle)
    unbounded = ";".join(p for p in dates_body.split(";")
                         if p.partition("=")[0] not in ("UNTIL", "COUNT"))
    probe = rrulestr(unbounded, dtstart=datetime.combine(
        anchor.replace(year=anchor.year + shift), time()))
    found = next(iter(probe), None)
    return None if found is None else found.date().replace(year=found.year - shift)


def _rule_time(values: dict[str, str], anchor_time: time | None) -> tuple[time | None, str]:
    """The time of day the rule gives, RFC 5545's way: BYHOUR, BYMINUTE and BYSECOND, each
    else DTSTART's; and the parts that give it. None when the rule names no hour."""
    parts = [f"{n}={values[n]}" for n in _TIME_PARTS if n in values]
    if anchor_time is not None:
        parts.insert(0, f"DTSTART={values['DTSTART']}")
    if "BYHOUR" not in values and anchor_time is None:
        given = next((n for n in _TIME_PARTS if n in values), None)
        if given is not None:
            raise RuleError("minute_without_hour", name=Text.code(given))
        return None, ""
    base = anchor_time or time()
    at = time(int(values.get("BYHOUR", base.hour)), int(values.get("BYMINUTE", base.minute)),
              int(values.get("BYSECOND", base.second)))
    return at, ";".join(parts)


def start_time_of(rule: Rule, given: time | None, default: time = DEFAULT_START) -> time:
    """When the dates of `rule` start: the rule's time, else the `given` one, else `default`.
    A given time that contradicts the rule's is a RuleError naming both."""
    if rule.time is not None and given is not None and given != rule.time:
        raise RuleError("time_conflict", parts=Text.code(rule.time_parts),
                        rule_time=clock_text(rule.time), given=clock_text(given))
    return rule.time or given or default


def clock_text(at: time) -> str:
    return at.strftime("%H:%M:%S" if at.second else "%H:%M")


def rule_dates(rule_text: str, first: date, last: date) -> list[date]:
    """The rule's dates from `first` to `last`, both included."""
    found = parse_rule(rule_text).dates.between(datetime.combine(first, time()),
                                                datetime.combine(last, time()), inc=True)
    return [moment.date() for moment in found]
