"""How workshops are written out: the `[workshops]` settings (reminders, rooms, the time zone
dates are shown in), the texts about a workshop in one language (`View`), and the calendar
file. Shared by the commands (`commands.workshops`), the reading of a moderator's line
(`commands.workshop_spec`) and the reminders (`commands.workshop_reminders`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event
from pydantic import Field, field_validator

from commands.config_fields import RoomId, Section, reminder_offsets
from commands.dates import format_when, parse_offset
from commands.framework import Services, command_line
from commands.i18n import Text
from commands.links import link
from storage.workshops import Counts, Workshop

DEFAULT_TIMEZONE = "Europe/Berlin"

# How the keys of a moderator's line (`ort=`, `plätze=`) are written in each language, for
# examples and hints in replies; every spelling that is read is in `workshop_spec.FIELDS`.
FIELD_WORDS = {
    "de": {"title": "titel", "when": "wann", "date": "datum", "time": "zeit", "start": "start",
           "end": "ende", "duration": "dauer", "location": "ort", "url": "link",
           "capacity": "plätze", "community": "community", "description": "beschreibung"},
    "en": {"title": "title", "when": "when", "date": "date", "time": "time", "start": "start",
           "end": "end", "duration": "duration", "location": "location", "url": "link",
           "capacity": "places", "community": "community", "description": "description"},
}


class WorkshopSettings(Section):
    # How long before a workshop its reminders are posted: "1d" (a day, on the wall clock),
    # "2h", "30m". Empty: no reminders.
    reminders: list[str] = Field(default_factory=lambda: ["1d", "1h"])
    # Rooms for the reminders of workshops that belong to no room (e.g. imported ones).
    rooms: list[RoomId] = Field(default_factory=list)

    @field_validator("reminders")
    @classmethod
    def _offsets_valid(cls, value: list[str]) -> list[str]:
        return reminder_offsets(value)


@dataclass(frozen=True)
class WorkshopConfig:
    """The workshops' settings (`[workshops]` in the configuration) and the bot's time zone."""

    reminders: list[timedelta] = field(
        default_factory=lambda: [timedelta(days=1), timedelta(hours=1)])
    rooms: list[str] = field(default_factory=list)
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))

    @classmethod
    def default(cls) -> WorkshopConfig:
        return cls()

    @classmethod
    def create(cls, reminders: Iterable[str], rooms: Iterable[str],
               timezone: str | ZoneInfo = DEFAULT_TIMEZONE) -> WorkshopConfig:
        """From the settings' spellings: `["1d", "1h"]`, room ids, an IANA zone name."""
        offsets = sorted({parse_offset(text) for text in reminders}, reverse=True)
        tz = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
        return cls(offsets, list(dict.fromkeys(rooms)), tz)


def config_of(services: Services) -> WorkshopConfig:
    return services.configs.get("workshops") or WorkshopConfig.default()


class View:
    """Texts about workshops in one language: for a command's reply or a reminder."""

    def __init__(self, services: Services, language: str) -> None:
        self.services = services
        self.language = language
        self.config = config_of(services)
        self.words = FIELD_WORDS.get(language, FIELD_WORDS["en"])

    def t(self, key: str, /, **values: Any) -> Text:
        return self.services.catalog.text(self.language, f"workshops.{key}", **values)

    def template(self, key: str) -> str:
        return self.services.catalog.template(self.language, f"workshops.{key}")

    def call(self, command: str, *words: str) -> Text:
        """A command line as code, in this language: `!anmelden 12`, `!werkstatt neu …`
        (a subcommand by its key, `workshop.add`)."""
        return command_line(self.services, self.language, command, *words)

    def call_number_first(self, subcommand: str, number: str) -> Text:
        """A subcommand of `!werkstatt` the way members write it, the number first:
        `!werkstatt 12 ics` (`subcommand` its English name)."""
        found = self.services.registry.find_key(f"workshop.{subcommand}")
        word = found.display_name(self.language).split()[-1] if found else subcommand
        return self.call("workshop", number, word)

    def placeholder(self, arg: str) -> str:
        """An argument's label, as in usage lines: `<nummer>`."""
        return f"<{self.services.catalog.template(self.language, f'args.{arg}')}>"

    def when(self, workshop: Workshop) -> str:
        return format_when(workshop.starts_at, workshop.ends_at, self.language,
                           self.config.timezone, self.services.catalog)

    def where(self, workshop: Workshop) -> Text:
        if workshop.location and workshop.url:
            return self.t("where_both", place=workshop.location, url=link(workshop.url))
        if workshop.url:
            return self.t("where_online", url=link(workshop.url))
        if workshop.location:
            return Text.raw(workshop.location)
        return self.t("where_none")

    def places(self, workshop: Workshop, counts: Counts) -> Text | None:
        if workshop.capacity is None:
            return None
        free = max(workshop.capacity - counts.registered, 0)
        if free:
            return self.t("places_free", free=free, capacity=workshop.capacity)
        if counts.waiting:
            return self.t("places_full_waiting", waiting=counts.waiting)
        return self.t("places_full")

    def name(self, workshop: Workshop) -> Text:
        return self.t("name", title=workshop.title, number=workshop.number)

    def field(self, label: str, value: Text | str) -> Text:
        return self.t("field", label=self.t(f"labels.{label}"),
                      value=value if isinstance(value, Text) else Text.raw(value))

    def summary(self, workshop: Workshop, counts: Counts | None = None, *,
                current: bool = False) -> Text:
        """What, when, where, link, places: the lines of a details page or a reminder.
        `current`: for a post the bot edits when the workshop fills up or has a place again,
        so its places say only free or full (a count would go stale with each sign-up)."""
        lines = [self.field("when", self.when(workshop))]
        if workshop.location:
            lines.append(self.field("location", workshop.location))
        if workshop.url:
            lines.append(self.field("url", link(workshop.url)))
        if not workshop.location and not workshop.url:
            lines.append(self.field("location", self.t("where_none")))
        if workshop.community:
            lines.append(self.field("community", workshop.community))
        if counts is not None and current:
            full = workshop.capacity is not None and counts.registered >= workshop.capacity
            lines.append(self.field("places", self.t(
                "places_unlimited" if workshop.capacity is None
                else "post_places_full" if full else "post_places_free",
                capacity=workshop.capacity)))
        elif counts is not None:
            if workshop.capacity is None:
                lines.append(self.field("places", self.t("places_open",
                                                         registered=counts.registered)))
            else:
                lines.append(self.field("places", self.t(
                    "places_of", free=max(workshop.capacity - counts.registered, 0),
                    capacity=workshop.capacity, registered=counts.registered)))
                lines.append(self.field("waiting", str(counts.waiting)))
        return Text.join(lines)


def calendar_file(workshop: Workshop, tz: ZoneInfo, now: datetime) -> bytes:
    """The workshop as an iCalendar file: one VEVENT in `tz`, with its VTIMEZONE. The UID
    stays the same for the workshop, SEQUENCE grows with each change, so a calendar that
    imported it once updates the event instead of adding a second one."""
    cal = Calendar()
    cal.add("prodid", "-//NExT//nextbot//DE")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    event = Event()
    created = workshop.created_at or workshop.starts_at
    event.add("uid", f"workshop-{workshop.number}-{int(created.timestamp())}@nextbot")
    event.add("dtstamp", now.astimezone(UTC))
    event.add("sequence", workshop.sequence)
    event.add("dtstart", workshop.starts_at.astimezone(tz))
    event.add("dtend", workshop.ends_at.astimezone(tz))
    event.add("summary", workshop.title)
    if workshop.location or workshop.url:
        event.add("location", workshop.location or workshop.url)
    if workshop.url:
        event.add("url", workshop.url)
    description = "\n\n".join(part for part in (workshop.description, workshop.url) if part)
    if description:
        event.add("description", description)
    if workshop.community:
        event.add("categories", [workshop.community])
    event.add("status", "CANCELLED" if workshop.cancelled else "CONFIRMED")
    cal.add_component(event)
    first = workshop.starts_at.astimezone(tz).date()
    cal.add_missing_timezones(first_date=date(max(first.year - 1, 1), 1, 1),
                              last_date=date(min(first.year + 2, date.max.year), 1, 1))
    return cal.to_ical()
