"""The member register and join announcements: "Wiesbaden ist dem Netzwerk beigetreten".

Members: `!kommunen` shows the latest joins, the count and a short statistic by state;
`!kommunen Hessen` those of one state; `!kommune Wiesbaden` one member.
Moderators: `!kommune neu Wiesbaden land=Hessen ags=06414000 art=Stadt` registers a join (it
is announced); admins: `!kommune entfernen Wiesbaden`. Keys in German or English (`state=`,
`kind=`, `website=`, `joined=` …). New members also come from the operators' CSV import
(`bot/importers/municipalities.py`) and the network's published member list
(`bot/importers/feed.py`).

`JoinAnnouncements` is the scheduler's source of announcements: each join registered to be
announced is posted once into every room that wants announcements (`[announcements] rooms` plus
rooms switched on with `!einstellungen setzen ankündigungen an`), `ANNOUNCE_DELAY` after it was
registered, in the room's language, from the room's template (`ankündigung`) or the default.
Joins registered together (one feed poll, one import) make one digest post per room; the
digest records every (member, room) pair it holds, so none is announced twice.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from itertools import groupby
from typing import Any

from babel.dates import format_date
from pydantic import Field, field_validator

from commands import room_settings
from commands.config_fields import RoomId, Section, check_http_url
from commands.feature import Feature
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
    one_line,
)
from commands.i18n import Catalog, Text
from commands.schedule import Occurrence
from commands.templates import JOIN_ANNOUNCEMENT
from storage import municipalities as municipalities_storage
from storage.municipalities import (
    KINDS,
    MAX_LENGTH,
    AgsError,
    Member,
    normalize_ags,
    normalize_kind,
    normalize_website,
)
from storage.schema import Schema
from storage.text import STATES, normalize_state

router = Router("municipalities")
# Room settings: the switch for these announcements in a room, and their text there.
ANNOUNCEMENTS = room_settings.Setting("announcements", "ankündigungen", "switch")
router.room_setting(ANNOUNCEMENTS, room_settings.Setting(
    "announcement", "ankündigung", "text", check=JOIN_ANNOUNCEMENT.check))


class AnnouncementSettings(Section):
    # Rooms (ids) where joins of new members are announced, unless their moderators switch
    # announcements off; moderators of other rooms can switch them on.
    rooms: list[RoomId] = Field(default_factory=list)
    # The member list the network publishes (CSV with the import's header, or JSON); empty:
    # none, members come from moderators and imports only.
    feed_url: str | None = None
    # How often the feed is fetched (a conditional request: unchanged costs little).
    poll_minutes: float = Field(default=15, gt=0, le=24 * 60)

    @field_validator("feed_url")
    @classmethod
    def _feed_url_valid(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        return check_http_url(value)

SOURCE_NAME = "municipalities"
# A join is announced this long after it was registered: the scheduler plans it in the future.
ANNOUNCE_DELAY = timedelta(seconds=3)
# A join missed while the bot was down is still news for a week.
ANNOUNCE_GRACE = timedelta(days=7)
LATEST_SHOWN = 8
STATE_SHOWN = 40

FIELDS = {
    "state": ("state", "land", "bundesland"),
    "ags": ("ags", "schluessel", "gemeindeschluessel", "key"),
    "kind": ("kind", "art", "typ", "type"),
    "website": ("website", "webseite", "web", "url", "link", "homepage"),
    "joined": ("joined", "joinedon", "beigetreten", "beitritt", "seit", "since", "datum", "date"),
}
FIELD_WORDS = {
    "de": {"state": "land", "ags": "ags", "kind": "art", "website": "web", "joined": "seit"},
    "en": {"state": "state", "ags": "ags", "kind": "kind", "website": "website",
           "joined": "joined"},
}
_KEY = re.compile(r"(?:(?<=\s)|^)([^\W\d_][^\W_]*)\s*=\s*")
_GERMAN_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$")


async def _schedule_changed(services: Services) -> None:
    notify = services.schedule_changed
    if notify is not None:
        await notify(SOURCE_NAME)


def _now_ms(services: Services) -> int:
    return int(services.clock.now().timestamp() * 1000)


# -- words and values ---------------------------------------------------------------------------


def parse_date(text: str) -> date:
    """`2026-11-26` or `26.11.2026`; ValueError for anything else."""
    value = text.strip()
    found = _GERMAN_DATE.match(value)
    if found:
        return date(int(found.group(3)), int(found.group(2)), int(found.group(1)))
    return date.fromisoformat(value)


def split_fields(text: str) -> tuple[str, list[tuple[str | None, str, str]]]:
    """`Wiesbaden land=Hessen ags=06414000` → the name and (field or None, key as typed,
    value) per key; a value runs to the next key."""
    cuts = [(m.start(), m.end(), m.group(1)) for m in _KEY.finditer(text)]
    head = text[:cuts[0][0]] if cuts else text
    fields = []
    for index, (_, value_start, key) in enumerate(cuts):
        value_end = cuts[index + 1][0] if index + 1 < len(cuts) else len(text)
        fields.append((lookup(FIELDS, key), key, text[value_start:value_end].strip()))
    return one_line(head), fields


def format_day(day: date, language: str) -> str:
    return format_date(day, format="medium", locale=language if language == "en" else "de")


class View:
    """Texts about the register in one language."""

    def __init__(self, services: Services, language: str) -> None:
        self.services = services
        self.language = language
        self.words = FIELD_WORDS.get(language, FIELD_WORDS["en"])

    def t(self, key: str, /, **values: Any) -> Text:
        return self.services.catalog.text(self.language, f"municipalities.{key}", **values)

    def call(self, command: str, *words: str) -> Text:
        return command_line(self.services, self.language, command, *words)

    def kind(self, kind: str) -> str:
        return self.services.catalog.template(self.language, f"municipalities.kinds.{kind}")

    def label(self, member: Member, state: bool = True) -> Text:
        """`Wiesbaden (Stadt, Hessen)`; the kind left out when it is `other`, the state when
        `state` is False (a list of one state's members)."""
        details = [self.kind(member.kind)] if member.kind != "other" else []
        details += [member.state] if state else []
        if not details:
            return Text.raw(member.name)
        return self.t("label", name=member.name, details=", ".join(details))

    def line(self, member: Member, state: bool = True) -> Text:
        label = self.label(member, state)
        if member.joined_on is None:
            return self.t("line", label=label)
        return self.t("line_since", label=label,
                      since=format_day(member.joined_on, self.language))

    def example_add(self) -> Text:
        w = self.words
        return self.call("municipality.add", "Wiesbaden", f"{w['state']}=Hessen",
                         f"{w['ags']}=06414000", f"{w['kind']}={self.kind('stadt')}")


# -- the commands ------------------------------------------------------------------------------


@router.command("municipalities", "kommunen", args=[Arg("municipality_state", rest=True,
                                                         optional=True)])
async def municipalities(ctx: Context, municipality_state: str | None = None) -> Text:
    view = View(ctx.services, ctx.language)
    text = one_line(municipality_state or "")
    if text:
        state = normalize_state(text)
        if state is None:
            raise UserError("municipalities.unknown_state", state=text, states=_states())
        return await _of_state(view, state)
    repo = ctx.services.storage.municipalities
    total = await repo.count()
    if not total:
        return view.t("none", add=view.call("municipality.add", "…"))
    lines = [view.t("title", count=total), view.t("latest_title")]
    lines += [view.line(m) for m in await repo.latest(LATEST_SHOWN)]
    by_state = await repo.count_by_state()
    lines.append(view.t("by_state", states=Text.join(
        (view.t("state_count", state=state, count=n) for state, n in by_state), " · ")))
    lines.append(view.t("hint", example=view.call("municipalities", by_state[0][0])))
    return Text.join(lines)


async def _of_state(view: View, state: str) -> Text:
    members = await view.services.storage.municipalities.of_state(state)
    if not members:
        return view.t("state_none", state=state)
    lines = [view.t("state_title", state=state, count=len(members))]
    lines += [view.line(m, state=False) for m in members[:STATE_SHOWN]]
    if len(members) > STATE_SHOWN:
        lines.append(view.t("state_more", more=len(members) - STATE_SHOWN))
    return Text.join(lines)


def _states() -> Text:
    return Text.raw(", ".join(name for name, _, _ in STATES))


@router.command("municipality", "kommune",
                args=[Arg("municipality_name", rest=True, optional=True)])
async def municipality(ctx: Context, municipality_name: str | None = None) -> Text:
    view = View(ctx.services, ctx.language)
    text = (municipality_name or "").strip()
    if not text:
        raise _usage(view)
    return await _show(ctx, view, text)


@router.subcommand("municipality", "add", "neu",
                   aliases=["new", "hinzufügen", "anlegen", "eintragen", "aufnehmen"],
                   args=[Arg("municipality_entry", rest=True, optional=True)],
                   level=Level.NETWORK_MODERATOR)
async def add_member(ctx: Context, municipality_entry: str | None = None) -> Text:
    return await _add(ctx, View(ctx.services, ctx.language), (municipality_entry or "").strip())


@router.subcommand("municipality", "remove", "entfernen",
                   aliases=["delete", "löschen", "austragen"],
                   args=[Arg("municipality_name", rest=True, optional=True)],
                   level=Level.ADMIN)
async def remove_member(ctx: Context, municipality_name: str | None = None) -> Text:
    return await _remove(ctx, View(ctx.services, ctx.language), (municipality_name or "").strip())


def _usage(view: View) -> UserError:
    return UserError("municipalities.usage", list=view.call("municipalities"),
                     state=view.call("municipalities", "Hessen"),
                     show=view.call("municipality", "Wiesbaden"),
                     add=view.example_add(),
                     remove=view.call("municipality.remove", "Wiesbaden"))


async def _show(ctx: Context, view: View, text: str) -> Text:
    name, fields = split_fields(text)
    typo = _mistyped_subcommand(ctx, name, fields)
    if typo is not None and any(field != "state" for field, _, _ in fields):
        raise ctx.unknown_subcommand(typo)  # of the subcommands only `neu` takes other keys
    try:
        found = await _find(view, name, fields)
    except UserError as error:
        if typo is None or error.key != "municipalities.not_found":
            raise
        raise UserError("municipalities.not_found_suggest", name=name,
                        suggestions=Text.join((ctx.call(sub) for sub in
                                               ctx.command.closest_subcommands(typo)), ", "),
                        list=view.call("municipalities")) from None
    member = found[0]
    lines = [view.t("details_title", name=member.name),
             view.t("field", label=view.t("labels.kind"), value=view.kind(member.kind)),
             view.t("field", label=view.t("labels.state"), value=member.state)]
    if member.ags:
        lines.append(view.t("field", label=view.t("labels.ags"), value=member.ags))
    if member.joined_on:
        lines.append(view.t("field", label=view.t("labels.joined"),
                            value=format_day(member.joined_on, view.language)))
    if member.website:
        lines.append(view.t("field", label=view.t("labels.website"), value=member.website))
    return Text.join(lines)


def _mistyped_subcommand(ctx: Context, name: str,
                         fields: list[tuple[str | None, str, str]]) -> str | None:
    """The first word of `!kommune <name …>` where it looks like a mistyped subcommand
    (`!kommune nue Wiesbaden land=Hessen`): close to one, and more words follow."""
    first, _, more = name.partition(" ")
    if not (more.strip() or fields) or not ctx.command.closest_subcommands(first):
        return None
    return first


async def _find(view: View, name: str, fields: list[tuple[str | None, str, str]]
                ) -> list[Member]:
    """The one current member `name` (and `land=` if given) means; UserError otherwise."""
    if not name:
        raise _usage(view)
    state = None
    for field, key, value in fields:
        if field != "state":
            raise UserError("municipalities.unknown_key_find", field=Text.code(key),
                            state=Text.code(f"{view.words['state']}="))
        state = normalize_state(value)
        if state is None:
            raise UserError("municipalities.unknown_state", state=value, states=_states())
    found = await view.services.storage.municipalities.by_name(name)
    if state is not None:
        found = [m for m in found if m.state == state]
    if not found:
        raise UserError("municipalities.not_found", name=name, list=view.call("municipalities"))
    if len(found) > 1:
        raise UserError("municipalities.ambiguous", name=name, members=Text.join(
            (view.label(m) + (Text.raw(f" – AGS {m.ags}") if m.ags else Text("", ""))
             for m in found), "; "),
            example=view.call("municipality", name, f"{view.words['state']}={found[0].state}"))
    return found


async def _add(ctx: Context, view: View, text: str) -> Text:
    name, fields = split_fields(text)
    if not name:
        raise UserError("municipalities.add_usage", example=view.example_add())
    if len(name) > MAX_LENGTH["name"]:
        raise UserError("municipalities.too_long", limit=MAX_LENGTH["name"])
    values: dict[str, str] = {}
    for field, key, value in fields:
        if field is None:
            raise UserError("municipalities.unknown_key", field=Text.code(key), keys=Text.join(
                (Text.code(f"{view.words[f]}=") for f in FIELDS), ", "))
        values[field] = one_line(value)
    if not values.get("state"):
        raise UserError("municipalities.state_needed", example=view.example_add())
    state = normalize_state(values["state"])
    if state is None:
        raise UserError("municipalities.unknown_state", state=values["state"], states=_states())
    ags = None
    if values.get("ags"):
        try:
            ags = normalize_ags(values["ags"], state)
        except AgsError as error:
            raise UserError(f"municipalities.ags.{error.reason}", ags=values["ags"],
                            state=state, land=error.land or "") from None
    kind = "other"
    if values.get("kind"):
        kind = normalize_kind(values["kind"]) or ""
        if not kind:
            raise UserError("municipalities.unknown_kind", kind=values["kind"], kinds=Text.raw(
                ", ".join(view.kind(k) for k in KINDS)))
    website = None
    if values.get("website"):
        website = normalize_website(values["website"])
        if website is None or len(website) > MAX_LENGTH["website"]:
            raise UserError("municipalities.bad_website", example="https://www.wiesbaden.de")
    today = ctx.services.clock.now().date()
    joined = today
    if values.get("joined"):
        try:
            joined = parse_date(values["joined"])
        except ValueError:
            raise UserError("municipalities.bad_date", date=values["joined"]) from None
        if joined > today:
            raise UserError("municipalities.future_date", date=values["joined"])
    member = Member(name=name, state=state, kind=kind, ags=ags, joined_on=joined,
                    website=website, source="moderator", added_by=ctx.sender,
                    registered_at=_now_ms(ctx.services), announce=True)
    repo = ctx.services.storage.municipalities
    existing = await repo.find_same(member)
    if existing is not None and existing.removed_at is None:
        raise UserError("municipalities.already", label=view.label(existing))
    if existing is not None:  # removed before: back in the register
        await repo.restore(existing.id, member.registered_at, ctx.sender)
        member = replace(existing, registered_at=member.registered_at)
        key = "restored"
    else:
        member = await repo.add(member)
        key = "added"
    await _schedule_changed(ctx.services)
    rooms = await room_settings.rooms_switched_on(ctx.services, "announcements")
    parts = [view.t(key, label=view.label(member), count=await repo.count())]
    if rooms:
        parts.append(view.t("announced_in", rooms=len(rooms)))
    else:
        german = ctx.language == "de"
        parts.append(view.t("announced_nowhere", switch=ctx.call(
            "config.set", ANNOUNCEMENTS.name(ctx.language),
            "an" if german else "on")))
    return Text.join(parts, " ")


async def _remove(ctx: Context, view: View, text: str) -> Text:
    name, fields = split_fields(text)
    if not name:
        raise UserError("municipalities.remove_usage",
                        example=view.call("municipality.remove", "Wiesbaden"))
    [member] = await _find(view, name, fields)
    repo = ctx.services.storage.municipalities
    await repo.remove(member.id, _now_ms(ctx.services))
    await _schedule_changed(ctx.services)  # an announcement not yet posted no longer applies
    return view.t("removed", label=view.label(member), count=await repo.count())


# -- announcements -----------------------------------------------------------------------------


def pair_key(member_id: int, room_id: str) -> str:
    """The delivery key of one member's announcement in one room."""
    return f"{SOURCE_NAME}:{member_id}:{room_id}"


def announcement(catalog: Catalog, language: str, template: str | None, member: Member,
                 total: int) -> Text:
    """One join's text: the room's template, or the catalog's default."""
    kind = catalog.template(language, f"municipalities.kinds.{member.kind}")
    values = {"name": member.name, "state": member.state, "kind": kind, "total": total}
    if template is None:
        return catalog.text(language, "municipalities.announce.default", count=total, **values)
    return JOIN_ANNOUNCEMENT.fill(template, values)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class JoinAnnouncements:
    """The scheduler's source of join announcements (see `commands.schedule`).

    One occurrence per room and batch of joins registered together (same registration time),
    due `ANNOUNCE_DELAY` later. Its key is the first member's pair key (`pair_key`), it covers
    the others' pair keys, and its subject lists the member ids. Pairs already delivered are
    left out, so a room never gets a member twice, whatever the batches looked like.
    """

    name = SOURCE_NAME

    def __init__(self, services: Services) -> None:
        self.services = services

    async def occurrences(self, start: datetime, end: datetime) -> list[Occurrence]:
        storage = self.services.storage
        members = await storage.municipalities.to_announce(_ms(start - ANNOUNCE_DELAY),
                                                           _ms(end - ANNOUNCE_DELAY))
        if not members:
            return []
        found: list[Occurrence] = []
        for room in await room_settings.rooms_switched_on(self.services, "announcements"):
            pending = [m for m in members
                       if await storage.deliveries.get(pair_key(m.id, room)) is None]
            for registered_at, batch in groupby(pending, key=lambda m: m.registered_at):
                ids = [m.id for m in batch]
                due = (datetime.fromtimestamp(registered_at / 1000, start.tzinfo)
                       + ANNOUNCE_DELAY)
                found.append(Occurrence(
                    pair_key(ids[0], room), self.name, due, room,
                    subject=",".join(map(str, ids)),
                    covers=tuple(pair_key(i, room) for i in ids[1:]), grace=ANNOUNCE_GRACE))
        return sorted(found, key=lambda o: (o.due, o.key))

    async def render(self, occurrence: Occurrence, late: bool) -> Reply | None:
        # `late` does not matter: a join is news also a little later.
        storage = self.services.storage
        try:
            ids = [int(i) for i in occurrence.subject.split(",")]
        except ValueError:
            return None
        members = [m for m in await storage.municipalities.get_many(ids) if m.removed_at is None]
        if not members:
            return None
        room = occurrence.room_id
        language = await room_settings.language(self.services, room)
        template = await room_settings.setting(self.services, room, "announcement")
        catalog = self.services.catalog
        texts = [announcement(catalog, language, template, m,
                              await storage.municipalities.count_registered_until(m))
                 for m in members]
        if len(texts) == 1:
            return Reply(texts[0])
        title = catalog.text(language, "municipalities.announce.digest", count=len(texts))
        return Reply(Text.join([title, *texts], "\n\n"))


FEATURE = Feature(
    "municipalities", router,
    schema=Schema("municipalities", municipalities_storage.MIGRATIONS,
                  repositories={"municipalities": municipalities_storage.MunicipalityRepository},
                  member_data=municipalities_storage.MEMBER_DATA),
    section=("announcements", AnnouncementSettings),
    switched_on=lambda settings: {"announcements": frozenset(settings.announcements.rooms)},
    sources=lambda services: [JoinAnnouncements(services)])
