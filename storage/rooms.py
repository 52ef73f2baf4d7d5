"""Per-room state: how far the bot has read each room, and the room's settings."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from storage.database import Database


@dataclass(frozen=True)
class RoomCursor:
    room_id: str
    last_event_id: str
    last_ts: int


@dataclass(frozen=True)
class SettingChange:
    key: str
    old_value: str | None  # None: the default
    new_value: str | None
    changed_by: str
    changed_at: int  # milliseconds


class RoomRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._settings: dict[str, dict[str, str]] = {}  # read for every command: kept in memory
        self._alias_key: bytes | None = None

    async def cursor(self, room_id: str) -> RoomCursor | None:
        row = await self._db.fetchone(
            "SELECT room_id, last_event_id, last_ts FROM room_cursor WHERE room_id = ?",
            (room_id,),
        )
        return RoomCursor(*row) if row else None

    async def set_cursor(self, cursor: RoomCursor) -> None:
        await self._db.execute_later(  # in the sync loop's transaction: goes with its COMMIT
            "INSERT INTO room_cursor (room_id, last_event_id, last_ts) VALUES (?, ?, ?) "
            "ON CONFLICT (room_id) DO UPDATE SET last_event_id = excluded.last_event_id, "
            "last_ts = excluded.last_ts",
            (cursor.room_id, cursor.last_event_id, cursor.last_ts),
        )

    async def settings(self, room_id: str) -> dict[str, str]:
        """The values moderators set in this room (keys without a row use their default)."""
        if room_id not in self._settings:
            rows = await self._db.fetchall(
                "SELECT key, value FROM room_settings WHERE room_id = ?", (room_id,))
            self._settings[room_id] = {key: value for key, value in rows}
        return dict(self._settings[room_id])

    def forget_settings(self, *room_ids: str) -> None:
        """Re-read these rooms' settings next time: another repository moved them (an upgrade)."""
        for room_id in room_ids:
            self._settings.pop(room_id, None)

    async def language(self, room_id: str) -> str | None:
        return (await self.settings(room_id)).get("language")

    async def change_setting(self, room_id: str, key: str, value: str | None, *,
                             changed_by: str, changed_at: int) -> str | None:
        """Set (or with None: reset) one setting and record the change; returns the old value."""
        async with self._db.transaction():
            row = await self._db.fetchone(
                "SELECT value FROM room_settings WHERE room_id = ? AND key = ?", (room_id, key))
            old = row[0] if row else None
            if value is None:
                await self._db.execute(
                    "DELETE FROM room_settings WHERE room_id = ? AND key = ?", (room_id, key))
            else:
                await self._db.execute(
                    "INSERT INTO room_settings (room_id, key, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (room_id, key) DO UPDATE SET value = excluded.value",
                    (room_id, key, value))
            await self._db.execute(
                "INSERT INTO room_setting_changes "
                "(room_id, key, old_value, new_value, changed_by, changed_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (room_id, key, old, value, changed_by, changed_at))
            self._settings.pop(room_id, None)  # re-read: the write may yet be rolled back
        self._settings.pop(room_id, None)
        return old

    async def setting_changes(self, room_id: str, limit: int = 10) -> list[SettingChange]:
        """The room's latest changes, newest first."""
        rows = await self._db.fetchall(
            "SELECT key, old_value, new_value, changed_by, changed_at FROM room_setting_changes "
            "WHERE room_id = ? ORDER BY id DESC LIMIT ?", (room_id, limit))
        return [SettingChange(*row) for row in rows]

    async def rooms_with_setting(self, key: str, value: str) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT room_id FROM room_settings WHERE key = ? AND value = ? ORDER BY room_id",
            (key, value))
        return [row[0] for row in rows]

    async def direct_room(self, user_id: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT room_id FROM direct_rooms WHERE user_id = ?", (user_id,)
        )
        return row[0] if row else None

    async def is_direct_room(self, room_id: str) -> bool:
        """Whether `room_id` is the bot's direct chat with some member."""
        row = await self._db.fetchone("SELECT 1 FROM direct_rooms WHERE room_id = ?", (room_id,))
        return row is not None

    async def alias_key(self) -> bytes:
        """The bot's random key for the aliases of the rooms it makes (`bot/matrix/own_rooms.py`):
        made on first use and kept, so that no member can work out such an alias."""
        if self._alias_key is None:
            await self._db.execute(
                "INSERT INTO bot_secrets (name, value) VALUES ('room_aliases', ?) "
                "ON CONFLICT (name) DO NOTHING", (secrets.token_bytes(32),))
            row = await self._db.fetchone(
                "SELECT value FROM bot_secrets WHERE name = 'room_aliases'")
            self._alias_key = bytes(row[0])
        return self._alias_key

    async def set_direct_room(self, user_id: str, room_id: str) -> None:
        await self._db.execute(
            "INSERT INTO direct_rooms (user_id, room_id) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id",
            (user_id, room_id),
        )
