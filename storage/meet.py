"""NExT-to-meet-you: the admins' schedule, single dates moved or cancelled, who takes part in
the pairing, and the rounds with their groups.

Schema (migration 11):

- `meet_schedule`: one row when admins changed the rule, time, duration or link; a NULL column
  means the configuration's value.
- `meet_exceptions`: a date of the rule (`YYYY-MM-DD` on the wall clock) cancelled
  (`moved_to` NULL) or moved to another start (UTC milliseconds).
- `meet_participants`: who opted in to be paired, paused until when.
- `meet_rounds`, `meet_groups`, `meet_group_members`: each round's groups, keyed
  `<date>:<n>`, with the room made for each and whether its members said they met. Members
  of old rounds are forgotten once they no longer matter for avoiding repeats; the counts
  stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.database import Database
from storage.member_data import Action, Deleted, MemberColumn
from storage.outbox import OutgoingMessage, bot_reaction
from storage.schema import Migration


@dataclass(frozen=True)
class ScheduleOverride:
    rule: str | None = None
    start_time: str | None = None  # HH:MM
    duration_minutes: int | None = None
    link: str | None = None  # "" = no link


@dataclass(frozen=True)
class Participant:
    user_id: str
    joined_at: int
    paused_until: int | None


@dataclass(frozen=True)
class Round:
    date: str
    starts_at: int
    paired_at: int
    participants: int


@dataclass(frozen=True)
class GroupRow:
    key: str
    round: str
    members: tuple[str, ...]
    room_id: str | None
    room_requested_at: int | None
    met: bool | None


@dataclass(frozen=True)
class RoundStats:
    date: str
    participants: int
    groups: int
    answered: int
    met: int


class MeetRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- schedule -------------------------------------------------------------------------------

    async def override(self) -> ScheduleOverride | None:
        row = await self._db.fetchone(
            "SELECT rule, start_time, duration_minutes, link FROM meet_schedule WHERE id = 1")
        return ScheduleOverride(*row) if row else None

    async def set_override(self, override: ScheduleOverride | None, changed_by: str,
                           changed_at: int) -> None:
        if override is None:
            await self._db.execute("DELETE FROM meet_schedule WHERE id = 1")
            return
        await self._db.execute(
            "INSERT INTO meet_schedule (id, rule, start_time, duration_minutes, link, "
            "changed_by, changed_at) VALUES (1, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE "
            "SET rule = excluded.rule, start_time = excluded.start_time, "
            "duration_minutes = excluded.duration_minutes, link = excluded.link, "
            "changed_by = excluded.changed_by, changed_at = excluded.changed_at",
            (override.rule, override.start_time, override.duration_minutes, override.link,
             changed_by, changed_at))

    async def exceptions(self) -> dict[str, int | None]:
        """Date of the rule → the new start (UTC ms), or None when cancelled."""
        rows = await self._db.fetchall("SELECT date, moved_to FROM meet_exceptions")
        return {r[0]: r[1] for r in rows}

    async def set_exception(self, date: str, moved_to: int | None, changed_by: str,
                            changed_at: int) -> None:
        await self._db.execute(
            "INSERT INTO meet_exceptions (date, moved_to, changed_by, changed_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (date) DO UPDATE SET moved_to = excluded.moved_to, "
            "changed_by = excluded.changed_by, changed_at = excluded.changed_at",
            (date, moved_to, changed_by, changed_at))

    # -- participants ---------------------------------------------------------------------------

    async def participant(self, user_id: str) -> Participant | None:
        row = await self._db.fetchone(
            "SELECT user_id, joined_at, paused_until FROM meet_participants WHERE user_id = ?",
            (user_id,))
        return Participant(*row) if row else None

    async def join(self, user_id: str, at: int) -> bool:
        """Opt in (or end a pause); False when already taking part and not paused."""
        async with self._db.transaction():
            current = await self.participant(user_id)
            if current is not None and current.paused_until is None:
                return False
            await self._db.execute(
                "INSERT INTO meet_participants (user_id, joined_at) VALUES (?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET paused_until = NULL", (user_id, at))
            return True

    async def leave(self, user_id: str) -> bool:
        return await self._db.execute(
            "DELETE FROM meet_participants WHERE user_id = ?", (user_id,)) == 1

    async def pause(self, user_id: str, until: int, at: int) -> None:
        await self._db.execute(
            "INSERT INTO meet_participants (user_id, joined_at, paused_until) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET paused_until = excluded.paused_until",
            (user_id, at, until))

    async def active(self, at: int) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT user_id FROM meet_participants WHERE paused_until IS NULL "
            "OR paused_until <= ? ORDER BY user_id", (at,))
        return [r[0] for r in rows]

    async def participant_counts(self, at: int) -> tuple[int, int]:
        """(active, paused)."""
        row = await self._db.fetchone(
            "SELECT count(*) FILTER (WHERE paused_until IS NULL OR paused_until <= ?), "
            "count(*) FILTER (WHERE paused_until > ?) FROM meet_participants", (at, at))
        return int(row[0]), int(row[1])

    # -- rounds ---------------------------------------------------------------------------------

    async def round(self, date: str) -> Round | None:
        row = await self._db.fetchone(
            "SELECT date, starts_at, paired_at, participants FROM meet_rounds WHERE date = ?",
            (date,))
        return Round(*row) if row else None

    async def add_round(self, round: Round, groups: list[tuple[str, ...]],
                        keep_members_of: int) -> bool:
        """Store a round and its groups at once; False when the round exists already. Members
        of all but the newest `keep_members_of` rounds are forgotten (their counts stay)."""
        async with self._db.transaction():
            added = await self._db.execute(
                "INSERT INTO meet_rounds (date, starts_at, paired_at, participants) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (date) DO NOTHING",
                (round.date, round.starts_at, round.paired_at, round.participants))
            if added != 1:
                return False
            for number, members in enumerate(groups, 1):
                key = f"{round.date}:{number}"
                await self._db.execute(
                    "INSERT INTO meet_groups (key, round, size) VALUES (?, ?, ?)",
                    (key, round.date, len(members)))
                await self._db.executemany(
                    "INSERT INTO meet_group_members (group_key, user_id) VALUES (?, ?)",
                    [(key, user_id) for user_id in members])
            await self._db.execute(
                "DELETE FROM meet_group_members WHERE group_key IN (SELECT key FROM meet_groups "
                "WHERE round NOT IN (SELECT date FROM meet_rounds ORDER BY date DESC LIMIT ?))",
                (max(keep_members_of, 1),))
            return True

    async def recent_partners(self, rounds: int) -> dict[str, set[str]]:
        """Who met whom in the newest `rounds` rounds."""
        if rounds <= 0:
            return {}
        rows = await self._db.fetchall(
            "SELECT a.user_id, b.user_id FROM meet_group_members a "
            "JOIN meet_group_members b ON a.group_key = b.group_key AND a.user_id != b.user_id "
            "JOIN meet_groups g ON g.key = a.group_key "
            "WHERE g.round IN (SELECT date FROM meet_rounds ORDER BY date DESC LIMIT ?)",
            (rounds,))
        partners: dict[str, set[str]] = {}
        for a, b in rows:
            partners.setdefault(a, set()).add(b)
        return partners

    async def groups(self, round_date: str | None = None, *, without_room: bool = False,
                     key: str | None = None) -> list[GroupRow]:
        where, params = [], []
        if key is not None:
            where.append("g.key = ?")
            params.append(key)
        if round_date is not None:
            where.append("g.round = ?")
            params.append(round_date)
        if without_room:
            where.append("g.room_id IS NULL")
        rows = await self._db.fetchall(
            "SELECT g.key, g.round, g.room_id, g.room_requested_at, g.met, "
            "group_concat(m.user_id, char(10)) FROM meet_groups g "
            "LEFT JOIN meet_group_members m ON m.group_key = g.key "
            + (f"WHERE {' AND '.join(where)} " if where else "")
            + "GROUP BY g.key ORDER BY g.round, g.rowid", params)
        return [GroupRow(r[0], r[1], tuple(sorted((r[5] or "").split("\n"))) if r[5] else (),
                         r[2], r[3], None if r[4] is None else bool(r[4])) for r in rows]

    async def group_in_room(self, room_id: str) -> GroupRow | None:
        row = await self._db.fetchone("SELECT key FROM meet_groups WHERE room_id = ?", (room_id,))
        if row is None:
            return None
        found = await self.groups(key=row[0])
        return found[0] if found else None

    async def groups_with_rooms_between(self, start: int, end: int
                                        ) -> list[tuple[str, str, int]]:
        """(group key, room id, the round's start) for rounds starting in [start, end)."""
        rows = await self._db.fetchall(
            "SELECT g.key, g.room_id, r.starts_at FROM meet_groups g "
            "JOIN meet_rounds r ON r.date = g.round "
            "WHERE g.room_id IS NOT NULL AND r.starts_at >= ? AND r.starts_at < ? "
            "ORDER BY r.starts_at, g.key", (start, end))
        return [(r[0], r[1], r[2]) for r in rows]

    async def mark_room_requested(self, key: str, at: int) -> None:
        await self._db.execute(
            "UPDATE meet_groups SET room_requested_at = ? WHERE key = ?", (at, key))

    async def set_room(self, key: str, room_id: str) -> bool:
        """Record the group's room; False when it had one already."""
        return await self._db.execute(
            "UPDATE meet_groups SET room_id = ? WHERE key = ? AND room_id IS NULL",
            (room_id, key)) == 1

    async def group_of_follow_up(self, event_id: str) -> tuple[str, str] | None:
        """(group key, room) of the bot's question after a date sent as `event_id`."""
        row = await self._db.fetchone(
            "SELECT key, room_id FROM meet_groups WHERE follow_up_event = ?", (event_id,))
        return (row[0], row[1]) if row else None

    async def set_met(self, key: str, met: bool) -> None:
        await self._db.execute("UPDATE meet_groups SET met = ? WHERE key = ?", (int(met), key))

    async def stats(self, rounds: int = 6) -> list[RoundStats]:
        """The newest rounds, newest first: participants, groups, answers, groups that met."""
        rows = await self._db.fetchall(
            "SELECT r.date, r.participants, count(g.key), count(g.met), "
            "coalesce(sum(g.met), 0) FROM meet_rounds r "
            "LEFT JOIN meet_groups g ON g.round = r.date "
            "GROUP BY r.date ORDER BY r.date DESC LIMIT ?", (rounds,))
        return [RoundStats(*r) for r in rows]

    async def totals(self) -> tuple[int, int, int, int]:
        """Over every round: (rounds, groups, groups that answered, groups that met)."""
        rounds = await self._db.fetchone("SELECT count(*) FROM meet_rounds")
        groups = await self._db.fetchone(
            "SELECT count(*), count(met), coalesce(sum(met), 0) FROM meet_groups")
        return int(rounds[0]), int(groups[0]), int(groups[1]), int(groups[2])


    async def leave_groups(self, user_id: str, now: datetime) -> Deleted:
        """Out of every NExT-to-meet-you group (a member's deletion); a group still without a
        room that is left with one member is dissolved, so that nobody gets a pair room of
        their own."""
        keys = [r[0] for r in await self._db.fetchall(
            "SELECT group_key FROM meet_group_members WHERE user_id = ?", (user_id,))]
        if not keys:
            return Deleted(0)
        await self._db.execute("DELETE FROM meet_group_members WHERE user_id = ?", (user_id,))
        await self._db.execute(
            "DELETE FROM meet_group_members WHERE group_key IN (SELECT g.key FROM meet_groups g "
            f"WHERE g.room_id IS NULL AND g.key IN ({', '.join('?' * len(keys))}) "
            "AND (SELECT count(*) FROM meet_group_members m WHERE m.group_key = g.key) < 2)",
            keys)
        return Deleted(len(keys))


async def move_room(db: Database, old: str, new: str) -> dict[str, object]:
    """An upgraded pair room: its group's room is the successor (unless that is some other
    group's already)."""
    moved = await db.execute(
        "UPDATE meet_groups SET room_id = ? WHERE room_id = ? AND NOT EXISTS "
        "(SELECT 1 FROM meet_groups WHERE room_id = ?)", (new, old, new))
    return {"pair rooms": moved} if moved else {}


# The kind of the question after a date in the outbox (`OutgoingMessage.record_as`), and its
# answers as one tap each (`!getroffen ja`, `!getroffen nein`).
FOLLOW_UP = "meet_follow_up"
MET_KEYS = ("👍", "👎")


async def record_follow_up(db: Database, key: str, message: OutgoingMessage,
                           event_id: str) -> list[OutgoingMessage]:
    """The question after a date to group `key` was sent: recorded (a 👍/👎 on it answers),
    and the bot puts 👍 and 👎 on it, so that answering is one tap."""
    if not await db.execute("UPDATE meet_groups SET follow_up_event = ? WHERE key = ?",
                            (event_id, key)):
        return []
    return [bot_reaction(message.room_id, event_id, answer) for answer in MET_KEYS]

# The tables of this part of the database (see `storage/schema.py`): append new steps, never
# edit old ones.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "NExT-to-meet-you: schedule changes, pairing participants, rounds and their groups",
        """
        -- the admins' schedule; a NULL column: the configuration's value
        CREATE TABLE meet_schedule (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            rule TEXT,
            start_time TEXT,
            duration_minutes INTEGER,
            link TEXT,
            changed_by TEXT NOT NULL,
            changed_at INTEGER NOT NULL
        );
        -- a date of the rule (YYYY-MM-DD, wall clock) cancelled (moved_to NULL) or moved
        CREATE TABLE meet_exceptions (
            date TEXT PRIMARY KEY,
            moved_to INTEGER,
            changed_by TEXT NOT NULL,
            changed_at INTEGER NOT NULL
        );
        CREATE TABLE meet_participants (
            user_id TEXT PRIMARY KEY,
            joined_at INTEGER NOT NULL,
            paused_until INTEGER
        );
        CREATE TABLE meet_rounds (
            date TEXT PRIMARY KEY,
            starts_at INTEGER NOT NULL,
            paired_at INTEGER NOT NULL,
            participants INTEGER NOT NULL
        );
        -- met: NULL no answer, 1 met, 0 did not
        CREATE TABLE meet_groups (
            key TEXT PRIMARY KEY,
            round TEXT NOT NULL REFERENCES meet_rounds (date) ON DELETE CASCADE,
            size INTEGER NOT NULL,
            room_id TEXT,
            room_requested_at INTEGER,
            met INTEGER
        );
        CREATE INDEX meet_groups_by_round ON meet_groups (round);
        CREATE UNIQUE INDEX meet_groups_room ON meet_groups (room_id) WHERE room_id IS NOT NULL;
        CREATE TABLE meet_group_members (
            group_key TEXT NOT NULL REFERENCES meet_groups (key) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            PRIMARY KEY (group_key, user_id)
        )
        """,
        shared_step=11,
    ),
    Migration(
        2,
        "the question after a date, answered with 👍/👎",
        """
        -- set on the question after a date to this group: once sent, recorded below
        ALTER TABLE outbox ADD COLUMN follow_up_of_group TEXT;
        -- the bot's question whether the group met: a member's 👍/👎 on it is `!getroffen`
        ALTER TABLE meet_groups ADD COLUMN follow_up_event TEXT;
        CREATE INDEX meet_groups_by_follow_up ON meet_groups (follow_up_event)
            WHERE follow_up_event IS NOT NULL
        """,
        shared_step=17,
    ),
    Migration(
        3,
        "the questions after a date in the outbox under the core's record kind and key",
        """
        UPDATE outbox SET record_kind = 'meet_follow_up', record_key = follow_up_of_group
            WHERE follow_up_of_group IS NOT NULL;
        ALTER TABLE outbox DROP COLUMN follow_up_of_group
        """,
    ),
)


# The columns of this part that can name a member (see `storage/member_data.py`).
MEMBER_DATA: tuple[MemberColumn, ...] = (
    MemberColumn("meet_participants", "user_id", Action.DELETE,
                 "NExT-to-meet-you: no longer paired"),
    MemberColumn("meet_group_members", "user_id", Action.DELETE,
                 "the member's groups in NExT-to-meet-you rounds",
                 repository="meet", delete_with=MeetRepository.leave_groups),
    MemberColumn("meet_schedule", "changed_by", Action.PSEUDONYMISE,
                 "who changed the NExT-to-meet-you rhythm"),
    MemberColumn("meet_exceptions", "changed_by", Action.PSEUDONYMISE,
                 "who moved or cancelled a date"),
)
