"""What the operators' CSV imports share (`bot/importers/experts.py`, `bot/importers/workshops.py`).

Both read a UTF-8 file (a BOM is accepted), comma-separated, or `;`-separated when only that
makes the header name known columns (German spreadsheet exports). The header is checked as a
whole (unknown, repeated or missing columns make the file unusable: ImportFileError); each
data row is then checked on its own, and every problem is a RowProblem naming the row's first
line in the file (a quoted cell may span lines; the header is line 1).

An import checks every row first and writes nothing if any row is bad, unless the operator
asks to skip bad rows; `run_cli` reports the outcome and gives the exit code.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

# A progress bar is shown (on a terminal) only for files with more rows than this.
PROGRESS_MIN_ROWS = 1000


class ImportFileError(Exception):
    """The file as a whole is unusable (unreadable, not UTF-8, bad header, broken CSV)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class RowProblem:
    line: int  # the row's first physical line in the file; the header is line 1
    column: str | None  # None: the row as a whole
    reason: str

    def __str__(self) -> str:
        where = f"{self.column}: " if self.column else ""
        return f"line {self.line}: {where}{self.reason}"


def too_long(value: str, limit: int) -> str | None:
    """Why `value` is too long for a cell allowing `limit` characters (None: it is not)."""
    if len(value) > limit:
        return f"too long ({len(value)} characters, at most {limit})"
    return None


# -- reading a file -----------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """The text of the UTF-8 file at `path`; ImportFileError says why there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImportFileError([f"{path}: file not found"]) from None
    except IsADirectoryError:
        raise ImportFileError([f"{path}: is a directory, not a CSV file"]) from None
    except OSError as exc:
        raise ImportFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    return decode(data, str(path))


def decode(data: bytes, name: str = "file") -> str:
    """The text of a UTF-8 file (BOM dropped); ImportFileError names the first bad line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportFileError([f"{name}: line {line}: not UTF-8 (save the file as UTF-8 "
                               "CSV)"]) from None


def _header(text: str, known: tuple[str, ...]) -> tuple[list[str], str]:
    """The header's cells and the delimiter: `,`, or `;` if only that yields known columns."""
    first = text.replace("\r\n", "\n").replace("\r", "\n").split("\n", 1)[0]
    cells = next(csv.reader([first]), [])
    if len(cells) == 1 and ";" in cells[0]:
        by_semicolon = next(csv.reader([first], delimiter=";"), [])
        if {c.strip() for c in by_semicolon} & set(known):
            return by_semicolon, ";"
    return cells, ","


def check_header(cells: list[str], name: str, known: tuple[str, ...],
                 required: tuple[str, ...]) -> list[str]:
    """Why the header `cells` is bad: unknown, repeated or missing required columns."""
    problems = []
    seen: set[str] = set()
    for raw in cells:
        column = raw.strip()
        if column not in known:
            problems.append(f"{name}: line 1: header: unknown column {column!r} "
                            f"(the columns are: {', '.join(known)})")
        elif column in seen:
            problems.append(f"{name}: line 1: header: column {column!r} appears twice")
        seen.add(column)
    for column in required:
        if column not in seen:
            problems.append(f"{name}: line 1: header: missing required column {column!r}")
    return problems


class CsvRows:
    """The data rows of a CSV text whose header is good: iterate for (first line, the cells by
    column) per non-blank row, or a RowProblem for a row with the wrong number of fields.

    ImportFileError (on creation, or while iterating for broken CSV) if the file is unusable
    as a whole. `on_row` is called per row read, blank ones included.
    """

    def __init__(self, text: str, *, name: str, columns: tuple[str, ...],
                 required: tuple[str, ...], on_row: Callable[[], Any] | None = None) -> None:
        if not text.strip():
            raise ImportFileError([f"{name}: the file is empty (expected the header "
                                   f"{','.join(columns)})"])
        header, self.delimiter = _header(text, columns)
        if problems := check_header(header, name, columns, required):
            raise ImportFileError(problems)
        self.columns = [c.strip() for c in header]  # in the file's order
        self._text = text
        self._name = name
        self._on_row = on_row

    def __iter__(self) -> Iterator[tuple[int, dict[str, str] | RowProblem]]:
        columns, on_row = self.columns, self._on_row
        width = len(columns)
        reader = csv.reader(io.StringIO(self._text, newline=""), delimiter=self.delimiter,
                            strict=True)
        line = 1  # where the next row starts
        try:
            next(reader)  # the header, already checked
            line = reader.line_num + 1
            for row in reader:
                if on_row is not None:
                    on_row()
                start, line = line, reader.line_num + 1
                if not any(cell.strip() for cell in row):
                    continue  # a blank line, or a spreadsheet's empty row
                if len(row) != width:
                    yield start, RowProblem(start, None,
                                            f"{len(row)} fields, the header has {width}")
                else:
                    yield start, dict(zip(columns, row, strict=True))
        except csv.Error as exc:
            raise ImportFileError([f"{self._name}: line {line}: broken CSV: {exc}"]) from None


@contextmanager
def progress(total: int, enabled: bool, desc: str) -> Iterator[Callable[[], Any] | None]:
    """A progress bar's tick on stderr for `total` rows, or None (disabled, or a small file)."""
    if not enabled or total <= PROGRESS_MIN_ROWS:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit=" rows", file=sys.stderr, leave=False,
              mininterval=0.2) as bar:
        yield bar.update


# -- the outcome --------------------------------------------------------------------------------


def summary(counts: str, dry_run: bool) -> str:
    """An import's summary line from its counts (`created 2, …`)."""
    if dry_run:
        return f"dry run, nothing written; importing the good rows would give: {counts}"
    return counts


class Outcome(Protocol):
    @property
    def rows(self) -> int: ...
    @property
    def bad_rows(self) -> int: ...
    @property
    def problems(self) -> list[RowProblem]: ...
    @property
    def written(self) -> bool: ...
    def summary(self) -> str: ...


R = TypeVar("R", bound=Outcome)


async def run_cli(importing: Awaitable[R], *, dry_run: bool,
                  notes: Callable[[R], list[str]] = lambda _: [],
                  out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Await an import, report it (problems and `notes` on `err`, the summary on `out`), and
    give the exit code: 1 if the file is unusable, or if any row is bad and nothing was
    written (also for a dry run); else 0."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        result = await importing
    except ImportFileError as exc:
        for line in exc.problems:
            print(line, file=err)
        return 1
    for problem in result.problems:
        print(problem, file=err)
    if result.problems and not result.written and not dry_run:
        good = result.rows - result.bad_rows
        print(f"nothing written: {result.bad_rows} of {result.rows} rows are bad "
              f"(fix them, or use --skip-invalid to import the {good} good ones)", file=err)
    for note in notes(result):
        print(note, file=err)
    print(result.summary(), file=out)
    return 1 if result.problems and not result.written else 0
