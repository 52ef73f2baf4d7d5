"""Encrypted events the bot could not read yet: kept to try again when their keys arrive."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from storage.database import Database

KEEP_AT_MOST = 500  # per bot: the oldest beyond this are dropped (they could never be answered)


@dataclass(frozen=True)
class Undecrypted:
    event_id: str
    room_id: str
    sender: str
    content: dict[str, Any]  # the ciphertext as received
    origin_ts: int
    received_at: int

    def __repr__(self) -> str:
        return f"Undecrypted(event_id={self.event_id!r}, room_id={self.room_id!r})"


class UndecryptedRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, events: list[Undecrypted]) -> None:
        async with self._db.transaction():
            for e in events:
                await self._db.execute(
                    "INSERT INTO undecrypted (event_id, room_id, sender, content, origin_ts, "
                    "received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                    (e.event_id, e.room_id, e.sender, json.dumps(e.content), e.origin_ts,
                     e.received_at))
            if events:
                await self._db.execute(
                    "DELETE FROM undecrypted WHERE event_id NOT IN (SELECT event_id FROM "
                    "undecrypted ORDER BY received_at DESC LIMIT ?)", (KEEP_AT_MOST,))

    async def all(self) -> list[Undecrypted]:
        rows = await self._db.fetchall(
            "SELECT event_id, room_id, sender, content, origin_ts, received_at FROM undecrypted "
            "ORDER BY received_at, event_id")
        return [Undecrypted(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    async def remove(self, event_id: str) -> None:
        await self._db.execute("DELETE FROM undecrypted WHERE event_id = ?", (event_id,))

    async def notified_at(self, room_id: str, sender: str) -> int | None:
        row = await self._db.fetchone(
            "SELECT notified_at FROM decryption_notices WHERE room_id = ? AND sender = ?",
            (room_id, sender))
        return int(row[0]) if row else None

    async def set_notified(self, room_id: str, sender: str, at: int) -> None:
        await self._db.execute(
            "INSERT INTO decryption_notices (room_id, sender, notified_at) VALUES (?, ?, ?) "
            "ON CONFLICT (room_id, sender) DO UPDATE SET notified_at = excluded.notified_at",
            (room_id, sender, at))
