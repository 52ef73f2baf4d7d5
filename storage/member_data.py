"""Everything the database holds about one member: what `!profil export` hands out and what
`!profil löschen` (and the admins' `!profil entfernen`) remove.

Each part of the database (`storage/schema.py`: the core's, each feature's) lists its columns
that can hold a member's Matrix id (`Schema.member_data`), and what becomes of the member's
rows there:

- `DELETE`: the rows go. Workshop registrations go as withdrawals, so the next on a waiting
  list moves up (and is told); a NExT-to-meet-you group that has no room yet and would be left
  with one member is dissolved, so nobody gets a room of their own.
- `PSEUDONYMISE`: the rows stay because they record something others rely on (who changed a
  room's setting, who added a workshop or a community); the id gives way to a pseudonym, a keyed
  hash (`pseudonym-<hex>`) that is the same for the same member, so a history still shows that
  one person changed a setting twice, but not who.

The export holds exactly the rows a deletion would delete or pseudonymise (the profile with its
topics).
Rows that a repository keeps in memory too, or whose deletion changes others' situation, are
exported and deleted by that repository (`MemberColumn.repository`, `export_with`,
`delete_with`); the rest by plain SQL here.
`tests/unit/test_member_data.py` checks the lists against the migrated schema: every column whose
name says that it holds a user id (`USER_ID_COLUMN`) must be listed in its part's `member_data`
or `not_member_data`; a new one fails the test until it is decided.

What stays, and why:
- commands the member sent that are not answered yet (`inbox`), the running one among them:
  they are the member's own, answered in order after the deletion, and leave the inbox when
  they are answered. So they are not exported either.
- messages to rooms waiting to be sent that name the member (a reminder's mentions): they go
  out within moments, to people who saw the name anyway. Such messages the homeserver refused
  (set aside for the operator) are deleted.
- what other people wrote about the member (a room's welcome text, a workshop description):
  theirs, not the member's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from storage.database import Database


class Action(StrEnum):
    DELETE = "delete"
    PSEUDONYMISE = "pseudonymise"


class Match(StrEnum):
    EQUALS = "equals"  # the column holds the member's id
    CONTAINS = "contains"  # the column holds text that names the member somewhere


@dataclass(frozen=True)
class Deleted:
    """What a repository's own deletion did: rows deleted, and what others must be told."""

    rows: int
    follow_up: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class MemberColumn:
    """A column that can name a member, and what becomes of the rows that name them."""

    table: str
    column: str
    action: Action
    why: str
    match: Match = Match.EQUALS
    # Only these of the member's rows are deleted (an SQL condition); None: all of them.
    deleted_rows: str | None = None
    # Not exported: another member's id, or bytes.
    hidden: tuple[str, ...] = ()
    # The repository (`storage.<name>`) that exports and deletes these rows itself, and how:
    # `export_with(repository, user_id)` gives the rows, `delete_with(repository, user_id, now)`
    # gives how many rows went and what others must be told (who moved up a waiting list).
    repository: str | None = None
    export_with: Callable[[Any, str], Awaitable[list[dict[str, Any]]]] | None = None
    delete_with: Callable[[Any, str, datetime], Awaitable[Deleted]] | None = None

    @property
    def key(self) -> str:
        """How the export calls the rows: `table.column`."""
        return f"{self.table}.{self.column}"


# A column whose name says that it holds a Matrix user id: it must be decided (its part's
# `member_data` or `not_member_data`). Ids also hide in columns named otherwise (`outbox.room_id`
# of a direct message): those are listed in `member_data` by hand.
USER_ID_COLUMN = re.compile(
    r"(?:^|_)(?:user|users|user_id|user_ids|sender|member|members|recipient|recipients|mxid|"
    r"matrix_id|owner|author|creator|inviter|invitee|participant|by)$")

PSEUDONYM_PREFIX = "pseudonym-"
_TIME_COLUMN = re.compile(r"(?:_at|_until|_ts)$")  # milliseconds since the epoch (UTC)


@dataclass(frozen=True)
class Erasure:
    """What deleting a member's data did: rows per `MemberColumn.key`, and per key what others
    must be told (`Deleted.follow_up`: who moved up from a waiting list)."""

    rows: dict[str, int] = field(default_factory=dict)
    follow_up: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return any(self.rows.values())

    def __repr__(self) -> str:
        told = sum(len(v) for v in self.follow_up.values())
        return f"Erasure(rows={sum(self.rows.values())}, follow_up={told})"


class MemberData:
    """Export and deletion of every part's `member_data`, for one member at a time."""

    def __init__(self, db: Database, columns: Sequence[MemberColumn],
                 repositories: Mapping[str, Any]) -> None:
        """`columns`: every part's `member_data`; `repositories`: those the columns name."""
        self._db = db
        self.columns = tuple(columns)
        self._repositories = repositories
        self._pseudonym_key: bytes | None = None

    # -- export ---------------------------------------------------------------------------------

    async def export(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """Per `MemberColumn.key`, the rows `delete` would delete or pseudonymise (as column →
        value; times as ISO 8601); only keys with rows."""
        found: dict[str, list[dict[str, Any]]] = {}
        async with self._db.transaction():  # one consistent picture
            for entry in self.columns:
                if entry.export_with is not None:
                    rows = await entry.export_with(self._repository(entry), user_id)
                else:
                    rows = [_exported(entry, row) for row in await self._db.fetchall(
                        f"SELECT * FROM {entry.table} WHERE {_deleted(entry)}", (user_id,))]
                if rows:
                    found[entry.key] = rows
        return found

    # -- deletion -------------------------------------------------------------------------------

    async def delete(self, user_id: str, now: datetime, *, keep: Collection[str] = ()
                     ) -> Erasure:
        """Delete or pseudonymise every row about `user_id`, in one transaction (the caller's,
        if it has one). `keep`: keys (`MemberColumn.key`) whose rows stay (an admin's removal
        keeps the moderation log of whose data was removed)."""
        erasure = Erasure()
        async with self._db.transaction():
            pseudonym = await self.pseudonym(user_id)
            for entry in self.columns:
                if entry.key in keep:
                    continue
                if entry.delete_with is not None:
                    deleted = await entry.delete_with(self._repository(entry), user_id, now)
                    erasure.rows[entry.key] = deleted.rows
                    if deleted.follow_up:
                        erasure.follow_up[entry.key] = deleted.follow_up
                elif entry.action is Action.PSEUDONYMISE:
                    erasure.rows[entry.key] = await self._db.execute(
                        f"UPDATE {entry.table} SET {entry.column} = ? WHERE {_condition(entry)}",
                        (pseudonym, user_id))
                else:
                    erasure.rows[entry.key] = await self._db.execute(
                        f"DELETE FROM {entry.table} WHERE {_deleted(entry)}", (user_id,))
        return erasure

    async def pseudonym(self, user_id: str) -> str:
        """What stands for `user_id` in the records that stay: the same for the same member,
        and nobody without the bot's key can tell whose it is."""
        key = self._pseudonym_key
        if key is None:
            await self._db.execute(
                "INSERT INTO bot_secrets (name, value) VALUES ('pseudonyms', ?) "
                "ON CONFLICT (name) DO NOTHING", (secrets.token_bytes(32),))
            row = await self._db.fetchone("SELECT value FROM bot_secrets WHERE name = 'pseudonyms'")
            key = bytes(row[0])
            # Kept only once stored: a key rolled back with its transaction is never used again.
            self._db.after_commit(lambda: setattr(self, "_pseudonym_key", key))
        digest = hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:16]

    def _repository(self, entry: MemberColumn) -> Any:
        if entry.repository not in self._repositories:
            raise LookupError(f"{entry.key}: no repository {entry.repository!r}")
        return self._repositories[entry.repository]


def _condition(entry: MemberColumn) -> str:
    """The SQL condition (one parameter: the user id) of the rows that name the member."""
    if entry.match is Match.CONTAINS:
        return f"instr({entry.column}, ?) > 0"
    return f"{entry.column} = ?"


def _deleted(entry: MemberColumn) -> str:
    condition = _condition(entry)
    return f"{condition} AND {entry.deleted_rows}" if entry.deleted_rows else condition


def _exported(entry: MemberColumn, row: sqlite3.Row) -> dict[str, Any]:
    return {name: _value(name, row[name]) for name in row.keys() if name not in entry.hidden}


def _value(name: str, value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, int) and _TIME_COLUMN.search(name):
        return datetime.fromtimestamp(value / 1000, UTC).isoformat()
    return value


def user_id_columns(schema: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (table, column) pairs of `schema` whose name says that they hold a user id."""
    return [(table, column) for table, column in schema if USER_ID_COLUMN.search(column)]
