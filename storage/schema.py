"""The database in parts, each with its own history of steps: the core's, and one per feature.

A part (`Schema`) is declared with what uses its tables: the core's in `storage/core_schema.py`,
a feature's in its `FEATURE` (`commands/feature.py`), from the steps (`MIGRATIONS`) and the member
columns (`MEMBER_DATA`) its storage module holds; `Storage.open` gets every feature's. Each part's
steps are numbered 1, 2, 3 … on their own; the table `schema_versions` records how far each part
has come. Steps are appended, never edited. A feature's step may change a core table (add a
column to it): the core's steps run first.

Until schema version 17 the database had one numbered history shared by all parts, kept in
SQLite's `user_version`. Each step of that history now belongs to the part (or parts) whose
tables it made, marked with `shared_step`; a database from then is moved over once, in one
transaction: each part's version is where that history had brought it. `user_version` is then
set to `PARTS_VERSION`, which a bot from before refuses as "newer than this version knows".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from storage.database import Database
from storage.member_data import MemberColumn
from storage.outbox import RecordSent

log = logging.getLogger(__name__)

SHARED_HISTORY_END = 17  # the last version of the one history all parts shared
PARTS_VERSION = 18  # `user_version` of a database whose parts keep their own versions


class DatabaseTooNewError(RuntimeError):
    """The database was written by a newer version of the bot than this one."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str
    # The step of the shared history (1 … 17) this step was part of; None for every later step.
    shared_step: int | None = None


@dataclass(frozen=True)
class Schema:
    """One part of the database: its steps, the repositories that read and write its tables, and
    its columns that can name a member (see `storage/member_data.py`).

    `repositories` maps the name a repository is reached by (`storage.<name>`) to what makes it
    from the database."""

    name: str
    migrations: tuple[Migration, ...]
    repositories: Mapping[str, Callable[[Database], Any]] = field(default_factory=dict)
    member_data: tuple[MemberColumn, ...] = ()
    # (table, column) whose name says it holds a user id but that never names a member: why
    not_member_data: Mapping[tuple[str, str], str] = field(default_factory=dict)
    # A room was upgraded: move this part's rows bound to the old room to its successor (in the
    # carry-over's transaction, `storage/upgrades.py`); returns what moved, for the log: counts
    # and ids only, nothing a member wrote.
    move_room: Callable[[Database, str, str], Awaitable[Mapping[str, object]]] | None = None
    # Kinds of the bot's messages this part records once sent (`OutgoingMessage.record_as`),
    # and what records each (`storage/outbox.py`).
    when_sent: Mapping[str, RecordSent] = field(default_factory=dict)


async def versions(db: Database) -> dict[str, int]:
    """How far each part of the database has come (empty before the first migration)."""
    if not await db.fetchone(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_versions'"):
        return {}
    rows = await db.fetchall("SELECT part, version FROM schema_versions")
    return {row[0]: int(row[1]) for row in rows}


async def migrate(db: Database, schemas: Sequence[Schema]) -> None:
    """Bring every part to its latest step, each step in its own transaction with its version."""
    _check(schemas)
    await _move_to_parts(db, schemas)
    stored = await versions(db)
    for schema in schemas:
        current, latest = stored.get(schema.name, 0), len(schema.migrations)
        if current > latest:
            raise DatabaseTooNewError(
                f"The database's part {schema.name!r} has schema version {current}, but this "
                f"version of the bot only knows up to {latest}. Update the bot, or restore a "
                f"backup of the database.")
    for schema in schemas:
        for migration in schema.migrations[stored.get(schema.name, 0):]:
            log.info("migrating the database's part %r to version %d: %s", schema.name,
                     migration.version, migration.description)
            async with db.transaction():
                for statement in _split_sql(migration.sql):
                    await db.execute(statement)
                await _set_version(db, schema.name, migration.version)
    unknown = sorted(set(stored) - {schema.name for schema in schemas})
    if unknown:  # a feature taken out of the bot: its tables stay, untouched, for a way back
        log.info("the database holds parts this bot does not use, left as they are: %s",
                 ", ".join(unknown))


def _check(schemas: Sequence[Schema]) -> None:
    names = [schema.name for schema in schemas]
    if len(set(names)) != len(names):
        raise ValueError(f"two parts of the database have one name: {names}")
    for schema in schemas:
        numbers = [m.version for m in schema.migrations]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"the steps of {schema.name!r} must be numbered 1, 2, 3, … "
                             "without gaps")
        shared = [m.shared_step for m in schema.migrations if m.shared_step is not None]
        if shared != sorted(shared) or shared != [m.shared_step for m in
                                                  schema.migrations[:len(shared)]]:
            raise ValueError(f"the steps of {schema.name!r} from the shared history must come "
                             "first, in its order")


async def _move_to_parts(db: Database, schemas: Sequence[Schema]) -> None:
    """Record each part's version, once: a new database starts every part at 0, one from the
    shared history at the steps that history had made of it."""
    row = await db.fetchone("PRAGMA user_version")
    shared = int(row[0]) if row else 0
    if shared == PARTS_VERSION:
        return
    if shared > PARTS_VERSION or not 0 <= shared <= SHARED_HISTORY_END:
        raise DatabaseTooNewError(
            f"The database has schema version {shared}, but this version of the bot only knows "
            f"up to {PARTS_VERSION}. Update the bot, or restore a backup of the database.")
    async with db.transaction():
        await db.execute("CREATE TABLE schema_versions (part TEXT PRIMARY KEY, "
                         "version INTEGER NOT NULL)")
        for schema in schemas:
            made = [m.version for m in schema.migrations
                    if m.shared_step is not None and m.shared_step <= shared]
            if made:
                await _set_version(db, schema.name, max(made))
        await db.execute(f"PRAGMA user_version = {PARTS_VERSION}")
    if shared:
        log.info("the database's schema version %d is now kept per part", shared)


async def _set_version(db: Database, part: str, version: int) -> None:
    await db.execute("INSERT INTO schema_versions (part, version) VALUES (?, ?) "
                     "ON CONFLICT (part) DO UPDATE SET version = excluded.version",
                     (part, version))


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (our migrations hold no ';' inside literals)."""
    without_comments = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
    return [s.strip() for s in without_comments.split(";") if s.strip()]
