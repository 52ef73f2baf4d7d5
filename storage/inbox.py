"""Commands received but not yet answered, and the record of those already handled.

The sync loop adds commands here in the same transaction as the new sync token; a worker marks
each one handled in the same transaction that queues its reply. So a crash loses nothing, and a
redelivered event is never answered twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from storage.database import Database


@dataclass(frozen=True)
class InboxMessage:
    event_id: str
    room_id: str
    sender: str
    body: str
    origin_ts: int
    seq: int = 0

    def __repr__(self) -> str:  # the body is what a member wrote: keep it out of logs
        return f"InboxMessage(event_id={self.event_id!r}, room_id={self.room_id!r})"


class InboxRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, messages: Iterable[InboxMessage], received_at: int) -> int:
        """Add new commands, skipping any already queued or handled; returns how many were new."""
        added = 0
        async with self._db.transaction():
            for m in messages:
                added += await self._db.execute(
                    "INSERT INTO inbox (event_id, room_id, sender, body, origin_ts, received_at) "
                    "SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS "
                    "(SELECT 1 FROM handled_events WHERE event_id = ?) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    (m.event_id, m.room_id, m.sender, m.body, m.origin_ts, received_at,
                     m.event_id),
                )
        return added

    async def pending_rooms(self) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT room_id FROM inbox GROUP BY room_id ORDER BY MIN(seq)"
        )
        return [r[0] for r in rows]

    async def next_for_room(self, room_id: str) -> InboxMessage | None:
        row = await self._db.fetchone(
            "SELECT event_id, room_id, sender, body, origin_ts, seq FROM inbox "
            "WHERE room_id = ? ORDER BY seq LIMIT 1",
            (room_id,),
        )
        return InboxMessage(*row) if row else None

    async def count(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM inbox")
        return int(row[0])

    async def mark_handled(self, message: InboxMessage, handled_at: int) -> None:
        """Call inside the transaction that queues the reply."""
        async with self._db.transaction():
            await self._db.execute("DELETE FROM inbox WHERE event_id = ?", (message.event_id,))
            await self._db.execute(
                "INSERT OR IGNORE INTO handled_events (event_id, room_id, handled_at) "
                "VALUES (?, ?, ?)",
                (message.event_id, message.room_id, handled_at),
            )

    async def is_handled(self, event_id: str) -> bool:
        row = await self._db.fetchone(
            "SELECT 1 FROM handled_events WHERE event_id = ?", (event_id,)
        )
        return row is not None

    async def forget_handled_before(self, ts_ms: int) -> int:
        """Old records can go: the sync cursors keep such old events from coming back."""
        return await self._db.execute("DELETE FROM handled_events WHERE handled_at < ?", (ts_ms,))
