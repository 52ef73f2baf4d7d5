"""Workshops: listing, details, calendar files, sign-ups and the waiting list, moderators' add,
edit and cancel, and the reminders the scheduler posts."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from bot.matrix.render import to_html
from commands import core, room_settings, workshops
from commands.dates import (
    When,
    WhenError,
    format_when,
    latest_start_day,
    offset_label,
    parse_duration,
    parse_head,
    parse_offset,
    parse_when_value,
    resolve,
)
from commands.framework import Level, Registry, dispatch, parse_args
from commands.i18n import LANGUAGES
from commands.schedule import Occurrence
from commands.workshop_spec import parse_number, split_fields
from commands.workshops import WorkshopConfig, WorkshopReminders
from storage.workshops import Workshop
from tests.unit.fakes import (
    ALICE,
    BOB,
    BOSS,
    CATALOG,
    OTHER_ROOM,
    ROOM,
    make_services,
    request,
    set_language,
)

BERLIN = ZoneInfo("Europe/Berlin")
CAROL = "@carol:example.org"
DAVE = "@dave:example.org"
INTERNAL = {CATALOG.template(lang, "errors.internal") for lang in LANGUAGES}


class Clock:
    """A clock the test moves."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def short(key: str) -> str:
    """A reminder key without its start time (`workshop:1:<start>:1d:!r` → `workshop:1:1d:!r`)."""
    parts = key.split(":")
    return ":".join(parts[:2] + parts[3:])


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


@pytest.fixture
def clock() -> Clock:
    return Clock(berlin(2026, 11, 20, 9, 0))


@pytest.fixture
def changed() -> list[str]:
    return []


@pytest.fixture
def services(storage, clock, changed):
    services = make_services(storage, [core.router, room_settings.router, workshops.router])
    services.clock = clock

    async def schedule_changed(source: str) -> None:
        changed.append(source)

    services.schedule_changed = schedule_changed
    return services


async def ask(services, body, sender=ALICE, level=Level.MEMBER, language="de", room_id=ROOM):
    replies = await dispatch(request(body, level=level, language=language, sender=sender,
                                     room_id=room_id), services)
    for reply in replies:
        assert reply.text.plain not in INTERNAL, body
        to_html(reply.text.markdown)  # renders
    return replies


async def say(services, body, **kwargs) -> str:
    """The plain text of the one reply to `body`."""
    replies = await ask(services, body, **kwargs)
    assert len(replies) == 1, replies
    return replies[0].text.plain


async def add(services, line: str, **kwargs) -> str:
    return await say(services, f"!werkstatt neu {line}", level=Level.ROOM_MODERATOR, **kwargs)


async def stored(storage, title: str, start: datetime, hours: int = 2, **fields) -> Workshop:
    """A workshop straight into the database (created a week before the test's now); one with
    a room is that room's own (as a room moderator adds it) unless `network_wide` is given."""
    fields.setdefault("room_id", ROOM)
    fields.setdefault("network_wide", fields["room_id"] is None)
    new = Workshop(title=title, starts_at=start, ends_at=start + timedelta(hours=hours),
                   created_by=BOSS, **fields)
    return await storage.workshops.add(new, berlin(2026, 1, 1, 0, 0))


# -- formatting ---------------------------------------------------------------------------------


def test_german_date_format():
    assert format_when(berlin(2026, 12, 3, 10), berlin(2026, 12, 3, 12), "de", BERLIN,
                       CATALOG) == "Do., 03.12.2026, 10:00–12:00 Uhr"
    assert format_when(berlin(2026, 12, 3, 10), berlin(2026, 12, 4, 16), "de", BERLIN,
                       CATALOG) == "Do., 03.12.2026, 10:00 Uhr – Fr., 04.12.2026, 16:00 Uhr"


def test_english_date_format_and_utc_input():
    start = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
    assert format_when(start, start + timedelta(hours=2), "en", BERLIN,
                       CATALOG) == "Thu, 3 Dec 2026, 10:00–12:00"


# -- parsing the moderator's line ---------------------------------------------------------------

NOW = berlin(2026, 11, 20, 9, 0)


def when_of(text: str) -> tuple[datetime, datetime, str]:
    parsed, rest = parse_head(text)
    start, end = resolve(parsed, None, NOW, BERLIN)
    return start, end, rest


@pytest.mark.parametrize("text", [
    "03.12.2026 10:00-12:00 Titel",
    "3.12.2026 10:00 - 12:00 Titel",
    "03.12.26 10-12 Titel",
    "03.12. 10:00–12:00 Uhr Titel",
    "3.12. 10 bis 12 Uhr: Titel",
    "Do., 03.12.2026, 10:00–12:00 Uhr Titel",
    "2026-12-03T10:00-12:00 Titel",
    "2026-12-03 10:00 - 12:00 Titel",
    "2026-12-03T10:00/2026-12-03T12:00 Titel",
    "3. Dezember 2026 10:00-12:00 Titel",
    "3 Dec 10.00-12.00 Titel",
    "03.12.2026 um 10:00 bis 12:00 | Titel",
])
def test_date_spellings(text):
    assert when_of(text) == (berlin(2026, 12, 3, 10), berlin(2026, 12, 3, 12), "Titel")


def test_a_date_without_year_is_the_next_such_day():
    assert when_of("19.11. 10-12 x")[0] == berlin(2027, 11, 19, 10)  # yesterday: next year
    assert when_of("20.11. 08:00-09:30 x")[0] == berlin(2027, 11, 20, 8)  # an hour ago
    assert when_of("20.11. 10:00-11:00 x")[0] == berlin(2026, 11, 20, 10)  # in an hour


def test_end_as_full_datetime_over_several_days():
    start, end, rest = when_of("03.12.2026 10:00 - 04.12.2026 16:00 Zwei Tage")
    assert (start, end, rest) == (berlin(2026, 12, 3, 10), berlin(2026, 12, 4, 16), "Zwei Tage")
    start, end, _ = when_of("31.12. 10:00 - 01.01. 12:00 Silvester")
    assert (start, end) == (berlin(2026, 12, 31, 10), berlin(2027, 1, 1, 12))


def test_a_bare_number_after_the_date_belongs_to_the_title():
    parsed, rest = parse_head("03.12.2026 3 Fragen zur KI")
    assert parsed.start_time is None and rest == "3 Fragen zur KI"


@pytest.mark.parametrize(("text", "key"), [
    ("12/03/2026 10:00-12:00 x", "ambiguous_date"),
    ("KI in der Verwaltung", "no_date"),
    ("03.12.2026 KI", "no_time"),
    ("03.12.2026 10:00 KI", "no_end"),
    ("31.02.2026 10:00-12:00 x", "bad_date"),
    ("03.13.2026 10:00-12:00 x", "bad_date"),
    ("03.12.2026 25:00-26:00 x", "bad_time"),
    ("03.12.2026 12:00-10:00 x", "end_before_start"),
    ("03.12.2026 10:00 - 24.12.2026 12:00 x", "too_long_span"),
    ("31.12.9999 23:00-23:30 x", "too_far"),  # more than five years ahead of NOW
    ("21.11.2031 10:00-12:00 x", "too_far"),
    ("03.12.2026 10:00 - 31.12.9999 12:00 x", "too_far"),
    ("01.01.0001 00:30-01:00 x", "long_past"),
    ("0001-01-01T00:30 - 01:00 x", "long_past"),
])
def test_date_errors(text, key):
    with pytest.raises(WhenError) as caught:
        when_of(text)
    assert caught.value.key == key


def test_the_latest_start_is_five_years_ahead():
    assert when_of("20.11.2031 10:00-12:00 x")[0] == berlin(2031, 11, 20, 10)
    assert latest_start_day(date(2028, 2, 29)) == date(2033, 2, 28)
    # a late start and a long duration: refused before the end is computed (it would overflow)
    with pytest.raises(WhenError) as caught:
        resolve(parse_head("31.12.9999 23:00 x")[0], timedelta(hours=48), NOW, BERLIN)
    assert caught.value.key == "too_far"


def test_values_and_durations():
    assert parse_when_value("10:00-12:00") == When(None, time(10), None, time(12))
    assert parse_when_value("3.12", date_only=True).start_day.month == 12
    assert parse_when_value("10.30") == When(None, time(10, 30))
    assert parse_when_value("2026-12-03T10:00").start_time == time(10)
    with pytest.raises(WhenError):
        parse_when_value("morgen")
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("1,5 Stunden") == timedelta(minutes=90)
    with pytest.raises(WhenError):
        parse_duration("lang")


def test_fields_split_at_known_keys_and_respect_quotes():
    spec = split_fields('03.12. 10-12 KI in der Verwaltung ort=Rathaus Wiesbaden | plätze=20 '
                        'beschreibung="a=b und mehr" link=https://x.example/?a=b')
    assert spec.head == "03.12. 10-12 KI in der Verwaltung"
    assert spec.fields == [("location", "ort", "Rathaus Wiesbaden"),
                           ("capacity", "plätze", "20"),
                           ("description", "beschreibung", "a=b und mehr"),
                           ("url", "link", "https://x.example/?a=b")]


def test_numbers():
    assert [parse_number(t) for t in ("12", "#12", "Nr.12", "nr. 12", "12.", "x", "0")] == \
        [12, 12, 12, 12, 12, None, None]


def test_offsets():
    assert parse_offset("1d") == timedelta(days=1)
    assert parse_offset(" 2H ") == timedelta(hours=2)
    assert parse_offset("30m") == timedelta(minutes=30)
    for bad in ("", "1", "1w", "0h", "61d", "-1h"):
        with pytest.raises(ValueError):
            parse_offset(bad)
    assert [offset_label(parse_offset(t)) for t in ("1d", "24h", "2h", "90m")] == \
        ["1d", "1d", "2h", "90m"]
    config = WorkshopConfig.create(["1h", "1d", "1h"], ["!a:x.org"], "Europe/Berlin")
    assert config.reminders == [timedelta(days=1), timedelta(hours=1)]
    assert config.timezone == BERLIN


# -- moderators: add ----------------------------------------------------------------------------


async def test_moderator_adds_a_workshop_in_german(services, storage, changed):
    text = await add(services, "03.12.2026 10:00-12:00 KI in der Verwaltung "
                               "ort=Rathaus Wiesbaden plätze=20 community=KI-Werkstatt")
    assert "Angelegt: KI in der Verwaltung (Nr. 1)" in text
    assert "Do., 03.12.2026, 10:00–12:00 Uhr" in text
    assert "!anmelden 1" in text
    found = await storage.workshops.get(1)
    assert found.starts_at == berlin(2026, 12, 3, 10) and found.ends_at == berlin(2026, 12, 3, 12)
    assert (found.location, found.capacity, found.community, found.room_id, found.created_by) \
        == ("Rathaus Wiesbaden", 20, "KI-Werkstatt", ROOM, ALICE)
    assert changed == ["workshops"]


async def test_moderator_adds_with_iso_date_keys_and_english(services, storage):
    text = await add(services, "2026-12-03T10:00 end=2026-12-04T15:30 title=Two days "
                               "link=www.meet.example.org/ki places=unlimited",
                     language="en")
    assert "Added: Two days (no. 1)" in text
    found = await storage.workshops.get(1)
    assert found.ends_at == berlin(2026, 12, 4, 15, 30)
    assert found.url == "https://www.meet.example.org/ki"
    assert found.capacity is None


async def test_add_with_duration_and_quoted_title(services, storage):
    await add(services, "18.3. 14:00 „OZG: Sprechstunde“ dauer=90m")
    found = await storage.workshops.get(1)
    assert found.title == "OZG: Sprechstunde"
    assert found.starts_at == berlin(2027, 3, 18, 14)
    assert found.ends_at == berlin(2027, 3, 18, 15, 30)


@pytest.mark.parametrize(("line", "expected"), [
    ("03.12.2025 10:00-12:00 Alt", "liegt in der Vergangenheit"),
    ("20.11.2026 08:00-10:00 Heute früh", "liegt in der Vergangenheit"),
    ("31.02.2027 10:00-12:00 x", "„31.02.2027“ ist kein gültiges Datum"),
    ("12/03/2026 10:00-12:00 x", "mehrdeutig"),
    ("03.12.2026 10:00 x", "Wann endet die Werkstatt?"),
    ("Nur ein Titel", "Ich finde kein Datum"),
    ("03.12.2026 10:00-12:00", "Wie heißt die Werkstatt?"),
    ("03.12.2026 10:00-12:00 x plätze=viele", "„viele“ ist keine Platzzahl"),
    ("03.12.2026 10:00-12:00 x link=ftp://x", "ist kein Link"),
    ("03.12.2026 10:00-12:00 x farbe=blau", "Die Angabe farbe= kenne ich nicht"),
    ("03.12.2026 10:00-12:00 x datum=10:00", "passt nicht zu datum="),
    ("03.12.2026 10:00 x dauer=ewig", "ist keine Dauer"),
])
async def test_add_errors_are_friendly_and_show_an_example(services, storage, line, expected):
    text = await add(services, line)
    assert expected in text, text
    assert await storage.workshops.get(1) is None


async def test_errors_that_need_an_example_show_one(services):
    text = await add(services, "03.12.2026 10:00 x")
    assert "!werkstatt neu 18.12.2026 10:00-12:00 KI in der Verwaltung" in text  # now + 4 weeks
    assert "!werkstatt neu" in await add(services, "")


async def test_members_may_not_add_edit_or_cancel(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10))
    for body in ("!werkstatt neu 03.12.2026 10:00-12:00 x", "!werkstatt ändern 1 plätze=3",
                 "!werkstatt absagen 1", "!werkstatt 1 teilnehmende"):
        text = await say(services, body)
        assert "dürfen nur Personen mit der Rolle Raum-Moderation" in text, body
    assert (await storage.workshops.get(1)).capacity is None
    assert await storage.workshops.get(2) is None


# -- listing ------------------------------------------------------------------------------------


async def test_list_is_ordered_and_formatted(services, storage, clock):
    await stored(storage, "Später", berlin(2026, 12, 10, 14))
    await stored(storage, "Bald", berlin(2026, 12, 3, 10), location="Rathaus Wiesbaden",
                 capacity=20)
    await stored(storage, "Vorbei", berlin(2026, 11, 19, 10))
    await stored(storage, "Läuft", berlin(2026, 11, 20, 8), url="https://meet.example.org/x")
    abgesagt = await stored(storage, "Abgesagt", berlin(2026, 12, 5, 10))
    await storage.workshops.cancel(abgesagt.number, clock.now())
    text = await say(services, "!werkstätten")
    assert text.splitlines()[0] == "Die nächsten Werkstätten"
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert lines == [
        "- Nr. 4: Fr., 20.11.2026, 08:00–10:00 Uhr · Läuft · online: https://meet.example.org/x",
        "- Nr. 2: Do., 03.12.2026, 10:00–12:00 Uhr · Bald · Rathaus Wiesbaden "
        "· 20 von 20 Plätzen frei",
        "- Nr. 1: Do., 10.12.2026, 14:00–16:00 Uhr · Später · Ort folgt",
    ]
    assert "!werkstatt <nummer>" in text and "!anmelden <nummer>" in text
    assert await say(services, "!werkstaetten") == text


async def test_list_shows_ten_and_says_how_many_more(services, storage):
    for day in range(1, 14):
        await stored(storage, f"Werkstatt {day}", berlin(2026, 12, day, 10))
    text = await say(services, "!werkstätten")
    assert len([line for line in text.splitlines() if line.startswith("- ")]) == 10
    assert "… und 3 weitere" in text


async def test_list_filters_by_community_or_words(services, storage):
    await stored(storage, "KI in der Verwaltung", berlin(2026, 12, 3, 10), community="Smart City")
    await stored(storage, "Open Data im Rathaus", berlin(2026, 12, 4, 10), community="Open Data")
    await stored(storage, "Städte vernetzen", berlin(2026, 12, 5, 10),
                 description="Smart und City-übergreifend")
    text = await say(services, "!werkstätten smart city")
    assert "KI in der Verwaltung" in text and "Städte" not in text  # the community wins
    text = await say(services, "!werkstätten rathaus")
    assert "Open Data im Rathaus" in text and "KI" not in text
    text = await say(services, "!werkstätten Verwaltung KI")
    assert "KI in der Verwaltung" in text and "Open Data" not in text
    assert "keine kommende Werkstatt" in await say(services, "!werkstätten Blockchain")


async def test_empty_list(services):
    assert await say(services, "!werkstätten") == "Zurzeit ist keine Werkstatt geplant."


async def test_english_list(services, storage):
    await stored(storage, "AI", berlin(2026, 12, 3, 10), capacity=5)
    text = await say(services, "!workshops", language="en")
    assert "- No. 1: Thu, 3 Dec 2026, 10:00–12:00 · AI · place to be announced · " \
           "5 of 5 places free" in text


# -- details and calendar file ------------------------------------------------------------------


async def test_details_show_places_waiting_list_and_the_askers_state(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), capacity=1, location="Rathaus",
                 description="Wir reden über KI.")
    text = await say(services, "!werkstatt 1")
    assert "KI (Werkstatt Nr. 1)" in text
    assert "- Wann: Do., 03.12.2026, 10:00–12:00 Uhr" in text
    assert "- Wo: Rathaus" in text
    # A post of the workshop (shared in the room, edited when it fills): free or full only.
    assert "- Plätze: 1, noch frei" in text
    assert "Wir reden über KI." in text
    assert "Anmelden: ✅ an diesem Beitrag oder !anmelden 1" in text
    await ask(services, "!anmelden 1")
    await ask(services, "!anmelden 1", sender=BOB)
    # Asked by someone signed up or waiting: an answer to them alone, with the counts.
    text = await say(services, "!werkstatt 1")
    assert "Du bist angemeldet." in text and "- Plätze: 0 von 1 frei (1 angemeldet)" in text
    text = await say(services, "!werkstatt 1", sender=BOB)
    assert "Du stehst auf Platz 1 der Warteliste" in text
    assert "- Warteliste: 1" in text
    text = await say(services, "!werkstatt 1", sender=CAROL)
    assert "- Plätze: 1, **ausgebucht**" not in text and "1, ausgebucht" in text
    assert "mit ✅ an diesem Beitrag oder !anmelden 1 kommst du auf die Warteliste" in text
    assert "Eine Werkstatt Nr. 7 gibt es nicht" in await say(services, "!werkstatt 7")


async def test_calendar_file(services, storage, clock):
    await stored(storage, "KI in der Verwaltung", berlin(2026, 12, 3, 10),
                 location="Rathaus Wiesbaden", url="https://meet.example.org/ki",
                 description="Erfahrungen; Fragen, Antworten", community="Smart City")
    replies = await ask(services, "!werkstatt 1 ics")
    assert len(replies) == 1
    reply = replies[0]
    assert not reply.direct and reply.recipient is None
    assert reply.attachment.filename == "werkstatt-1.ics"
    assert reply.attachment.mimetype == "text/calendar"
    cal = Calendar.from_ical(reply.attachment.data)
    [event] = cal.walk("VEVENT")
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["Europe/Berlin"]
    assert event["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert event.decoded("DTSTART") == berlin(2026, 12, 3, 10)
    assert event.decoded("DTEND") == berlin(2026, 12, 3, 12)
    assert str(event["SUMMARY"]) == "KI in der Verwaltung"
    assert str(event["LOCATION"]) == "Rathaus Wiesbaden"
    assert str(event["URL"]) == "https://meet.example.org/ki"
    assert "Erfahrungen; Fragen, Antworten" in str(event["DESCRIPTION"])
    assert str(event["STATUS"]) == "CONFIRMED"
    uid, sequence = str(event["UID"]), int(event["SEQUENCE"])
    # The same UID after a change, a higher SEQUENCE, the new time.
    await say(services, "!werkstatt ändern 1 zeit=14:00-16:00", level=Level.ROOM_MODERATOR)
    clock.at += timedelta(hours=1)
    [event] = Calendar.from_ical((await ask(services, "!werkstatt 1 ics"))[0]
                                 .attachment.data).walk("VEVENT")
    assert str(event["UID"]) == uid
    assert int(event["SEQUENCE"]) > sequence
    assert event.decoded("DTSTART") == berlin(2026, 12, 3, 14)


async def test_calendar_file_of_a_cancelled_workshop_says_so(services, storage, clock):
    await stored(storage, "KI", berlin(2026, 12, 3, 10))
    await storage.workshops.cancel(1, clock.now())
    reply = (await ask(services, "!workshop 1 ics", language="en"))[0]
    assert reply.attachment.filename == "workshop-1.ics"
    assert "cancelled" in reply.text.plain
    [event] = Calendar.from_ical(reply.attachment.data).walk("VEVENT")
    assert str(event["STATUS"]) == "CANCELLED"


async def test_calendar_file_in_summer_time(services, storage):
    await stored(storage, "Sommer", berlin(2027, 7, 1, 18))
    [event] = Calendar.from_ical((await ask(services, "!werkstatt 1 kalender"))[0]
                                 .attachment.data).walk("VEVENT")
    assert event.decoded("DTSTART") == berlin(2027, 7, 1, 18)
    assert event.decoded("DTSTART").utcoffset() == timedelta(hours=2)


# -- sign-ups -----------------------------------------------------------------------------------


async def test_rsvp_respects_capacity_and_keeps_a_waiting_list(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), capacity=2)
    assert "Du bist angemeldet: KI (Nr. 1)" in await say(services, "!anmelden 1")
    assert "You are signed up: KI (no. 1)" in await say(services, "!rsvp 1", sender=BOB,
                                                        language="en")
    text = await say(services, "!anmelden 1", sender=CAROL)
    assert "ausgebucht" in text and "Platz 1 der Warteliste" in text
    text = await say(services, "!anmelden Nr. 1", sender=DAVE)
    assert "Platz 2 der Warteliste" in text
    assert "schon angemeldet" in await say(services, "!anmelden 1")
    assert "schon auf der Warteliste, auf Platz 2" in await say(services, "!anmelden 1",
                                                                 sender=DAVE)
    counts = await storage.workshops.counts(1)
    assert (counts.registered, counts.waiting) == (2, 2)


async def test_withdrawing_moves_the_first_waiting_up_and_tells_them(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), capacity=1)
    for user in (ALICE, BOB, CAROL):
        await ask(services, "!anmelden 1", sender=user)
    replies = await ask(services, "!abmelden 1")
    assert len(replies) == 2
    assert "Du bist von KI (Nr. 1) abgemeldet" in replies[0].text.plain
    assert not replies[0].direct
    dm = replies[1]
    assert dm.direct and dm.recipient == BOB
    assert "ein Platz frei geworden" in dm.text.plain
    assert "Do., 03.12.2026, 10:00–12:00 Uhr" in dm.text.plain
    assert "Du bist angemeldet." in await say(services, "!werkstatt 1", sender=BOB)
    assert "Platz 1 der Warteliste" in await say(services, "!werkstatt 1", sender=CAROL)


async def test_leaving_the_waiting_list_moves_nobody(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), capacity=1)
    for user in (ALICE, BOB, CAROL):
        await ask(services, "!anmelden 1", sender=user)
    text = await say(services, "!rsvp cancel 1", sender=BOB, language="en")
    assert "no longer on the waiting list" in text
    assert "Platz 1 der Warteliste" in await say(services, "!werkstatt 1", sender=CAROL)
    assert "nicht angemeldet" in await say(services, "!abmelden 1", sender=BOB)
    withdrawn, moved_up = await ask(services, "!withdraw 1", sender=ALICE)
    assert "Du bist von" in withdrawn.text.plain
    assert moved_up.recipient == CAROL
    assert "Du bist angemeldet." in await say(services, "!werkstatt 1", sender=CAROL)


async def test_withdraw_via_workshop_command_and_english(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10))
    assert "You are signed up" in await say(services, "!workshop 1 rsvp", language="en")
    assert "You have withdrawn" in await say(services, "!workshop 1 withdraw", language="en")


async def test_no_sign_up_for_cancelled_or_started_workshops(services, storage, clock):
    await stored(storage, "Abgesagt", berlin(2026, 12, 3, 10))
    await stored(storage, "Läuft", berlin(2026, 11, 20, 8))
    await storage.workshops.cancel(1, clock.now())
    assert "ist abgesagt" in await say(services, "!anmelden 1")
    assert "hat schon begonnen" in await say(services, "!anmelden 2")
    assert "Eine Werkstatt Nr. 3 gibt es nicht" in await say(services, "!anmelden 3")
    assert "Welche Werkstatt meinst du?" in await say(services, "!anmelden KI")


async def test_repository_orders_the_waiting_list(storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), capacity=1)
    at = berlin(2026, 11, 20, 9)
    for user in (ALICE, BOB, CAROL, DAVE):
        await storage.workshops.register(1, user, at)
    everyone = await storage.workshops.registrations(1)
    assert [(r.user_id, r.status, r.position) for r in everyone] == [
        (ALICE, "registered", 0), (BOB, "waiting", 1), (CAROL, "waiting", 2),
        (DAVE, "waiting", 3)]
    await storage.workshops.withdraw(1, CAROL)
    assert (await storage.workshops.registration(1, DAVE)).position == 2
    promoted = await storage.workshops.delete_all_of(ALICE)
    assert [r.user_id for r in promoted] == [BOB]
    assert "Registration(#1" in repr(promoted[0]) and BOB not in repr(promoted[0])


# -- moderators: edit and cancel ----------------------------------------------------------------


async def test_edit_keeps_what_was_not_typed(services, storage, changed):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), capacity=20, location="Rathaus")
    text = await say(services, "!werkstatt ändern 1 datum=10.12.", level=Level.ROOM_MODERATOR)
    assert "Gespeichert: KI (Nr. 1)" in text
    assert "Do., 10.12.2026, 10:00–12:00 Uhr" in text
    await ask(services, "!werkstatt 1 ändern start=11:00", level=Level.ROOM_MODERATOR)
    found = await storage.workshops.get(1)
    assert (found.starts_at, found.ends_at) == (berlin(2026, 12, 10, 11), berlin(2026, 12, 10, 13))
    await ask(services, "!werkstatt ändern 1 ende=15:30 ort=- beschreibung=Mit Kaffee",
              level=Level.ROOM_MODERATOR)
    found = await storage.workshops.get(1)
    assert found.ends_at == berlin(2026, 12, 10, 15, 30)
    assert (found.location, found.description, found.capacity) == (None, "Mit Kaffee", 20)
    await ask(services, "!werkstatt ändern 1 11.12.2026 09:00-17:00", level=Level.ROOM_MODERATOR)
    found = await storage.workshops.get(1)
    assert (found.starts_at, found.ends_at) == (berlin(2026, 12, 11, 9), berlin(2026, 12, 11, 17))
    assert changed == ["workshops"] * 4
    assert "Keine Änderung" in await say(services, "!werkstatt ändern 1 plätze=20",
                                         level=Level.ROOM_MODERATOR)


async def test_edit_errors(services, storage, clock):
    await stored(storage, "KI", berlin(2026, 12, 3, 10))
    mod = {"level": Level.ROOM_MODERATOR}
    assert "Was soll ich ändern?" in await say(services, "!werkstatt ändern 1", **mod)
    assert "in der Vergangenheit" in await say(services, "!werkstatt ändern 1 datum=01.11.2026",
                                               **mod)
    assert "darf nicht leer sein" in await say(services, "!werkstatt ändern 1 titel=-", **mod)
    assert "Welche Werkstatt meinst du?" in await say(services, "!werkstatt ändern ort=x", **mod)
    await stored(storage, "Vorbei", berlin(2026, 11, 19, 10))
    assert "schon vorbei" in await say(services, "!werkstatt ändern 2 ort=x", **mod)


async def test_dates_at_the_edges_get_a_clear_answer(services, storage):
    too_far = await add(services, "31.12.9999 23:00 Fernzukunft dauer=48h")
    assert "„31.12.9999“ liegt mehr als 5 Jahre in der Zukunft" in too_far
    assert "Beispiel:" in too_far
    assert "more than 5 years ahead" in await add(services, "9999-12-31T23:00 Far dauer=48h",
                                                  language="en")
    assert "weit in der Vergangenheit" in await add(services, "01.01.0001 00:30-01:00 Anfang")
    assert await storage.workshops.upcoming(NOW) == []
    assert "Knapp" in await add(services, "20.11.2031 10:00-12:00 Knapp")  # the last day
    mod = {"level": Level.ROOM_MODERATOR}
    for change in ("datum=31.12.9999", "ende=31.12.9999 10:00", "31.12.9999 10:00-12:00"):
        assert "mehr als 5 Jahre" in await say(services, f"!werkstatt ändern 1 {change}", **mod)
    assert (await storage.workshops.get(1)).starts_at == berlin(2031, 11, 20, 10)


async def test_a_workshop_stored_in_the_year_9999_still_answers(services, storage):
    # accepted before the range was checked: its calendar file and a change of its time
    # get an answer, not an internal error
    await stored(storage, "Fernzukunft", berlin(9999, 12, 31, 20))
    reply = (await ask(services, "!werkstatt 1 ics"))[0]
    [event] = Calendar.from_ical(reply.attachment.data).walk("VEVENT")
    assert event.decoded("DTSTART") == berlin(9999, 12, 31, 20)
    assert "mehr als 5 Jahre" in await say(services, "!werkstatt ändern 1 dauer=48h",
                                           level=Level.ROOM_MODERATOR)
    moved = await say(services, "!werkstatt ändern 1 datum=03.12.2026", level=Level.ROOM_MODERATOR)
    assert "03.12.2026" in moved


async def test_more_places_move_the_waiting_up(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), capacity=1)
    for user in (ALICE, BOB, CAROL):
        await ask(services, "!anmelden 1", sender=user)
    replies = await ask(services, "!werkstatt ändern 1 plätze=2", sender=BOSS,
                        level=Level.ROOM_MODERATOR)
    dms = [r for r in replies if r.direct]
    assert [r.recipient for r in dms] == [BOB]
    assert "Von der Warteliste nachgerückt: 1" in replies[-1].text.plain
    replies = await ask(services, "!werkstatt ändern 1 plätze=-", sender=BOSS,
                        level=Level.ROOM_MODERATOR)
    assert [r.recipient for r in replies if r.direct] == [CAROL]


async def test_a_new_time_is_told_to_everyone_signed_up(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), capacity=1)
    for user in (ALICE, BOB):
        await ask(services, "!anmelden 1", sender=user)
    replies = await ask(services, "!werkstatt ändern 1 zeit=14:00-16:00", sender=BOSS,
                        level=Level.ROOM_MODERATOR)
    dms = [r for r in replies if r.direct]
    assert [r.recipient for r in dms] == [ALICE, BOB]
    assert all("jetzt Do., 03.12.2026, 14:00–16:00 Uhr" in r.text.plain for r in dms)
    assert "2 angemeldeten und wartenden Personen" in replies[-1].text.plain
    replies = await ask(services, "!werkstatt ändern 1 beschreibung=Neu", sender=BOSS,
                        level=Level.ROOM_MODERATOR)
    assert not [r for r in replies if r.direct]  # nothing to plan around changed
    await ask(services, "!abmelden 1", sender=BOB)
    replies = await ask(services, "!werkstatt ändern 1 zeit=15:00-17:00", sender=BOSS,
                        level=Level.ROOM_MODERATOR)
    assert "habe ich der angemeldeten oder wartenden Person" in replies[-1].text.plain


async def test_workshops_of_other_rooms_are_their_moderators(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), room_id=OTHER_ROOM)
    text = await say(services, "!werkstatt absagen 1", level=Level.ROOM_MODERATOR)
    assert "gehört zu einem anderen Raum" in text
    assert not (await storage.workshops.get(1)).cancelled
    await ask(services, "!werkstatt absagen 1", level=Level.ADMIN)
    assert (await storage.workshops.get(1)).cancelled


async def test_cancel_tells_everyone_by_direct_message(services, storage, changed):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), capacity=1)
    for user in (ALICE, BOB):
        await ask(services, "!anmelden 1", sender=user)
    replies = await ask(services, "!werkstatt absagen 1 Referentin erkrankt", sender=BOSS,
                        level=Level.ROOM_MODERATOR)
    confirm, *dms = replies
    assert not confirm.direct
    assert "Abgesagt: KI (Nr. 1) am Do., 03.12.2026, 10:00–12:00 Uhr" in confirm.text.plain
    assert "2 angemeldete und wartende Personen" in confirm.text.plain
    assert [(r.direct, r.recipient) for r in dms] == [(True, ALICE), (True, BOB)]
    assert all("leider abgesagt" in r.text.plain and "Grund: Referentin erkrankt"
               in r.text.plain for r in dms)
    assert changed == ["workshops"]
    assert "bereits abgesagt" in await say(services, "!werkstatt absagen 1",
                                           level=Level.ROOM_MODERATOR)
    assert "Zurzeit ist keine Werkstatt geplant." == await say(services, "!werkstätten")
    assert "abgesagt" in await say(services, "!werkstatt 1")
    assert "ist abgesagt" in await say(services, "!anmelden 1", sender=CAROL)


async def test_cancel_without_sign_ups(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10))
    replies = await ask(services, "!workshop cancel 1", level=Level.ROOM_MODERATOR, language="en")
    assert [r.text.plain for r in replies] == [
        "Cancelled: KI (no. 1) on Thu, 3 Dec 2026, 10:00–12:00. Nobody had signed up yet."]


async def test_participants_go_to_the_moderator_by_direct_message(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), capacity=1)
    for user in (ALICE, BOB):
        await ask(services, "!anmelden 1", sender=user)
    dm, confirm = await ask(services, "!werkstatt 1 teilnehmende", sender=BOSS,
                            level=Level.ROOM_MODERATOR)
    assert dm.direct and dm.recipient is None and not dm.mentions
    assert "1 angemeldet, 1 auf der Warteliste" in dm.text.plain
    assert ALICE in dm.text.plain and BOB in dm.text.plain
    assert not confirm.direct


async def test_usage_for_unknown_words(services):
    text = await say(services, "!werkstatt")
    assert "!werkstatt 12 ics" in text and "!werkstatt neu" in text
    assert "tanzen kenne ich hier nicht" in await say(services, "!werkstatt 12 tanzen")


# -- subcommands, declared on the router --------------------------------------------------------


def test_each_subcommand_needs_the_level_it_always_needed():
    levels = {sub.key: sub.required_level for command in workshops.router.commands
              for sub in command.subcommands}
    member, moderator = Level.MEMBER, Level.ROOM_MODERATOR
    assert levels == {
        "workshop.show": member, "workshop.ics": member, "workshop.rsvp": member,
        "workshop.withdraw": member, "workshop.add": moderator, "workshop.edit": moderator,
        "workshop.cancel": moderator, "workshop.participants": moderator,
        "rsvp.cancel": member}
    assert all(c.level == member for c in workshops.router.commands)


async def test_help_knows_each_subcommand(services):
    text = await say(services, "!hilfe werkstatt neu")
    assert text.startswith("!werkstatt neu [datum uhrzeit titel angaben=…]\n\nLegt eine")
    assert "!werkstatt anlegen" in text and "Rolle Raum-Moderation" in text
    assert "!werkstatt neu 03.12. 10:00-12:00 KI in der Verwaltung" in text
    english = await say(services, "!help workshop participants", language="en")
    assert english.startswith("!workshop participants <number>")
    assert "!rsvp cancel <number>" in await say(services, "!help rsvp cancel", language="en")
    member = await say(services, "!hilfe")
    assert "!werkstatt ics" in member and "!werkstatt neu" not in member
    assert "!werkstatt neu" in await say(services, "!hilfe", level=Level.ROOM_MODERATOR)


async def test_a_mistyped_subcommand_is_answered_with_the_closest(services, storage):
    text = await say(services, "!werkstatt nue 03.12.2026 10:00-12:00 KI",
                     level=Level.ROOM_MODERATOR)
    assert text.startswith("nue kenne ich hier nicht. Meintest du !werkstatt neu")
    await stored(storage, "KI", berlin(2026, 12, 3, 10))
    text = await say(services, "!werkstatt 1 teilnehmnde", level=Level.ROOM_MODERATOR)
    assert "Meintest du !werkstatt teilnehmende" in text
    assert await storage.workshops.get(2) is None


async def test_the_number_may_stand_before_or_after_the_subcommand(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), capacity=20)
    assert "KI (Werkstatt Nr. 1)" in await say(services, "!werkstatt 1")
    assert "KI (Werkstatt Nr. 1)" in await say(services, "!werkstatt Nr. 1")
    assert "KI (Werkstatt Nr. 1)" in await say(services, "!werkstatt anzeigen #1")
    for body in ("!werkstatt 1 ics", "!werkstatt Nr. 1 ics", "!werkstatt ics 1",
                 "!workshop 1 calendar"):
        [reply] = await ask(services, body, language="en" if "workshop" in body else "de")
        assert reply.attachment is not None, body
    assert "Du bist angemeldet" in await say(services, "!werkstatt 1 anmelden", sender=BOB)
    assert "abgemeldet" in await say(services, "!anmelden absagen 1", sender=BOB)
    assert "Du bist angemeldet" in await say(services, "!werkstatt anmelden 1", sender=BOB)
    assert "abgemeldet" in await say(services, "!werkstatt 1 abmelden", sender=BOB)
    mod = {"level": Level.ROOM_MODERATOR}
    edited = (await ask(services, "!werkstatt 1 ändern plätze=5", **mod))[0].text.plain
    assert edited.startswith("Gespeichert: KI (Nr. 1)")
    assert (await storage.workshops.get(1)).capacity == 5
    dm, _ = await ask(services, "!werkstatt Nr. 1 teilnehmende", **mod)
    assert dm.direct
    assert "So geht es" in await say(services, "!werkstatt 1 neu 03.12.2026 10-12 x", **mod)
    refused = await say(services, "!werkstatt 1 absagen")
    assert refused == ("Den Befehl !werkstatt absagen dürfen nur Personen mit der Rolle "
                       "Raum-Moderation ausführen.")
    assert "Welche Werkstatt meinst du? Gib ihre Nummer an, z. B. !werkstatt ändern 12" in (
        await say(services, "!werkstatt ändern ort=x", **mod))
    assert "So funktioniert der Befehl: !werkstatt ics <nummer>" in await say(
        services, "!werkstatt ics")


# -- reminders ----------------------------------------------------------------------------------


def reminders(services, **config) -> WorkshopReminders:
    services.configs["workshops"] = WorkshopConfig(**config) if config else None
    return WorkshopReminders(services)


async def test_occurrences_for_each_offset_and_room(services, storage):
    await stored(storage, "KI", berlin(2026, 12, 3, 10))
    await stored(storage, "Ohne Raum", berlin(2026, 12, 4, 18), room_id=None)
    source = reminders(services, reminders=[timedelta(days=1), timedelta(hours=1)],
                       rooms=["!a:x.org", "!b:x.org"], timezone=BERLIN)
    assert source.name == "workshops"
    found = await source.occurrences(berlin(2026, 11, 20), berlin(2026, 12, 31))
    assert [(short(o.key), o.due, o.room_id, o.subject) for o in found] == [
        (f"workshop:1:1d:{ROOM}", berlin(2026, 12, 2, 10), ROOM, "1"),
        (f"workshop:1:1h:{ROOM}", berlin(2026, 12, 3, 9), ROOM, "1"),
        ("workshop:2:1d:!a:x.org", berlin(2026, 12, 3, 18), "!a:x.org", "2"),
        ("workshop:2:1d:!b:x.org", berlin(2026, 12, 3, 18), "!b:x.org", "2"),
        ("workshop:2:1h:!a:x.org", berlin(2026, 12, 4, 17), "!a:x.org", "2"),
        ("workshop:2:1h:!b:x.org", berlin(2026, 12, 4, 17), "!b:x.org", "2"),
    ]
    assert all(o.source == "workshops" for o in found)
    # The window is [start, end): only what falls due inside it.
    found = await source.occurrences(berlin(2026, 12, 3, 9), berlin(2026, 12, 3, 18))
    assert [short(o.key) for o in found] == [f"workshop:1:1h:{ROOM}"]


async def test_default_config_and_no_rooms(services, storage):
    await stored(storage, "Ohne Raum", berlin(2026, 12, 4, 18), room_id=None)
    await stored(storage, "KI", berlin(2026, 12, 3, 10), hours=1)
    found = await reminders(services).occurrences(berlin(2026, 11, 20), berlin(2026, 12, 31))
    assert [short(o.key) for o in found] == [f"workshop:2:1d:{ROOM}", f"workshop:2:1h:{ROOM}"]


async def test_a_room_that_switched_reminders_off_gets_none(services, storage, clock):
    await stored(storage, "KI", berlin(2026, 12, 3, 10))
    await stored(storage, "Ohne Raum", berlin(2026, 12, 4, 18), room_id=None)
    source = reminders(services, rooms=["!a:x.org", "!b:x.org"], timezone=BERLIN,
                       reminders=[timedelta(hours=1)])
    [planned, *_] = await source.occurrences(berlin(2026, 11, 20), berlin(2026, 12, 31))
    await room_settings.change(services, ROOM, "workshop_reminders", "off", BOSS)
    await room_settings.change(services, "!b:x.org", "workshop_reminders", "off", BOSS)
    found = await source.occurrences(berlin(2026, 11, 20), berlin(2026, 12, 31))
    assert [short(o.key) for o in found] == ["workshop:2:1h:!a:x.org"]
    # Planned before the switch, it posts nothing when it falls due.
    clock.at = planned.due
    assert await source.render(planned, late=False) is None


async def test_cancelled_workshops_have_no_occurrences(services, storage, clock):
    await stored(storage, "KI", berlin(2026, 12, 3, 10))
    await storage.workshops.cancel(1, clock.now())
    assert await reminders(services).occurrences(berlin(2026, 11, 20), berlin(2026, 12, 31)) == []


async def test_a_reminder_due_before_the_workshop_existed_is_none(services, storage):
    new = Workshop(title="Kurzfristig", starts_at=berlin(2026, 11, 20, 15),
                   ends_at=berlin(2026, 11, 20, 16), created_by=BOSS, room_id=ROOM)
    await storage.workshops.add(new, berlin(2026, 11, 20, 9))
    found = await reminders(services).occurrences(berlin(2026, 11, 19), berlin(2026, 11, 21))
    assert [short(o.key) for o in found] == [f"workshop:1:1h:{ROOM}"]


@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 3, 30), date(2026, 10, 25),
                                 date(2026, 10, 26)])
async def test_a_day_before_18_00_is_18_00_across_the_clock_changes(services, storage, day):
    await stored(storage, "Abends", datetime.combine(day, time(18), BERLIN))
    found = await reminders(services).occurrences(berlin(2026, 1, 2), berlin(2026, 12, 31))
    dues = {o.key.split(":")[3]: o.due for o in found}
    assert dues["1d"] == datetime.combine(day - timedelta(days=1), time(18), BERLIN)
    assert dues["1d"].astimezone(BERLIN).hour == 18
    assert dues["1h"] == datetime.combine(day, time(17), BERLIN)
    # the day before really is 23 or 25 hours before, where the clocks change in between
    elapsed = (datetime.combine(day, time(18), BERLIN).astimezone(UTC)
               - dues["1d"].astimezone(UTC))
    expected = {date(2026, 3, 29): 23, date(2026, 10, 25): 25}.get(day, 24)
    assert elapsed == timedelta(hours=expected)


async def test_render_mentions_only_registered_members(services, storage, clock):
    await stored(storage, "KI in der Verwaltung", berlin(2026, 12, 3, 10), capacity=2,
                 location="Rathaus Wiesbaden", url="https://meet.example.org/ki")
    for user in (ALICE, BOB, CAROL):
        await ask(services, "!anmelden 1", sender=user)
    source = reminders(services)
    [first, _] = await source.occurrences(berlin(2026, 11, 20), berlin(2026, 12, 31))
    clock.at = first.due
    reply = await source.render(first, late=False)
    assert reply.mentions == (ALICE, BOB)
    assert not reply.direct
    text = reply.text.plain
    assert text.startswith("Erinnerung: KI in der Verwaltung (Nr. 1) beginnt in 1 Tag.")
    assert "verspätet" not in text
    assert "- Wann: Do., 03.12.2026, 10:00–12:00 Uhr" in text
    assert "- Wo: Rathaus Wiesbaden" in text
    assert "- Link: https://meet.example.org/ki" in text
    assert f"Angemeldet (2): {ALICE}, {BOB}" in text
    assert CAROL not in text
    html = to_html(reply.text.markdown)
    assert 'href="https://matrix.to/#/@alice:example.org"' in html
    late = await source.render(first, late=True)
    assert "(verspätet)" in late.text.plain


async def test_render_in_the_rooms_language(services, storage, clock):
    await stored(storage, "AI", berlin(2026, 12, 3, 10))
    await set_language(storage, ROOM, "en")
    source = reminders(services)
    [_, last] = await source.occurrences(berlin(2026, 11, 20), berlin(2026, 12, 31))
    clock.at = last.due
    reply = await source.render(last, late=True)
    assert reply.text.plain.startswith("Reminder: AI (no. 1) starts in 1 hour. (late)")
    assert reply.mentions == ()
    assert "Want to join? !rsvp 1" in reply.text.plain


async def test_render_is_none_for_cancelled_started_or_unknown(services, storage, clock):
    await stored(storage, "KI", berlin(2026, 12, 3, 10))
    source = reminders(services)
    [first, last] = await source.occurrences(berlin(2026, 11, 20), berlin(2026, 12, 31))
    clock.at = berlin(2026, 12, 3, 10)
    assert await source.render(last, late=True) is None  # started
    clock.at = first.due
    await storage.workshops.cancel(1, clock.now())
    assert await source.render(first, late=False) is None
    gone = Occurrence("workshop:9:1d:!r:x.org", "workshops", first.due, "!r:x.org", "9")
    assert await source.render(gone, late=False) is None


# -- catalogs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("command", workshops.router.commands, ids=lambda c: c.name)
def test_every_command_is_described_and_its_examples_parse(command, lang):
    registry = Registry([core.router, workshops.router])
    assert CATALOG.has(lang, f"commands.{command.name}.summary")
    assert CATALOG.has(lang, f"groups.{command.group}")
    for arg in command.args:
        assert CATALOG.has(lang, f"args.{arg.name}")
    for line in CATALOG.template(lang, f"commands.{command.name}.examples").splitlines():
        name, _, rest = line[1:].partition(" ")
        assert registry.find(name) is command, line
        parse_args(command, rest)


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_every_example_works(services, storage, lang):
    """Each help example runs without an internal error (moderator examples as a moderator)."""
    await stored(storage, "KI", berlin(2026, 12, 3, 10))
    for _ in range(11):
        await stored(storage, "Platzhalter", berlin(2026, 12, 4, 10))
    every = [c for command in workshops.router.commands for c in (command, *command.subcommands)]
    for command in every:
        for line in CATALOG.template(lang, f"commands.{command.key}.examples").splitlines():
            for reply in await ask(services, line, level=Level.ROOM_MODERATOR, language=lang):
                for failure in ("So geht es", "How workshops work", "kenne ich", "don't know",
                                "So funktioniert", "How to use"):
                    assert failure not in reply.text.plain, line


async def test_a_moved_workshop_gets_its_reminders_again_under_new_keys(services, storage):
    from dataclasses import replace

    workshop = await stored(storage, "KI", berlin(2026, 12, 3, 10))
    source = reminders(services, reminders=[timedelta(days=1)], rooms=[], timezone=BERLIN)
    [before_move] = await source.occurrences(berlin(2026, 11, 20), berlin(2026, 12, 31))
    moved = replace(workshop, starts_at=berlin(2026, 12, 10, 10),
                    ends_at=berlin(2026, 12, 10, 12))
    await storage.workshops.update(moved, berlin(2026, 11, 25, 12))
    [after_move] = await source.occurrences(berlin(2026, 11, 20), berlin(2026, 12, 31))
    assert "20261203T1000" in before_move.key and "20261210T1000" in after_move.key
    assert after_move.key != before_move.key  # the delivery record of the first does not block
    assert after_move.due == berlin(2026, 12, 9, 10)


# -- who may do what (README, "Who may do what") -------------------------------------------------


async def test_a_room_moderators_workshop_is_listed_in_that_room_only(services, storage):
    await add(services, "03.12.2026 10:00-12:00 Nur hier")
    assert "Nur hier" in await say(services, "!werkstätten")
    assert "Nur hier" not in await say(services, "!werkstätten", room_id=OTHER_ROOM)
    assert not (await storage.workshops.get(1)).network_wide
    await say(services, "!werkstatt neu 04.12.2026 10:00-12:00 Für alle",
              level=Level.NETWORK_MODERATOR)
    assert "Für alle" in await say(services, "!werkstätten", room_id=OTHER_ROOM)
    assert (await storage.workshops.get(2)).network_wide


@pytest.mark.parametrize("room_id", [ROOM, None])
async def test_a_network_wide_or_roomless_workshop_is_the_network_moderators(services, storage,
                                                                             room_id):
    await stored(storage, "KI", berlin(2026, 12, 3, 10), room_id=room_id, network_wide=True)
    await ask(services, "!anmelden 1", sender=BOB)
    for body in ("!werkstatt ändern 1 ort=Irgendwo", "!werkstatt absagen 1 Grund",
                 "!werkstatt 1 teilnehmende"):
        replies = await ask(services, body, level=Level.ROOM_MODERATOR)
        assert [r.direct for r in replies] == [False], body  # no DM to anyone
        assert "Rolle Netzwerk-Moderation" in replies[0].text.plain, body
    assert (await storage.workshops.get(1)).location is None
    assert not (await storage.workshops.get(1)).cancelled
    replies = await ask(services, "!werkstatt absagen 1 Grund", level=Level.NETWORK_MODERATOR,
                        room_id=OTHER_ROOM)
    assert (await storage.workshops.get(1)).cancelled
    assert [r.recipient for r in replies if r.direct] == [BOB]
