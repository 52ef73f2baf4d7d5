"""Everything the database holds about one member, declared in one list: what `!profil export`
hands out and what `!profil löschen` (and the admins' `!profil entfernen`) remove.

`MEMBER_DATA` names every column that can hold a member's Matrix id and what becomes of the
member's rows there:

- `DELETE`: the rows go. Workshop registrations go as withdrawals, so the next on a waiting
  list moves up (and is told); a NExT-to-meet-you group that has no room yet and would be left
  with one member is dissolved, so nobody gets a room of their own.
- `PSEUDONYMISE`: the rows stay because they record something others rely on (who changed a
  room's setting, who added a workshop or a community); the id gives way to a pseudonym, a keyed
  hash (`pseudonym-<hex>`) that is the same for the same member, so a history still shows that
  one person changed a setting twice, but not who.

The export holds exactly the rows a deletion would delete or pseudonymise (the profile with its
topics).
`tests/unit/test_member_data.py` checks the list against the migrated schema: every column whose
name says that it holds a user id (`USER_ID_COLUMN`) must be listed here or in
`NOT_MEMBER_DATA`; a new one fails the test until it is decided.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from storage.database import Database
from storage.experts import ExpertRepository
from storage.outbox import OutboxRepository
from storage.workshops import Registration, WorkshopRepository


class Action(StrEnum):
    DELETE = "delete"
    PSEUDONYMISE = "pseudonymise"


class Match(StrEnum):
    EQUALS = "equals"  # the column holds the member's id
    CONTAINS = "contains"  # the column holds text that names the member somewhere


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

    @property
    def key(self) -> str:
        """How the export calls the rows: `table.column`."""
        return f"{self.table}.{self.column}"


D, P = Action.DELETE, Action.PSEUDONYMISE

MEMBER_DATA: tuple[MemberColumn, ...] = (
    MemberColumn("profiles", "user_id", D,
                 "the directory profile, its topics and search entry, the consent"),
    MemberColumn("profile_removals", "user_id", D,
                 "that a bot admin removed the member's data (an admin's removal keeps it)",
                 hidden=("removed_by",)),
    MemberColumn("profile_removals", "removed_by", P,
                 "an admin's removals of others: the moderation record stays",
                 hidden=("user_id",)),
    MemberColumn("workshop_reactions", "user_id", D,
                 "the member's ✅ on workshop posts that signed them up"),
    MemberColumn("workshop_registrations", "user_id", D,
                 "sign-ups and waiting-list places: withdrawn, the next waiting move up"),
    MemberColumn("workshops", "created_by", P, "workshops the member added stay for the others"),
    MemberColumn("meet_participants", "user_id", D, "NExT-to-meet-you: no longer paired"),
    MemberColumn("meet_group_members", "user_id", D,
                 "the member's groups in NExT-to-meet-you rounds"),
    MemberColumn("meet_schedule", "changed_by", P, "who changed the NExT-to-meet-you rhythm"),
    MemberColumn("meet_exceptions", "changed_by", P, "who moved or cancelled a date"),
    MemberColumn("room_setting_changes", "changed_by", P, "the rooms' settings history"),
    MemberColumn("communities", "created_by", P, "communities the member created stay"),
    MemberColumn("municipalities", "added_by", P, "member organisations the member registered"),
    MemberColumn("direct_rooms", "user_id", D, "the bot's direct chat with the member"),
    MemberColumn("decryption_notices", "sender", D,
                 "when the member was told that the bot could not read a message"),
    MemberColumn("undecrypted", "sender", D, "the member's encrypted messages not read yet"),
    MemberColumn("welcomes", "user_id", D, "the member's joins and whether they were greeted"),
    MemberColumn("inbox", "sender", D,
                 "commands of the member; waiting ones are still answered (see above)",
                 deleted_rows="event_id IN (SELECT event_id FROM handled_events)"),
    MemberColumn("outbox", "room_id", D,
                 "direct messages to the member not sent yet, or refused by the homeserver",
                 hidden=("file_data",)),
    MemberColumn("outbox", "content", D,
                 "refused messages that name the member, kept for the operator",
                 match=Match.CONTAINS, deleted_rows="failed_at IS NOT NULL",
                 hidden=("content", "file_data")),
)

# A column whose name says that it holds a Matrix user id: it must be decided (MEMBER_DATA or
# NOT_MEMBER_DATA). Ids also hide in columns named otherwise (`outbox.room_id` of a direct
# message): those are listed in MEMBER_DATA by hand.
USER_ID_COLUMN = re.compile(
    r"(?:^|_)(?:user|users|user_id|user_ids|sender|member|members|recipient|recipients|mxid|"
    r"matrix_id|owner|author|creator|inviter|invitee|participant|by)$")

NOT_MEMBER_DATA: dict[tuple[str, str], str] = {
    ("bot_session", "user_id"): "the bot's own account",
}

PSEUDONYM_PREFIX = "pseudonym-"
_TIME_COLUMN = re.compile(r"(?:_at|_until|_ts)$")  # milliseconds since the epoch (UTC)


@dataclass(frozen=True)
class Erasure:
    """What deleting a member's data did: rows per `MemberColumn.key`, and who moved up from a
    waiting list (to be told)."""

    rows: dict[str, int] = field(default_factory=dict)
    promoted: list[Registration] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return any(self.rows.values())

    def __repr__(self) -> str:
        return f"Erasure(rows={sum(self.rows.values())}, promoted={len(self.promoted)})"


class MemberData:
    """Export and deletion of everything in MEMBER_DATA, for one member at a time."""

    def __init__(self, db: Database, experts: ExpertRepository, workshops: WorkshopRepository,
                 outbox: OutboxRepository) -> None:
        self._db = db
        self._experts = experts
        self._workshops = workshops
        self._outbox = outbox
        self._pseudonym_key: bytes | None = None

    # -- export ---------------------------------------------------------------------------------

    async def export(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """Per `MemberColumn.key`, the rows `delete` would delete or pseudonymise (as column →
        value; times as ISO 8601); only keys with rows. The profile comes as `Profile.to_json`
        (with its topics)."""
        found: dict[str, list[dict[str, Any]]] = {}
        async with self._db.transaction():  # one consistent picture
            for entry in MEMBER_DATA:
                if entry.table == "profiles":
                    profile = await self._experts.get(user_id)
                    rows = [profile.to_json()] if profile is not None else []
                else:
                    rows = [_exported(entry, row) for row in await self._db.fetchall(
                        f"SELECT * FROM {entry.table} WHERE {_deleted(entry)}", (user_id,))]
                if rows:
                    found[entry.key] = rows
        return found

    # -- deletion -------------------------------------------------------------------------------

    async def delete(self, user_id: str, now: datetime, *, removed_by: str | None = None
                     ) -> Erasure:
        """Delete or pseudonymise every row about `user_id`, in one transaction.

        `removed_by`: a bot admin removes the member's data; the log of removals keeps whose
        data was removed (one more entry, if there was anything to remove)."""
        rows: dict[str, int] = {}
        promoted: list[Registration] = []
        async with self._db.transaction():
            pseudonym = await self.pseudonym(user_id)
            for entry in MEMBER_DATA:
                if removed_by is not None and entry.key == "profile_removals.user_id":
                    continue  # the moderation log keeps whose data an admin removed
                if entry.table == "profiles":
                    rows[entry.key] = int(await self._experts.delete_profile(user_id))
                elif entry.table == "workshop_registrations":
                    rows[entry.key] = await self._count(entry, user_id)
                    promoted = await self._workshops.delete_all_of(user_id, now)
                elif entry.table == "meet_group_members":
                    rows[entry.key] = await self._leave_groups(user_id)
                elif entry.table == "outbox":
                    rows[entry.key] = await self._drop_messages(entry, user_id)
                elif entry.action is Action.PSEUDONYMISE:
                    rows[entry.key] = await self._db.execute(
                        f"UPDATE {entry.table} SET {entry.column} = ? WHERE {_condition(entry)}",
                        (pseudonym, user_id))
                else:
                    rows[entry.key] = await self._db.execute(
                        f"DELETE FROM {entry.table} WHERE {_deleted(entry)}", (user_id,))
            erasure = Erasure(rows, promoted)
            if removed_by is not None and erasure.found:
                await self._experts.record_removal(user_id, removed_by, now)
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

    async def _count(self, entry: MemberColumn, user_id: str) -> int:
        row = await self._db.fetchone(
            f"SELECT count(*) FROM {entry.table} WHERE {_condition(entry)}", (user_id,))
        return int(row[0])

    async def _leave_groups(self, user_id: str) -> int:
        """Out of every NExT-to-meet-you group; a group still without a room that is left with
        one member is dissolved, so that nobody gets a pair room of their own."""
        keys = [r[0] for r in await self._db.fetchall(
            "SELECT group_key FROM meet_group_members WHERE user_id = ?", (user_id,))]
        if not keys:
            return 0
        await self._db.execute("DELETE FROM meet_group_members WHERE user_id = ?", (user_id,))
        await self._db.execute(
            "DELETE FROM meet_group_members WHERE group_key IN (SELECT g.key FROM meet_groups g "
            f"WHERE g.room_id IS NULL AND g.key IN ({', '.join('?' * len(keys))}) "
            "AND (SELECT count(*) FROM meet_group_members m WHERE m.group_key = g.key) < 2)",
            keys)
        return len(keys)

    async def _drop_messages(self, entry: MemberColumn, user_id: str) -> int:
        """Through the outbox, which keeps each room's waiting messages in memory too."""
        found = await self._db.fetchall(
            f"SELECT txn_id, room_id FROM outbox WHERE {_deleted(entry)}", (user_id,))
        for txn_id, room_id in found:
            await self._outbox.remove(txn_id, room_id)
        return len(found)


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
