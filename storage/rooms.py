"""Per-room state: how far the bot has read each room, and the room's settings."""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database


@dataclass(frozen=True)
class RoomCursor:
    room_id: str
    last_event_id: str
    last_ts: int


class RoomRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._languages: dict[str, str | None] = {}  # read for every command: kept in memory

    async def cursor(self, room_id: str) -> RoomCursor | None:
        row = await self._db.fetchone(
            "SELECT room_id, last_event_id, last_ts FROM room_cursor WHERE room_id = ?",
            (room_id,),
        )
        return RoomCursor(*row) if row else None

    async def set_cursor(self, cursor: RoomCursor) -> None:
        await self._db.execute(
            "INSERT INTO room_cursor (room_id, last_event_id, last_ts) VALUES (?, ?, ?) "
            "ON CONFLICT (room_id) DO UPDATE SET last_event_id = excluded.last_event_id, "
            "last_ts = excluded.last_ts",
            (cursor.room_id, cursor.last_event_id, cursor.last_ts),
        )

    async def language(self, room_id: str) -> str | None:
        if room_id not in self._languages:
            row = await self._db.fetchone(
                "SELECT language FROM room_settings WHERE room_id = ?", (room_id,)
            )
            self._languages[room_id] = row[0] if row else None
        return self._languages[room_id]

    async def set_language(self, room_id: str, language: str) -> None:
        await self._db.execute(
            "INSERT INTO room_settings (room_id, language) VALUES (?, ?) "
            "ON CONFLICT (room_id) DO UPDATE SET language = excluded.language",
            (room_id, language),
        )
        self._languages.pop(room_id, None)  # re-read: the write may yet be rolled back

    async def direct_room(self, user_id: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT room_id FROM direct_rooms WHERE user_id = ?", (user_id,)
        )
        return row[0] if row else None

    async def set_direct_room(self, user_id: str, room_id: str) -> None:
        await self._db.execute(
            "INSERT INTO direct_rooms (user_id, room_id) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id",
            (user_id, room_id),
        )
