"""Workshops ("Werkstätten"): dates members can find, sign up for, and put in their calendar.

Members: `!werkstätten [community oder stichwörter]` lists the next ones, `!werkstatt 12` shows
one, `!werkstatt 12 ics` posts a calendar file, `!anmelden 12` signs up (a waiting list when
full), `!abmelden 12` withdraws; whoever moves up from the waiting list is told by direct
message.

Moderators of a room add workshops there, and edit or cancel them, in one line:

    !werkstatt neu 03.12.2026 10:00-12:00 KI in der Verwaltung ort=Rathaus Wiesbaden plätze=20
    !werkstatt ändern 12 plätze=30 link=https://meet.example.org/ki
    !werkstatt absagen 12 Referentin erkrankt

Each of these is a subcommand of `!werkstatt`, declared below with its level; members also
write the number first (`!werkstatt 12 ics`, `!werkstatt 12 ändern …`), which the command's own
handler passes on to the subcommand. Cancelling tells everyone registered or waiting by
direct message.

The feature's other modules: `workshop_view` (the settings, how a workshop is written out,
the calendar file), `workshop_spec` (reading a moderator's `key=value` line) and
`workshop_reminders` (the scheduler's source of reminders).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import groupby

from commands.dates import When, WhenError, format_when, parse_head, resolve
from commands.feature import Feature
from commands.framework import (
    Arg,
    Attachment,
    Context,
    Level,
    Reply,
    Request,
    Router,
    Services,
    UserError,
    as_replies,
    one_line,
)
from commands.i18n import Text
from commands.room_settings import Setting
from commands.workshop_reminders import WorkshopReminders
from commands.workshop_spec import (
    MAX_LENGTH,
    checked_value,
    key_list,
    parse_number,
    read_changes,
    read_spec,
    unquote,
    when_error,
)
from commands.workshop_view import View, WorkshopConfig, WorkshopSettings, calendar_file
from storage import workshops as workshops_storage
from storage.member_data import Erasure
from storage.schema import Schema
from storage.text import STOPWORDS, tokens
from storage.workshops import (
    REGISTERED,
    SIGN_UP_KEY,
    WAITING,
    WORKSHOP_POST,
    Counts,
    Registration,
    Workshop,
)

# The feature's entry: what the runtime, the importer and the benchmarks take from here.
__all__ = ["FEATURE", "MAX_LENGTH", "WorkshopConfig", "WorkshopReminders", "router"]

router = Router("workshops")
router.room_setting(Setting("workshop_reminders", "werkstatt_erinnerungen", "switch",
                            default_on=True))

LIST_LIMIT = 10
NUMBER = Arg("workshop_number")
# The keys a moderator may give when adding or editing, in the order hints list them.
_KEYS = ("title", "location", "url", "capacity", "community", "description", "date", "time",
         "start", "end", "duration")


async def _schedule_changed(services: Services) -> None:
    """Tell the scheduler (where one runs) that the reminders must be planned anew."""
    notify = services.schedule_changed
    if notify is not None:
        await notify(WorkshopReminders.name)


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
    number = view.placeholder("workshop_number")
    parts = [header, Text.join(lines)]
    if len(found) > len(shown):
        parts.append(view.t("list_more", more=len(found) - len(shown),
                            example=view.call("workshops", "KI")))
    parts.append(view.t("list_footer", show=view.call("workshop", number),
                        rsvp=view.call("rsvp", number),
                        ics=view.call_number_first("ics", number)))
    return Text.join(parts, "\n\n")


# -- !workshop ----------------------------------------------------------------------------------


@router.command("workshop", "werkstatt",
                args=[Arg("workshop_line", rest=True, optional=True)])
async def workshop(ctx: Context, workshop_line: str | None = None) -> Text | Reply | list[Reply]:
    """`!werkstatt 12` shows a workshop; `!werkstatt 12 <subcommand> …` (the number first) runs
    the subcommand on it, as `!werkstatt <subcommand> 12 …` would."""
    text = (workshop_line or "").strip()
    if not text:
        raise _usage(ctx)
    first, rest = _first_word(text)
    number = parse_number(first)
    if number is None and first.lower() in ("nr", "nr.", "no", "no.", "#") and rest:
        number_word, rest = _first_word(rest)
        number = parse_number(number_word)
    if number is None:
        raise ctx.unknown_subcommand(first)
    if not rest:
        return await _show(ctx, number)
    word, after = _first_word(rest)
    sub = ctx.command.subcommand(word)
    if sub is not None and sub.args[:1] != (NUMBER,):  # `!werkstatt 12 neu`: no number there
        raise _usage(ctx)
    return await ctx.run_subcommand(word, f"{number} {after}".strip())


def _first_word(text: str) -> tuple[str, str]:
    first, *rest = text.split(maxsplit=1) or [""]
    return first, rest[0].strip() if rest else ""


@router.subcommand("workshop", "show", "anzeigen",
                   aliases=["details", "detail", "info", "zeigen", "zeige"], args=[NUMBER])
async def show(ctx: Context, workshop_number: str) -> Reply:
    return await _show(ctx, _number(ctx, workshop_number))


@router.subcommand("workshop", "ics", "ics",
                   aliases=["ical", "icalendar", "kalender", "calendar", "cal", "termin"],
                   args=[NUMBER])
async def ics(ctx: Context, workshop_number: str) -> Reply:
    return await _ics(ctx, _number(ctx, workshop_number))


@router.subcommand("workshop", "rsvp", "anmelden",
                   aliases=["register", "join", "anmeldung", "teilnehmen"], args=[NUMBER])
async def rsvp_to_workshop(ctx: Context, workshop_number: str) -> Text | list[Reply]:
    return await _rsvp(ctx, _number(ctx, workshop_number))


@router.subcommand("workshop", "withdraw", "abmelden",
                   aliases=["unregister", "leave", "abmeldung"], args=[NUMBER])
async def withdraw_from_workshop(ctx: Context, workshop_number: str) -> Text | list[Reply]:
    return await _withdraw(ctx, _number(ctx, workshop_number))


def _usage(ctx: Context) -> UserError:
    """What `!werkstatt` does, for a line that says nothing more."""
    view = View(ctx.services, ctx.language)
    return UserError(
        "workshops.usage", list=view.call("workshops"), show=view.call("workshop", "12"),
        ics=view.call_number_first("ics", "12"), rsvp=view.call("rsvp", "12"),
        withdraw=view.call("withdraw", "12"), add=view.call("workshop.add", "…"),
        edit=view.call("workshop.edit", "12", f"{view.words['location']}=…"),
        cancel=view.call("workshop.cancel", "12"),
        participants=view.call_number_first("participants", "12"))


def _number(ctx: Context, text: str) -> int:
    """The workshop number the running (sub)command was given, or an answer asking for it."""
    number = parse_number(text)
    if number is None:
        raise UserError("workshops.number_needed", example=ctx.call(None, "12"),
                        list=ctx.call("workshops"))
    return number


async def _get(ctx: Context, number: int) -> Workshop:
    found = await ctx.services.storage.workshops.get(number)
    if found is None:
        raise UserError("workshops.not_found", number=number, list=ctx.call("workshops"))
    return found


async def _show(ctx: Context, number: int) -> Reply:
    view = View(ctx.services, ctx.language)
    w = await _get(ctx, number)
    repo = ctx.services.storage.workshops
    counts = await repo.counts(number)
    now = ctx.services.clock.now()
    mine = await repo.registration(number, ctx.sender)
    if w.cancelled:
        return Reply(_post(view, w, counts))
    if w.starts_at > now and mine is None:  # open for sign-up: a post of the workshop
        return Reply(_post(view, w, counts), record_as=(WORKSHOP_POST, str(number)))
    # The asker's own state: an answer to them, not a post (nobody signs up on it).
    parts = [view.t("title", title=w.title, number=number), view.summary(w, counts)]
    if w.description:
        parts.append(Text.raw(w.description))
    withdraw = view.call("withdraw", str(number))
    if w.starts_at <= now:
        parts.append(view.t("over_note" if w.ends_at <= now else "running_note"))
    elif mine is not None and mine.status == REGISTERED:
        parts.append(view.t("you_registered", withdraw=withdraw))
    elif mine is not None:
        parts.append(view.t("you_waiting", position=mine.position, withdraw=withdraw))
    parts.append(view.t("calendar_hint", ics=view.call_number_first("ics", str(number))))
    return Reply(Text.join(parts, "\n\n"))


def _post(view: View, w: Workshop, counts: Counts) -> Text:
    """A post of the workshop as everyone in the room reads it: shared, so no line about one
    member, and nothing that goes stale between the changes that edit it (`_current_posts`):
    the places say free or full, not how many."""
    title = view.t("title_cancelled" if w.cancelled else "title", title=w.title, number=w.number)
    parts = [title, view.summary(w, counts, current=True)]
    if w.description:
        parts.append(Text.raw(w.description))
    if w.cancelled:
        parts.append(view.t("is_cancelled_note"))
        return Text.join(parts, "\n\n")
    full = w.capacity is not None and counts.registered >= w.capacity
    parts.append(view.t("you_may_wait" if full else "you_may_register",
                        rsvp=view.call("rsvp", str(w.number)),
                        withdraw=view.call("withdraw", str(w.number))))
    parts.append(view.t("calendar_hint", ics=view.call_number_first("ics", str(w.number))))
    return Text.join(parts, "\n\n")


async def _current_posts(ctx: Context, number: int) -> list[Reply]:
    """Each of the bot's posts of the workshop edited to what is true now, in its room's
    language; under the workshop's `sequence`, so each version is sent once."""
    storage = ctx.services.storage
    w = await _get(ctx, number)
    counts = await storage.workshops.counts(number)
    edits = []
    for event_id, room in await storage.workshops.posts(number):
        language = await storage.rooms.language(room) or ctx.language
        edits.append(Reply(_post(View(ctx.services, language), w, counts), recipient=room,
                           edit_of=(event_id, w.sequence)))
    return edits


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
    return await _rsvp(ctx, _number(ctx, workshop_number))


@router.subcommand("rsvp", "cancel", "absagen",
                   aliases=["absage", "streichen", "withdraw", "unregister", "leave", "abmelden",
                            "abmeldung"],
                   args=[Arg("workshop_number", rest=True)])
async def rsvp_cancel(ctx: Context, workshop_number: str) -> Text | list[Reply]:
    """`!anmelden absagen 12`: as `!abmelden 12`."""
    return await _withdraw(ctx, _number(ctx, workshop_number))


@router.command("withdraw", "abmelden", args=[Arg("workshop_number", rest=True)])
async def withdraw(ctx: Context, workshop_number: str) -> Text | list[Reply]:
    return await _withdraw(ctx, _number(ctx, workshop_number))


def _open_for_changes(ctx: Context, w: Workshop) -> None:
    if w.cancelled:
        raise UserError("workshops.is_cancelled", number=w.number)
    if w.starts_at <= ctx.services.clock.now():
        raise UserError("workshops.started", number=w.number)


async def _rsvp(ctx: Context, number: int) -> Text | list[Reply]:
    view = View(ctx.services, ctx.language)
    w = await _get(ctx, number)
    _open_for_changes(ctx, w)
    signup = await ctx.services.storage.workshops.register(number, ctx.sender,
                                                           ctx.services.clock.now())
    registration = signup.registration
    withdraw_call = view.call("withdraw", str(number))
    ics = view.call_number_first("ics", str(number))
    if registration.status == REGISTERED:
        key = "rsvp_registered" if signup.new else "rsvp_already"
        answer = view.t(key, name=view.name(w), when=view.when(w), where=view.where(w),
                        withdraw=withdraw_call, ics=ics)
    else:
        key = "rsvp_waiting" if signup.new else "rsvp_already_waiting"
        answer = view.t(key, name=view.name(w), position=registration.position,
                        withdraw=withdraw_call)
    if signup.filled:  # the last place: the posts say "ausgebucht" now
        return [Reply(answer), *await _current_posts(ctx, number)]
    return answer


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
    edits = await _current_posts(ctx, number) if result.freed else []
    return [Reply(view.t(key, name=view.name(w))), *_moved_up(view, w, result.promoted), *edits]


def _moved_up(view: View, w: Workshop, promoted: list[Registration]) -> list[Reply]:
    """A direct message to each member who moved up from the waiting list."""
    return [Reply(view.t("moved_up", name=view.name(w), when=view.when(w),
                         where=view.where(w),
                         withdraw=view.call("withdraw", str(w.number))),
                  direct=True, recipient=r.user_id)
            for r in promoted]


@router.after_erasure
async def _tell_moved_up(ctx: Context, erased: Erasure) -> list[Reply]:
    """Whoever moved up into a place a deleted member left is told, as after `!abmelden`."""
    view = View(ctx.services, ctx.language)
    replies: list[Reply] = []
    promoted = erased.follow_up.get("workshop_registrations.user_id", [])
    for number, moved in groupby(promoted, key=lambda r: r.workshop):
        workshop = await ctx.services.storage.workshops.get(number)
        if workshop is not None:
            replies += _moved_up(view, workshop, list(moved))
    return replies


# -- moderators ---------------------------------------------------------------------------------
# Room moderation is the level of each of these subcommands, checked before it runs; a
# workshop of another room, or one for the whole network, also needs `_require_moderator`.


async def _require_moderator(ctx: Context, w: Workshop) -> None:
    """Room moderators add workshops to their room (listed only there) and manage that room's
    own; a workshop shown network-wide, or without a room, is the network moderators'."""
    if w.room_id == ctx.room_id and not w.network_wide:
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
    return view.call("workshop.add", args)


@router.subcommand("workshop", "add", "neu",
                   aliases=["new", "create", "anlegen", "erstellen", "hinzufügen", "eintragen"],
                   args=[Arg("workshop_spec", rest=True, optional=True)],
                   level=Level.ROOM_MODERATOR)
async def add(ctx: Context, workshop_spec: str | None = None) -> Reply:
    view = View(ctx.services, ctx.language)
    now = ctx.services.clock.now()
    example = _example_add(view, now)
    text = workshop_spec or ""
    if not text.strip():
        raise UserError("workshops.add_usage", example=example,
                        keys=key_list(view, ("location", "url", "capacity", "community",
                                             "description")))
    spec = read_spec(view, text, _KEYS)
    try:
        head_when, title = parse_head(spec.head)
    except WhenError as error:
        raise when_error(error, example) from None
    changes = read_changes(view, spec.fields, example)
    title = changes.values.pop("title", None) or one_line(unquote(title))
    try:
        start, end = resolve(head_when.merged(changes.when), changes.duration, now,
                             view.config.timezone)
    except WhenError as error:
        raise when_error(error, example) from None
    if start <= now:
        raise UserError("workshops.when.past", when=format_when(start, end, ctx.language,
                                                                 view.config.timezone,
                                                                 ctx.services.catalog))
    if not title:
        raise UserError("workshops.no_title", example=example)
    checked_value(view, "title", "title", title)  # length
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
                   ics=view.call_number_first("ics", number),
                   edit=view.call("workshop.edit", number, f"{view.words['capacity']}=30"),
                   cancel=view.call("workshop.cancel", number))
    return Reply(added, record_as=(WORKSHOP_POST, str(stored.number)))


@router.subcommand("workshop", "edit", "ändern",
                   aliases=["change", "update", "ändere", "bearbeiten", "korrigieren"],
                   args=[NUMBER, Arg("workshop_changes", rest=True, optional=True)],
                   level=Level.ROOM_MODERATOR)
async def edit(ctx: Context, workshop_number: str,
               workshop_changes: str | None = None) -> Text | list[Reply]:
    number = _number(ctx, workshop_number)
    view = View(ctx.services, ctx.language)
    w = await _get(ctx, number)
    await _require_moderator(ctx, w)
    now = ctx.services.clock.now()
    example = view.call("workshop.edit", str(number), f"{view.words['location']}=Rathaus",
                        f"{view.words['capacity']}=30")
    if w.cancelled:
        raise UserError("workshops.is_cancelled", number=number)
    if w.ends_at <= now:
        raise UserError("workshops.over", number=number)
    spec = read_spec(view, workshop_changes or "", _KEYS)
    if not spec.head and not spec.fields:
        raise UserError("workshops.edit_nothing", example=example, keys=key_list(view, _KEYS))
    try:
        head_when, rest = parse_head(spec.head)
    except WhenError as error:
        raise when_error(error, example) from None
    if rest:  # only a new time may stand without a key
        raise UserError("workshops.edit_nothing", example=example, keys=key_list(view, _KEYS))
    changes = read_changes(view, spec.fields, example)
    updated = replace(w, **changes.values)
    if head_when != When() or changes.times_given:
        try:
            start, end = resolve(head_when.merged(changes.when), changes.duration, now,
                                 view.config.timezone, (w.starts_at, w.ends_at))
        except WhenError as error:
            raise when_error(error, example) from None
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
    return replies + await _current_posts(ctx, number)


def _same(a: Workshop, b: Workshop) -> bool:
    keys = ("title", "community", "location", "url", "description", "capacity")
    return (all(getattr(a, k) == getattr(b, k) for k in keys)
            and a.starts_at == b.starts_at and a.ends_at == b.ends_at)


def _moved(a: Workshop, b: Workshop) -> bool:
    """Whether what a participant plans around changed: the time, the place or the link."""
    return (a.starts_at != b.starts_at or a.ends_at != b.ends_at or a.location != b.location
            or a.url != b.url)


@router.subcommand("workshop", "cancel", "absagen", aliases=["absage", "streichen"],
                   args=[NUMBER, Arg("cancel_reason", rest=True, optional=True)],
                   level=Level.ROOM_MODERATOR)
async def cancel(ctx: Context, workshop_number: str,
                 cancel_reason: str | None = None) -> list[Reply]:
    number = _number(ctx, workshop_number)
    view = View(ctx.services, ctx.language)
    w = await _get(ctx, number)
    await _require_moderator(ctx, w)
    if w.cancelled:
        raise UserError("workshops.already_cancelled", number=number)
    now = ctx.services.clock.now()
    if w.ends_at <= now:
        raise UserError("workshops.over", number=number)
    reason = one_line(cancel_reason or "")
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
    # The posts say "abgesagt" first, then the room reads the confirmation.
    return [*await _current_posts(ctx, number), Reply(confirm), *replies]


@router.subcommand("workshop", "participants", "teilnehmende",
                   aliases=["attendees", "list", "teilnehmer", "teilnehmerinnen", "anmeldungen",
                            "liste"],
                   args=[NUMBER], level=Level.ROOM_MODERATOR)
async def participants(ctx: Context, workshop_number: str) -> list[Reply]:
    number = _number(ctx, workshop_number)
    view = View(ctx.services, ctx.language)
    w = await _get(ctx, number)
    await _require_moderator(ctx, w)
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



# -- signing up with one tap --------------------------------------------------------------------
# A member's ✅ on the bot's post of a workshop (recorded when sent, with the bot's own first ✅:
# `storage/workshops.py` record_post) signs them up with the rules of `!anmelden`; taking it
# away withdraws them as `!abmelden` does. Whoever reacted is answered by direct message, so the
# room stays calm. A member signs up and withdraws only themselves: a redaction withdraws only
# the one whose ✅ it removes, and only when they removed it themselves.


@router.reaction(SIGN_UP_KEY, "")  # "": a ✅ queued before the inbox kept a reaction's key
async def _sign_up_by_reaction(request: Request, services: Services, post: str,
                               key: str) -> list[Reply]:
    repo = services.storage.workshops
    number = await repo.workshop_of_post(post)
    if number is None:
        return []  # a ✅ on any other message

    async def sign_up(ctx: Context) -> Text | list[Reply]:
        answer = await _rsvp(ctx, number)
        await repo.add_reaction(request.event_id, number, request.sender)
        return answer

    return await _by_reaction(request, services, "rsvp", sign_up)


@router.redaction
async def _withdraw_by_redaction(request: Request, services: Services,
                                 redacted: str) -> list[Reply]:
    repo = services.storage.workshops
    number = await repo.take_reaction(redacted, request.sender)
    if number is None or await repo.registration(number, request.sender) is None:
        return []  # not a sign-up's ✅, or withdrawn already (`!abmelden`): nothing to say
    return await _by_reaction(request, services, "withdraw", lambda ctx: _withdraw(ctx, number))


async def _by_reaction(request: Request, services: Services, command_key: str,
                       act: Callable[[Context], Awaitable[Text | list[Reply]]]) -> list[Reply]:
    """`act` with the rules (and the level) of the command `command_key`, answered by DM."""
    command = services.registry.find_key(command_key)
    if command is None:
        return []
    ctx = Context(request, services, command)
    try:
        answer = as_replies(await act(ctx))
    except UserError as error:
        answer = [Reply(ctx.t(error.key, **error.values))]
    # The answer goes to the member alone; whoever moved up is told as after `!abmelden`.
    # The edits of the workshop's posts (`edit_of`) go into their rooms.
    return [reply if reply.direct or reply.edit_of else replace(reply, direct=True)
            for reply in answer]


FEATURE = Feature(
    "workshops", router,
    schema=Schema("workshops", workshops_storage.MIGRATIONS,
                  repositories={"workshops": workshops_storage.WorkshopRepository},
                  member_data=workshops_storage.MEMBER_DATA,
                  move_room=workshops_storage.move_room,
                  when_sent={workshops_storage.WORKSHOP_POST: workshops_storage.record_post}),
    section=("workshops", WorkshopSettings),
    configure=lambda settings: WorkshopConfig.create(settings.workshops.reminders,
                                                     settings.workshops.rooms,
                                                     settings.bot.timezone),
    sources=lambda services: [WorkshopReminders(services)])
