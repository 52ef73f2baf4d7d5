"""Operators' CSV import of the member register (`nextbot import municipalities FILE.csv`), and
the row checks the member feed (`bot/importers/feed.py`) shares.

The file format, one member organisation per row, UTF-8 (a BOM is accepted), comma-separated
(a header that only parses with `;` is read with `;`):

    name,kind,state,ags,joined_on,website

`name` and `state` are required; the other columns may be left out or empty.

- `kind`: Stadt, Gemeinde, Landkreis, Land, Bundesbehörde or other (German or English words);
  empty: other. `state`: one of the 16 states (name, code or common spelling: NRW, BW).
- `ags`: the 8-digit official municipality key; its first two digits must be the state's.
- `joined_on`: `2026-11-26` or `26.11.2026`, not in the future; empty: unknown.
- `website`: an http(s) address (`www.…` is read as `https://www.…`).

A member already in the register (same AGS, else same name and state; see
`storage.municipalities.same_member`) is not added again but counted as "already there", also
when an admin removed it. Two rows for the same member in one file are an error.

Importing into an empty register only seeds it; later imports register the new members to be
announced (one digest post per announcement room, by the running bot within 15 minutes),
unless `silent`. Nothing is written if any row is bad, unless the operator skips bad rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from bot.importers import csv_reading
from bot.importers.csv_reading import CsvRows, ImportFileError, RowProblem, read_text, too_long
from bot.importers.file_tool import FileTool, import_options
from commands.municipalities import parse_date
from storage import Storage
from storage.municipalities import (
    KINDS,
    MAX_LENGTH,
    AgsError,
    Member,
    MemberIndex,
    normalize_ags,
    normalize_kind,
    normalize_website,
)
from storage.text import clean_text, normalize_state

if TYPE_CHECKING:
    from bot.settings import Settings

COLUMNS = ("name", "kind", "state", "ags", "joined_on", "website")
REQUIRED = ("name", "state")
SOURCE = "import"


@dataclass(frozen=True)
class MemberImportResult:
    rows: int
    created: int
    existing: int  # already in the register (or removed by an admin): not written
    skipped: int
    bad_rows: int
    problems: list[RowProblem]
    written: bool
    announced: bool = False  # the created ones are to be announced
    dry_run: bool = False

    def summary(self) -> str:
        counts = (f"created {self.created}, already there {self.existing}, "
                  f"skipped {self.skipped}")
        if self.created and not self.dry_run:
            counts += ", announced by the bot" if self.announced else ", not announced"
        return csv_reading.summary(counts, self.dry_run)


# -- one row (pure) -----------------------------------------------------------------------------


def check_member_row(cells: Mapping[str, str], line: int, *, today: date
                     ) -> tuple[Member | None, list[RowProblem]]:
    """The member a row describes, or None and why not. `cells` maps column to raw text."""
    problems: list[RowProblem] = []
    name = clean_text(cells.get("name", ""))
    if not name:
        problems.append(RowProblem(line, "name", "missing"))
    elif (reason := too_long(name, MAX_LENGTH["name"])) is not None:
        problems.append(RowProblem(line, "name", reason))
    raw_state = clean_text(cells.get("state", ""))
    state = normalize_state(raw_state) if raw_state else None
    if not raw_state:
        problems.append(RowProblem(line, "state", "missing"))
    elif state is None:
        problems.append(RowProblem(line, "state", f"{raw_state!r} is none of the 16 states"))
    kind = "other"
    if raw_kind := clean_text(cells.get("kind", "")):
        kind = normalize_kind(raw_kind) or ""
        if not kind:
            problems.append(RowProblem(line, "kind", f"{raw_kind!r} is no kind (one of "
                                       f"{', '.join(KINDS)}, German or English)"))
    ags = None
    if raw_ags := clean_text(cells.get("ags", "")):
        try:
            ags = normalize_ags(raw_ags, state)
        except AgsError as error:
            problems.append(RowProblem(line, "ags", _ags_reason(raw_ags, error, state)))
    joined = None
    if raw_joined := clean_text(cells.get("joined_on", "")):
        try:
            joined = parse_date(raw_joined)
        except ValueError:
            problems.append(RowProblem(line, "joined_on", f"{raw_joined!r} is no date "
                                       "(expected e.g. 2026-11-26)"))
        else:
            if joined > today:
                problems.append(RowProblem(line, "joined_on", f"{joined} is in the future"))
    website = None
    if raw_website := clean_text(cells.get("website", "")):
        website = normalize_website(raw_website)
        if website is None:
            problems.append(RowProblem(line, "website", f"{raw_website!r} is not an http(s) "
                                       "address"))
        elif (reason := too_long(website, MAX_LENGTH["website"])) is not None:
            problems.append(RowProblem(line, "website", reason))
    if problems:
        return None, problems
    assert state is not None
    return Member(name=name, state=state, kind=kind, ags=ags, joined_on=joined,
                  website=website), []


def _ags_reason(raw: str, error: AgsError, state: str | None) -> str:
    if error.reason == "digits":
        return f"{raw!r} is no AGS (8 digits, e.g. 06414000)"
    if error.reason == "land":
        return f"{raw!r} is no AGS (its first two digits must be a state, 01 to 16)"
    return f"{raw!r} belongs to {error.land}, not to {state}"


def check_member_rows(rows: Iterable[tuple[int, Mapping[str, str] | RowProblem]], *,
                      today: date, duplicates_are_problems: bool = True,
                      ) -> tuple[list[Member], list[RowProblem]]:
    """Check every row: the good rows' members (in order) and every bad row's problems. A row
    for a member an earlier row already named is a problem, or (for the feed) left out."""
    members: list[Member] = []
    seen = MemberIndex()  # member -> its line
    problems: list[RowProblem] = []
    for line, cells in rows:
        if isinstance(cells, RowProblem):
            problems.append(cells)
            continue
        member, found = check_member_row(cells, line, today=today)
        if member is not None:
            earlier = seen.find(member)
            if earlier is not None:
                member = None
                if duplicates_are_problems:
                    found = [RowProblem(line, None, f"the same member as on line {earlier}")]
        problems.extend(found)
        if member is not None:
            members.append(member)
            seen.add(member, line)
    return members, problems


def csv_rows(text: str, name: str = "file", on_row: Callable[[], Any] | None = None
             ) -> CsvRows:
    """The rows of a CSV text with the register's header (ImportFileError if unusable)."""
    return CsvRows(text, name=name, columns=COLUMNS, required=REQUIRED, on_row=on_row)


def json_rows(text: str) -> list[tuple[int, dict[str, str] | RowProblem]]:
    """The rows of a JSON list of objects with the CSV's fields (others are ignored); numbers
    become text (an AGS as a number gets its leading zero back). ImportFileError if the text
    is no such list. The "line" of a row is its position, counted from 1."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ImportFileError(["not valid JSON"]) from None
    if not isinstance(data, list):
        raise ImportFileError(["JSON: expected a list of objects"])
    rows: list[tuple[int, dict[str, str] | RowProblem]] = []
    for position, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            rows.append((position, RowProblem(position, None, "not an object")))
            continue
        cells: dict[str, str] = {}
        for column in COLUMNS:
            value = item.get(column)
            if isinstance(value, bool) or isinstance(value, (list, dict)):
                value = None
            if column == "ags" and isinstance(value, int) and 0 < value < 10**8:
                value = f"{value:08d}"
            cells[column] = "" if value is None else str(value)
        rows.append((position, cells))
    return rows


# -- importing ----------------------------------------------------------------------------------


async def import_members(storage: Storage, path: Path | str, *, skip_invalid: bool = False,
                         dry_run: bool = False, silent: bool = False, progress: bool = False,
                         now: datetime | None = None) -> MemberImportResult:
    """Check a CSV file and add its new members (one transaction); see the module docstring.
    Raises ImportFileError if the file as a whole is unusable."""
    path = Path(path)
    now = now or datetime.now(UTC)
    text = read_text(path)
    with csv_reading.progress(text.count("\n"), progress, "checking") as tick:
        members, problems = check_member_rows(csv_rows(text, str(path), on_row=tick),
                                              today=now.date())
    bad = len({p.line for p in problems})
    rows = len(members) + bad
    if bad and not skip_invalid and not dry_run:
        return MemberImportResult(rows, 0, 0, rows, bad, problems, written=False)
    repo = storage.municipalities
    if dry_run:
        stored = MemberIndex(await repo.identities())
        new = [m for m in members if stored.find(m) is None]
        return MemberImportResult(rows, len(new), len(members) - len(new), bad, bad, problems,
                                  written=False, dry_run=True)
    registered_at = int(now.timestamp() * 1000)
    async with storage.db.transaction():
        announce = not silent and not await repo.is_empty()  # an empty one: seeding
        added, _ = await repo.add_new([
            replace(m, source=SOURCE, added_by=SOURCE, registered_at=registered_at,
                    announce=announce) for m in members])
    return MemberImportResult(rows, len(added), len(members) - len(added), bad, bad, problems,
                              written=True, announced=announce)


async def run_cli(storage: Storage, path: Path | str, *, skip_invalid: bool = False,
                  dry_run: bool = False, silent: bool = False, announcement_rooms: int = 0,
                  progress: bool = False, now: datetime | None = None,
                  out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """`nextbot import municipalities`: import, report, and the exit code (as the other
    imports: 1 if the file is unusable, or if any row is bad and nothing was written)."""

    def notes(result: MemberImportResult) -> list[str]:
        if not result.created or result.dry_run:
            return []
        if not result.announced:
            return ["note: the register was empty or --silent was given: nothing is announced"]
        if not announcement_rooms:
            return ["note: [announcements] rooms is empty; only rooms whose moderators switched "
                    "announcements on get the announcement"]
        return []

    return await csv_reading.run_cli(
        import_members(storage, path, skip_invalid=skip_invalid, dry_run=dry_run,
                       silent=silent, progress=progress, now=now),
        dry_run=dry_run, notes=notes, out=out, err=err)


# -- on the command line ------------------------------------------------------------------------


def _options(parser: argparse.ArgumentParser) -> None:
    import_options(parser)
    parser.add_argument("--silent", action="store_true",
                        help="register the new members without announcing them")


async def _run_import(settings: Settings, storage: Storage, args: argparse.Namespace) -> int:
    return await run_cli(storage, args.file, skip_invalid=args.skip_invalid, dry_run=args.dry_run,
                         silent=args.silent,
                         announcement_rooms=len(settings.announcements.rooms),
                         progress=sys.stderr.isatty())


IMPORT = FileTool(
    "import", "municipalities",
    "add members of the network (municipalities and other organisations) from a CSV file",
    """\
Add member organisations of the network to the register from a CSV file.

The file: UTF-8 CSV (a BOM is fine), comma-separated (a file whose header only parses
with ';' is read with ';'), one member per row, this header, columns in any order:

  name,kind,state,ags,joined_on,website

name and state are required. kind is Stadt, Gemeinde, Landkreis, Land, Bundesbehörde
or other (German or English words; empty: other); state one of the 16 states (name,
code or common spelling: NRW, BW); ags the 8-digit official municipality key, whose
first two digits must be the state's; joined_on 2026-11-26 or 26.11.2026, not in the
future; website an http(s) address.

Every row is checked first; each problem is reported as 'line N: column: reason'.
If any row is bad, nothing is written (exit 1) unless --skip-invalid is given.
A member already in the register (same AGS, else same name and state), also one an
admin removed, is not added again but counted as 'already there'.

Importing into an empty register only fills it. Later imports register the new members
to be announced: a running bot posts one announcement per room with announcements
within 15 minutes (all joins of one import in one message). --silent announces nothing.
""",
    _run_import, _options)
