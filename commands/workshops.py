"""Workshops ("Werkstätten"): dates members can find, sign up for, and put in their calendar.

Members: `!werkstätten [community oder stichwörter]` lists the next ones, `!werkstatt 12` shows
one, `!werkstatt 12 ics` posts a calendar file, `!anmelden 12` signs up (a waiting list when
full), `!abmelden 12` withdraws; whoever moves up from the waiting list is told by direct
message.

Moderators of a room add workshops there, and edit or cancel them, in one line:

    !werkstatt neu 03.12.2026 10:00-12:00 KI in der Verwaltung ort=Rathaus Wiesbaden plätze=20
    !werkstatt ändern 12 plätze=30 link=https://meet.example.org/ki
    !werkstatt absagen 12 Referentin erkrankt

The line is: date, time range, title, then `key=value` pairs (German or English keys, values
may hold spaces and need no quotes). Dates are day first (`03.12.2026`, `3.12.26`, `03.12.` =
the next 3 December, `3. Dezember`) or ISO (`2026-12-03T10:00`); a slash date is refused as
ambiguous. Cancelling tells everyone registered or waiting by direct message.

`WorkshopReminders` is the scheduler's source of reminders: for each planned workshop and each
offset of `[workshops] reminders` one post into the workshop's room (else into each room of
`[workshops] rooms`), mentioning the registered members.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_timedelta
from icalendar import Calendar, Event

from commands import room_settings
from commands.dates import (
    MAX_SPAN,
    MAX_YEARS_AHEAD,
    When,
    WhenError,
    format_when,
    parse_duration,
    parse_head,
    parse_when_value,
    resolve,
)
from commands.erasure import after_erasure
from commands.framework import (
    Arg,
    Attachment,
    Context,
    Level,
    Reply,
    Router,
    Services,
    UserError,
    command_line,
    keyword,
    lookup,
    one_line,
)
from commands.i18n import Text, locale_of
from commands.links import link, normalize_link
from commands.schedule import (
    Occurrence,
    reminder_horizon,
    reminders_within,
)
from storage.member_data import Erasure
from storage.text import STOPWORDS, tokens
from storage.workshops import (
    REGISTERED,
    WAITING,
    Counts,
    Registration,
    Workshop,
    offset_label,
    parse_offset,
)

router = Router("workshops")

LIST_LIMIT = 10
MAX_CAPACITY = 10_000
MAX_LENGTH = {"title": 200, "community": 80, "location": 200, "url": 500, "description": 2000,
              "reason": 300}
DEFAULT_TIMEZONE = "Europe/Berlin"


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


async def _schedule_changed(services: Services) -> None:
    """Tell the scheduler (where one runs) that the reminders must be planned anew."""
    notify = services.schedule_changed
    if notify is not None:
        await notify(WorkshopReminders.name)


# -- words of the command line (compared folded: `ändern` = `aendern` = `ÄNDERN`) --------------

ACTIONS = {
    "show": ("show", "details", "detail", "info", "anzeigen", "zeigen", "zeige"),
    "ics": ("ics", "ical", "icalendar", "kalender", "calendar", "cal", "termin"),
    "add": ("add", "new", "create", "neu", "anlegen", "erstellen", "hinzufuegen", "eintragen"),
    "edit": ("edit", "change", "update", "aendern", "aendere", "bearbeiten", "korrigieren"),
    "cancel": ("cancel", "absagen", "absage", "streichen"),
    "participants": ("participants", "attendees", "list", "teilnehmende", "teilnehmer",
                     "teilnehmerinnen", "anmeldungen", "liste"),
    "rsvp": ("rsvp", "register", "join", "anmelden", "anmeldung", "teilnehmen"),
    "withdraw": ("withdraw", "unregister", "leave", "abmelden", "abmeldung"),
}
FIELDS = {
    "title": ("title", "titel", "thema", "name"),
    "when": ("when", "wann", "termin"),
    "date": ("date", "datum", "day", "tag"),
    "time": ("time", "zeit", "uhrzeit"),
    "start": ("start", "beginn", "begin", "von", "from", "ab"),
    "end": ("end", "ende", "bis", "until", "to"),
    "duration": ("duration", "dauer", "laenge", "length"),
    "location": ("location", "ort", "place", "wo", "where", "adresse", "address", "raum",
                 "venue"),
    "url": ("url", "link", "video", "videolink", "meeting", "online", "web"),
    "capacity": ("capacity", "places", "seats", "spots", "plaetze", "platze", "platz",
                 "kapazitaet", "max", "teilnehmerzahl", "limit"),
    "community": ("community", "gemeinschaft", "gruppe", "group"),
    "description": ("description", "beschreibung", "text", "about", "details", "info",
                    "infos"),
}
TIME_FIELDS = ("when", "date", "time", "start", "end", "duration")
UNLIMITED = ("unbegrenzt", "unlimited", "none", "keine", "kein", "offen", "open", "0")
# How the words are written in each language, for examples and hints in replies.
WORDS = {
    "de": {"add": "neu", "edit": "ändern", "cancel": "absagen", "ics": "ics",
           "participants": "teilnehmende", "number": "nummer",
           "title": "titel", "when": "wann", "date": "datum", "time": "zeit", "start": "start",
           "end": "ende", "duration": "dauer", "location": "ort", "url": "link",
           "capacity": "plätze", "community": "community", "description": "beschreibung"},
    "en": {"add": "add", "edit": "edit", "cancel": "cancel", "ics": "ics",
           "participants": "participants", "number": "number",
           "title": "title", "when": "when", "date": "date", "time": "time", "start": "start",
           "end": "end", "duration": "duration", "location": "location", "url": "link",
           "capacity": "places", "community": "community", "description": "description"},
}


_NUMBER = re.compile(r"^(?:#|nr\.?|no\.?|nummer)?\s*(\d{1,9})\.?$", re.IGNORECASE)


def parse_number(text: str) -> int | None:
    """`12`, `#12`, `Nr. 12`, `Nr.12` → 12; None for anything else."""
    found = _NUMBER.match(text.strip())
    return int(found.group(1)) if found and int(found.group(1)) > 0 else None


# -- the key=value line -------------------------------------------------------------------------

_QUOTES = '"„“”'
_KEY = re.compile(r"(?:(?<=[\s|])|^)([^\W\d_][^\W_]*(?:-[^\W_]+)*)\s*=\s*")


def _unquote(value: str) -> str:
    value = value.strip().strip("|").strip()
    if len(value) >= 2 and value[0] in _QUOTES and value[-1] in _QUOTES:
        value = value[1:-1]
    return value.strip()


@dataclass(frozen=True)
class Spec:
    """A moderator's line: the text before the first key, and each `key=value` in order."""

    head: str
    fields: list[tuple[str, str, str]]  # (field, key as typed, value)


class UnknownKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def split_fields(text: str) -> Spec:
    """`03.12. 10-12 Titel ort=Rathaus Wiesbaden | plätze=20` → head and fields. A value runs
    to the next key; a key inside quotes is none. An unknown key raises UnknownKeyError."""
    cuts: list[tuple[int, int, str]] = []
    quotes, counted_to = 0, 0  # quotes before `counted_to`: counted once, not once per key
    for found in _KEY.finditer(text):
        quotes += sum(text.count(q, counted_to, found.start()) for q in _QUOTES)
        counted_to = found.start()
        if quotes % 2:
            continue  # inside quotes
        cuts.append((found.start(), found.end(), found.group(1)))
    head = text[:cuts[0][0]] if cuts else text
    fields: list[tuple[str, str, str]] = []
    for index, (_, value_start, key) in enumerate(cuts):
        value_end = cuts[index + 1][0] if index + 1 < len(cuts) else len(text)
        name = lookup(FIELDS, key)
        if name is None:
            raise UnknownKeyError(key)
        fields.append((name, key, _unquote(text[value_start:value_end])))
    return Spec(_unquote(head) if head.strip().strip("|").strip() else "", fields)


# -- how workshops look -------------------------------------------------------------------------


class View:
    """Texts about workshops in one language: for a command's reply or a reminder."""

    def __init__(self, services: Services, language: str) -> None:
        self.services = services
        self.language = language
        self.config = config_of(services)
        self.words = WORDS.get(language, WORDS["en"])

    def t(self, key: str, /, **values: Any) -> Text:
        return self.services.catalog.text(self.language, f"workshops.{key}", **values)

    def template(self, key: str) -> str:
        return self.services.catalog.template(self.language, f"workshops.{key}")

    def call(self, command: str, *words: str) -> Text:
        """A command line as code, in this language: `!anmelden 12`."""
        return command_line(self.services, self.language, command, *words)

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

    def summary(self, workshop: Workshop, counts: Counts | None = None) -> Text:
        """What, when, where, link, places: the lines of a details page or a reminder."""
        lines = [self.field("when", self.when(workshop))]
        if workshop.location:
            lines.append(self.field("location", workshop.location))
        if workshop.url:
            lines.append(self.field("url", link(workshop.url)))
        if not workshop.location and not workshop.url:
            lines.append(self.field("location", self.t("where_none")))
        if workshop.community:
            lines.append(self.field("community", workshop.community))
        if counts is not None:
            if workshop.capacity is None:
                lines.append(self.field("places", self.t("places_open",
                                                         registered=counts.registered)))
            else:
                lines.append(self.field("places", self.t(
                    "places_of", free=max(workshop.capacity - counts.registered, 0),
                    capacity=workshop.capacity, registered=counts.registered)))
                lines.append(self.field("waiting", str(counts.waiting)))
        return Text.join(lines)


# -- the calendar file --------------------------------------------------------------------------


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


# -- !workshops ---------------------------------------------------------------------------------


def matches(workshop: Workshop, terms: list[str]) -> bool:
    """Every term begins a word of the title, community, place or description."""
    words = tokens(" ".join(filter(None, (workshop.title, workshop.community,
                                          workshop.location, workshop.description))))
    return all(any(word.startswith(term) for word in words) for term in terms)


def select(found: list[Workshop], query: str) -> list[Workshop]:
    """The workshops of the community named `query`, if there is one; else those whose text
    holds every word of `query`."""
    key = " ".join(tokens(query))
    if not key:
        return found
    community = [w for w in found if w.community and " ".join(tokens(w.community)) == key]
    if community:
        return community
    terms = [t for t in tokens(query) if t not in STOPWORDS] or tokens(query)
    return [w for w in found if matches(w, terms)]


@router.command("workshops", "werkstätten", aliases=["werkstaetten"],
                args=[Arg("workshop_query", rest=True, optional=True)])
async def workshops(ctx: Context, workshop_query: str | None = None) -> Text:
    view = View(ctx.services, ctx.language)
    query = one_line(workshop_query or "")
    found = select(await ctx.services.storage.workshops.upcoming(ctx.services.clock.now(),
                                                                 seen_in=ctx.room_id), query)
    if not found:
        if query:
            return view.t("list_none_for", query=query, all=view.call("workshops"))
        return view.t("list_none")
    shown = found[:LIST_LIMIT]
    counts = await ctx.services.storage.workshops.counts_of([w.number for w in shown])
    header = view.t("list_header_for", query=query) if query else view.t("list_header")
    lines = []
    for w in shown:
        parts = [Text.raw(view.when(w)), Text.raw(w.title), view.where(w)]
        if w.community:
            parts.append(Text.raw(w.community))
        places = view.places(w, counts[w.number])
        if places is not None:
            parts.append(places)
        lines.append(view.t("list_line", number=w.number, details=Text.join(parts, " · ")))
    number = f"<{view.words['number']}>"
    parts = [header, Text.join(lines)]
    if len(found) > len(shown):
        parts.append(view.t("list_more", more=len(found) - len(shown),
                            example=view.call("workshops", "KI")))
    parts.append(view.t("list_footer", show=view.call("workshop", number),
                        rsvp=view.call("rsvp", number),
                        ics=view.call("workshop", number, view.words["ics"])))
    return Text.join(parts, "\n\n")


# -- !workshop ----------------------------------------------------------------------------------


@router.command("workshop", "werkstatt",
                action_levels=dict.fromkeys(("add", "edit", "cancel", "participants"),
                                            Level.ROOM_MODERATOR),
                action_words=WORDS,
                args=[Arg("workshop_details", rest=True, optional=True)])
async def workshop(ctx: Context, workshop_details: str | None = None) -> Text | Reply | list[Reply]:
    text = (workshop_details or "").strip()
    if not text:
        raise _usage(ctx)
    first, *others = text.split(maxsplit=1)
    rest = others[0] if others else ""
    number = parse_number(first)
    if number is None and first.lower() in ("nr", "nr.", "no", "no.", "#") and rest:
        number_word, *more = rest.split(maxsplit=1)
        number, rest = parse_number(number_word), more[0] if more else ""
    if number is not None:
        action_word, *more = rest.split(maxsplit=1) or ["show"]
        action = lookup(ACTIONS, action_word)
        if action is None or action == "add":
            raise _usage(ctx)
        return await _act(ctx, action, number, more[0] if more else "")
    action = lookup(ACTIONS, first)
    if action is None:
        raise _usage(ctx)
    if action == "add":
        return await _add(ctx, rest)
    number_word, *more = rest.split(maxsplit=1) or [""]
    number = parse_number(number_word)
    if number is None:
        raise _number_needed(ctx, action)
    return await _act(ctx, action, number, more[0] if more else "")


async def _act(ctx: Context, action: str, number: int, rest: str) -> Text | Reply | list[Reply]:
    if action == "show":
        return await _show(ctx, number)
    if action == "ics":
        return await _ics(ctx, number)
    if action == "rsvp":
        return await _rsvp(ctx, number)
    if action == "withdraw":
        return await _withdraw(ctx, number)
    if action == "edit":
        return await _edit(ctx, number, rest)
    if action == "cancel":
        return await _cancel(ctx, number, rest)
    return await _participants(ctx, number)


def _usage(ctx: Context) -> UserError:
    view = View(ctx.services, ctx.language)
    w = view.words
    return UserError(
        "workshops.usage", list=view.call("workshops"), show=view.call("workshop", "12"),
        ics=view.call("workshop", "12", w["ics"]), rsvp=view.call("rsvp", "12"),
        withdraw=view.call("withdraw", "12"), add=view.call("workshop", w["add"], "…"),
        edit=view.call("workshop", w["edit"], "12", f"{w['location']}=…"),
        cancel=view.call("workshop", w["cancel"], "12"),
        participants=view.call("workshop", "12", w["participants"]))


def _number_needed(ctx: Context, action: str) -> UserError:
    view = View(ctx.services, ctx.language)
    if action in ("rsvp", "withdraw"):
        example = view.call(action, "12")
    elif action == "show":
        example = view.call("workshop", "12")
    else:
        example = view.call("workshop", view.words.get(action, action), "12")
    return UserError("workshops.number_needed", example=example, list=view.call("workshops"))


async def _get(ctx: Context, number: int) -> Workshop:
    found = await ctx.services.storage.workshops.get(number)
    if found is None:
        raise UserError("workshops.not_found", number=number,
                        list=View(ctx.services, ctx.language).call("workshops"))
    return found


async def _show(ctx: Context, number: int) -> Text:
    view = View(ctx.services, ctx.language)
    w = await _get(ctx, number)
    repo = ctx.services.storage.workshops
    counts = await repo.counts(number)
    title = view.t("title_cancelled" if w.cancelled else "title", title=w.title, number=number)
    parts = [title, view.summary(w, counts)]
    if w.description:
        parts.append(Text.raw(w.description))
    now = ctx.services.clock.now()
    mine = await repo.registration(number, ctx.sender)
    withdraw = view.call("withdraw", str(number))
    if w.cancelled:
        parts.append(view.t("is_cancelled_note"))
    elif w.starts_at <= now:
        parts.append(view.t("over_note" if w.ends_at <= now else "running_note"))
    elif mine is not None and mine.status == REGISTERED:
        parts.append(view.t("you_registered", withdraw=withdraw))
    elif mine is not None:
        parts.append(view.t("you_waiting", position=mine.position, withdraw=withdraw))
    else:
        full = w.capacity is not None and counts.registered >= w.capacity
        parts.append(view.t("you_may_wait" if full else "you_may_register",
                            rsvp=view.call("rsvp", str(number))))
    if not w.cancelled:
        parts.append(view.t("calendar_hint",
                            ics=view.call("workshop", str(number), view.words["ics"])))
    return Text.join(parts, "\n\n")


async def _ics(ctx: Context, number: int) -> Reply:
    view = View(ctx.services, ctx.language)
    w = await _get(ctx, number)
    data = calendar_file(w, view.config.timezone, ctx.services.clock.now())
    filename = view.template("ics_filename").format(number=number)
    caption = view.t("ics_caption_cancelled" if w.cancelled else "ics_caption",
                     name=view.name(w), when=view.when(w))
    return Reply(caption, attachment=Attachment(filename, "text/calendar", data))


# -- registering --------------------------------------------------------------------------------


@router.command("rsvp", "anmelden", args=[Arg("workshop_number", rest=True)])
async def rsvp(ctx: Context, workshop_number: str) -> Text | list[Reply]:
    words = workshop_number.split()
    if len(words) == 2 and lookup(ACTIONS, words[0]) in ("cancel", "withdraw"):
        number = parse_number(words[1])
        if number is None:
            raise _number_needed(ctx, "withdraw")
        return await _withdraw(ctx, number)
    number = parse_number(" ".join(words))
    if number is None:
        raise _number_needed(ctx, "rsvp")
    return await _rsvp(ctx, number)


@router.command("withdraw", "abmelden", args=[Arg("workshop_number", rest=True)])
async def withdraw(ctx: Context, workshop_number: str) -> Text | list[Reply]:
    number = parse_number(workshop_number)
    if number is None:
        raise _number_needed(ctx, "withdraw")
    return await _withdraw(ctx, number)


def _open_for_changes(ctx: Context, w: Workshop) -> None:
    if w.cancelled:
        raise UserError("workshops.is_cancelled", number=w.number)
    if w.starts_at <= ctx.services.clock.now():
        raise UserError("workshops.started", number=w.number)


async def _rsvp(ctx: Context, number: int) -> Text:
    view = View(ctx.services, ctx.language)
    w = await _get(ctx, number)
    _open_for_changes(ctx, w)
    signup = await ctx.services.storage.workshops.register(number, ctx.sender,
                                                           ctx.services.clock.now())
    registration = signup.registration
    withdraw_call = view.call("withdraw", str(number))
    ics = view.call("workshop", str(number), view.words["ics"])
    if registration.status == REGISTERED:
        key = "rsvp_registered" if signup.new else "rsvp_already"
        return view.t(key, name=view.name(w), when=view.when(w), where=view.where(w),
                      withdraw=withdraw_call, ics=ics)
    key = "rsvp_waiting" if signup.new else "rsvp_already_waiting"
    return view.t(key, name=view.name(w), position=registration.position,
                  withdraw=withdraw_call)


async def _withdraw(ctx: Context, number: int) -> Text | list[Reply]:
    view = View(ctx.services, ctx.language)
    w = await _get(ctx, number)
    if w.cancelled:
        raise UserError("workshops.is_cancelled", number=number)
    if w.starts_at <= ctx.services.clock.now():
        raise UserError("workshops.started", number=number)
    result = await ctx.services.storage.workshops.withdraw(number, ctx.sender)
    if result.removed is None:
        return view.t("withdraw_none", name=view.name(w), rsvp=view.call("rsvp", str(number)))
    key = "withdraw_done" if result.removed.status == REGISTERED else "withdraw_waiting_done"
    return [Reply(view.t(key, name=view.name(w))), *_moved_up(view, w, result.promoted)]


def _moved_up(view: View, w: Workshop, promoted: list[Registration]) -> list[Reply]:
    """A direct message to each member who moved up from the waiting list."""
    return [Reply(view.t("moved_up", name=view.name(w), when=view.when(w),
                         where=view.where(w),
                         withdraw=view.call("withdraw", str(w.number))),
                  direct=True, recipient=r.user_id)
            for r in promoted]


@after_erasure
async def _tell_moved_up(ctx: Context, erased: Erasure) -> list[Reply]:
    """Whoever moved up into a place a deleted member left is told, as after `!abmelden`."""
    view = View(ctx.services, ctx.language)
    replies: list[Reply] = []
    for number, moved in groupby(erased.promoted, key=lambda r: r.workshop):
        workshop = await ctx.services.storage.workshops.get(number)
        if workshop is not None:
            replies += _moved_up(view, workshop, list(moved))
    return replies


# -- moderators ---------------------------------------------------------------------------------


async def _require_moderator(ctx: Context, action: str, w: Workshop | None = None) -> None:
    """Room moderators add workshops to their room (listed only there) and manage that room's
    own; a workshop shown network-wide, or without a room, is the network moderators'."""
    await ctx.require_action(action)
    if w is None or (w.room_id == ctx.room_id and not w.network_wide):
        return
    if await ctx.level() >= Level.NETWORK_MODERATOR:
        return
    if w.network_wide or w.room_id is None:
        raise UserError("workshops.network_only", number=w.number,
                        level=ctx.t(Level.NETWORK_MODERATOR.key))
    raise UserError("workshops.other_room", number=w.number)


def _example_add(view: View, now: datetime) -> Text:
    day = (now.astimezone(view.config.timezone) + timedelta(days=28)).date()
    args = view.template("example_add").format(date=day.strftime("%d.%m.%Y"))
    return view.call("workshop", view.words["add"], args)


def _key_list(view: View, names: Iterable[str]) -> Text:
    return Text.join((Text.code(f"{view.words[name]}=") for name in names), ", ")


_EDITABLE = ("title", "location", "url", "capacity", "community", "description", "date",
             "time", "start", "end", "duration")


def _when_error(error: WhenError, example: Text) -> UserError:
    return UserError(f"workshops.when.{error.key}", value=error.value, example=example,
                     days=MAX_SPAN.days, years=MAX_YEARS_AHEAD)


def _split(view: View, text: str, keys: Iterable[str]) -> Spec:
    try:
        return split_fields(text)
    except UnknownKeyError as error:
        raise UserError("workshops.unknown_key", detail=Text.code(f"{error.key}="),
                        keys=_key_list(view, keys)) from None


@dataclass
class _Changes:
    values: dict[str, Any] = field(default_factory=dict)  # field → new value (None: clear)
    when: When = field(default_factory=When)
    duration: timedelta | None = None
    times_given: bool = False


def _changes(view: View, fields: list[tuple[str, str, str]],
             example: Text) -> _Changes:
    changes = _Changes()
    for name, key, raw in fields:
        value = one_line(raw)
        if not value:
            raise UserError("workshops.empty_value", detail=Text.code(f"{key}="), example=example)
        if name in TIME_FIELDS:
            changes.times_given = True
            try:
                if name == "duration":
                    changes.duration = parse_duration(value)
                    continue
                parsed = parse_when_value(value, date_only=name == "date")
            except WhenError as error:
                if error.key == "bad_value":
                    raise UserError("workshops.bad_value", detail=Text.code(f"{key}="),
                                    value=value, example=example) from None
                raise _when_error(error, example) from None
            _check_shape(name, key, parsed, value, example)
            if name == "end":  # `ende=16:00` or `ende=04.12. 16:00`: the end's parts
                parsed = When(end_day=parsed.start_day, end_time=parsed.start_time)
            changes.when = changes.when.merged(parsed)
            continue
        changes.values[name] = _value(view, name, key, value)
    return changes


def _check_shape(name: str, key: str, parsed: When, value: str, example: Text) -> None:
    has_range = parsed.end_time is not None or parsed.end_day is not None
    wrong = ((name == "date" and (parsed.start_day is None or parsed.start_time is not None))
             or (name == "time" and (parsed.start_time is None or parsed.start_day is not None))
             or (name in ("start", "end") and has_range))
    if wrong:
        raise UserError("workshops.bad_value", detail=Text.code(f"{key}="), value=value,
                        example=example)


def _value(view: View, name: str, key: str, value: str) -> Any:
    if value == "-":
        if name == "title":
            raise UserError("workshops.cannot_clear", detail=Text.code(f"{key}="))
        return None
    if name == "capacity":
        if keyword(value) in UNLIMITED:
            return None
        try:
            capacity = int(value.replace(".", "").replace(" ", ""))
        except ValueError:
            capacity = 0
        if not 1 <= capacity <= MAX_CAPACITY:
            raise UserError("workshops.bad_capacity", value=value, max=MAX_CAPACITY)
        return capacity
    if name == "url":
        url = normalize_link(value)
        if url is None:
            raise UserError("workshops.bad_url", value=value)
        value = url
    if len(value) > MAX_LENGTH[name]:
        raise UserError("workshops.too_long", field=view.t(f"labels.{name}"),
                        max=MAX_LENGTH[name], length=len(value))
    return value


async def _add(ctx: Context, text: str) -> Text:
    await _require_moderator(ctx, "add")
    view = View(ctx.services, ctx.language)
    now = ctx.services.clock.now()
    example = _example_add(view, now)
    if not text.strip():
        raise UserError("workshops.add_usage", example=example,
                        keys=_key_list(view, ("location", "url", "capacity", "community",
                                              "description")))
    spec = _split(view, text, ("title", "location", "url", "capacity", "community",
                               "description", "date", "time", "start", "end", "duration"))
    try:
        head_when, title = parse_head(spec.head)
    except WhenError as error:
        raise _when_error(error, example) from None
    changes = _changes(view, spec.fields, example)
    title = changes.values.pop("title", None) or one_line(_unquote(title))
    try:
        start, end = resolve(head_when.merged(changes.when), changes.duration, now,
                             view.config.timezone)
    except WhenError as error:
        raise _when_error(error, example) from None
    if start <= now:
        raise UserError("workshops.when.past", when=format_when(start, end, ctx.language,
                                                                 view.config.timezone,
                                                                 ctx.services.catalog))
    if not title:
        raise UserError("workshops.no_title", example=example)
    _value(view, "title", "title", title)  # length
    network_wide = await ctx.level() >= Level.NETWORK_MODERATOR
    new = Workshop(title=title, starts_at=start, ends_at=end, created_by=ctx.sender,
                   room_id=ctx.room_id, network_wide=network_wide, **changes.values)
    stored = await ctx.services.storage.workshops.add(new, now)
    await _schedule_changed(ctx.services)
    number = str(stored.number)
    added = view.t("added" if network_wide else "added_room_only", name=view.name(stored),
                   when=view.when(stored), where=view.where(stored),
                   places=view.places(stored, Counts()) or view.t("places_unlimited"),
                   rsvp=view.call("rsvp", number),
                   ics=view.call("workshop", number, view.words["ics"]),
                   edit=view.call("workshop", view.words["edit"], number,
                                  f"{view.words['capacity']}=30"),
                   cancel=view.call("workshop", view.words["cancel"], number))
    return added


async def _edit(ctx: Context, number: int, text: str) -> Text | list[Reply]:
    view = View(ctx.services, ctx.language)
    w = await _get(ctx, number)
    await _require_moderator(ctx, "edit", w)
    now = ctx.services.clock.now()
    example = view.call("workshop", view.words["edit"], str(number),
                        f"{view.words['location']}=Rathaus", f"{view.words['capacity']}=30")
    if w.cancelled:
        raise UserError("workshops.is_cancelled", number=number)
    if w.ends_at <= now:
        raise UserError("workshops.over", number=number)
    spec = _split(view, text, _EDITABLE)
    if not spec.head and not spec.fields:
        raise UserError("workshops.edit_nothing", example=example,
                        keys=_key_list(view, _EDITABLE))
    try:
        head_when, rest = parse_head(spec.head)
    except WhenError as error:
        raise _when_error(error, example) from None
    if rest:  # only a new time may stand without a key
        raise UserError("workshops.edit_nothing", example=example,
                        keys=_key_list(view, _EDITABLE))
    changes = _changes(view, spec.fields, example)
    updated = replace(w, **changes.values)
    if head_when != When() or changes.times_given:
        try:
            start, end = resolve(head_when.merged(changes.when), changes.duration, now,
                                 view.config.timezone, (w.starts_at, w.ends_at))
        except WhenError as error:
            raise _when_error(error, example) from None
        if start != w.starts_at and start <= now:
            raise UserError("workshops.when.past", when=format_when(
                start, end, ctx.language, view.config.timezone, ctx.services.catalog))
        updated = replace(updated, starts_at=start, ends_at=end)
    if _same(updated, w):
        return view.t("unchanged", name=view.name(w))
    repo = ctx.services.storage.workshops
    promoted = await repo.update(updated, now)
    await _schedule_changed(ctx.services)
    saved = await _get(ctx, number)
    replies = [Reply(view.t("edited", name=view.name(saved), when=view.when(saved),
                            where=view.where(saved),
                            places=view.places(saved, await repo.counts(number))
                            or view.t("places_unlimited")))]
    promoted_ids = {r.user_id for r in promoted}
    if _moved(saved, w):
        others = [r for r in await repo.registrations(number) if r.user_id not in promoted_ids]
        replies += [Reply(view.t("changed_dm", name=view.name(saved), when=view.when(saved),
                                 where=view.where(saved),
                                 withdraw=view.call("withdraw", str(number))),
                          direct=True, recipient=r.user_id) for r in others]
        if others:
            replies.append(Reply(view.t("edited_told", count=len(others))))
    if promoted:
        replies += _moved_up(view, saved, promoted)
        replies.append(Reply(view.t("edited_moved_up", count=len(promoted))))
    return replies


def _same(a: Workshop, b: Workshop) -> bool:
    keys = ("title", "community", "location", "url", "description", "capacity")
    return (all(getattr(a, k) == getattr(b, k) for k in keys)
            and a.starts_at == b.starts_at and a.ends_at == b.ends_at)


def _moved(a: Workshop, b: Workshop) -> bool:
    """Whether what a participant plans around changed: the time, the place or the link."""
    return (a.starts_at != b.starts_at or a.ends_at != b.ends_at or a.location != b.location
            or a.url != b.url)


async def _cancel(ctx: Context, number: int, reason: str) -> list[Reply]:
    view = View(ctx.services, ctx.language)
    w = await _get(ctx, number)
    await _require_moderator(ctx, "cancel", w)
    if w.cancelled:
        raise UserError("workshops.already_cancelled", number=number)
    now = ctx.services.clock.now()
    if w.ends_at <= now:
        raise UserError("workshops.over", number=number)
    reason = one_line(reason)
    if len(reason) > MAX_LENGTH["reason"]:
        raise UserError("workshops.too_long", field=view.t("labels.reason"),
                        max=MAX_LENGTH["reason"], length=len(reason))
    told = await ctx.services.storage.workshops.cancel(number, now)
    await _schedule_changed(ctx.services)
    message = view.t("cancelled_dm", name=view.name(w), when=view.when(w))
    if reason:
        message = Text.join([message, view.t("reason", reason=reason)])
    replies = [Reply(message, direct=True, recipient=r.user_id) for r in told]
    confirm = view.t("cancelled" if told else "cancelled_nobody", name=view.name(w),
                     when=view.when(w), count=len(told))
    return [Reply(confirm), *replies]


async def _participants(ctx: Context, number: int) -> list[Reply]:
    view = View(ctx.services, ctx.language)
    w = await _get(ctx, number)
    await _require_moderator(ctx, "participants", w)
    everyone = await ctx.services.storage.workshops.registrations(number)
    registered = [r for r in everyone if r.status == REGISTERED]
    waiting = [r for r in everyone if r.status == WAITING]
    parts = [view.t("participants_header", name=view.name(w), when=view.when(w),
                    registered=len(registered), waiting=len(waiting))]
    for label, group in (("participants_registered", registered),
                         ("participants_waiting", waiting)):
        if group:
            parts.append(Text.join([view.t(label), Text.join(
                view.t("participants_line", position=i, person=Text.mention(r.user_id))
                for i, r in enumerate(group, 1))]))
    if not everyone:
        parts.append(view.t("participants_none"))
    return [Reply(Text.join(parts, "\n\n"), direct=True),
            Reply(view.t("participants_sent", name=view.name(w)))]


# -- reminders ----------------------------------------------------------------------------------


class WorkshopReminders:
    """The scheduler's source of workshop reminders (see `commands.schedule`).

    One occurrence per planned workshop, reminder offset and target room, keyed
    `workshop:<number>:<offset>:<room>` and due `before(start, offset)` (whole days on the
    wall clock: a day before 18:00 is 18:00, also across a clock change). The post mentions
    the registered members, so they are notified; those on the waiting list are not.
    """

    name = "workshops"

    def __init__(self, services: Services) -> None:
        self.services = services

    async def occurrences(self, start: datetime, end: datetime) -> list[Occurrence]:
        config = config_of(self.services)
        if not config.reminders:
            return []
        latest = reminder_horizon(end, config.reminders)
        found: list[Occurrence] = []
        for w in await self.services.storage.workshops.starting_between(start, latest):
            rooms = [room for room in ([w.room_id] if w.room_id else config.rooms)
                     if await room_settings.is_on(self.services, room, "workshop_reminders")]
            local_start = w.starts_at.astimezone(config.timezone)
            for offset, due in reminders_within(local_start, config.reminders, start, end):
                if w.created_at is not None and due < w.created_at:
                    continue  # it did not exist yet when this reminder was due
                # The start is part of the key: a workshop moved after a reminder went out
                # gets its reminders again, for the new time.
                key = f"workshop:{w.number}:{local_start:%Y%m%dT%H%M}:{offset_label(offset)}"
                found += [Occurrence(f"{key}:{room}", self.name, due, room, str(w.number))
                          for room in rooms]
        return sorted(found, key=lambda o: (o.due, o.key))

    async def render(self, occurrence: Occurrence, late: bool) -> Reply | None:
        storage = self.services.storage
        try:
            number = int(occurrence.subject or occurrence.key.split(":")[1])
        except (IndexError, ValueError):
            return None
        w = await storage.workshops.get(number)
        now = self.services.clock.now()
        if w is None or w.cancelled or w.starts_at <= now:
            return None
        if not await room_settings.is_on(self.services, occurrence.room_id, "workshop_reminders"):
            return None  # the room's moderators switched reminders off after it was planned
        language = await room_settings.language(self.services, occurrence.room_id)
        view = View(self.services, language)
        locale = locale_of(language)
        relative = format_timedelta(w.starts_at - now, add_direction=True, locale=locale)
        registrations = await storage.workshops.registrations(number)
        registered = [r.user_id for r in registrations if r.status == REGISTERED]
        counts = Counts(len(registered), len(registrations) - len(registered))
        header = view.t("reminder", name=view.name(w), relative=relative)
        if late:
            header = header + Text(" ", " ") + view.t("reminder_late")
        parts = [header, view.summary(w)]
        if w.description:
            parts.append(Text.raw(w.description))
        if registered:
            parts.append(view.t("reminder_registered", count=len(registered),
                                people=Text.join((Text.mention(u) for u in registered), ", ")))
        full = w.capacity is not None and counts.registered >= w.capacity
        parts.append(view.t("reminder_full" if full else "reminder_rsvp",
                            rsvp=view.call("rsvp", str(number)),
                            ics=view.call("workshop", str(number), view.words["ics"])))
        return Reply(Text.join(parts, "\n\n"), mentions=tuple(registered))
