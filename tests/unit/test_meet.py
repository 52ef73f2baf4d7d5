"""NExT-to-meet-you: the rule across clock changes, cancelled and moved dates, commands,
reminders through the scheduler, pairing rounds, rooms made once, and the count of meetings."""

from __future__ import annotations

import asyncio
import json
import time as time_module
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.matrix.connection import RefusedError, TransientError
from bot.matrix.pairing_rooms import PairingRooms, after_rooms_synced, intro_txn_id
from bot.pipeline.scheduler import Scheduler
from bot.settings import ConfigError, _build
from commands import core, meet, meet_reminders, meet_rule, meet_schedule, room_settings
from commands.framework import Level, Registry, dispatch
from commands.schedule import local_time
from storage.experts import Profile
from tests.unit.fakes import ALICE, BOB, CATALOG, OTHER_ROOM, ROOM, make_services, request

BERLIN = ZoneInfo("Europe/Berlin")
CAROL, DAVE, EVE = "@carol:example.org", "@dave:example.org", "@eve:example.org"
BOT = "@nextbot:example.org"
LINK = "https://meet.example.org/next"


class Clock:
    def __init__(self, at: datetime) -> None:
        self.moment = at

    def now(self) -> datetime:
        return self.moment


def at(day: int, month: int, hour: int, minute: int = 0, year: int = 2026) -> datetime:
    return local_time(date(year, month, day), time(hour, minute), BERLIN)


def make(storage, now: datetime, rooms: tuple[str, ...] = (ROOM,), **config):
    services = make_services(storage, routers=[core.router, room_settings.router, meet.router])
    services.clock = Clock(now)
    services.configs["meet"] = meet.MeetConfig.create(**{"link": LINK, **config})
    services.configs["room_settings"] = room_settings.RoomDefaults(
        "de", switched_on={"meet_reminders": frozenset(rooms)})
    return services


async def say(services, body: str, level: Level = Level.MEMBER, sender: str = ALICE,
              room_id: str = ROOM, language: str = "de") -> str:
    replies = await dispatch(request(body, level, language=language, room_id=room_id,
                                     sender=sender), services)
    return "\n".join(r.text.plain for r in replies)


async def profile(storage, user_id: str, **fields) -> None:
    moment = datetime(2026, 1, 1, tzinfo=BERLIN)
    await storage.experts.save(Profile(user_id, consent_at=moment, updated_at=moment, **fields))


# -- the rule -------------------------------------------------------------------------------------


async def test_the_default_rule_is_the_second_thursday_at_noon_berlin_time(storage):
    services = make(storage, at(1, 1, 9))
    found = await meet_schedule.next_meetings(services, at(1, 1, 9), 4)
    assert [m.date for m in found] == [date(2026, 1, 8), date(2026, 2, 12), date(2026, 3, 12),
                                       date(2026, 4, 9)]
    assert all(m.starts_at.astimezone(BERLIN).time() == time(12) for m in found)
    assert all(m.ends_at - m.starts_at == timedelta(hours=1) for m in found)


@pytest.mark.parametrize(("first", "change", "after"), [
    (date(2026, 3, 22), date(2026, 3, 29), date(2026, 4, 5)),  # clocks go forward
    (date(2026, 10, 18), date(2026, 10, 25), date(2026, 11, 1)),  # clocks go back
])
async def test_noon_stays_noon_across_the_clock_changes(storage, first, change, after):
    services = make(storage, at(1, 3, 0), rule="FREQ=WEEKLY;BYDAY=SU")
    found = await meet_schedule.meetings_between(services, local_time(first, time(0), BERLIN),
                                        local_time(after, time(23), BERLIN))
    assert [m.date for m in found] == [first, change, after]
    assert [m.starts_at.astimezone(BERLIN).strftime("%H:%M") for m in found] == ["12:00"] * 3
    utc_hours = {m.starts_at.utcoffset() for m in found}
    assert len(utc_hours) == 2  # the same wall clock is two different UTC offsets


async def test_reminders_keep_the_wall_clock_across_the_clock_change(storage):
    services = make(storage, at(27, 3, 0), rule="FREQ=WEEKLY;BYDAY=SU")
    source = meet.MeetReminders(services)
    due = [o.due.astimezone(BERLIN) for o in await source.occurrences(at(28, 3, 0),
                                                                       at(29, 3, 13))]
    assert [d.strftime("%d.%m. %H:%M") for d in due] == ["28.03. 12:00", "29.03. 11:45"]
    elapsed = due[1].astimezone(UTC) - due[0].astimezone(UTC)
    assert elapsed == timedelta(hours=22, minutes=45)  # that night is an hour shorter


def test_rules_are_checked():
    assert meet_rule.parse_rule("RRULE:FREQ=MONTHLY;BYDAY=TH;BYSETPOS=2")
    assert meet_rule.rule_dates("DTSTART=20260108;FREQ=WEEKLY;INTERVAL=2", date(2026, 1, 1),
                           date(2026, 2, 1)) == [date(2026, 1, 8), date(2026, 1, 22)]
    for bad in ("FREQ=HOURLY", "FREQ=MINUTELY", "BYDAY=TH", "FREQ=WEEKLY;BYHOUR=12,13",
                "FREQ=WEEKLY;BYDAY=XX", "nonsense", "DTSTART=2026;FREQ=DAILY"):
        with pytest.raises(ValueError):
            meet_rule.parse_rule(bad)


# The forms calendars export: (rule, the first three dates from 1 January 2026, their start).
RULE_FORMS = [
    ("FREQ=MONTHLY;BYDAY=2TH", ["08.01.", "12.02.", "12.03."], "12:00"),  # ordinal weekday
    ("RRULE:FREQ=MONTHLY;BYDAY=+2TH", ["08.01.", "12.02.", "12.03."], "12:00"),
    ("FREQ=MONTHLY;BYDAY=-1FR", ["30.01.", "27.02.", "27.03."], "12:00"),  # last Friday
    ("FREQ=MONTHLY;BYDAY=FR;BYSETPOS=-1", ["30.01.", "27.02.", "27.03."], "12:00"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12;BYMINUTE=0", ["08.01.", "12.02.", "12.03."], "12:00"),
    ("freq=monthly;byday=-1fr;byhour=9;byminute=30", ["30.01.", "27.02.", "27.03."], "09:30"),
    ("FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU;BYHOUR=14", ["29.03.", "28.03.", "26.03."], "14:00"),
    ("DTSTART=20260113T081500;FREQ=WEEKLY;INTERVAL=2", ["13.01.", "27.01.", "10.02."], "08:15"),
    ("FREQ=MONTHLY;BYMONTHDAY=-1;UNTIL=20261231T225959Z", ["31.01.", "28.02.", "31.03."],
     "12:00"),
]


@pytest.mark.parametrize(("rule", "days", "start"), RULE_FORMS)
async def test_the_rule_forms_calendars_export(storage, rule, days, start):
    services = make(storage, at(1, 1, 0), rule=rule)
    found = await meet_schedule.next_meetings(services, at(1, 1, 0), 3)
    assert [m.date.strftime("%d.%m.") for m in found] == days
    assert {m.starts_at.astimezone(BERLIN).strftime("%H:%M") for m in found} == {start}


async def test_a_time_in_the_rule_stays_on_the_wall_clock_across_the_clock_change(storage):
    services = make(storage, at(1, 3, 0), rule="FREQ=WEEKLY;BYDAY=SU;BYHOUR=9;BYMINUTE=30")
    found = await meet_schedule.meetings_between(services, at(22, 3, 0), at(29, 3, 23))
    assert [m.starts_at.astimezone(BERLIN).strftime("%d.%m. %H:%M") for m in found] == [
        "22.03. 09:30", "29.03. 09:30"]
    assert found[0].starts_at.utcoffset() != found[1].starts_at.utcoffset()


def test_a_rule_time_and_a_configured_time_must_agree():
    rule = "FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12;BYMINUTE=0"
    assert meet.MeetConfig.create(rule=rule).start_time == time(12)
    assert meet.MeetConfig.create(rule=rule, start_time="12:00").start_time == time(12)
    assert meet.MeetConfig.create(rule="FREQ=WEEKLY", start_time="9:30").start_time == time(9, 30)
    with pytest.raises(meet_rule.RuleError) as caught:
        meet.MeetConfig.create(rule=rule, start_time="13:00")
    text = meet_rule.rule_problem(caught.value, CATALOG, "en").plain
    assert "12:00" in text and "13:00" in text and "BYHOUR=12;BYMINUTE=0" in text


# Each refusal and the reason it names (in English; the German is checked to exist).
REFUSED_RULES = [
    ("FREQ=MONTHLY;FOO=1", "unknown_part", "FOO is no part of an iCalendar rule"),
    ("FREQ=MONTHLY;BYDAY", "no_value", "BYDAY has no value"),
    ("FREQ=MONTHLY;FREQ=WEEKLY", "twice", "FREQ is in it twice"),
    ("BYDAY=2TH", "no_freq", "It lacks FREQ="),
    ("", "no_freq", "It lacks FREQ="),
    ("FREQ=FORTNIGHTLY", "bad_freq", "There is no FREQ=FORTNIGHTLY"),
    ("FREQ=HOURLY", "too_often", "FREQ=HOURLY would be more often than daily"),
    ("FREQ=MONTHLY;BYDAY=XX", "bad_weekday", "In BYDAY, XX is no weekday"),
    ("FREQ=MONTHLY;BYDAY=0TH", "bad_weekday", "In BYDAY, 0TH is no weekday"),
    ("FREQ=MONTHLY;BYDAY=6TH", "out_of_range_signed", "In BYDAY=6TH, 6TH is not between 1 and 5"),
    ("FREQ=WEEKLY;BYDAY=2TH", "ordinal_needs_month", "BYDAY=2TH counts weekdays"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYHOUR=25", "out_of_range",
     "In BYHOUR=25, 25 is not between 0 and 23"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12;BYMINUTE=60", "out_of_range",
     "In BYMINUTE=60, 60 is not between 0 and 59"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYHOUR=noon", "not_a_number", "In BYHOUR, NOON is not a whole"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYHOUR=9,15", "one_time", "a rule gives one time of day only"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYMINUTE=30", "minute_without_hour", "BYMINUTE without BYHOUR"),
    ("FREQ=MONTHLY;INTERVAL=2,3", "one_value", "INTERVAL takes one value"),
    ("FREQ=MONTHLY;BYMONTHDAY=32", "out_of_range_signed", "32 is not between 1 and 31"),
    ("FREQ=WEEKLY;WKST=XY", "bad_weekday", "In WKST, XY is no weekday"),
    ("FREQ=WEEKLY;UNTIL=2026", "bad_date", "UNTIL=2026 is no date"),
    ("DTSTART=20261301;FREQ=WEEKLY", "bad_date", "DTSTART=20261301 is no date"),
    ("DTSTART=18500101;FREQ=DAILY", "anchor_year", "the year must be between 2000 and 2100"),
    ("FREQ=WEEKLY;COUNT=3;UNTIL=20270101", "count_and_until", "COUNT and UNTIL together"),
    ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "never", "falls on no day at all"),
    ("FREQ=WEEKLY;" + "BYMONTH=1;" * 40, "too_long", "too long (at most 300 characters)"),
]


@pytest.mark.parametrize(("rule", "key", "reason"), REFUSED_RULES)
def test_every_refused_rule_names_its_reason(rule, key, reason):
    with pytest.raises(meet_rule.RuleError) as caught:
        meet_rule.parse_rule(rule)
    assert caught.value.key == key
    assert reason in meet_rule.rule_problem(caught.value, CATALOG, "en").plain
    assert CATALOG.has("de", f"meet.rule_problems.{key}")


def test_a_rule_the_calendar_library_cannot_read_is_refused_in_the_members_language(
        monkeypatch):
    """dateutil's own reason is English: the refusal names the rule's parts instead."""
    def unreadable(*args, **kwargs):
        raise ValueError("unsupported property: weird")

    monkeypatch.setattr(meet_rule, "rrulestr", unreadable)
    meet_rule.parse_rule.cache_clear()  # a rule read before would come from the cache
    with pytest.raises(meet_rule.RuleError) as caught:
        meet_rule.parse_rule("FREQ=MONTHLY;BYDAY=TH;BYSETPOS=3")
    german = meet_rule.rule_problem(caught.value, CATALOG, "de").plain
    assert "FREQ=MONTHLY;BYDAY=TH;BYSETPOS=3" in german and "ergeben zusammen keine" in german
    assert "unsupported" not in german


def test_a_rule_that_never_falls_on_a_day_is_refused_quickly():
    # dateutil would search to the year 9999 for its first date: seconds for a daily rule.
    started = time_module.perf_counter()
    with pytest.raises(meet_rule.RuleError):
        meet_rule.parse_rule("DTSTART=20260101;FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31")
    assert time_module.perf_counter() - started < 2
    # … while a rare one is found: 29 February on a Monday, next in 2044
    rule = meet_rule.parse_rule("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO")
    assert rule.dates.after(datetime(2026, 1, 1)) == datetime(2044, 2, 29)


def test_the_settings_validate_the_meet_section():
    base = {"matrix": {"homeserver": "https://m.example.org", "user_id": BOT, "password": "x"}}
    with pytest.raises(ConfigError) as caught:
        _build({**base, "meet": {"rule": "FREQ=HOURLY", "start_time": "25:00",
                                 "reminders": ["soon"], "link": "ftp://x", "rooms": ["#a:b"],
                                 "avoid_repeat_rounds": -1}})
    keys = {line.split(":")[0] for line in caught.value.problems}
    assert keys == {"meet.rule", "meet.start_time", "meet.reminders", "meet.link",
                    "meet.rooms[0]", "meet.avoid_repeat_rounds"}
    settings = _build({**base, "meet": {"rooms": ["!r:example.org"], "pairing_lead": "72h"}})
    assert settings.meet.pairing_lead == "3d" and settings.meet.rooms == ["!r:example.org"]


def test_the_settings_take_the_time_from_the_rule():
    base = {"matrix": {"homeserver": "https://m.example.org", "user_id": BOT, "password": "x"}}
    settings = _build({**base, "meet": {"rule": "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=9;BYMINUTE=30"}})
    assert settings.meet.start_time == "09:30"
    config = meet.MeetConfig.create(**settings.meet.model_dump(exclude={"rooms", "encrypt_rooms"}))
    assert config.start_time == time(9, 30)  # as the runtime builds it
    agreeing = _build({**base, "meet": {"rule": "FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12;BYMINUTE=0",
                                        "start_time": "12:00"}})
    assert agreeing.meet.start_time == "12:00"
    with pytest.raises(ConfigError) as caught:
        _build({**base, "meet": {"rule": "FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12;BYMINUTE=0",
                                 "start_time": "13:00"}})
    [line] = caught.value.problems
    assert line.startswith("meet.start_time: ")
    assert "BYHOUR=12;BYMINUTE=0: 12:00" in line and "13:00" in line


# -- showing, cancelling, moving -----------------------------------------------------------------


async def test_meet_shows_the_next_three_dates_in_german_with_the_link(storage):
    services = make(storage, at(1, 3, 9))
    text = await say(services, "!treffen")
    assert "Do., 12.03.2026, 12:00–13:00 Uhr" in text
    assert "Do., 09.04.2026, 12:00–13:00 Uhr" in text
    assert "Do., 14.05.2026, 12:00–13:00 Uhr" in text
    assert "11.06.2026" not in text
    assert LINK in text and "!treffen mitmachen" in text
    english = await say(services, "!meet", language="en")
    assert "Thu, 12 Mar 2026, 12:00–13:00" in english and "!meet join" in english


async def test_admins_cancel_and_move_single_dates(storage):
    services = make(storage, at(1, 3, 9))
    for level in (Level.MEMBER, Level.ROOM_MODERATOR):  # NExT-to-meet-you is the network's
        refused = await say(services, "!treffen absagen 12.03.", level)
        assert "Rolle Netzwerk-Moderation" in refused
    cancelled = await say(services, "!treffen absagen 12.03.", Level.NETWORK_MODERATOR)
    assert "Abgesagt" in cancelled and "12.03.2026" in cancelled
    dates = await say(services, "!treffen")
    assert "12.03.2026" not in dates and "11.06.2026" in dates

    moved = await say(services, "!treffen verschieben 09.04. 16.04. 13:00", Level.ADMIN)
    assert "Do., 16.04.2026, 13:00–14:00 Uhr" in moved
    dates = await say(services, "!treffen")
    assert "16.04.2026, 13:00–14:00 Uhr (verschoben)" in dates
    assert "09.04.2026" not in dates
    # the moved date keeps its key: the rule's date
    [april] = [m for m in await meet_schedule.next_meetings(services, at(1, 3, 9), 3)
               if m.date == date(2026, 4, 9)]
    assert april.moved and april.starts_at == at(16, 4, 13)

    assert "kein Termin" in await say(services, "!treffen absagen 13.03.", Level.ADMIN)
    assert "Vergangenheit" in await say(services, "!treffen verschieben 14.05. 01.02.2026",
                                        Level.ADMIN)
    assert "!treffen verschieben <termin> <neues datum und/oder uhrzeit>" in await say(
        services, "!treffen verschieben 14.05.", Level.ADMIN)


async def test_dates_at_the_edges_get_a_clear_answer(storage):
    services = make(storage, at(1, 3, 9))
    for command in ("!treffen verschieben 12.03. 31.12.9999 23:30",
                    "!treffen absagen 12.03.9999", "!treffen verschieben 12.03.9999 13.03.9999"):
        answer = await say(services, command, Level.ADMIN)
        assert "mehr als 5 Jahre in der Zukunft" in answer and "01.03.2031" in answer, command
    assert "31.12.9999 is more than 5 years ahead" in await say(
        services, "!meet move 12.03. 31.12.9999", Level.ADMIN, language="en")
    assert "01.01.0001 liegt in der Vergangenheit" in await say(
        services, "!treffen verschieben 12.03. 01.01.0001 00:30", Level.ADMIN)
    assert "Am 01.01.0001 ist kein Termin" in await say(services, "!treffen absagen 01.01.0001",
                                                        Level.ADMIN)
    assert await storage.meet.exceptions() == {}
    # five years ahead is the last day a date can be moved to
    moved = await say(services, "!treffen verschieben 12.03. 01.03.2031 12:00", Level.ADMIN)
    assert "Sa., 01.03.2031, 12:00–13:00 Uhr" in moved
    moved_meeting = await meet_schedule.meeting_on(services, "2026-03-12")
    assert moved_meeting.starts_at == at(1, 3, 12, year=2031)


async def test_cancelled_and_moved_dates_are_not_reminded_at_their_old_time(storage):
    services = make(storage, at(1, 3, 9))
    source = meet.MeetReminders(services)
    window = (at(1, 3, 9), at(30, 4, 0))
    before = {o.key for o in await source.occurrences(*window)}
    assert len(before) == 4  # two dates, two offsets, one room
    old = [o for o in await source.occurrences(*window) if o.subject == "2026-03-12"]
    await say(services, "!treffen absagen 12.03.", Level.ADMIN)
    await say(services, "!treffen verschieben 09.04. 10.04.", Level.ADMIN)
    after = await source.occurrences(*window)
    assert {o.subject for o in after} == {"2026-04-09"}
    assert {o.due for o in after} == {at(9, 4, 12), at(10, 4, 11, 45)}
    assert await source.render(old[0], late=False) is None  # cancelled since it was planned


async def test_admins_change_the_rule_and_the_link_and_go_back_to_the_configuration(storage):
    services = make(storage, at(1, 3, 9))
    assert "FREQ=MONTHLY;BYDAY=TH;BYSETPOS=2" in await say(services, "!treffen regel",
                                                            Level.ADMIN)
    changed = await say(services, "!treffen regel FREQ=WEEKLY;BYDAY=TU 09:30 45m", Level.ADMIN)
    assert "Di., 03.03.2026, 09:30–10:15 Uhr" in changed
    assert "Gespeichert" in await say(services, "!treffen link www.example.org/x", Level.ADMIN)
    assert "https://www.example.org/x" in await say(services, "!treffen")
    assert "öfter als täglich" in await say(services, "!treffen regel FREQ=SECONDLY",
                                             Level.ADMIN)
    assert "keinen Termin" in await say(
        services, "!treffen regel DTSTART=20240101;FREQ=YEARLY;UNTIL=20250101", Level.ADMIN)
    await say(services, "!treffen regel standard", Level.ADMIN)
    dates = await say(services, "!treffen")
    assert "Do., 12.03.2026, 12:00–13:00 Uhr" in dates
    assert "https://www.example.org/x" in dates  # the link stays changed
    await say(services, "!treffen link standard", Level.ADMIN)
    assert LINK in await say(services, "!treffen")


async def test_admins_set_a_rule_with_its_own_time(storage):
    services = make(storage, at(1, 3, 9))
    changed = await say(services, "!treffen regel FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12;BYMINUTE=0",
                        Level.ADMIN)
    assert "Gespeichert" in changed and "Do., 12.03.2026, 12:00–13:00 Uhr" in changed
    # the rule's time, and a duration alone
    changed = await say(services, "!treffen regel FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=9;BYMINUTE=30 2h",
                        Level.ADMIN)
    assert "Fr., 27.03.2026, 09:30–11:30 Uhr" in changed
    assert "09:30" in await say(services, "!treffen regel", Level.ADMIN)
    # a typed time that agrees is fine; one that contradicts is refused, naming both
    agreed = await say(services, "!treffen regel FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12 12:00 1h",
                       Level.ADMIN)
    assert "Do., 12.03.2026, 12:00–13:00 Uhr" in agreed
    refused = await say(services, "!treffen regel FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12 13:00",
                        Level.ADMIN)
    assert "BYHOUR=12: 12:00 Uhr" in refused and "13:00 Uhr" in refused
    assert "Do., 12.03.2026, 12:00–13:00 Uhr" in await say(services, "!treffen")  # unchanged
    # without a time in the rule, the typed one
    changed = await say(services, "!treffen regel FREQ=MONTHLY;BYDAY=FR;BYSETPOS=-1 17:00",
                        Level.ADMIN)
    assert "Fr., 27.03.2026, 17:00–18:00 Uhr" in changed


@pytest.mark.parametrize(("words", "german", "english"), [
    ("FREQ=MONTHLY;FOO=1", "FOO gibt es in einer iCalendar-Regel nicht",
     "FOO is no part of an iCalendar rule"),
    ("FREQ=MONTHLY;BYDAY=XX", "ist XX kein Wochentag", "XX is no weekday"),
    ("FREQ=WEEKLY;BYDAY=2TH", "braucht FREQ=MONTHLY oder FREQ=YEARLY", "needs FREQ=MONTHLY"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYHOUR=25", "liegt 25 nicht zwischen 0 und 23",
     "25 is not between 0 and 23"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYHOUR=9,15", "nur eine Uhrzeit am Tag", "one time of day only"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYMINUTE=5", "BYMINUTE ohne BYHOUR", "BYMINUTE without BYHOUR"),
    ("FREQ=MONTHLY;BYDAY=2TH;BYHOUR=12 13:00", "angegeben ist aber 13:00 Uhr",
     "but 13:00 is given too"),
    ("FREQ=MONTHLY;BYDAY=2TH 25:00", "„25:00“ ist keine Uhrzeit", "“25:00” is no time of day"),
    ("FREQ=MONTHLY;BYDAY=2TH 12:00 lang", "„lang“ ist keine Dauer", "“lang” is no duration"),
    ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=31", "auf keinen einzigen Tag", "on no day at all"),
])
async def test_a_refused_rule_command_names_the_reason(storage, words, german, english):
    services = make(storage, at(1, 3, 9))
    assert german in await say(services, f"!treffen regel {words}", Level.ADMIN)
    assert english in await say(services, f"!meet rule {words}", Level.ADMIN, language="en")
    assert await storage.meet.override() is None


# -- taking part ----------------------------------------------------------------------------------


async def test_join_leave_and_pause(storage):
    services = make(storage, at(1, 3, 9))
    joined = await say(services, "!treffen mitmachen")
    assert "dabei" in joined and "Expertenverzeichnis" in joined  # no profile yet
    assert "schon" in await say(services, "!treffen mitmachen")
    assert await storage.meet.active(0) == [ALICE]
    paused = await say(services, "!treffen pause 4")
    assert "29.03.2026" in paused
    now_ms = int(at(1, 3, 9).timestamp() * 1000)
    assert await storage.meet.active(now_ms) == []
    assert "pausierst" in await say(services, "!treffen")
    assert "dabei" in await say(services, "!treffen mitmachen")  # ends the pause
    assert await storage.meet.active(now_ms) == [ALICE]
    assert "nicht mehr" in await say(services, "!treffen aussetzen")
    assert "nicht mit" in await say(services, "!treffen aussetzen")
    assert await storage.meet.participant(ALICE) is None
    assert "Wochen" in await say(services, "!treffen pause viele")
    assert "Du pausierst eine Woche, bis" in await say(services, "!treffen pause 1")
    assert "Du pausierst 2 Wochen, bis" in await say(services, "!treffen pause 2")
    assert "kenne ich" in await say(services, "!treffen tanzen")


# -- reminders through the scheduler -------------------------------------------------------------


async def test_a_reminder_goes_once_into_each_room_where_it_is_on(storage):
    services = make(storage, at(11, 3, 11), rooms=(ROOM,))
    await room_settings.change(services, OTHER_ROOM, "meet_reminders", "on", ALICE)
    source = meet.MeetReminders(services)
    clock = services.clock
    scheduler = Scheduler(storage, [source], clock=clock, timezone=BERLIN,
                          grace=timedelta(hours=1), catalog=CATALOG, default_language="de",
                          on_queued=lambda room: None)
    occurrences = await source.occurrences(at(11, 3, 11), at(12, 3, 13))
    assert sorted(o.room_id for o in occurrences) == sorted([ROOM, OTHER_ROOM] * 2)
    clock.moment = at(11, 3, 12)
    statuses = [await scheduler.deliver(o) for o in occurrences if o.due == at(11, 3, 12)]
    assert statuses == ["sent", "sent"]
    assert [await scheduler.deliver(o) for o in occurrences if o.due == at(11, 3, 12)] == [
        "already", "already"]
    rows = await storage.db.fetchall("SELECT room_id, content FROM outbox ORDER BY seq")
    assert sorted(r[0] for r in rows) == sorted([ROOM, OTHER_ROOM])
    body = json.loads(rows[0][1])["body"]
    assert "Erinnerung: NExT-to-meet-you" in body and "in 1 Tag" in body
    assert "Do., 12.03.2026, 12:00–13:00 Uhr" in body and LINK in body
    # switched off by the moderators: no more reminders there
    await room_settings.change(services, ROOM, "meet_reminders", "off", ALICE)
    later = await source.occurrences(at(12, 3, 11), at(12, 3, 13))
    assert {o.room_id for o in later} == {OTHER_ROOM}


async def test_reminders_are_in_the_room_language(storage):
    services = make(storage, at(11, 3, 11))
    await room_settings.change(services, ROOM, "language", "en", ALICE)
    source = meet.MeetReminders(services)
    [occurrence] = [o for o in await source.occurrences(at(11, 3, 11), at(11, 3, 13))]
    reply = await source.render(occurrence, late=True)
    assert reply is not None
    assert "Reminder: NExT-to-meet-you" in reply.text.plain and "late" in reply.text.plain


# -- pairing --------------------------------------------------------------------------------------


async def join_all(services, *people: str) -> None:
    for person in people:
        await say(services, "!treffen mitmachen", sender=person)


async def test_a_round_is_paired_once_when_its_lead_time_has_come(storage):
    services = make(storage, at(8, 3, 11))
    await join_all(services, ALICE, BOB, CAROL, DAVE, EVE)
    assert await meet.pair_due_round(services) is None  # 12 March minus three days: not yet
    services.clock.moment = at(9, 3, 12)
    paired = await meet.pair_due_round(services)
    assert paired is not None and paired.key == "2026-03-12"
    assert await meet.pair_due_round(services) is None  # once
    groups = await storage.meet.groups("2026-03-12")
    assert sorted(len(g.members) for g in groups) == [2, 3]
    assert sorted(m for g in groups for m in g.members) == sorted([ALICE, BOB, CAROL, DAVE, EVE])
    round_ = await storage.meet.round("2026-03-12")
    assert round_ is not None and round_.participants == 5


async def test_the_pairing_is_deterministic_for_the_seed_and_avoids_recent_partners(storage):
    people = [f"@p{i}:example.org" for i in range(6)]
    services = make(storage, at(9, 3, 12), avoid_repeat_rounds=2)
    await join_all(services, *people)
    await meet.pair_due_round(services)
    first = {g.members for g in await storage.meet.groups("2026-03-12")}
    # the same seed and date on another database: the same pairs
    from commands.features import open_storage
    other = await open_storage(":memory:")
    try:
        twin = make(other, at(9, 3, 12), avoid_repeat_rounds=2)
        await join_all(twin, *reversed(people))
        await meet.pair_due_round(twin)
        assert {g.members for g in await other.meet.groups("2026-03-12")} == first
    finally:
        await other.close()
    services.clock.moment = at(6, 4, 12)
    await meet.pair_due_round(services)
    second = {g.members for g in await storage.meet.groups("2026-04-09")}
    assert not first & second
    recent = await storage.meet.recent_partners(2)
    assert all(len(partners) == 2 for partners in recent.values())


async def test_paused_members_and_cancelled_dates_are_not_paired(storage):
    services = make(storage, at(9, 3, 12))
    await join_all(services, ALICE, BOB, CAROL)
    await say(services, "!treffen pause 2", sender=CAROL)
    await meet.pair_due_round(services)
    [group] = await storage.meet.groups("2026-03-12")
    assert group.members == (ALICE, BOB)
    await say(services, "!treffen absagen 09.04.", Level.ADMIN)
    services.clock.moment = at(6, 4, 12)
    assert await meet.pair_due_round(services) is None


async def test_the_introduction_names_people_organisations_topics_date_and_link(storage):
    services = make(storage, at(9, 3, 12))
    await profile(storage, ALICE, display_name="Alice Amsel", organisation="Stadt Ulm",
                  level="kommune", state="Baden-Württemberg", topics=["KI", "OZG", "Radwege"])
    await profile(storage, BOB, display_name="Bob Buchfink", organisation="Land Hessen",
                  level="land", state="Hessen", topics=["ki", "Open Data", "OZG"])
    await join_all(services, ALICE, BOB)
    await meet.pair_due_round(services)
    [group] = await storage.meet.groups("2026-03-12")
    name, intro = await meet.introduction(services, group, "de")
    text = intro.text.plain
    assert name == "NExT-to-meet-you 12.03.2026"
    assert "Alice Amsel (Stadt Ulm, Kommune, Baden-Württemberg)" in text
    assert "Bob Buchfink (Land Hessen, Land, Hessen)" in text
    assert "Gemeinsame Themen: KI, OZG" in text
    assert "Do., 12.03.2026, 12:00–13:00 Uhr" in text and LINK in text
    assert set(intro.mentions) == {ALICE, BOB}
    assert "Radwege" not in text and "Open Data" not in text


async def test_people_without_a_profile_are_paired_without_details(storage):
    services = make(storage, at(9, 3, 12))
    await join_all(services, ALICE, BOB)
    await meet.pair_due_round(services)
    [group] = await storage.meet.groups("2026-03-12")
    _, intro = await meet.introduction(services, group, "en")
    assert "Hello you two" in intro.text.plain and ALICE in intro.text.plain
    assert "no shared topics" in intro.text.plain


# -- rooms for the groups (bot/matrix/pairing_rooms.py) with a fake homeserver -----------------


class FakeRooms:
    """Creates rooms like Synapse: an alias can be taken once. `lose_answer_of` makes the
    n-th creation succeed on the server but fail on the way back."""

    def __init__(self, lose_answer_of: int | None = None) -> None:
        self.created: list[dict] = []
        self.aliases: dict[str, str] = {}
        self.lose_answer_of = lose_answer_of

    async def create_room(self, *, name=None, topic=None, invite=(), is_direct=False,
                          initial_state=(), alias=None, encrypted=False) -> str:
        if alias is not None and f"#{alias}:example.org" in self.aliases:
            raise RefusedError("create room: M_ROOM_IN_USE")
        room_id = f"!pair{len(self.created) + 1}:example.org"
        self.created.append({"room_id": room_id, "name": name, "invite": list(invite),
                             "is_direct": is_direct, "state": list(initial_state),
                             "encrypted": encrypted})
        if alias is not None:
            self.aliases[f"#{alias}:example.org"] = room_id
        if self.lose_answer_of == len(self.created):
            raise TransientError("connection reset")
        return room_id

    async def resolve_alias(self, alias: str) -> str | None:
        return self.aliases.get(alias)

    async def state_events(self, room_id: str) -> list[dict]:
        [created] = [c for c in self.created if c["room_id"] == room_id]
        return [{"type": "m.room.create", "state_key": "", "sender": BOT, "content": {}},
                *({**event, "sender": BOT} for event in created["state"])]


async def test_each_group_gets_one_room_with_its_members_invited_and_the_introduction(storage):
    services = make(storage, at(9, 3, 12))
    await join_all(services, ALICE, BOB, CAROL, DAVE)
    rooms = FakeRooms()
    woken: list[str] = []
    worker = PairingRooms(services, rooms, BOT, "de", on_queued=woken.append, encrypt=True)
    assert await worker.tick() == 2
    assert await worker.tick() == 0  # nothing twice
    assert len(rooms.created) == 2
    groups = await storage.meet.groups("2026-03-12")
    for group, created in zip(groups, rooms.created, strict=True):
        assert sorted(created["invite"]) == list(group.members) and created["is_direct"]
        assert created["encrypted"]
        assert created["state"][0]["content"] == {"group": group.key}
        assert group.room_id == created["room_id"]
    outbox = await storage.db.fetchall("SELECT txn_id, room_id, content FROM outbox")
    assert {r[1] for r in outbox} == {c["room_id"] for c in rooms.created}
    assert {r[0] for r in outbox} == {intro_txn_id(g.key, 0) for g in groups}
    assert all("Kennenlern-Paar" in json.loads(r[2])["body"] for r in outbox)
    assert sorted(woken) == sorted(c["room_id"] for c in rooms.created)


async def test_a_room_whose_creation_answer_was_lost_is_found_again_not_made_twice(storage):
    services = make(storage, at(9, 3, 12))
    await join_all(services, ALICE, BOB, CAROL, DAVE)
    rooms = FakeRooms(lose_answer_of=2)
    worker = PairingRooms(services, rooms, BOT, "de", on_queued=lambda room: None)
    with pytest.raises(TransientError):
        await worker.tick()
    assert len(await storage.meet.groups(without_room=True)) == 1
    # a restart: a new worker on the same database and homeserver
    restarted = PairingRooms(services, rooms, BOT, "de", on_queued=lambda room: None)
    assert await restarted.tick() == 1
    assert len(rooms.created) == 2  # the second room was found by its alias
    groups = await storage.meet.groups("2026-03-12")
    assert sorted(g.room_id for g in groups) == ["!pair1:example.org", "!pair2:example.org"]
    assert await storage.outbox.count() == 2


async def test_without_aliases_the_room_is_made_anyway(storage):
    class NoAliases(FakeRooms):
        async def create_room(self, *, alias=None, **kwargs) -> str:
            if alias is not None:
                raise RefusedError("create room: M_FORBIDDEN")
            return await super().create_room(**kwargs)

    services = make(storage, at(9, 3, 12))
    await join_all(services, ALICE, BOB)
    rooms = NoAliases()
    assert await PairingRooms(services, rooms, BOT, "de", on_queued=lambda r: None).tick() == 1
    assert len(rooms.created) == 1


# -- after the date --------------------------------------------------------------------------------


async def paired_rooms(services, storage) -> list:
    await join_all(services, ALICE, BOB, CAROL, DAVE)
    await PairingRooms(services, FakeRooms(), BOT, "de", on_queued=lambda r: None).tick()
    return await storage.meet.groups("2026-03-12")


async def test_the_groups_are_asked_after_the_date_whether_they_met(storage):
    services = make(storage, at(9, 3, 12))
    groups = await paired_rooms(services, storage)
    source = meet.MeetFollowUps(services)
    found = await source.occurrences(at(12, 3, 0), at(13, 3, 0))
    assert sorted(o.room_id for o in found) == sorted(g.room_id for g in groups)
    assert {o.due for o in found} == {at(12, 3, 14)}  # an hour after the end
    assert all(o.grace == meet_reminders.ASK_GRACE for o in found)
    reply = await source.render(found[0], late=False)
    assert reply is not None and "!getroffen ja" in reply.text.plain


async def test_met_counts_only_in_a_pair_room_and_the_stats_show_the_share(storage):
    services = make(storage, at(9, 3, 12))
    groups = await paired_rooms(services, storage)
    services.clock.moment = at(12, 3, 15)
    assert "Raum eures" in await say(services, "!getroffen ja")
    assert "Wie schön" in await say(services, "!getroffen ja", room_id=groups[0].room_id)
    assert "nächsten Mal" in await say(services, "!getroffen nein", sender=CAROL,
                                       room_id=groups[1].room_id)
    assert "!getroffen" in await say(services, "!getroffen vielleicht",
                                     room_id=groups[1].room_id)  # usage
    assert "Netzwerk-Moderation" in await say(services, "!treffen statistik")
    stats = await say(services, "!treffen statistik", Level.ADMIN)
    assert "4 aktiv, 0 pausiert" in stats
    assert "12.03.2026: Teilnehmende 4, Gruppen 2, geantwortet 2, getroffen 1" in stats
    assert "(50 %)" in stats
    for person in (ALICE, BOB, CAROL, DAVE):
        assert person not in stats


async def test_members_of_old_rounds_are_forgotten_but_the_counts_stay(storage):
    services = make(storage, at(9, 3, 12), avoid_repeat_rounds=1)
    await join_all(services, ALICE, BOB)
    for moment in (at(9, 3, 12), at(6, 4, 12), at(11, 5, 12)):
        services.clock.moment = moment
        assert await meet.pair_due_round(services) is not None
    members = await storage.db.fetchall(
        "SELECT DISTINCT g.round FROM meet_group_members m JOIN meet_groups g "
        "ON g.key = m.group_key ORDER BY g.round")
    assert [r[0] for r in members] == ["2026-04-09", "2026-05-14"]
    assert (await storage.meet.totals())[:2] == (3, 3)


def test_the_commands_have_german_and_english_names():
    registry = Registry([meet.router])
    assert registry.find("treffen") is registry.find("meet")
    assert registry.find("getroffen") is registry.find("met")


# -- the subcommands, declared ------------------------------------------------------------------


def test_members_pair_themselves_and_network_moderators_run_the_dates():
    registry = Registry([meet.router])
    levels = {sub.name: sub.required_level for sub in registry.find("treffen").subcommands}
    assert levels == {"join": Level.MEMBER, "leave": Level.MEMBER, "pause": Level.MEMBER,
                      "stats": Level.NETWORK_MODERATOR, "rule": Level.NETWORK_MODERATOR,
                      "link": Level.NETWORK_MODERATOR, "cancel": Level.NETWORK_MODERATOR,
                      "move": Level.NETWORK_MODERATOR}
    assert registry.find("getroffen").required_level == Level.MEMBER


@pytest.mark.parametrize("line", ["!treffen statistik", "!treffen regel",
                                  "!treffen link standard", "!treffen absagen 12.03.",
                                  "!treffen verschieben 12.03. 13:00"])
async def test_a_room_moderator_may_not_change_the_networks_dates(storage, line):
    services = make(storage, at(1, 3, 9))
    refused = await say(services, line, Level.ROOM_MODERATOR)
    assert refused == (f"Den Befehl {' '.join(line.split()[:2])} dürfen nur Personen mit der "
                       "Rolle Netzwerk-Moderation ausführen.")
    assert "Rolle" not in await say(services, line, Level.NETWORK_MODERATOR)


async def test_help_for_a_subcommand_and_the_subcommands_each_role_sees(storage):
    services = make(storage, at(1, 3, 9))
    rule = await say(services, "!hilfe treffen regel")
    assert rule.startswith("!treffen regel [regel|standard] [beginn] [dauer]\n\n"
                           "Zeigt oder ändert den Rhythmus")
    assert "Aufrufbar als: !treffen rule, !treffen regel, !treffen rhythmus" in rule
    assert "Für: Netzwerk-Moderation" in rule and "- !treffen regel standard" in rule
    english = await say(services, "!help meet rule", language="en")
    assert english.startswith("!meet rule [rule|default] [start] [duration]\n\n")
    member = await say(services, "!hilfe")
    assert "  - !treffen mitmachen, !treffen aussetzen, !treffen pause\n" in member
    assert "!treffen regel" not in member
    network = await say(services, "!hilfe", Level.NETWORK_MODERATOR)
    assert ("  - !treffen mitmachen, !treffen aussetzen, !treffen pause, !treffen statistik, "
            "!treffen regel, !treffen link, !treffen absagen, !treffen verschieben") in network


async def test_a_mistyped_subcommand_is_answered_with_the_closest(storage):
    services = make(storage, at(1, 3, 9))
    assert await say(services, "!treffen mitmachn") == (
        "mitmachn kenne ich hier nicht. Meintest du !treffen mitmachen? "
        "Mehr zeigt !hilfe treffen.")
    assert await say(services, "!meet paus 4", language="en") == (
        "I don't know paus here. Did you mean !meet pause? More: !help meet.")
    assert (await say(services, "!hilfe treffen verschiebn")).startswith(
        "verschiebn kenne ich hier nicht. Meintest du !treffen verschieben")
    assert await storage.meet.participant(ALICE) is None


async def test_a_refused_room_does_not_hold_up_the_other_groups(storage):
    class DaveIsGone(FakeRooms):
        async def create_room(self, **kwargs) -> str:
            if DAVE in kwargs["invite"] and self.gone:
                raise RefusedError("create room: M_NOT_FOUND")
            return await super().create_room(**kwargs)

    services = make(storage, at(9, 3, 12))
    await join_all(services, ALICE, BOB, CAROL, DAVE)
    rooms = DaveIsGone()
    rooms.gone = True
    worker = PairingRooms(services, rooms, BOT, "de", on_queued=lambda r: None)
    assert await worker.tick() == 1
    [waiting] = await storage.meet.groups(without_room=True)
    assert DAVE in waiting.members
    rooms.gone = False
    assert await worker.tick() == 1  # tried again on the loop's next round
    assert len(rooms.created) == 2


async def test_changes_to_the_dates_tell_the_scheduler(storage):
    services = make(storage, at(1, 3, 9))
    told: list[str] = []

    async def schedule_changed(name: str) -> None:
        told.append(name)

    services.schedule_changed = schedule_changed
    await say(services, "!treffen absagen 12.03.", Level.ADMIN)
    await say(services, "!treffen verschieben 09.04. 10.04.", Level.ADMIN)
    await say(services, "!treffen regel FREQ=WEEKLY;BYDAY=MO", Level.ADMIN)
    assert told == ["meet", "meet-followups"] * 3


async def test_encrypted_rooms_are_introduced_only_after_the_sync_loop_read_them(storage):
    services = make(storage, at(9, 3, 12))
    await join_all(services, ALICE, BOB, CAROL, DAVE)
    waited: list[list[str]] = []

    async def synced(room_ids: list[str]) -> None:
        assert await storage.outbox.count() == 0  # nothing introduced yet
        waited.append(sorted(room_ids))

    rooms = FakeRooms()
    worker = PairingRooms(services, rooms, BOT, "de", on_queued=lambda r: None, encrypt=True,
                          synced=synced)
    assert await worker.tick() == 2
    assert waited == [sorted(c["room_id"] for c in rooms.created)]
    assert await storage.outbox.count() == 2


async def test_waiting_for_the_sync_loop_ends_when_it_read_the_rooms_or_after_a_while(storage):
    from storage.rooms import RoomCursor

    await storage.rooms.set_cursor(RoomCursor("!a:example.org", "$e", 1))
    await after_rooms_synced(storage.rooms, ["!a:example.org"], timeout_s=5)  # at once
    loop = asyncio.get_running_loop()
    started = loop.time()
    await after_rooms_synced(storage.rooms, ["!a:example.org", "!b:example.org"], timeout_s=0.3)
    assert 0.3 <= loop.time() - started < 2
