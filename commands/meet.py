"""NExT-to-meet-you: the recurring dates, their reminders, and pairing members who want to meet.

Members: `!treffen` shows the next three dates with the link; `!treffen mitmachen` opts in to
be paired, `!treffen aussetzen` opts out, `!treffen pause 4` pauses for four weeks. In the room
the bot made for a pair or trio, `!getroffen ja|nein` tells it whether they met (only the
count is kept); so does a 👍 or 👎 on the bot's question there.

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

The feature's other modules: `meet_rule` (reading and checking the rule), `meet_schedule`
(the settings, the dates the rule gives, how a date is written out), `meet_reminders` (the
scheduler's sources: `MeetReminders` before each date, into every room where `meet_reminders`
is on, and `MeetFollowUps` after a date, into each pair's room: did you meet?) and
`meet_pairing` (a date's pairing round and the introduction in each group's room).
The pairing itself runs in `bot/matrix/pairing_rooms.py`, which calls `pair_due_round`
and then makes the rooms; the algorithm is `commands/pairing.py`.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta

from babel.dates import format_timedelta

from commands import room_settings
from commands.dates import (
    MAX_YEARS_AHEAD,
    Day,
    WhenError,
    format_when,
    latest_start_day,
    offset_label,
    parse_duration,
    parse_when_value,
)
from commands.feature import Feature
from commands.framework import (
    Arg,
    Context,
    Level,
    Reply,
    Request,
    Router,
    Services,
    UserError,
    lookup,
)
from commands.i18n import Text, locale_of
from commands.links import link, normalize_link
from commands.meet_pairing import STATE_EVENT, introduction, pair_due_round, room_name
from commands.meet_reminders import MeetFollowUps, MeetReminders
from commands.meet_rule import (
    DEFAULT_RULE,
    RuleError,
    parse_rule,
    parse_start_time,
    rule_dates,
    rule_problem,
    start_time_of,
)
from commands.meet_schedule import (
    MeetConfig,
    Meeting,
    MeetSettings,
    View,
    current_schedule,
    meeting_on,
    meetings_between,
    next_meetings,
)
from commands.schedule import local_time
from storage import meet as meet_storage
from storage.database import moment, utc_ms
from storage.meet import MET_KEYS, ScheduleOverride
from storage.schema import Schema
from storage.text import fold

# The feature's entry: what the runtime and the bot's pairing rooms take from here.
__all__ = ["STATE_EVENT", "MeetConfig", "MeetFollowUps", "MeetReminders", "introduction",
           "pair_due_round", "room_name", "router"]

router = Router("meet")
router.room_setting(room_settings.Setting("meet_reminders", "treffen_erinnerungen", "switch"))

SHOWN_DATES = 3
MAX_PAUSE_WEEKS = 52
_CLOCK = re.compile(r"\d{1,2}[:.]\d{2}(?::\d{2})?")  # a word that is meant as a time of day

ANSWERS = {"yes": ("yes", "ja", "y", "j"), "no": ("no", "nein", "n")}


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


@router.reaction(*MET_KEYS, answered=False)
async def _met_by_reaction(request: Request, services: Services, post: str,
                           key: str) -> list[Reply]:
    """A member's 👍 or 👎 on the bot's question after a date, in the group's room: counted
    like `!getroffen ja` or `!getroffen nein` (a later answer replaces an earlier one). Nothing
    is said: the tap shows on the question itself."""
    found = await services.storage.meet.group_of_follow_up(post)
    if found is None or found[1] != request.room_id:
        return []  # a 👍 on any other message
    command = services.registry.find_key("met")
    if command is None:
        return []
    answer = "yes" if key == MET_KEYS[0] else "no"
    await met(Context(request, services, command), ANSWERS[answer][0])
    return []


FEATURE = Feature(
    "meet", router,
    needs=("experts",),  # pairs and introduces members by their profiles
    schema=Schema("meet", meet_storage.MIGRATIONS,
                  repositories={"meet": meet_storage.MeetRepository},
                  member_data=meet_storage.MEMBER_DATA,
                  move_room=meet_storage.move_room,
                  when_sent={meet_storage.FOLLOW_UP: meet_storage.record_follow_up}),
    section=("meet", MeetSettings),
    configure=lambda settings: MeetConfig.create(
        **settings.meet.model_dump(exclude={"rooms", "encrypt_rooms"}),
        timezone=settings.bot.timezone),
    switched_on=lambda settings: {"meet_reminders": frozenset(settings.meet.rooms)},
    sources=lambda services: [MeetReminders(services), MeetFollowUps(services)])
