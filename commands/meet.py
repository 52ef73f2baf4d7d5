"""NExT-to-meet-you: the recurring dates, their reminders, and pairing members who want to meet.

Members: `!treffen` shows the next three dates with the link; `!treffen mitmachen` opts in to
be paired, `!treffen aussetzen` opts out, `!treffen pause 4` pauses for four weeks. In the room
the bot made for a pair or trio, `!getroffen ja|nein` tells it whether they met (only the
count is kept).

Network moderators (each subcommand declares its level):
`!treffen regel FREQ=MONTHLY;BYDAY=TH;BYSETPOS=2 12:00 1h` (or, with the time in the rule,
`!treffen regel FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12;BYMINUTE=0 1h`) changes the rhythm (stored in
the database, above the configuration; `!treffen regel standard` goes back to it),
`!treffen link <url>`, `!treffen absagen 12.03.`, `!treffen verschieben 12.03. 19.03. 13:00`,
`!treffen statistik`.

The dates come from an iCalendar recurrence rule (RFC 5545 `RRULE`, read by dateutil) on the
wall clock of the bot's time zone: 12:00 stays 12:00 across the clock changes. The rule gives
the days; its time of day, if it has one, is the start (else the configured `start_time`). A
date of the rule is the key of everything about it (reminders, its pairing round); cancelling
or moving it is stored under that key.

The scheduler's sources here: `MeetReminders` (before each date, into every room where
`meet_reminders` is on) and `MeetFollowUps` (after a date, into each pair's room: did you
meet?). The pairing itself runs in `bot/matrix/pairing_rooms.py`, which calls `pair_due_round` and
then makes the rooms; the algorithm is `commands/pairing.py`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_timedelta
from dateutil.rrule import rrule, rrulestr

from commands import pairing, room_settings
from commands.dates import (
    MAX_YEARS_AHEAD,
    Day,
    WhenError,
    format_when,
    latest_start_day,
    parse_duration,
    parse_when_value,
)
from commands.framework import (
    Arg,
    Context,
    Level,
    Reply,
    Router,
    Services,
    UserError,
    command_line,
    lookup,
)
from commands.i18n import Catalog, Text, locale_of
from commands.links import link, normalize_link
from commands.schedule import (
    Occurrence,
    before,
    local_time,
    reminder_horizon,
    reminders_within,
)
from storage.experts import Profile, topic_key
from storage.meet import GroupRow, Round, ScheduleOverride, moment, utc_ms
from storage.text import fold
from storage.workshops import offset_label, parse_offset

router = Router("meet")
log = logging.getLogger(__name__)

DEFAULT_RULE = "FREQ=MONTHLY;BYDAY=TH;BYSETPOS=2"  # every second Thursday of the month
ANCHOR = date(2026, 1, 1)  # where a rule with INTERVAL counts from, unless it says DTSTART=
SHOWN_DATES = 3
MAX_PAUSE_WEEKS = 52
ASK_AFTER = timedelta(hours=1)  # after a date's end, its groups are asked whether they met
ASK_GRACE = timedelta(days=3)  # … and still asked that late after a downtime
STATE_EVENT = "org.nextnetz.pairing"  # in each pairing room: which group it belongs to
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
_CLOCK = re.compile(r"\d{1,2}[:.]\d{2}(?::\d{2})?")  # a word that is meant as a time of day


@dataclass(frozen=True)
class MeetConfig:
    """`[meet]` in the configuration, and the bot's time zone."""

    rule: str = DEFAULT_RULE
    start_time: time = DEFAULT_START
    duration: timedelta = timedelta(hours=1)
    link: str | None = None
    reminders: list[timedelta] = field(
        default_factory=lambda: [timedelta(days=1), timedelta(minutes=15)])
    pairing: bool = True
    pairing_lead: timedelta = timedelta(days=3)
    avoid_repeat_rounds: int = 3
    seed: str = "next"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Berlin"))

    @classmethod
    def create(cls, *, rule: str = DEFAULT_RULE, start_time: str | None = None,
               duration: str = "1h", link: str = "", reminders: list[str] | None = None,
               pairing: bool = True, pairing_lead: str = "3d", avoid_repeat_rounds: int = 3,
               seed: str = "next", timezone: str | ZoneInfo = "Europe/Berlin") -> MeetConfig:
        """From the settings' spellings (validated there; ValueError here otherwise). The
        start is the rule's time of day if it has one, else `start_time`, else 12:00; both
        given and different is a RuleError."""
        given = parse_start_time(start_time) if start_time else None
        start = start_time_of(parse_rule(rule), given)
        offsets = sorted({parse_offset(t) for t in (reminders if reminders is not None
                                                    else ["1d", "15m"])}, reverse=True)
        tz = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
        return cls(rule=rule.strip(), start_time=start,
                   duration=parse_duration(duration), link=normalize_link(link) if link else None,
                   reminders=offsets, pairing=pairing, pairing_lead=parse_offset(pairing_lead),
                   avoid_repeat_rounds=avoid_repeat_rounds, seed=seed, timezone=tz)


def config_of(services: Services) -> MeetConfig:
    return services.configs.get("meet") or MeetConfig()


# -- the rule ------------------------------------------------------------------------------------


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
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise RuleError("unreadable", reason=str(exc)) from None
    if not isinstance(dates, rrule):
        raise RuleError("unreadable", reason=dates_body)
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


@dataclass(frozen=True)
class Schedule:
    """What is in effect: the configuration, where admins changed nothing."""

    rule: str
    start_time: time
    duration: timedelta
    link: str | None
    changed: bool = False


async def current_schedule(services: Services) -> Schedule:
    config = config_of(services)
    override = await services.storage.meet.override()
    if override is None:
        return Schedule(config.rule, config.start_time, config.duration, config.link)
    rule = override.rule or config.rule
    try:
        rule_time = parse_rule(rule).time
    except RuleError:  # stored by a version that read rules more loosely
        log.warning("meet: the stored rule is no longer valid; the configured one applies")
        rule, rule_time = config.rule, config.start_time
    return Schedule(
        rule,
        rule_time or (parse_start_time(override.start_time) if override.start_time
                      else config.start_time),
        (timedelta(minutes=override.duration_minutes) if override.duration_minutes
         else config.duration),
        config.link if override.link is None else (override.link or None),
        changed=True)


@dataclass(frozen=True)
class Meeting:
    """One date. `date` is the rule's date: the key, also when the meeting was moved."""

    date: date
    starts_at: datetime
    ends_at: datetime
    moved: bool = False

    @property
    def key(self) -> str:
        return self.date.isoformat()


async def meetings_between(services: Services, start: datetime, end: datetime,
                           schedule: Schedule | None = None) -> list[Meeting]:
    """Every meeting starting in [start, end), cancelled ones left out, moved ones moved."""
    tz = config_of(services).timezone
    schedule = schedule or await current_schedule(services)
    exceptions = await services.storage.meet.exceptions()
    first = start.astimezone(tz).date() - timedelta(days=1)
    last = end.astimezone(tz).date() + timedelta(days=1)
    found: list[Meeting] = []
    for day in rule_dates(schedule.rule, first, last):
        if day.isoformat() not in exceptions:
            starts = local_time(day, schedule.start_time, tz)
            found.append(Meeting(day, starts, starts + schedule.duration))
    for key, moved_to in exceptions.items():
        day = date.fromisoformat(key)
        if moved_to is None or not rule_dates(schedule.rule, day, day):
            continue
        starts = moment(moved_to).astimezone(tz)
        found.append(Meeting(day, starts, starts + schedule.duration, moved=True))
    return sorted((m for m in found if start <= m.starts_at < end), key=lambda m: m.starts_at)


async def next_meetings(services: Services, now: datetime, count: int,
                        schedule: Schedule | None = None) -> list[Meeting]:
    """The next `count` meetings not over yet (one going on right now included)."""
    schedule = schedule or await current_schedule(services)
    since = now - schedule.duration
    for days in (62, 400, 1900):
        found = [m for m in await meetings_between(services, since, now + timedelta(days=days),
                                                   schedule) if m.ends_at > now]
        if len(found) >= count:
            break
    return found[:count]


async def meeting_on(services: Services, key: str) -> Meeting | None:
    """The meeting of the rule's date `key` as it stands (moved), None if cancelled or gone."""
    day = date.fromisoformat(key)
    tz = config_of(services).timezone
    schedule = await current_schedule(services)
    if not rule_dates(schedule.rule, day, day):
        return None
    exceptions = await services.storage.meet.exceptions()
    if key not in exceptions:
        starts = local_time(day, schedule.start_time, tz)
        return Meeting(day, starts, starts + schedule.duration)
    moved_to = exceptions[key]
    if moved_to is None:
        return None
    starts = moment(moved_to).astimezone(tz)
    return Meeting(day, starts, starts + schedule.duration, moved=True)


# -- how it looks --------------------------------------------------------------------------------


class View:
    def __init__(self, services: Services, language: str) -> None:
        self.services = services
        self.language = language
        self.config = config_of(services)

    def t(self, key: str, /, **values: Any) -> Text:
        return self.services.catalog.text(self.language, f"meet.{key}", **values)

    def word(self, value: str) -> str:
        return VALUE_WORDS[self.language if self.language in VALUE_WORDS else "en"][value]

    def call(self, command: str, *words: str) -> Text:
        return command_line(self.services, self.language, command, *words)

    def when(self, meeting: Meeting) -> str:
        return format_when(meeting.starts_at, meeting.ends_at, self.language,
                           self.config.timezone, self.services.catalog)

    def line(self, meeting: Meeting, schedule: Schedule) -> Text:
        parts = [Text.raw(self.when(meeting))]
        if meeting.moved:
            parts[0] = parts[0] + Text(" ", " ") + self.t("moved_marker")
        if schedule.link:
            parts.append(link(schedule.link))
        return Text.join(parts, " · ")

    def day(self, meeting: Meeting) -> str:
        return self.day_text(meeting.date)

    @staticmethod
    def day_text(day: date) -> str:
        return f"{day.day:02d}.{day.month:02d}.{day.year:04d}"  # strftime pads no year < 1000


ANSWERS = {"yes": ("yes", "ja", "y", "j"), "no": ("no", "nein", "n")}
# Value words written in replies (`!getroffen ja`, `!treffen regel standard`); the subcommands'
# words come from their declarations.
VALUE_WORDS = {
    "de": {"yes": "ja", "no": "nein", "default": "standard"},
    "en": {"yes": "yes", "no": "no", "default": "default"},
}


async def _schedule_changed(services: Services) -> None:
    notify = services.schedule_changed
    if notify is not None:
        await notify(MeetReminders.name)
        await notify(MeetFollowUps.name)


# -- commands ------------------------------------------------------------------------------------


@router.command("meet", "treffen", aliases=["nexttomeetyou"],
                args=[Arg("meet_subcommand", optional=True, rest=True)])
async def meet(ctx: Context, meet_subcommand: str | None = None) -> Text:
    """`!treffen`: the next dates. A word after it that names no subcommand (those the router
    runs itself) is answered with the closest subcommands."""
    if meet_subcommand is not None:
        raise ctx.unknown_subcommand(meet_subcommand.split()[0])
    return await _dates(ctx)


async def _dates(ctx: Context) -> Text:
    view = View(ctx.services, ctx.language)
    now = ctx.services.clock.now()
    schedule = await current_schedule(ctx.services)
    upcoming = await next_meetings(ctx.services, now, SHOWN_DATES, schedule)
    parts = [view.t("dates_header")]
    if upcoming:
        parts.append(Text.join(view.t("dates_line", details=view.line(m, schedule))
                               for m in upcoming))
    else:
        parts.append(view.t("dates_none"))
    if not schedule.link:
        parts.append(view.t("no_link"))
    participant = await ctx.services.storage.meet.participant(ctx.sender)
    if participant is None:
        parts.append(view.t("pairing_invite", join=view.call("meet.join")))
    elif participant.paused_until is not None and participant.paused_until > utc_ms(now):
        parts.append(view.t("you_paused", until=_day_text(participant.paused_until, view),
                            join=view.call("meet.join")))
    else:
        parts.append(view.t("you_take_part", leave=view.call("meet.leave"),
                            pause=view.call("meet.pause", "4")))
    return Text.join(parts, "\n\n")


def _day_text(ms: int, view: View) -> str:
    return moment(ms).astimezone(view.config.timezone).strftime("%d.%m.%Y")


@router.subcommand("meet", "join", "mitmachen",
                   aliases=["teilnehmen", "dabei", "anmelden", "optin"])
async def join_pairing(ctx: Context) -> Text:
    view = View(ctx.services, ctx.language)
    now = ctx.services.clock.now()
    if not await ctx.services.storage.meet.join(ctx.sender, utc_ms(now)):
        return view.t("already_joined", leave=view.call("meet.leave"))
    has_profile = await ctx.services.storage.experts.get(ctx.sender) is not None
    lead = format_timedelta(view.config.pairing_lead, locale=locale_of(view.language))
    text = view.t("joined", lead=lead,
                  leave=view.call("meet.leave"),
                  pause=view.call("meet.pause", "4"))
    if not has_profile:
        text = Text.join([text, view.t("joined_no_profile", profile=view.call("profile"))], "\n\n")
    return text


@router.subcommand("meet", "leave", "aussetzen",
                   aliases=["austreten", "abmelden", "verlassen", "optout", "stop"])
async def leave_pairing(ctx: Context) -> Text:
    view = View(ctx.services, ctx.language)
    if not await ctx.services.storage.meet.leave(ctx.sender):
        return view.t("not_joined", join=view.call("meet.join"))
    return view.t("left", join=view.call("meet.join"))


@router.subcommand("meet", "pause", "pause", aliases=["pausieren", "pausiere"],
                   args=[Arg("meet_weeks", rest=True)])
async def pause_pairing(ctx: Context, meet_weeks: str) -> Text:
    """`!treffen pause 4`, also `!treffen pause 4 Wochen`."""
    view = View(ctx.services, ctx.language)
    example = view.call("meet.pause", "4")
    words = meet_weeks.split()
    word = words[0]
    if not word.isdigit() or not 1 <= int(word) <= MAX_PAUSE_WEEKS or len(words) > 2:
        raise UserError("meet.pause_usage", example=example, max=MAX_PAUSE_WEEKS)
    now = ctx.services.clock.now()
    until = now + timedelta(weeks=int(word))
    await ctx.services.storage.meet.pause(ctx.sender, utc_ms(until), utc_ms(now))
    return view.t("paused", count=int(word), until=_day_text(utc_ms(until), view),
                  join=view.call("meet.join"))


@router.subcommand("meet", "stats", "statistik", aliases=["statistics", "zahlen"],
                   level=Level.NETWORK_MODERATOR)
async def show_stats(ctx: Context) -> Text:
    view = View(ctx.services, ctx.language)
    storage = ctx.services.storage.meet
    now = ctx.services.clock.now()
    active, paused = await storage.participant_counts(utc_ms(now))
    rounds, groups, answered, met = await storage.totals()
    parts = [view.t("stats_header"),
             view.t("stats_participants", active=active, paused=paused)]
    recent = await storage.stats()
    if recent:
        parts.append(Text.join(
            view.t("stats_round", date=date.fromisoformat(r.date).strftime("%d.%m.%Y"),
                   participants=r.participants, groups=r.groups, answered=r.answered,
                   met=r.met) for r in recent))
    parts.append(view.t("stats_total", rounds=rounds, groups=groups, answered=answered, met=met,
                        share=_percent(met, answered)))
    return Text.join(parts, "\n\n")


def _percent(part: int, whole: int) -> str:
    return f"{round(100 * part / whole)} %" if whole else "–"


def _changed_at(ctx: Context) -> int:
    return utc_ms(ctx.services.clock.now())


@router.subcommand("meet", "rule", "regel", aliases=["rhythmus", "rrule"],
                   args=[Arg("meet_rule", optional=True), Arg("meet_start", optional=True),
                         Arg("meet_duration", optional=True)],
                   level=Level.NETWORK_MODERATOR)
async def change_rule(ctx: Context, meet_rule: str | None = None, meet_start: str | None = None,
               meet_duration: str | None = None) -> Text:
    """`!treffen regel` shows the rule; `!treffen regel <rule> [start] [duration]` changes it
    (a single word after the rule is a start if it looks like a time of day, else a duration);
    `!treffen regel standard` goes back to the configuration."""
    view = View(ctx.services, ctx.language)
    storage = ctx.services.storage.meet
    example = view.call("meet.rule", DEFAULT_RULE, "12:00", "1h")
    words = [w for w in (meet_rule, meet_start, meet_duration) if w is not None]
    if not words:
        schedule = await current_schedule(ctx.services)
        return view.t("rule_now", rule=Text.code(schedule.rule),
                      time=schedule.start_time.strftime("%H:%M"),
                      duration=offset_label(schedule.duration), example=example,
                      reset=view.call("meet.rule", view.word("default")))
    current = await storage.override() or ScheduleOverride()
    if len(words) == 1 and fold(words[0]) in room_settings.RESET_WORDS:
        await storage.set_override(
            None if current.link is None else ScheduleOverride(link=current.link),
            ctx.sender, _changed_at(ctx))
    else:
        try:
            parsed = parse_rule(words[0])
        except RuleError as error:
            raise UserError("meet.bad_rule", rule=Text.code(words[0]),
                            reason=rule_problem(error, ctx.services.catalog, ctx.language),
                            example=example) from None
        start, duration = _time_and_duration(words[1:], example)
        if parsed.time is not None:  # the rule gives the time; a typed one must agree
            try:
                start = start_time_of(parsed, start)
            except RuleError as error:
                raise UserError(f"meet.rule_problems.{error.key}", **error.values) from None
        if not rule_dates(words[0], ctx.services.clock.now().date(),
                          ctx.services.clock.now().date() + timedelta(days=1900)):
            raise UserError("meet.rule_no_dates", rule=Text.code(words[0]))
        await storage.set_override(ScheduleOverride(
            rule=words[0],
            start_time=start.strftime("%H:%M:%S") if start else current.start_time,
            duration_minutes=(duration // timedelta(minutes=1) if duration
                              else current.duration_minutes),
            link=current.link), ctx.sender, _changed_at(ctx))
    await _schedule_changed(ctx.services)
    return Text.join([view.t("rule_changed"), await _dates(ctx)], "\n\n")


def _time_and_duration(words: list[str], example: Text) -> tuple[time | None, timedelta | None]:
    """What follows the rule: `12:00 1h`, `12:00`, or (when the rule gives the time) `1h`."""
    start_word: str | None = None
    duration_word: str | None = None
    if len(words) == 2:
        start_word, duration_word = words
    elif words and _CLOCK.fullmatch(words[0]):
        start_word = words[0]
    elif words:
        duration_word = words[0]
    try:
        start = parse_start_time(start_word) if start_word is not None else None
    except ValueError:
        raise UserError("meet.bad_time", value=start_word, example=example) from None
    try:
        duration = parse_duration(duration_word) if duration_word is not None else None
    except WhenError:
        raise UserError("meet.bad_duration", value=duration_word, example=example) from None
    return start, duration


@router.subcommand("meet", "link", "link", aliases=["videolink", "url"],
                   args=[Arg("meet_link", rest=True)], level=Level.NETWORK_MODERATOR)
async def change_link(ctx: Context, meet_link: str) -> Text:
    """`!treffen link <url>`; `-` removes the link, `standard` takes the configured one."""
    view = View(ctx.services, ctx.language)
    storage = ctx.services.storage.meet
    current = await storage.override() or ScheduleOverride()
    if fold(meet_link) in room_settings.RESET_WORDS:
        value = None
    elif meet_link == "-":
        value = ""
    else:
        value = normalize_link(meet_link)
        if value is None:
            raise UserError("meet.bad_link", value=meet_link)
    await storage.set_override(ScheduleOverride(current.rule, current.start_time,
                                                current.duration_minutes, value),
                               ctx.sender, _changed_at(ctx))
    schedule = await current_schedule(ctx.services)
    return view.t("link_changed", link=link(schedule.link) if schedule.link
                  else view.t("no_link_short"))


def _typed_day(text: str, after: date) -> date | None:
    """A typed date (`12.03.`, `12.03.2026`, `2026-03-12`); without a year the next one from
    `after` on. None when it is no date."""
    try:
        when = parse_when_value(text, date_only=True)
    except WhenError:
        return None
    return None if when.start_day is None else _next_day(when.start_day, after)


def _next_day(day: Day, after: date) -> date | None:
    """`day` as a date; without a year the next one from `after` on. None when there is no
    such day."""
    try:
        if day.year is not None:
            return date(day.year, day.month, day.day)
        for year in range(after.year, after.year + 5):
            try:
                candidate = date(year, day.month, day.day)
            except ValueError:
                continue
            if candidate >= after:
                return candidate
    except ValueError:
        return None
    return None


def _check_ahead(view: View, day: date, today: date) -> None:
    """A date years ahead is a typo; refused before any date arithmetic on it (near the year
    9999 that overflows)."""
    if day > latest_start_day(today):
        raise UserError("meet.too_far", date=view.day_text(day), years=MAX_YEARS_AHEAD,
                        latest=view.day_text(latest_start_day(today)))


async def _find_meeting(ctx: Context, view: View, text: str, example: Text) -> Meeting:
    now = ctx.services.clock.now()
    today = now.astimezone(view.config.timezone).date()
    day = _typed_day(text, today)
    if day is None:
        raise UserError("meet.date_usage", example=example)
    _check_ahead(view, day, today)
    upcoming = await meetings_between(ctx.services, now,
                                      now + timedelta(days=(day - today).days + 400))
    found = next((m for m in upcoming if m.date == day), None)
    found = found or next((m for m in upcoming if m.starts_at.date() == day), None)
    if found is None:
        raise UserError("meet.no_such_date", date=view.day_text(day),
                        dates=view.call("meet"))
    return found


@router.subcommand("meet", "cancel", "absagen", aliases=["streichen"],
                   args=[Arg("meet_date")], level=Level.NETWORK_MODERATOR)
async def cancel_date(ctx: Context, meet_date: str) -> Text:
    view = View(ctx.services, ctx.language)
    example = view.call("meet.cancel", "12.03.")
    meeting = await _find_meeting(ctx, view, meet_date, example)
    await ctx.services.storage.meet.set_exception(meeting.key, None, ctx.sender,
                                                  _changed_at(ctx))
    await _schedule_changed(ctx.services)
    return view.t("cancelled", when=view.when(meeting))


@router.subcommand("meet", "move", "verschieben", aliases=["verlegen"],
                   args=[Arg("meet_date"), Arg("meet_new_when", rest=True)],
                   level=Level.NETWORK_MODERATOR)
async def move_date(ctx: Context, meet_date: str, meet_new_when: str) -> Text:
    """`!treffen verschieben 12.03. 19.03. 13:00`: the date, then its new day and/or time."""
    view = View(ctx.services, ctx.language)
    example = view.call("meet.move", "12.03.", "19.03.", "13:00")
    meeting = await _find_meeting(ctx, view, meet_date, example)
    tz = view.config.timezone
    now = ctx.services.clock.now()
    try:
        when = parse_when_value(meet_new_when)
    except WhenError:
        raise UserError("meet.move_usage", example=example) from None
    if when.end_day is not None or when.end_time is not None:
        raise UserError("meet.move_usage", example=example)
    local = meeting.starts_at.astimezone(tz)
    day = local.date()
    today = now.astimezone(tz).date()
    if when.start_day is not None:
        day = _next_day(when.start_day, today)
        if day is None:
            raise UserError("meet.move_usage", example=example)
    _check_ahead(view, day, today)
    if day < today:  # said before a time is computed on it: near year 1 that would overflow
        raise UserError("meet.move_past", when=view.day_text(day))
    starts = local_time(day, when.start_time or local.time(), tz)
    if starts <= now:
        raise UserError("meet.move_past", when=Text.raw(format_when(
            starts, starts + (meeting.ends_at - meeting.starts_at), view.language, tz,
            ctx.services.catalog)))
    await ctx.services.storage.meet.set_exception(meeting.key, utc_ms(starts), ctx.sender,
                                                  _changed_at(ctx))
    await _schedule_changed(ctx.services)
    moved = await meeting_on(ctx.services, meeting.key)
    return view.t("moved", old=view.when(meeting), new=view.when(moved) if moved else "–")


@router.command("met", "getroffen", args=[Arg("met_answer", choices=(
    "ja", "nein", "yes", "no"))])
async def met(ctx: Context, met_answer: str) -> Text:
    view = View(ctx.services, ctx.language)
    group = await ctx.services.storage.meet.group_in_room(ctx.room_id)
    if group is None:
        raise UserError("meet.met_elsewhere", meet=view.call("meet"))
    answer = lookup(ANSWERS, met_answer) == "yes"
    await ctx.services.storage.meet.set_met(group.key, answer)
    return view.t("met_yes" if answer else "met_no")


# -- reminders ----------------------------------------------------------------------------------


class MeetReminders:
    """The scheduler's source of reminders: for each date and each offset of `[meet]
    reminders`, one post into every room where `meet_reminders` is on (the configured rooms
    unless switched off there, and rooms whose moderators switched it on). Keyed
    `meet:<date>:<start>:<offset>:<room>`: a moved date is reminded again for its new time."""

    name = "meet"

    def __init__(self, services: Services) -> None:
        self.services = services

    async def occurrences(self, start: datetime, end: datetime) -> list[Occurrence]:
        config = config_of(self.services)
        if not config.reminders:
            return []
        rooms = await room_settings.rooms_switched_on(self.services, "meet_reminders")
        if not rooms:
            return []
        latest = reminder_horizon(end, config.reminders)
        found: list[Occurrence] = []
        for meeting in await meetings_between(self.services, start, latest):
            local = meeting.starts_at.astimezone(config.timezone)
            for offset, due in reminders_within(local, config.reminders, start, end):
                key = f"meet:{meeting.key}:{local:%Y%m%dT%H%M%S}:{offset_label(offset)}"
                found += [Occurrence(f"{key}:{room}", self.name, due, room, meeting.key)
                          for room in rooms]
        return sorted(found, key=lambda o: (o.due, o.key))

    async def render(self, occurrence: Occurrence, late: bool) -> Reply | None:
        meeting = await meeting_on(self.services, occurrence.subject)
        now = self.services.clock.now()
        tz = config_of(self.services).timezone
        if meeting is None or meeting.starts_at <= now:
            return None
        if f"{meeting.starts_at.astimezone(tz):%Y%m%dT%H%M%S}" != occurrence.key.split(":")[2]:
            return None  # moved since: the new time has reminders of its own
        if not await room_settings.is_on(self.services, occurrence.room_id, "meet_reminders"):
            return None
        language = await room_settings.language(self.services, occurrence.room_id)
        view = View(self.services, language)
        schedule = await current_schedule(self.services)
        relative = format_timedelta(meeting.starts_at - now, add_direction=True,
                                    locale=locale_of(view.language))
        header = view.t("reminder", relative=relative)
        if late:
            header = header + Text(" ", " ") + view.t("reminder_late")
        parts = [header, view.t("reminder_when", when=view.when(meeting))]
        if schedule.link:
            parts.append(view.t("reminder_link", link=link(schedule.link)))
        parts.append(view.t("reminder_pairing", join=view.call("meet.join")))
        return Reply(Text.join(parts, "\n\n"))


class MeetFollowUps:
    """The scheduler's source of the question after a date: one post into each group's room,
    `ASK_AFTER` the date's end, keyed `meet-ask:<group>`."""

    name = "meet-followups"

    def __init__(self, services: Services) -> None:
        self.services = services

    async def occurrences(self, start: datetime, end: datetime) -> list[Occurrence]:
        # Rounds are stored with their start at pairing time; the date may have moved since.
        earliest, latest = start - timedelta(days=35), end + timedelta(days=35)
        found = []
        meetings: dict[str, Meeting | None] = {}  # one look-up per round, not per group
        for key, room_id, _ in await self.services.storage.meet.groups_with_rooms_between(
                utc_ms(earliest), utc_ms(latest)):
            round_date = key.rsplit(":", 1)[0]
            if round_date not in meetings:
                meetings[round_date] = await meeting_on(self.services, round_date)
            meeting = meetings[round_date]
            if meeting is None:
                continue
            due = meeting.ends_at + ASK_AFTER
            if start <= due < end:
                found.append(Occurrence(f"meet-ask:{key}", self.name, due, room_id, key,
                                        grace=ASK_GRACE))
        return found

    async def render(self, occurrence: Occurrence, late: bool) -> Reply | None:
        language = await room_settings.language(self.services, occurrence.room_id)
        view = View(self.services, language)
        return Reply(view.t("ask", yes=view.call("met", view.word("yes")),
                            no=view.call("met", view.word("no"))))


# -- pairing ------------------------------------------------------------------------------------


def participant_of(user_id: str, profile: Profile | None) -> pairing.Participant:
    """What pairing compares, from a directory profile (only a consented one exists)."""
    if profile is None or profile.consent_at is None:
        return pairing.Participant(user_id)
    org = fold(profile.organisation).strip() if profile.organisation else None
    return pairing.Participant(user_id, org or None, profile.level, profile.state,
                               frozenset(topic_key(t) for t in profile.topics if topic_key(t)))


def round_seed(seed: str, meeting: Meeting) -> str:
    return f"{seed}:{meeting.key}"


async def due_meeting(services: Services, now: datetime) -> Meeting | None:
    """The next meeting whose pairing time has come and that has no round yet."""
    config = config_of(services)
    if not config.pairing:
        return None
    for meeting in await meetings_between(services, now, now + config.pairing_lead
                                          + timedelta(days=2)):
        if before(meeting.starts_at.astimezone(config.timezone), config.pairing_lead) > now:
            return None  # the nearest date is not yet due, the later ones even less
        if await services.storage.meet.round(meeting.key) is None:
            return meeting
    return None


async def pair_due_round(services: Services) -> Meeting | None:
    """Pair everyone taking part for the next date, if its pairing time has come: the round
    and its groups are stored in one transaction, once. Returns the meeting paired for."""
    now = services.clock.now()
    meeting = await due_meeting(services, now)
    if meeting is None:
        return None
    config = config_of(services)
    storage = services.storage
    user_ids = await storage.meet.active(utc_ms(now))
    profiles = await storage.experts.get_many(user_ids)
    people = [participant_of(u, profiles.get(u)) for u in user_ids]
    recent = await storage.meet.recent_partners(config.avoid_repeat_rounds)
    groups = pairing.pair(people, recent, round_seed(config.seed, meeting))
    added = await storage.meet.add_round(
        Round(meeting.key, utc_ms(meeting.starts_at), utc_ms(now), len(people)),
        [g.members for g in groups], keep_members_of=config.avoid_repeat_rounds + 1)
    return meeting if added else None


def room_alias(group_key: str, bot_user_id: str) -> str:
    """The local part of the alias a group's room gets: created twice, the server refuses the
    second (the first is found by its alias), so a restart never makes a second room."""
    digest = hashlib.sha256(f"{bot_user_id}|{group_key}".encode()).hexdigest()[:20]
    return f"next-meet-{digest}"


async def introduction(services: Services, group: GroupRow, language: str) -> tuple[
        str, Reply]:
    """The room's name and the first post in a group's room: who they are, their
    organisations, shared topics, the date and the link."""
    view = View(services, language)
    profiles = await services.storage.experts.get_many(group.members)
    meeting = await meeting_on(services, group.round)
    schedule = await current_schedule(services)
    people = []
    for user_id in group.members:
        profile = profiles.get(user_id)
        if profile is None or profile.consent_at is None:
            people.append(view.t("intro_person_unknown", person=Text.mention(user_id)))
            continue
        details = [d for d in (profile.organisation, profile.role, _level(view, profile.level),
                               profile.municipality or profile.state) if d]
        people.append(view.t("intro_person", person=Text.mention(user_id),
                             name=profile.display_name or user_id,
                             details=", ".join(details) or "–"))
    parts = [view.t("intro_pair" if len(group.members) == 2 else "intro_trio"),
             Text.join(people)]
    shared = _shared_topics([profiles.get(u) for u in group.members])
    if shared:
        parts.append(view.t("intro_topics", topics=", ".join(shared)))
    else:
        parts.append(view.t("intro_no_topics"))
    if meeting is not None:
        parts.append(view.t("intro_when", when=view.when(meeting)))
    if schedule.link:
        parts.append(view.t("intro_link", link=link(schedule.link)))
    parts.append(view.t("intro_outro"))
    return room_name(services, group.round, language), Reply(Text.join(parts, "\n\n"),
                                                            mentions=group.members)


def room_name(services: Services, round_date: str, language: str) -> str:
    return services.catalog.template(language, "meet.room_name").format(
        date=date.fromisoformat(round_date).strftime("%d.%m.%Y"))


def _level(view: View, level: str | None) -> str | None:
    if not level:
        return None
    key = f"profile.levels.{level}"
    catalog = view.services.catalog
    return catalog.template(view.language, key) if catalog.has(view.language, key) else level


def _shared_topics(profiles: list[Profile | None]) -> list[str]:
    """Topics at least two of them share, as the first of them spelled it."""
    spelled: dict[str, str] = {}
    counts: dict[str, int] = {}
    for profile in profiles:
        if profile is None or profile.consent_at is None:
            continue
        for topic in dict.fromkeys(profile.topics):
            key = topic_key(topic)
            if key:
                spelled.setdefault(key, topic)
                counts[key] = counts.get(key, 0) + 1
    return sorted((spelled[k] for k, n in counts.items() if n >= 2), key=str.casefold)

