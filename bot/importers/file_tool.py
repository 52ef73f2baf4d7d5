"""A feature's tool for the operator on the command line: `nextbot import <what> FILE.csv` or
`nextbot export <what> FILE.csv`.

Each importer declares its own (`IMPORT`, `EXPORT` in its module), with the help that
describes its file; `bot/features.py` lists them by feature, and `bot/cli.py` makes a
subcommand of each, so the command line names no feature.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import Settings
    from storage import Storage


def no_options(parser: argparse.ArgumentParser) -> None:
    """A tool with no options beyond its file and `--config`."""


@dataclass(frozen=True)
class FileTool:
    verb: str  # "import" or "export"
    what: str  # the word after it: `nextbot import experts`
    help: str  # one line, in `nextbot import -h`
    description: str  # `nextbot import experts -h`: the file's format, what happens
    # Does the work on the opened database; the exit code (problems reported on stderr).
    run: Callable[[Settings, Storage, argparse.Namespace], Awaitable[int]]
    options: Callable[[argparse.ArgumentParser], None] = no_options  # beyond the file
    database_must_exist: bool = False  # an export reads what is stored


def import_options(parser: argparse.ArgumentParser) -> None:
    """The options every import has."""
    parser.add_argument("--skip-invalid", action="store_true",
                        help="import the good rows even if some rows are bad (exit 0)")
    parser.add_argument("--dry-run", action="store_true",
                        help="only check the file and report; write nothing "
                        "(exit 1 if any row is bad)")
