"""`nextbot import workshops`: checking, time zones, all-or-nothing, re-imports, reporting."""

import asyncio
import contextlib
import io
import os
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.importers.csv_reading import ImportFileError
from bot.importers.workshops import (
    COLUMNS,
    CREATED_BY,
    check_workshop_rows,
    import_workshops,
    parse_time,
    run_cli,
)
from commands import workshops as workshop_commands
from commands.features import open_storage
from commands.workshops import WorkshopConfig, WorkshopReminders
from storage import Storage
from storage.workshops import PLANNED, Workshop
from tests.unit.fakes import config, make_services, say

BERLIN = ZoneInfo("Europe/Berlin")
HEADER = ",".join(COLUMNS)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

GOOD = (f"{HEADER}\n"
        "KI in der Verwaltung,2026-12-03T10:00,2026-12-03T12:00,KI-Netzwerk,Rathaus Wiesbaden,"
        'https://meet.example.org/ki,"Was geht, was nicht."\n'
        "Open Data,2026-07-02 14:00,2026-07-02 16:30,,,,\n")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def csv_file(tmp_path: Path, text: str, name: str = "workshops.csv", bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def problems_of(text: str, now: datetime = NOW) -> list[str]:
    return [str(p) for p in check_workshop_rows(text, timezone="Europe/Berlin", now=now)[1]]


async def all_of(storage: Storage) -> list[Workshop]:
    found = []
    number = 1
    while (workshop := await storage.workshops.get(number)) is not None:
        found.append(workshop)
        number += 1
    return found


async def changes(storage: Storage) -> int:
    return (await storage.db.fetchone("SELECT total_changes()"))[0]


async def run(storage: Storage, path: Path, **kwargs):
    kwargs.setdefault("now", NOW)
    return await import_workshops(storage, path, timezone="Europe/Berlin", **kwargs)


# -- a good file --------------------------------------------------------------------------------


async def test_a_good_file_is_imported(storage, tmp_path):
    result = await run(storage, csv_file(tmp_path, GOOD))

    assert (result.rows, result.created, result.existing, result.skipped) == (2, 2, 0, 0)
    assert result.summary() == "created 2, already there 0, skipped 0"
    assert result.written and not result.problems
    ki, data = await all_of(storage)
    assert [w.number for w in result.workshops] == [1, 2]
    assert (ki.title, ki.community, ki.location, ki.url, ki.description) == (
        "KI in der Verwaltung", "KI-Netzwerk", "Rathaus Wiesbaden",
        "https://meet.example.org/ki", "Was geht, was nicht.")
    assert (ki.starts_at, ki.ends_at) == (berlin(2026, 12, 3, 10), berlin(2026, 12, 3, 12))
    # No room (reminders go to [workshops] rooms), no limit, made by the import.
    assert (ki.room_id, ki.capacity, ki.created_by, ki.status) == (None, None, CREATED_BY,
                                                                   PLANNED)
    assert CREATED_BY == "import"
    assert ki.created_at == NOW
    assert (data.title, data.community, data.location, data.url, data.description) == (
        "Open Data", None, None, None, None)
    assert (data.starts_at, data.ends_at) == (berlin(2026, 7, 2, 14), berlin(2026, 7, 2, 16, 30))


async def test_columns_in_any_order_optional_ones_may_be_left_out(storage, tmp_path):
    text = ("ends_at,title,starts_at,url\n"
            "2026-12-03T12:00,  KI  in der\tVerwaltung ,2026-12-03T10:00,www.example.org/ki\n")
    result = await run(storage, csv_file(tmp_path, text))
    assert result.created == 1
    (ki,) = await all_of(storage)
    assert ki.title == "KI in der Verwaltung"  # cleaned as the command cleans input
    assert ki.url == "https://www.example.org/ki"  # as `link=www.…` in the command
    assert (ki.community, ki.location, ki.description) == (None, None, None)


def test_text_is_one_line_and_a_span_of_exactly_14_days_is_fine():
    text = (f'{HEADER}\nKI,2026-12-03T10:00,2026-12-17T10:00,,,,"zwei\nZeilen\u200b"\n')
    workshops, problems = check_workshop_rows(text, timezone="Europe/Berlin", now=NOW)
    assert problems == []
    assert workshops[0].description == "zwei Zeilen"


async def test_imported_reminders_go_to_the_configured_rooms(storage, tmp_path):
    await run(storage, csv_file(tmp_path, GOOD))
    services = make_services(storage, [workshop_commands.router])
    services.configs["workshops"] = WorkshopConfig.create(["1d"], ["!a:x.org", "!b:x.org"],
                                                      "Europe/Berlin")
    found = await WorkshopReminders(services).occurrences(berlin(2026, 12, 1),
                                                          berlin(2026, 12, 31))
    assert [(o.due, o.room_id) for o in found] == [(berlin(2026, 12, 2, 10), "!a:x.org"),
                                                   (berlin(2026, 12, 2, 10), "!b:x.org")]


# -- each bad row, with its line ----------------------------------------------------------------


@pytest.mark.parametrize(("row", "problem"), [
    (",2026-12-03T10:00,2026-12-03T12:00,,,,", "title: missing"),
    ("  \t,2026-12-03T10:00,2026-12-03T12:00,,,,", "title: missing"),
    ("x" * 201 + ",2026-12-03T10:00,2026-12-03T12:00,,,,",
     "title: too long (201 characters, at most 200)"),
    ("KI,,2026-12-03T12:00,,,,", "starts_at: missing"),
    ("KI,2026-12-03T10:00,,,,,", "ends_at: missing"),
    ("KI,morgen,2026-12-03T12:00,,,,",
     "starts_at: 'morgen' is not a date and time (expected e.g. 2026-12-03T10:00)"),
    ("KI,2026-12-03,2026-12-03T12:00,,,,",
     "starts_at: '2026-12-03' is not a date and time (expected e.g. 2026-12-03T10:00)"),
    ("KI,12/03/2026 10:00,2026-12-03T12:00,,,,",
     "starts_at: '12/03/2026 10:00' is not a date and time (expected e.g. 2026-12-03T10:00)"),
    ("KI,2026-02-30T10:00,2026-03-01T12:00,,,,",
     "starts_at: '2026-02-30T10:00': no such date or time"),
    ("KI,2026-12-03T10:00,2026-12-03T24:30,,,,",
     "ends_at: '2026-12-03T24:30': no such date or time"),
    ("KI,2026-12-03T10:00+25:00,2026-12-03T12:00,,,,",
     "starts_at: '2026-12-03T10:00+25:00': no such offset '+25:00'"),
    ("KI,2026-12-03T10:00,2026-12-03T09:00,,,,",
     "ends_at: 2026-12-03 09:00 CET is not after the start (2026-12-03 10:00 CET)"),
    ("KI,2026-12-03T10:00,2026-12-03T10:00,,,,",
     "ends_at: 2026-12-03 10:00 CET is not after the start (2026-12-03 10:00 CET)"),
    ("KI,2026-12-03T10:00,2026-12-17T10:01,,,,",
     "ends_at: 14 days, 0:01:00 after the start, at most 14 days"),
    # at most five years ahead of NOW (2026-06-01), not before 2000: typos, not plans
    ("KI,2031-06-02T10:00,2031-06-02T12:00,,,,",
     "starts_at: 2031-06-02 10:00 CEST is more than 5 years ahead (a typo? at most 2031-06-01)"),
    ("KI,9999-12-31T23:00,9999-12-31T23:59,,,,",
     "starts_at: 9999-12-31 23:00 CET is more than 5 years ahead (a typo? at most 2031-06-01)"),
    ("KI,9999-12-31T23:00-05:00,9999-12-31T23:30-05:00,,,,",
     "starts_at: '9999-12-31T23:00-05:00': outside the calendar the bot can use"
     "\nline 4: ends_at: '9999-12-31T23:30-05:00': outside the calendar the bot can use"),
    ("KI,0001-01-01T00:30,0001-01-01T01:00,,,,",  # 00:30 in Berlin is still year 0 in UTC
     "starts_at: '0001-01-01T00:30': outside the calendar the bot can use"),
    ("KI,0001-01-01T10:00,0001-01-01T12:00,,,,",
     "starts_at: 0001-01-01 10:00 LMT is before 2000 (a typo?)"),
    ("KI,1999-12-31T10:00,1999-12-31T12:00,,,,",
     "starts_at: 1999-12-31 10:00 CET is before 2000 (a typo?)"),
    ("KI,2026-12-03T10:00,2026-12-03T12:00,,,ftp://example.org/ki,",
     "url: 'ftp://example.org/ki' is not an http(s) address "
     "(expected e.g. https://meet.example.org/ki)"),
    ("KI,2026-12-03T10:00,2026-12-03T12:00,,,javascript:alert(1),",
     "url: 'javascript:alert(1)' is not an http(s) address "
     "(expected e.g. https://meet.example.org/ki)"),
    ("KI,2026-12-03T10:00,2026-12-03T12:00,,,https://example.org/" + "u" * 481 + ",",
     "url: too long (501 characters, at most 500)"),
    ("KI,2026-12-03T10:00,2026-12-03T12:00," + "c" * 81 + ",,,",
     "community: too long (81 characters, at most 80)"),
    ("KI,2026-12-03T10:00,2026-12-03T12:00,," + "o" * 201 + ",,",
     "location: too long (201 characters, at most 200)"),
    ("KI,2026-12-03T10:00,2026-12-03T12:00,,,," + "d" * 2001,
     "description: too long (2001 characters, at most 2000)"),
    ("KI,2026-12-03T10:00,2026-12-03T12:00,,,", "6 fields, the header has 7"),
    ("KI,2026-12-03T10:00,2026-12-03T12:00,,,,,", "8 fields, the header has 7"),
])
def test_each_bad_row_is_reported_with_its_line_and_reason(row, problem):
    # line 2 is good and spans two lines (a quoted line break): the bad row is on line 4.
    text = f'{HEADER}\nOk,2026-12-01T10:00,2026-12-01T11:00,,,,"zwei\nZeilen"\n{row}\n'
    workshops, problems = check_workshop_rows(text, timezone="Europe/Berlin", now=NOW)
    assert "\n".join(str(p) for p in problems) == f"line 4: {problem}"
    assert [w.title for w in workshops] == ["Ok"]


def test_every_problem_of_a_row_is_reported_and_blank_rows_are_ignored():
    text = f"{HEADER}\n\n,,,,,,\n,gestern,2026-01-01T10:00,,,mailto:a@b.de,\n"
    assert problems_of(text) == [
        "line 4: title: missing",
        "line 4: starts_at: 'gestern' is not a date and time (expected e.g. 2026-12-03T10:00)",
        "line 4: url: 'mailto:a@b.de' is not an http(s) address "
        "(expected e.g. https://meet.example.org/ki)",
    ]


def test_the_same_workshop_twice_in_a_file_names_the_first_line():
    text = (f"{HEADER}\nKI,2026-12-03T10:00,2026-12-03T12:00,,,,\n"
            "Open Data,2026-12-03T10:00,2026-12-03T12:00,,,,\n"
            "ki ,2026-12-03T09:00Z,2026-12-03T13:00,,,,\n")  # the same title and start
    workshops, problems = check_workshop_rows(text, timezone="Europe/Berlin", now=NOW)
    assert [str(p) for p in problems] == [
        "line 4: the same workshop (title and start) as on line 2"]
    assert [w.title for w in workshops] == ["KI", "Open Data"]


@pytest.mark.parametrize(("data", "problem"), [
    (b"", "the file is empty (expected the header "
          "title,starts_at,ends_at,community,location,url,description)"),
    (b"title,starts_at\nKI,2026-12-03T10:00\n",
     "line 1: header: missing required column 'ends_at'"),
    (b"title,starts_at,ends_at,room\n", "line 1: header: unknown column 'room'"),
    (b"title,title,starts_at,ends_at\n", "line 1: header: column 'title' appears twice"),
    (HEADER.encode() + b"\nM\xfcller,2026-12-03T10:00,2026-12-03T12:00,,,,\n",
     "line 2: not UTF-8"),
    (HEADER.encode() + b'\n"KI,2026-12-03T10:00,2026-12-03T12:00,,,,\nB\n',
     "line 2: broken CSV"),
])
async def test_an_unusable_file_is_reported(storage, tmp_path, data, problem):
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(ImportFileError) as info:
        await run(storage, path)
    assert info.value.problems[0].startswith(f"{path}: {problem}")


async def test_a_missing_file_is_reported(storage, tmp_path):
    with pytest.raises(ImportFileError) as info:
        await run(storage, tmp_path / "nope.csv")
    assert info.value.problems == [f"{tmp_path / 'nope.csv'}: file not found"]


# -- time zones ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "local", "utc"), [
    # winter (CET, +01:00) and summer (CEST, +02:00): the wall clock of Europe/Berlin
    ("2026-12-03T10:00", berlin(2026, 12, 3, 10), datetime(2026, 12, 3, 9, tzinfo=UTC)),
    ("2026-07-02 10:00", berlin(2026, 7, 2, 10), datetime(2026, 7, 2, 8, tzinfo=UTC)),
    ("2026-7-2t9:05:30", berlin(2026, 7, 2, 9, 5, 30), datetime(2026, 7, 2, 7, 5, 30, tzinfo=UTC)),
    ("03.12.2026 10:00", berlin(2026, 12, 3, 10), datetime(2026, 12, 3, 9, tzinfo=UTC)),
    ("2.7.2026 10:00 Uhr", berlin(2026, 7, 2, 10), datetime(2026, 7, 2, 8, tzinfo=UTC)),
    # an explicit offset is converted to the configured zone
    ("2026-12-03T10:00+01:00", berlin(2026, 12, 3, 10), datetime(2026, 12, 3, 9, tzinfo=UTC)),
    ("2026-12-03T10:00Z", berlin(2026, 12, 3, 11), datetime(2026, 12, 3, 10, tzinfo=UTC)),
    ("2026-07-02T10:00+01:00", berlin(2026, 7, 2, 11), datetime(2026, 7, 2, 9, tzinfo=UTC)),
    ("2026-07-02T10:00 -0400", berlin(2026, 7, 2, 16), datetime(2026, 7, 2, 14, tzinfo=UTC)),
    # 02:30 does not exist on the day the clocks go forward: an hour later, as the command does
    ("2027-03-28T02:30", berlin(2027, 3, 28, 3, 30), datetime(2027, 3, 28, 1, 30, tzinfo=UTC)),
    # 02:30 exists twice on the day they go back: the first one
    ("2026-10-25T02:30", berlin(2026, 10, 25, 2, 30), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
])
def test_times_are_read_on_the_configured_wall_clock(text, local, utc):
    moment = parse_time(text, BERLIN)
    assert moment.astimezone(UTC) == utc  # (== across zones is False for a repeated time)
    assert moment.tzinfo == BERLIN
    assert moment.replace(tzinfo=None) == local.replace(tzinfo=None)


async def test_a_winter_and_a_summer_workshop_are_stored_in_the_zone(storage, tmp_path):
    text = (f"{HEADER}\nWinter,2026-12-03T10:00,2026-12-03T12:00,,,,\n"
            "Sommer,2026-07-02T10:00,2026-07-02T12:00,,,,\n"
            "UTC,2026-07-03T08:00Z,2026-07-03T10:00Z,,,,\n")
    await run(storage, csv_file(tmp_path, text))
    winter, summer, utc = await all_of(storage)
    assert winter.starts_at.utcoffset() == timedelta(hours=1)
    assert summer.starts_at.utcoffset() == timedelta(hours=2)
    for workshop in (winter, summer, utc):
        assert workshop.starts_at.tzinfo == BERLIN
    assert (f"{winter.starts_at:%H:%M}", f"{summer.starts_at:%H:%M}",
            f"{utc.starts_at:%H:%M}-{utc.ends_at:%H:%M}") == ("10:00", "10:00", "10:00-12:00")


async def test_another_configured_zone(storage, tmp_path):
    text = f"{HEADER}\nKI,2026-12-03T10:00,2026-12-03T12:00,,,,\n"
    await import_workshops(storage, csv_file(tmp_path, text), timezone=ZoneInfo("UTC"), now=NOW)
    (ki,) = await all_of(storage)
    assert ki.starts_at == datetime(2026, 12, 3, 10, tzinfo=UTC)


# -- a calendar export with past workshops -----------------------------------------------------

class Clock:
    def now(self) -> datetime:
        return NOW


EXPORT = (f"{HEADER}\n"
          "Vor zwei Tagen,2026-05-30T10:00,2026-05-30T12:00,,,,\n"  # NOW is 2026-06-01 14:00
          "Letztes Jahr,2025-11-20T10:00,2025-11-20T12:00,,,,\n"
          "KI in der Verwaltung,2026-12-03T10:00,2026-12-03T12:00,,,,\n"
          "Open Data,2026-07-02 14:00,2026-07-02 16:30,,,,\n")


async def test_past_workshops_of_a_calendar_export_are_imported_as_past(storage, tmp_path):
    result = await run(storage, csv_file(tmp_path, EXPORT))
    assert result.problems == [] and result.written
    assert result.summary() == ("created 4 (2 of them past: not listed as coming up, no "
                                "reminders), already there 0, skipped 0")
    assert result.past == 2 and len(await all_of(storage)) == 4
    # never listed as coming up …
    services = make_services(storage, [workshop_commands.router])
    services.clock = Clock()
    services.configs["workshops"] = WorkshopConfig.create(["1d", "1h"], ["!a:x.org"],
                                                      "Europe/Berlin")
    assert [w.title for w in await storage.workshops.upcoming(NOW)] == [
        "Open Data", "KI in der Verwaltung"]
    listed = await say(services, "!werkstätten")
    assert "Open Data" in listed and "Vor zwei Tagen" not in listed
    assert "Letztes Jahr" not in listed
    # … no reminders, not even late ones after a downtime …
    source = WorkshopReminders(services)
    reminded = await source.occurrences(NOW - timedelta(days=400), NOW + timedelta(days=400))
    assert {o.subject for o in reminded} == {"3", "4"}
    # … and no sign-ups
    assert "hat schon begonnen" in await say(services, "!anmelden 1")
    assert await storage.workshops.registrations(1) == []
    # Importing the export again adds nothing.
    again = await run(storage, csv_file(tmp_path, EXPORT))
    assert again.summary() == "created 0, already there 4, skipped 0"


async def test_a_dry_run_counts_the_past_rows_and_only_malformed_rows_stop_an_import(
        storage, tmp_path):
    result = await run(storage, csv_file(tmp_path, EXPORT), dry_run=True)
    assert result.summary() == ("dry run, nothing written; importing the good rows would give: "
                                "created 4 (2 of them past: not listed as coming up, no "
                                "reminders), already there 0, skipped 0")
    broken = EXPORT + "Kaputt,2026-12-03T10:00,2026-12-03T09:00,,,,\n"
    code, out, err = await cli(storage, csv_file(tmp_path, broken))
    assert (code, out) == (1, "created 0, already there 0, skipped 5\n")
    assert "nothing written: 1 of 5 rows are bad" in err
    assert await all_of(storage) == []


# -- all or nothing, skip-invalid, dry run ------------------------------------------------------

BAD = GOOD + "Kaputt,2026-12-03T10:00,2026-12-03T09:00,,,,\n"


async def test_one_bad_row_and_nothing_is_written(storage, tmp_path):
    before = await changes(storage)
    result = await run(storage, csv_file(tmp_path, BAD))
    assert [str(p) for p in result.problems] == [
        "line 4: ends_at: 2026-12-03 09:00 CET is not after the start (2026-12-03 10:00 CET)"]
    assert not result.written
    assert (result.rows, result.created, result.existing, result.skipped, result.bad_rows) == (
        3, 0, 0, 3, 1)
    assert result.summary() == "created 0, already there 0, skipped 3"
    assert await all_of(storage) == []
    assert await changes(storage) == before


async def test_skip_invalid_imports_the_good_rows(storage, tmp_path):
    result = await run(storage, csv_file(tmp_path, BAD), skip_invalid=True)
    assert result.written
    assert result.summary() == "created 2, already there 0, skipped 1"
    assert [w.title for w in await all_of(storage)] == ["KI in der Verwaltung", "Open Data"]


async def test_a_dry_run_writes_nothing_and_tells_what_would_happen(storage, tmp_path):
    await run(storage, csv_file(tmp_path, "title,starts_at,ends_at\n"
                                          "Open Data,2026-07-02 14:00,2026-07-02 16:30\n"))
    before = await changes(storage)
    for text, skip in ((GOOD, False), (BAD, False), (BAD, True)):
        result = await run(storage, csv_file(tmp_path, text), dry_run=True, skip_invalid=skip)
        assert not result.written and result.dry_run
        assert result.summary() == ("dry run, nothing written; importing the good rows would "
                                    "give: created 1, already there 1, skipped "
                                    f"{int(text == BAD)}")
    assert await changes(storage) == before
    assert len(await all_of(storage)) == 1


# -- importing again ----------------------------------------------------------------------------


async def test_importing_the_same_file_again_adds_nothing(storage, tmp_path):
    path = csv_file(tmp_path, GOOD)
    await run(storage, path)
    before = await changes(storage)

    result = await run(storage, path)
    assert result.summary() == "created 0, already there 2, skipped 0"
    assert result.written and result.workshops == []
    assert await changes(storage) == before
    assert len(await all_of(storage)) == 2


async def test_a_longer_file_adds_only_the_new_rows_even_after_some_took_place(storage,
                                                                              tmp_path):
    await run(storage, csv_file(tmp_path, GOOD))
    # Later (Open Data has taken place), the file grows by a row; the title's case and
    # spacing and the way the start is written do not matter.
    later = datetime(2026, 8, 1, tzinfo=UTC)
    text = (f"{HEADER}\nki in der  VERWALTUNG,2026-12-03T09:00Z,2026-12-03T13:00,,,,\n"
            "Open Data,2026-07-02 14:00,2026-07-02 16:30,,,,\n"
            "E-Akte,2026-12-10T10:00,2026-12-10T12:00,,,,\n")
    result = await run(storage, csv_file(tmp_path, text), now=later)
    assert result.problems == []
    assert result.summary() == "created 1, already there 2, skipped 0"
    ki, _, akte = await all_of(storage)
    assert ki.ends_at == berlin(2026, 12, 3, 12)  # an existing workshop is not changed
    assert akte.title == "E-Akte"
    # A new row in the past is imported as past.
    text += "Vorbei,2026-07-03T10:00,2026-07-03T12:00,,,,\n"
    result = await run(storage, csv_file(tmp_path, text), now=later)
    assert result.problems == []
    assert result.summary() == ("created 1 (1 of them past: not listed as coming up, no "
                                "reminders), already there 3, skipped 0")


async def test_a_cancelled_or_moderator_added_workshop_counts_as_there(storage, tmp_path):
    await storage.workshops.add(Workshop(
        title="KI in der Verwaltung", starts_at=berlin(2026, 12, 3, 10),
        ends_at=berlin(2026, 12, 3, 11), created_by="@mod:example.org",
        room_id="!room:example.org"), NOW)
    await storage.workshops.add(Workshop(
        title="Open Data", starts_at=berlin(2026, 7, 2, 14), ends_at=berlin(2026, 7, 2, 15),
        created_by="import"), NOW)
    await storage.workshops.cancel(2, NOW)
    result = await run(storage, csv_file(tmp_path, GOOD))
    assert result.summary() == "created 0, already there 2, skipped 0"
    assert len(await all_of(storage)) == 2  # the cancelled one is not brought back


async def test_a_file_with_bom_and_crlf_and_one_with_semicolons(storage, tmp_path):
    result = await run(storage, csv_file(tmp_path, GOOD.replace("\n", "\r\n"), bom=True))
    assert result.summary() == "created 2, already there 0, skipped 0"
    (first, *_) = await all_of(storage)
    assert first.title == "KI in der Verwaltung"  # the BOM is not part of the header

    text = ("title;starts_at;ends_at;description\n"
            "E-Akte;03.12.2026 14:00;03.12.2026 16:00;Fragen, Antworten\n")
    result = await run(storage, csv_file(tmp_path, text, name="excel.csv", bom=True))
    assert result.summary() == "created 1, already there 0, skipped 0"
    assert (await storage.workshops.get(3)).description == "Fragen, Antworten"


async def test_a_progress_bar_on_large_files_does_no_harm(storage, tmp_path):
    rows = "".join(f"W {i},2026-12-03T10:00,2026-12-03T12:00,,,,\n" for i in range(1100))
    result = await run(storage, csv_file(tmp_path, HEADER + "\n" + rows), progress=True)
    assert result.created == 1100


# -- what the command line prints ---------------------------------------------------------------


async def cli(storage, path, **kwargs) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    kwargs.setdefault("now", NOW)
    code = await run_cli(storage, path, timezone="Europe/Berlin", out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


async def test_cli_reports_problems_on_stderr_and_exits_1_when_nothing_is_written(storage,
                                                                                   tmp_path):
    path = csv_file(tmp_path, BAD)
    assert await cli(storage, path) == (1, "created 0, already there 0, skipped 3\n", (
        "line 4: ends_at: 2026-12-03 09:00 CET is not after the start (2026-12-03 10:00 CET)\n"
        "nothing written: 1 of 3 rows are bad (fix them, or use --skip-invalid to import the "
        "2 good ones)\n"))
    code, out, _ = await cli(storage, path, dry_run=True)
    assert (code, out) == (1, "dry run, nothing written; importing the good rows would give: "
                              "created 2, already there 0, skipped 1\n")
    code, out, err = await cli(storage, path, skip_invalid=True, reminders=["1d"],
                               reminder_rooms=["!a:x.org"])
    assert (code, out) == (0, "created 2, already there 0, skipped 1\n")
    assert "nothing written" not in err and "note:" not in err
    assert await cli(storage, path, skip_invalid=True) == (
        0, "created 0, already there 2, skipped 1\n", err)


async def test_cli_notes_when_imported_workshops_get_no_reminders(storage, tmp_path):
    code, out, err = await cli(storage, csv_file(tmp_path, GOOD), reminders=["1d", "1h"],
                               reminder_rooms=[])
    assert (code, out) == (0, "created 2, already there 0, skipped 0\n")
    assert err == ("note: [workshops] rooms is empty, so imported workshops get no reminders "
                   "(they belong to no room)\n")


async def test_cli_reports_an_unusable_file(storage, tmp_path):
    missing = tmp_path / "nope.csv"
    assert await cli(storage, missing) == (1, "", f"{missing}: file not found\n")


# -- `nextbot import workshops` (bot/cli.py; skipped until it has the subcommand) ---------------


def _cli_has_import_workshops() -> bool:
    from bot.cli import build_parser

    with contextlib.redirect_stderr(io.StringIO()):
        try:
            build_parser().parse_args(["import", "workshops", "x.csv"])
        except SystemExit:
            return False
    return True


# The command line runs on the real clock: a day relative to it (a fixed one would fall in
# the past, or too far ahead, as the years go by).
SOON = (datetime.now(UTC) + timedelta(days=60)).date()

needs_cli = pytest.mark.skipif(not _cli_has_import_workshops(),
                               reason="bot/cli.py has no `import workshops` subcommand yet")


@pytest.fixture
def _clean_env(monkeypatch):
    for name in list(os.environ):
        if name.upper().startswith("NEXTBOT_"):
            monkeypatch.delenv(name)


@needs_cli
@pytest.mark.usefixtures("_clean_env")
def test_cli_import_workshops(tmp_path, capsys):
    from bot.cli import main

    cfg = config(tmp_path, '[workshops]\nrooms = ["!termine:example.org"]\n')
    day = SOON.isoformat()
    rows = (f"{HEADER}\nKI,{day}T10:00,{day}T12:00,,,,\n"
            f"Kaputt,{day}T10:00,{day}T09:00,,,,\n")
    path = csv_file(tmp_path, rows)

    assert main(["import", "workshops", str(path), "-c", str(cfg), "--dry-run"]) == 1
    assert not (tmp_path / "data").exists()  # a dry run creates no database
    assert main(["import", "workshops", str(path), "-c", str(cfg)]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1].startswith("nothing written: 1 of 2 rows are bad")
    assert captured.out.splitlines()[-1] == "created 0, already there 0, skipped 2"

    assert main(["import", "workshops", str(path), "-c", str(cfg), "--skip-invalid"]) == 0
    assert capsys.readouterr().out == "created 1, already there 0, skipped 1\n"
    assert main(["import", "workshops", str(path), "--config", str(cfg), "--skip-invalid"]) == 0
    assert capsys.readouterr().out == "created 0, already there 1, skipped 1\n"


@needs_cli
@pytest.mark.usefixtures("_clean_env")
def test_cli_import_workshops_uses_the_configured_zone(tmp_path, capsys):
    from bot.cli import main

    cfg = config(tmp_path, '[bot]\ntimezone = "America/New_York"\n')
    day = SOON.isoformat()
    path = csv_file(tmp_path, f"{HEADER}\nKI,{day}T10:00,{day}T12:00,,,,\n")
    assert main(["import", "workshops", str(path), "-c", str(cfg)]) == 0
    assert "no reminders" in capsys.readouterr().err  # [workshops] rooms is empty

    async def first() -> Workshop | None:
        storage = await open_storage(tmp_path / "data" / "nextbot.db")
        try:
            return await storage.workshops.get(1)
        finally:
            await storage.close()

    workshop = asyncio.run(first())
    assert workshop is not None
    assert workshop.starts_at == datetime.combine(
        SOON, time(10), ZoneInfo("America/New_York")).astimezone(UTC)
