"""Operators' CSV import of workshops (`nextbot import workshops FILE.csv`).

The file format, one workshop per row, UTF-8 (a BOM is accepted), comma-separated (a header
that only parses with `;` is read with `;`, as German spreadsheets save it):

    title,starts_at,ends_at,community,location,url,description

The columns may come in any order; `title`, `starts_at` and `ends_at` are required, the others
may be left out of the header or left empty.

- Times are ISO 8601, `2026-12-03T10:00` or `2026-12-03 10:00` (seconds allowed), on the wall
  clock of the configured time zone (`[bot] timezone`); a time with an offset (`+01:00`, `Z`)
  is converted to that zone. `03.12.2026 10:00` is read too (spreadsheets in German turn ISO
  dates into that when they save). A wall-clock time that does not exist (the hour the clocks
  go forward) lands an hour later; one that exists twice is taken the first time, as the
  moderators' `!werkstatt neu` does.
- The checks are the command's: a title (at most 200 characters), the end after the start, at
  most 14 days long, the start at most 5 years ahead (`MAX_YEARS_AHEAD`) and not before the
  year 2000 (`EARLIEST_YEAR`; both are typos more often than plans), the link an http(s)
  address (`www.…` is read as `https://www.…`), the command's length limits. Text is cleaned
  as the bot cleans members' input: one line, control characters dropped, spaces collapsed.
- A workshop that has started already is no bad row: a calendar export holds the past ones
  too. It is imported as past (the summary says how many): never listed as coming up, no
  reminders (they were due before it was imported), no sign-ups.
- Imported workshops belong to no room (their reminders go to `[workshops] rooms`), have no
  limit on places, and are created by `import` (CREATED_BY).
- The same title (ignoring case and spacing) at the same start is the same workshop: a row for
  a workshop that is already stored (planned or cancelled) is not written again, but counted as
  "already there", so a file can be imported again after it grew. Two such rows in one file
  are an error.

Reading a file never writes: `check_workshop_rows` checks every row first and returns the
workshops and the problems (one per line and column). `import_workshops` then adds the new
workshops in one transaction, or none of them if any row is bad (unless the operator asks to
skip bad rows).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from datetime import timezone as fixed_offset
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.importers import csv_reading
from bot.importers.csv_reading import CsvRows, RowProblem, read_text, too_long
from bot.importers.file_tool import FileTool, import_options
from commands.dates import MAX_SPAN, MAX_YEARS_AHEAD, latest_start_day
from commands.links import normalize_link
from commands.schedule import local_time
from commands.workshops import MAX_LENGTH
from storage import Storage
from storage.database import utc_ms
from storage.text import clean_text
from storage.workshops import Workshop

if TYPE_CHECKING:
    from bot.settings import Settings

COLUMNS = ("title", "starts_at", "ends_at", "community", "location", "url", "description")
REQUIRED = ("title", "starts_at", "ends_at")
CREATED_BY = "import"  # Workshop.created_by of imported workshops (else a moderator's user id)
# CSV column -> Workshop attribute, for the optional free-text columns.
_TEXT_FIELDS = ("community", "location", "description")
_ISO = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})(?:[Tt]|\s+)"
    r"(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?"
    r"\s*(?P<z>[Zz]|[+-]\d{2}(?::?\d{2})?)?$")
_GERMAN = re.compile(  # 03.12.2026 10:00 (four-digit year only: never ambiguous)
    r"^(?P<d>\d{1,2})\.(?P<mo>\d{1,2})\.(?P<y>\d{4}),?\s+"
    r"(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?(?:\s*[Uu]hr)?$")
EXAMPLE_TIME = "2026-12-03T10:00"
EARLIEST_YEAR = 2000  # an export's past workshops go back a few years, not to the year 26

# A workshop's identity for re-imports: (title folded, start in UTC milliseconds).
Key = tuple[str, int]


def workshop_key(title: str, starts_at: datetime) -> Key:
    """What makes two workshops the same: the title (case and spacing ignored), the start."""
    return _fold(title), utc_ms(starts_at)


def _fold(title: str) -> str:
    return " ".join(clean_text(title).casefold().split())


@dataclass(frozen=True)
class WorkshopImportResult:
    rows: int  # data rows, blank rows not counted
    created: int
    existing: int  # rows for workshops already stored: not written ("already there")
    skipped: int  # bad rows (all rows when the import was refused)
    bad_rows: int
    problems: list[RowProblem]
    written: bool
    dry_run: bool = False
    workshops: list[Workshop] = field(default_factory=list)  # the created ones, with numbers
    past: int = 0  # of the created, those that had started already: imported as past

    def summary(self) -> str:
        past = (f" ({self.past} of them past: not listed as coming up, no reminders)"
                if self.past else "")
        return csv_reading.summary(f"created {self.created}{past}, already there "
                                  f"{self.existing}, skipped {self.skipped}", self.dry_run)


# -- cleaning and checking one row (pure) -------------------------------------------------------


def parse_time(value: str, tz: ZoneInfo) -> datetime:
    """`2026-12-03T10:00`, `2026-12-03 10:00`, `…+01:00`, `…Z`, `03.12.2026 10:00` → aware, in
    `tz`. ValueError (its message is the reason to report) for anything else."""
    value = value.strip()
    found = _ISO.match(value) or _GERMAN.match(value)
    if found is None:
        raise ValueError(f"{value!r} is not a date and time (expected e.g. {EXAMPLE_TIME})")
    try:
        day = date(int(found["y"]), int(found["mo"]), int(found["d"]))
        at = time(int(found["h"]), int(found["mi"]), int(found["s"] or 0))
    except ValueError:
        raise ValueError(f"{value!r}: no such date or time") from None
    zone = found.groupdict().get("z")
    if zone in ("Z", "z"):
        offset = timedelta(0)
    elif zone:
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or 0)
        if hours > 23 or minutes > 59:
            raise ValueError(f"{value!r}: no such offset {zone!r}")
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
    try:
        if not zone:
            return local_time(day, at, tz)
        return datetime.combine(day, at, fixed_offset(offset)).astimezone(tz)
    except OverflowError:  # within hours of 0001-01-01 or 9999-12-31
        raise ValueError(f"{value!r}: outside the calendar the bot can use") from None


def _local(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment:%m-%d %H:%M} {moment.tzname()}"  # %Y pads no year 1


def check_workshop_row(cells: Mapping[str, str], line: int, *, tz: ZoneInfo, now: datetime
                       ) -> tuple[Workshop | None, list[RowProblem]]:
    """The workshop a row describes, or None and why not. `cells` maps column to raw text.
    A workshop that started before `now` is a good row: it is imported as past."""
    problems: list[RowProblem] = []
    title = clean_text(cells.get("title", ""))
    if not title:
        problems.append(RowProblem(line, "title", "missing"))
    elif (reason := too_long(title, MAX_LENGTH["title"])) is not None:
        problems.append(RowProblem(line, "title", reason))
    times: dict[str, datetime] = {}
    for column in ("starts_at", "ends_at"):
        raw = cells.get(column, "").strip()
        if not raw:
            problems.append(RowProblem(line, column, "missing"))
            continue
        try:
            times[column] = parse_time(raw, tz)
        except ValueError as exc:
            problems.append(RowProblem(line, column, str(exc)))
    start, end = times.get("starts_at"), times.get("ends_at")
    if start is not None and end is not None:
        if end <= start:
            problems.append(RowProblem(line, "ends_at", f"{_local(end)} is not after the "
                                       f"start ({_local(start)})"))
        elif end - start > MAX_SPAN:
            problems.append(RowProblem(line, "ends_at", f"{end - start} after the start, "
                                       f"at most {MAX_SPAN.days} days"))
    if start is not None and start.year < EARLIEST_YEAR:
        problems.append(RowProblem(line, "starts_at", f"{_local(start)} is before "
                                   f"{EARLIEST_YEAR} (a typo?)"))
    elif start is not None and start.date() > (latest := latest_start_day(
            now.astimezone(tz).date())):
        problems.append(RowProblem(line, "starts_at", f"{_local(start)} is more than "
                                   f"{MAX_YEARS_AHEAD} years ahead (a typo? at most {latest})"))
    values: dict[str, str | None] = {}
    for column in _TEXT_FIELDS:
        value = clean_text(cells.get(column, ""))
        if (reason := too_long(value, MAX_LENGTH[column])) is not None:
            problems.append(RowProblem(line, column, reason))
        values[column] = value or None
    values["url"] = None
    if value := clean_text(cells.get("url", "")):
        values["url"] = normalize_link(value)
        if values["url"] is None:
            problems.append(RowProblem(line, "url", f"{value!r} is not an http(s) address "
                                       "(expected e.g. https://meet.example.org/ki)"))
        elif (reason := too_long(values["url"], MAX_LENGTH["url"])) is not None:
            problems.append(RowProblem(line, "url", reason))
    if problems:
        return None, problems
    assert start is not None and end is not None
    return Workshop(title=title, starts_at=start, ends_at=end, created_by=CREATED_BY,
                    room_id=None, capacity=None, **values), []


# -- reading a whole file (pure) ----------------------------------------------------------------


def check_workshop_rows(text: str, *, timezone: str | ZoneInfo, now: datetime,
                        name: str = "file", on_row: Callable[[], Any] | None = None
                        ) -> tuple[list[Workshop], list[RowProblem]]:
    """Check every row of a CSV text: the good rows' workshops (file order) and every bad row's
    problems. Every data row is one or the other, so the file has `len(workshops)` plus
    `len({p.line for p in problems})` rows.

    Raises ImportFileError if the file as a whole is unusable (empty, bad header, broken CSV).
    `name` is how the file is called in those messages; `on_row` is called per row read.
    """
    tz = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
    workshops: list[Workshop] = []
    problems: list[RowProblem] = []
    first_line: dict[Key, int] = {}
    for line, cells in CsvRows(text, name=name, columns=COLUMNS, required=REQUIRED,
                               on_row=on_row):
        if isinstance(cells, RowProblem):
            problems.append(cells)
            continue
        workshop, found = check_workshop_row(cells, line, tz=tz, now=now)
        if workshop is not None:
            key = workshop_key(workshop.title, workshop.starts_at)
            if (earlier := first_line.setdefault(key, line)) != line:
                found = [RowProblem(line, None, f"the same workshop (title and start) as on "
                                    f"line {earlier}")]
                workshop = None
        problems.extend(found)
        if workshop is not None:
            workshops.append(workshop)
    return workshops, problems


# -- importing ----------------------------------------------------------------------------------


async def existing_keys(storage: Storage) -> set[Key]:
    """The keys of every stored workshop, planned or cancelled."""
    stored = await storage.workshops.titles_and_starts()
    return {(_fold(title), start) for title, start in stored}


async def import_workshops(storage: Storage, path: Path | str, *, timezone: str | ZoneInfo,
                           skip_invalid: bool = False, dry_run: bool = False,
                           progress: bool = False,
                           now: datetime | None = None) -> WorkshopImportResult:
    """Check a CSV file and add its new workshops (one transaction); see the module docstring.

    Nothing is written if any row is bad (unless `skip_invalid`) or if `dry_run`. Raises
    ImportFileError if the file as a whole is unusable.
    """
    path = Path(path)
    now = now or datetime.now(UTC)
    text = read_text(path)
    known = await existing_keys(storage)
    with csv_reading.progress(text.count("\n"), progress, "checking") as tick:
        workshops, problems = check_workshop_rows(text, timezone=timezone, now=now,
                                                  name=str(path), on_row=tick)
    bad = len({p.line for p in problems})
    rows = len(workshops) + bad
    if bad and not skip_invalid and not dry_run:  # refused: nothing written
        return WorkshopImportResult(rows, 0, 0, rows, bad, problems, written=False)
    if dry_run:  # what importing the good rows would do
        new = [w for w in workshops if workshop_key(w.title, w.starts_at) not in known]
        return WorkshopImportResult(rows, len(new), len(workshops) - len(new), bad, bad,
                                    problems, written=False, dry_run=True,
                                    past=sum(w.starts_at <= now for w in new))
    created: list[Workshop] = []
    async with storage.db.transaction():  # the check and the writes see the same workshops
        known = await existing_keys(storage)
        for workshop in workshops:
            if workshop_key(workshop.title, workshop.starts_at) not in known:
                created.append(await storage.workshops.add(workshop, now))
    return WorkshopImportResult(rows, len(created), len(workshops) - len(created), bad, bad,
                                problems, written=True, workshops=created,
                                past=sum(w.starts_at <= now for w in created))


async def run_cli(storage: Storage, path: Path | str, *, timezone: str | ZoneInfo,
                  skip_invalid: bool = False, dry_run: bool = False,
                  reminders: Collection[str] = (), reminder_rooms: Collection[str] = (),
                  progress: bool = False, now: datetime | None = None,
                  out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """`nextbot import workshops`: import, report (problems on `err`, the summary on `out`),
    and the exit code: 1 if the file is unusable, or if any row is bad and nothing was
    written (also for a dry run); else 0."""

    def notes(result: WorkshopImportResult) -> list[str]:
        if result.created and reminders and not reminder_rooms:
            return ["note: [workshops] rooms is empty, so imported workshops get no reminders "
                    "(they belong to no room)"]
        return []

    return await csv_reading.run_cli(
        import_workshops(storage, path, timezone=timezone, skip_invalid=skip_invalid,
                         dry_run=dry_run, progress=progress, now=now),
        dry_run=dry_run, notes=notes, out=out, err=err)


# -- on the command line ------------------------------------------------------------------------


async def _run_import(settings: Settings, storage: Storage, args: argparse.Namespace) -> int:
    return await run_cli(storage, args.file, timezone=settings.bot.timezone,
                         skip_invalid=args.skip_invalid, dry_run=args.dry_run,
                         reminders=settings.workshops.reminders,
                         reminder_rooms=settings.workshops.rooms, progress=sys.stderr.isatty())


IMPORT = FileTool(
    "import", "workshops", "add workshops from a CSV file",
    """\
Add workshops from a CSV file.

The file: UTF-8 CSV (a BOM is fine), comma-separated (a file whose header only parses
with ';' is read with ';'), one workshop per row, this header, columns in any order:

  title,starts_at,ends_at,community,location,url,description

title, starts_at and ends_at are required. Times are ISO 8601 on the wall clock of
[bot] timezone: 2026-12-03T10:00 or 2026-12-03 10:00 (03.12.2026 10:00 is read too);
a time with an offset (2026-12-03T10:00+01:00, 2026-12-03T09:00Z) is converted to that
zone. The end must be after the start and at most 14 days later, the start at most
5 years ahead and not before 2000; url must be an http(s) address. Text is made one
line, as the bot does with members' input; the length limits are those of !werkstatt neu.
A workshop that has started already (a calendar export holds the past ones too) is
imported as past: never listed as coming up, no reminders; the summary counts them.

Every row is checked first; each problem is reported as 'line N: column: reason'.
If any row is bad, nothing is written (exit 1) unless --skip-invalid is given.

A row with the same title (case and spacing ignored) and the same start as a stored
workshop, planned or cancelled, is not added again but counted as 'already there',
and not changed either (change a workshop with !werkstatt ändern). So a file can be
imported again after it grew, also once its first workshops have taken place.

Imported workshops belong to no room: their reminders go to the rooms in
[workshops] rooms (a running bot plans them within 15 minutes). They have no limit on
places; moderators of any room can edit or cancel them.
""",
    _run_import, import_options)
