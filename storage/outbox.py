"""Messages waiting to be sent, each with the transaction id that makes its sending idempotent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from storage.database import Database


@dataclass(frozen=True)
class OutgoingMessage:
    txn_id: str
    room_id: str
    content: dict[str, Any]
    event_type: str = "m.room.message"
    seq: int = 0
    # A file to upload first; its `mxc://` URL then goes into the content's `url`.
    file_data: bytes | None = None

    def __repr__(self) -> str:
        return f"OutgoingMessage(txn_id={self.txn_id!r}, room_id={self.room_id!r})"


class OutboxRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, messages: list[OutgoingMessage], created_at: int) -> None:
        """Queue messages; a transaction id already queued is not queued again."""
        async with self._db.transaction():
            for m in messages:
                await self._db.execute(
                    "INSERT INTO outbox (txn_id, room_id, event_type, content, created_at, "
                    "file_data) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (txn_id) DO NOTHING",
                    (m.txn_id, m.room_id, m.event_type,
                     json.dumps(m.content, ensure_ascii=False), created_at, m.file_data),
                )

    async def pending_rooms(self) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT room_id FROM outbox GROUP BY room_id ORDER BY MIN(seq)"
        )
        return [r[0] for r in rows]

    async def next_for_room(self, room_id: str) -> OutgoingMessage | None:
        row = await self._db.fetchone(
            "SELECT txn_id, room_id, content, event_type, seq, file_data FROM outbox "
            "WHERE room_id = ? ORDER BY seq LIMIT 1",
            (room_id,),
        )
        if row is None:
            return None
        return OutgoingMessage(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5])

    async def remove(self, txn_id: str) -> None:
        await self._db.execute("DELETE FROM outbox WHERE txn_id = ?", (txn_id,))

    async def count(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM outbox")
        return int(row[0])
