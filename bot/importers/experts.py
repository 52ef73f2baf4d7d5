"""Operators' CSV import and export of the expert directory (`nextbot import/export experts`).

The file format, one profile per row, UTF-8 (a BOM is accepted), comma-separated:

    matrix_id,name,organisation,topics,level,municipality,state,role,bio

The columns may come in any order; only `matrix_id` and `name` are required. `topics` holds the
topics separated by `;`, so a topic can never contain `;` (nor `,`, which members' own topic
lists use as a separator too). A header that only parses with `;` as the delimiter (German
spreadsheet exports) is read with `;`.

Reading a file never writes: `parse_experts` checks every row first and returns the profiles
and the problems (one per line and field). `import_experts` then upserts the good profiles in one
transaction, or none of them if any row is bad (unless the operator asks to skip bad rows).

- An empty cell clears the field; a column that is absent from the header leaves the field of an
  existing profile as it is. The profile's languages (not a column) are always kept.
- A new profile gets the import time as its consent time: the operator asserts that the network
  has the member's consent. An existing profile keeps the consent time it has.
- A row that would leave an existing profile as it is (every field, topics and languages
  included) writes nothing: the profile counts as unchanged and keeps its `updated_at`. So
  re-importing the network's member list only writes the rows that changed.
- `name` may be empty only for a profile that already exists (members may consent before they
  set a name), so an export of any directory imports again unchanged.
- Text is cleaned as the bot cleans members' input: one line, control characters dropped,
  spaces collapsed; then the length limits apply.
- A spreadsheet runs a cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return as a
  formula ("CSV injection"). The export writes such a value with an apostrophe in front
  (`'=HYPERLINK(…)`, also every `'@matrix:id`), which spreadsheets show as text; the import
  takes exactly that apostrophe off again (`plain`), so an export imports again unchanged. A
  value that itself begins with apostrophes before such a character gets one more, so it too
  comes back as it was; any other apostrophe is left alone.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from bot.importers import csv_reading
from bot.importers.csv_reading import (
    PROGRESS_MIN_ROWS,
    CsvRows,
    RowProblem,
    read_text,
    too_long,
)
from bot.importers.file_tool import FileTool, import_options
from bot.settings import _USER_ID_RE
from storage import Storage
from storage.experts import (
    LEVELS,
    MAX_LENGTH,
    MAX_TOPICS,
    Profile,
    normalize_level,
    topic_key,
    unchanged,
)
from storage.text import clean_text, normalize_state

if TYPE_CHECKING:
    from bot.settings import Settings

COLUMNS = ("matrix_id", "name", "organisation", "topics", "level", "municipality", "state",
           "role", "bio")
REQUIRED = ("matrix_id", "name")
TOPIC_SEPARATOR = ";"
DEFAULT_BIO_MAX_LENGTH = 500
# What makes a spreadsheet run a cell as a formula (OWASP, "CSV injection"), and what it shows
# as text instead.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARK = "'"

# CSV column -> Profile attribute, for the free-text columns.
_TEXT_FIELDS = {"name": "display_name", "organisation": "organisation",
                "municipality": "municipality", "role": "role", "bio": "bio"}
# Every Profile attribute a column sets, in column order.
_ATTRIBUTE = {"name": "display_name", "organisation": "organisation", "topics": "topics",
              "level": "level", "municipality": "municipality", "state": "state",
              "role": "role", "bio": "bio"}


class ExportError(Exception):
    """Some profiles cannot be written so that they import again unchanged."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class ParsedFile:
    """The outcome of checking a file; `profiles[i]` was read from line `lines[i]`."""

    columns: frozenset[str]
    delimiter: str
    rows: int = 0  # data rows, blank rows not counted
    profiles: list[Profile] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def bad_rows(self) -> int:
        return len({p.line for p in self.problems})


@dataclass(frozen=True)
class ImportResult:
    rows: int
    created: int
    updated: int
    unchanged: int  # existing profiles the file does not change: not written
    skipped: int
    bad_rows: int
    problems: list[RowProblem]
    written: bool
    dry_run: bool = False

    def summary(self) -> str:
        return csv_reading.summary(f"created {self.created}, updated {self.updated}, "
                                  f"unchanged {self.unchanged}, skipped {self.skipped}",
                                  self.dry_run)


# -- cleaning and checking one row (pure) -------------------------------------------------------


def neutralised(value: str) -> str:
    """`value` as the export writes it: a spreadsheet shows it, never runs it (see above)."""
    return TEXT_MARK + value if value.lstrip(TEXT_MARK).startswith(FORMULA_STARTS) else value


def plain(cell: str) -> str:
    """A cell's value without the apostrophe `neutralised` put in front of it."""
    if cell.startswith(TEXT_MARK) and cell.lstrip(TEXT_MARK).startswith(FORMULA_STARTS):
        return cell[1:]
    return cell


@lru_cache(maxsize=65536)
def _topic(raw: str) -> tuple[str, str, str | None]:
    """(cleaned topic, its key, why it is bad or None); topics repeat a lot, hence the cache."""
    topic = clean_text(raw)
    if not topic:
        return "", "", None
    if "," in topic:
        return topic, "", f"{topic!r} contains ','; separate topics with '{TOPIC_SEPARATOR}'"
    if (reason := too_long(topic, MAX_LENGTH["topic"])) is not None:
        return topic, "", f"{topic!r} is {reason}"
    key = topic_key(topic)
    if not key:
        return topic, "", f"{topic!r} has no letter or digit"
    return topic, key, None


_state = lru_cache(maxsize=4096)(normalize_state)
_level = lru_cache(maxsize=4096)(normalize_level)


def _topics(cell: str, line: int, problems: list[RowProblem]) -> list[str]:
    unique: dict[str, str] = {}
    for raw in cell.split(TOPIC_SEPARATOR):
        topic, key, reason = _topic(raw)
        if reason is not None:
            problems.append(RowProblem(line, "topics", reason))
        elif key:
            unique.setdefault(key, topic)  # the same topic twice: the first spelling wins
    if len(unique) > MAX_TOPICS:
        problems.append(RowProblem(line, "topics",
                                   f"{len(unique)} topics, at most {MAX_TOPICS}"))
    return list(unique.values())


def check_row(cells: Mapping[str, str], line: int, *, bio_max_length: int = DEFAULT_BIO_MAX_LENGTH,
              known_ids: Container[str] = frozenset()) -> tuple[Profile | None, list[RowProblem]]:
    """The profile a row describes, or None and why not. `cells` maps column to the text as
    in the file (a `neutralised` value is read back as it was).

    Columns missing from `cells` stay at the Profile's defaults. `known_ids` are the user ids
    that already have a profile (only they may go without a name).
    """
    cells = {column: plain(cell) for column, cell in cells.items()}
    problems: list[RowProblem] = []
    user_id = cells.get("matrix_id", "").strip()
    if not user_id:
        problems.append(RowProblem(line, "matrix_id", "missing"))
    elif not _USER_ID_RE.match(user_id):
        problems.append(RowProblem(line, "matrix_id", f"{user_id!r} is not a Matrix user id "
                                   "(expected @name:server)"))
    profile = Profile(user_id)
    for column, attribute in _TEXT_FIELDS.items():
        if column not in cells:
            continue
        value = clean_text(cells[column])
        limit = bio_max_length if column == "bio" else MAX_LENGTH[attribute]
        if (reason := too_long(value, limit)) is not None:
            problems.append(RowProblem(line, column, reason))
        setattr(profile, attribute, value or None)
    if not profile.display_name and user_id not in known_ids:
        problems.append(RowProblem(line, "name", "missing (required for a new profile)"))
    if value := clean_text(cells.get("level", "")):
        profile.level = _level(value)
        if profile.level is None:
            problems.append(RowProblem(line, "level", f"{value!r} is not a level "
                                       f"({', '.join(LEVELS)})"))
    if value := clean_text(cells.get("state", "")):
        profile.state = _state(value)
        if profile.state is None:
            problems.append(RowProblem(line, "state", f"{value!r} is not a German state"))
    if "topics" in cells:
        profile.topics = _topics(cells["topics"], line, problems)
    return (None if problems else profile), problems


# -- reading a whole file (pure) ----------------------------------------------------------------


def parse_experts(text: str, *, name: str = "file",
                  bio_max_length: int = DEFAULT_BIO_MAX_LENGTH,
                  known_ids: Container[str] = frozenset(),
                  on_row: Callable[[], Any] | None = None) -> ParsedFile:
    """Check every row of a CSV text: the good rows' profiles and every bad row's problems.

    Raises ImportFileError if the file as a whole is unusable (no or a bad header, broken
    CSV). `name` is how the file is called in those messages; `on_row` is called per row read.
    """
    rows = CsvRows(text, name=name, columns=COLUMNS, required=REQUIRED, on_row=on_row)
    result = ParsedFile(frozenset(rows.columns), rows.delimiter)
    first_line: dict[str, int] = {}
    for start, cells in rows:
        result.rows += 1
        if isinstance(cells, RowProblem):
            result.problems.append(cells)
            continue
        profile, problems = check_row(cells, start, bio_max_length=bio_max_length,
                                      known_ids=known_ids)
        user_id = plain(cells["matrix_id"]).strip()
        if user_id and _USER_ID_RE.match(user_id):
            if (earlier := first_line.setdefault(user_id, start)) != start:
                problems.append(RowProblem(start, "matrix_id",
                                           f"{user_id!r} is already on line {earlier}"))
                profile = None
        if problems:
            result.problems.extend(problems)
        elif profile is not None:
            result.profiles.append(profile)
            result.lines.append(start)
    return result


def merge(profile: Profile, existing: Profile | None, columns: Container[str],
          now: datetime) -> Profile:
    """Make `profile` (fresh from parse_experts, changed in place) what to store: absent columns
    and languages kept from `existing`; a new profile consents at `now`, an existing one keeps
    its consent time (None: upsert_many keeps the stored one)."""
    profile.updated_at = None
    if existing is None:
        profile.consent_at = now
        return profile
    for column, attribute in _ATTRIBUTE.items():
        if column not in columns:
            setattr(profile, attribute, getattr(existing, attribute))
    profile.languages = list(existing.languages)
    profile.consent_at = None
    return profile


# -- import and export --------------------------------------------------------------------------


async def import_experts(storage: Storage, path: Path | str, *, skip_invalid: bool = False,
                         dry_run: bool = False, bio_max_length: int = DEFAULT_BIO_MAX_LENGTH,
                         progress: bool = False, now: datetime | None = None) -> ImportResult:
    """Check a CSV file and upsert its profiles (one transaction); see the module docstring.

    Nothing is written if any row is bad (unless `skip_invalid`) or if `dry_run`. Raises
    ImportFileError if the file as a whole is unusable.
    """
    path = Path(path)
    text = read_text(path)
    known = await storage.experts.user_ids()
    with csv_reading.progress(text.count("\n"), progress, "checking") as tick:
        parsed = parse_experts(text, name=str(path), bio_max_length=bio_max_length,
                               known_ids=known, on_row=tick)
    del text  # the profiles do not refer to it; a large file's text is not kept while writing
    bad = parsed.bad_rows
    if bad and not skip_invalid and not dry_run:  # refused: nothing written
        return ImportResult(parsed.rows, 0, 0, 0, parsed.rows, bad, parsed.problems,
                            written=False)
    # Only the file's profiles are read, not the whole directory.
    existing = await storage.experts.get_many(p.user_id for p in parsed.profiles
                                              if p.user_id in known)
    del known
    now = now or datetime.now(UTC)
    profiles = [merge(p, existing.get(p.user_id), parsed.columns, now) for p in parsed.profiles]
    if dry_run:  # what importing the good rows would do
        same = sum(p.user_id in existing and unchanged(p, existing[p.user_id])
                   for p in profiles)
        updated = sum(p.user_id in existing for p in profiles) - same
        return ImportResult(parsed.rows, len(profiles) - updated - same, updated, same,
                            parsed.rows - len(profiles), bad, parsed.problems, written=False,
                            dry_run=True)
    if progress and len(profiles) > PROGRESS_MIN_ROWS:
        print(f"writing {len(profiles)} profiles …", file=sys.stderr, flush=True)
    created, updated, same = await storage.experts.upsert_many(profiles)
    return ImportResult(parsed.rows, created, updated, same, parsed.rows - len(profiles), bad,
                        parsed.problems, written=True)


async def run_cli(storage: Storage, path: Path | str, *, skip_invalid: bool = False,
                  dry_run: bool = False, bio_max_length: int = DEFAULT_BIO_MAX_LENGTH,
                  progress: bool = False, out: IO[str] | None = None,
                  err: IO[str] | None = None) -> int:
    """`nextbot import experts`: import, report and the exit code (see csv_reading.run_cli)."""
    return await csv_reading.run_cli(
        import_experts(storage, path, skip_invalid=skip_invalid, dry_run=dry_run,
                       bio_max_length=bio_max_length, progress=progress),
        dry_run=dry_run, out=out, err=err)


def row_of(profile: Profile) -> list[str]:
    """A profile as a CSV row, in COLUMNS order, each value `neutralised`."""
    return [neutralised(value) for value in (
        profile.user_id, profile.display_name or "", profile.organisation or "",
        TOPIC_SEPARATOR.join(profile.topics), profile.level or "", profile.municipality or "",
        profile.state or "", profile.role or "", profile.bio or "")]


_COMPARED = ("display_name", "organisation", "topics", "level", "municipality", "state", "role",
             "bio")


def _round_trip_problems(profile: Profile, bio_max_length: int) -> list[str]:
    """Why `profile` would not import again unchanged from its own row (empty: it would)."""
    cells = dict(zip(COLUMNS, row_of(profile), strict=True))
    again, problems = check_row(cells, 0, bio_max_length=bio_max_length,
                                known_ids={profile.user_id})
    if problems:
        return [f"{p.column}: {p.reason}" if p.column else p.reason for p in problems]
    assert again is not None
    return [f"{_column(a)}: would change on import ({getattr(profile, a)!r} → "
            f"{getattr(again, a)!r})" for a in _COMPARED
            if getattr(profile, a) != getattr(again, a)]


def _column(attribute: str) -> str:
    return "name" if attribute == "display_name" else attribute


async def export_experts(storage: Storage, path: Path | str, *,
                         bio_max_length: int = DEFAULT_BIO_MAX_LENGTH,
                         progress: bool = False) -> int:
    """Write every profile to `path` in the import format (user-id order); the number written.

    Every profile is checked to import again unchanged; if any would not, ExportError lists
    them and no file is written. The file is replaced atomically.
    """
    path = Path(path)
    total = await storage.experts.count()
    problems: list[str] = []
    written = 0
    handle = _temporary_beside(path)
    try:
        with handle, csv_reading.progress(total, progress, "exporting") as tick:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            async for profile in storage.experts.all_profiles(batch=5000):
                problems.extend(f"{profile.user_id}: {reason}"
                                for reason in _round_trip_problems(profile, bio_max_length))
                writer.writerow(row_of(profile))
                written += 1
                if tick is not None:
                    tick()
        if problems:
            raise ExportError(problems)
        os.replace(handle.name, path)
    except BaseException:
        _discard(handle.name)
        raise
    return written


def _temporary_beside(path: Path) -> Any:
    """A new temporary file in `path`'s directory, to be renamed to `path` when complete."""
    directory = path.parent
    try:
        return tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", newline="", dir=directory, prefix=f".{path.name}.",
            suffix=".tmp", delete=False)
    except FileNotFoundError:
        raise ExportError([f"{path}: the directory {directory} does not exist"]) from None
    except OSError as exc:
        raise ExportError([f"{path}: cannot write: {exc.strerror or exc}"]) from None


def _discard(name: str) -> None:
    Path(name).unlink(missing_ok=True)


# -- on the command line ------------------------------------------------------------------------

FILE_FORMAT = """\
The file: UTF-8 CSV (a BOM is fine), comma-separated (a file whose header only parses
with ';' is read with ';'), one profile per row, this header, columns in any order:

  matrix_id,name,organisation,topics,level,municipality,state,role,bio

Only matrix_id and name are required (name may be empty for a profile that already
exists). topics are separated by ';' (a topic cannot contain ';' or ','); level is
kommune, land, bund or other (German and English words are understood); state is
one of the 16 states (name, code or common spelling: NRW, bw, Bavaria).
"""


async def _run_import(settings: Settings, storage: Storage, args: argparse.Namespace) -> int:
    return await run_cli(storage, args.file, skip_invalid=args.skip_invalid, dry_run=args.dry_run,
                         bio_max_length=settings.experts.bio_max_length,
                         progress=sys.stderr.isatty())


async def _run_export(settings: Settings, storage: Storage, args: argparse.Namespace) -> int:
    try:
        count = await export_experts(storage, args.file,
                                     bio_max_length=settings.experts.bio_max_length,
                                     progress=sys.stderr.isatty())
    except ExportError as exc:
        for line in [*exc.problems, f"nothing written: {len(exc.problems)} problems; these "
                     "profiles would not import again unchanged"]:
            print(line, file=sys.stderr)
        return 1
    print(f"exported {count} profiles to {args.file}")
    return 0


IMPORT = FileTool(
    "import", "experts", "add or update expert profiles from a CSV file",
    "Add or update expert directory profiles (by matrix_id) from a CSV file.\n\n"
        + FILE_FORMAT
        + """
Every row is checked first; each problem is reported as 'line N: column: reason'.
If any row is bad, nothing is written (exit 1) unless --skip-invalid is given.
An empty cell clears the field; a column left out of the header keeps the field of
existing profiles as it is; members' languages are always kept. Rows that change
nothing are not written (counted as unchanged), so re-importing a member list only
writes what changed.

CONSENT: by importing, you assert that the network has the consent of every member
in the file to be listed in the expert directory. New profiles record the import
time as their consent time; existing profiles keep theirs. Members can still see,
export and delete their profile with !profil.
""",
    _run_import, import_options)

EXPORT = FileTool(
    "export", "experts", "write every expert profile to a CSV file",
    "Write every expert directory profile to a CSV file in the format\n"
        "'import experts' reads, so that importing it again changes nothing.\n\n"
        + FILE_FORMAT
        + """
The file holds personal data: it is created readable by you only. An existing file is
replaced, and only once the export is complete.
""",
    _run_export, database_must_exist=True)
