"""Upgraded rooms: each tombstone the sync loop saw (old room → its successor), and the carry-over
of everything bound to the old room, in one transaction, exactly once.

What moves to the successor: the room's settings and their history, a direct chat, and what
each feature binds to the room (`Schema.move_room`: its community, the workshops added there, a
NExT-to-meet-you pair's room, the network's space …). What stays: rows about events in the old
room (commands and messages in flight, their handled marks, joins waiting for a welcome,
undecrypted events, posts and their reactions), the read cursor (per room: the successor gets
its own) and the record of deliveries (what was sent where).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from storage.database import Database

if TYPE_CHECKING:
    from storage.schema import Schema


@dataclass(frozen=True)
class RoomUpgrade:
    old_room_id: str
    new_room_id: str
    event_id: str  # the tombstone
    seen_at: int  # milliseconds
    carried_over_at: int | None = None
    done_at: int | None = None


@dataclass(frozen=True)
class CarriedOver:
    """What one carry-over moved (counts and ids only: nothing a member wrote)."""

    settings: int = 0
    setting_changes: int = 0
    switched_on: tuple[str, ...] = ()  # switches on by configuration, now on in the successor
    direct_chats: int = 0
    # Per feature, what its `move_room` moved ("workshops": 2, "community": "digitallotsen" …).
    moved: dict[str, Mapping[str, object]] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [f"{self.settings} setting(s)", f"{self.setting_changes} recorded change(s)",
                 f"{self.direct_chats} direct chat(s)"]
        parts += [f"{what} {value}" for moved in self.moved.values()
                  for what, value in moved.items()]
        return ", ".join(parts)


_FIELDS = "old_room_id, new_room_id, event_id, seen_at, carried_over_at, done_at"


class UpgradeRepository:
    def __init__(self, db: Database, schemas: Sequence[Schema] = ()) -> None:
        self._db = db
        self._moves = [(s.name, s.move_room) for s in schemas if s.move_room is not None]

    async def record(self, upgrades: Iterable[RoomUpgrade]) -> int:
        """Remember tombstones (in the sync loop's transaction); a room's first one counts, one
        seen again changes nothing. Returns how many were new."""
        added = 0
        for upgrade in upgrades:
            added += await self._db.execute(
                "INSERT INTO room_upgrades (old_room_id, new_room_id, event_id, seen_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (old_room_id) DO NOTHING",
                (upgrade.old_room_id, upgrade.new_room_id, upgrade.event_id, upgrade.seen_at))
        return added

    async def get(self, old_room_id: str) -> RoomUpgrade | None:
        row = await self._db.fetchone(
            f"SELECT {_FIELDS} FROM room_upgrades WHERE old_room_id = ?", (old_room_id,))
        return RoomUpgrade(*row) if row else None

    async def pending(self) -> list[RoomUpgrade]:
        """Upgrades not yet fully followed, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_FIELDS} FROM room_upgrades WHERE done_at IS NULL "
            "ORDER BY seen_at, old_room_id")
        return [RoomUpgrade(*row) for row in rows]

    async def mark_done(self, old_room_id: str, at: int) -> None:
        await self._db.execute(
            "UPDATE room_upgrades SET done_at = ? WHERE old_room_id = ? AND done_at IS NULL",
            (at, old_room_id))

    async def forget(self, old_room_id: str) -> None:
        """Drop a tombstone that was not followed (its room is not the successor): a later,
        genuine one can then be recorded."""
        await self._db.execute("DELETE FROM room_upgrades WHERE old_room_id = ? "
                               "AND carried_over_at IS NULL", (old_room_id,))

    async def carry_over(self, upgrade: RoomUpgrade, at: int, *, changed_by: str,
                         switched_on_by_config: Sequence[str] = ()) -> CarriedOver | None:
        """Move everything bound to the old room to its successor, in one transaction, marked
        carried over in the same one; None when it was carried over before (nothing changes).

        `switched_on_by_config`: the switches the operator's configuration turns on in the old
        room (`[meet] rooms` …); where its moderators left them as configured, they are set on
        in the successor, recorded as a change by `changed_by` (the bot)."""
        old, new = upgrade.old_room_id, upgrade.new_room_id
        db = self._db
        async with db.transaction():
            if not await db.execute(
                    "UPDATE room_upgrades SET carried_over_at = ? "
                    "WHERE old_room_id = ? AND carried_over_at IS NULL", (at, old)):
                return None
            switched = []
            stored = {row[0] for row in await db.fetchall(
                "SELECT key FROM room_settings WHERE room_id = ?", (old,))}
            for key in switched_on_by_config:
                if key in stored:
                    continue  # the moderators' own choice moves below
                switched.append(key)
                await db.execute(
                    "INSERT INTO room_settings (room_id, key, value) VALUES (?, ?, 'on') "
                    "ON CONFLICT (room_id, key) DO NOTHING", (new, key))
            # The successor's own choices (made before the bot followed) win over the old ones.
            settings = await db.execute(
                "INSERT INTO room_settings (room_id, key, value) "
                "SELECT ?, key, value FROM room_settings WHERE room_id = ? "
                "ON CONFLICT (room_id, key) DO NOTHING", (new, old))
            await db.execute("DELETE FROM room_settings WHERE room_id = ?", (old,))
            changes = await db.execute(
                "UPDATE room_setting_changes SET room_id = ? WHERE room_id = ?", (new, old))
            for key in switched:
                await db.execute(
                    "INSERT INTO room_setting_changes "
                    "(room_id, key, old_value, new_value, changed_by, changed_at) "
                    "VALUES (?, ?, NULL, 'on', ?, ?)", (new, key, changed_by, at))
            direct = await db.execute(
                "UPDATE direct_rooms SET room_id = ? WHERE room_id = ?", (new, old))
            moved = {name: await move(db, old, new) for name, move in self._moves}
        return CarriedOver(settings=settings, setting_changes=changes,
                           switched_on=tuple(switched), direct_chats=direct,
                           moved={name: what for name, what in moved.items() if what})
