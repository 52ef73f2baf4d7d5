"""When NExT-to-meet-you's dates are: the `[meet]` settings, the schedule in effect (the
configuration, unless network moderators changed the rule, time or link), the dates it gives
with cancelled ones left out and moved ones moved (`Meeting`, `meetings_between`,
`meeting_on`), and how a date is written out in one language (`View`).

The dates are on the wall clock of the bot's time zone: 12:00 stays 12:00 across the clock
changes. A date of the rule is the key of everything about it (reminders, its pairing round);
cancelling or moving it is stored under that key. Shared by the commands (`commands.meet`),
the reminders (`commands.meet_reminders`) and the pairing (`commands.meet_pairing`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from commands.config_fields import RoomId, Section, problem, reminder_offsets
from commands.dates import format_when, offset_label, parse_duration, parse_offset
from commands.framework import Services, command_line
from commands.i18n import Catalog, Text
from commands.links import link, normalize_link
from commands.meet_rule import (
    DEFAULT_RULE,
    DEFAULT_START,
    RuleError,
    clock_text,
    parse_rule,
    parse_start_time,
    rule_dates,
    rule_problem,
    start_time_of,
)
from commands.schedule import local_time
from storage.database import moment

log = logging.getLogger(__name__)


@functools.cache
def _catalog() -> Catalog:
    return Catalog.load()


def rule_reason(error: RuleError) -> str:
    """Why a meet rule is refused, as the English catalog says it to the bot admins."""
    return rule_problem(error, _catalog(), "en").plain


class MeetSettings(Section):
    # NExT-to-meet-you. The dates: an iCalendar recurrence rule as calendars export it
    # (`FREQ=MONTHLY;BYDAY=2TH`, `BYDAY=-1FR`; `DTSTART=YYYYMMDD;` anchors one with INTERVAL),
    # computed on the wall clock of `bot.timezone`. A time in the rule (`BYHOUR=12;BYMINUTE=0`)
    # is the start; `start_time`, if written too, must agree with it.
    rule: str = "FREQ=MONTHLY;BYDAY=TH;BYSETPOS=2"
    start_time: str = "12:00"
    duration: str = "1h"
    link: str = ""  # the video link; empty: none
    # Reminders before each date ("1d" the same time the day before, "15m"); empty: none.
    reminders: list[str] = Field(default_factory=lambda: ["1d", "15m"])
    # Rooms (ids) that get the reminders unless their moderators switch them off.
    rooms: list[RoomId] = Field(default_factory=list)
    pairing: bool = True  # pair the members who opted in before each date
    pairing_lead: str = "3d"  # how long before a date its pairs are made
    avoid_repeat_rounds: int = Field(default=3, ge=0, le=52)  # no partner again for N rounds
    seed: str = "next"  # the pairing is deterministic for a seed (and the date)
    # The pairs' rooms end-to-end encrypted (only with matrix.encryption).
    encrypt_rooms: bool = True

    @field_validator("rule")
    @classmethod
    def _rule_valid(cls, value: str) -> str:
        try:
            parse_rule(value)
        except RuleError as error:
            raise problem(f"bad rule {value!r}: {rule_reason(error)} (e.g. "
                           "FREQ=MONTHLY;BYDAY=2TH or FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=12)") from None
        return value.strip()

    @model_validator(mode="after")
    def _one_start_time(self) -> MeetSettings:
        # A rule with a time of day (BYHOUR=12;BYMINUTE=0) gives the start; a start_time the
        # operator wrote must agree, one left out becomes the rule's.
        rule = parse_rule(self.rule)
        if rule.time is None:
            return self
        try:
            start_time_of(rule, parse_start_time(self.start_time)
                          if "start_time" in self.model_fields_set else None)
        except RuleError as error:
            raise problem(rule_reason(error), field="start_time") from None
        self.start_time = clock_text(rule.time)
        return self

    @field_validator("start_time")
    @classmethod
    def _time_valid(cls, value: str) -> str:
        try:
            parse_start_time(value)
        except ValueError:
            raise problem(f"bad time {value!r} (expected e.g. 12:00)") from None
        return value.strip()

    @field_validator("duration")
    @classmethod
    def _duration_valid(cls, value: str) -> str:
        try:
            parse_duration(value)
        except ValueError:
            raise problem(f"bad duration {value!r} (expected e.g. 1h or 90m)") from None
        return value.strip()

    @field_validator("link")
    @classmethod
    def _link_valid(cls, value: str) -> str:
        if value.strip() and normalize_link(value.strip()) is None:
            raise problem("must be an http(s) URL")
        return value.strip()

    @field_validator("reminders")
    @classmethod
    def _offsets_valid(cls, value: list[str]) -> list[str]:
        return reminder_offsets(value)

    @field_validator("pairing_lead")
    @classmethod
    def _lead_valid(cls, value: str) -> str:
        try:
            return offset_label(parse_offset(value))
        except ValueError:
            raise problem(f"bad lead time {value!r} (expected e.g. 3d or 12h)") from None


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


# -- the dates -----------------------------------------------------------------------------------


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


# Value words written in replies (`!getroffen ja`, `!treffen regel standard`); the subcommands'
# words come from their declarations.
VALUE_WORDS = {
    "de": {"yes": "ja", "no": "nein", "default": "standard"},
    "en": {"yes": "yes", "no": "no", "default": "default"},
}
