"""Members' joins seen by the sync, recorded in the sync's transaction: each is looked at once
(a room's welcome, `bot/pipeline/welcomer.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.database import Database


@dataclass(frozen=True)
class Join:
    """A member's join seen in a room; its membership event id makes it unique."""

    event_id: str
    room_id: str
    user_id: str
    joined_at: int  # milliseconds, the server's timestamp


class JoinRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, joins: Sequence[Join]) -> int:
        """Remember joins to greet; one seen before (same event) is ignored. Returns how many
        were new."""
        added = 0
        for join in joins:
            added += await self._db.execute(
                "INSERT INTO welcomes (event_id, room_id, user_id, joined_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING",
                (join.event_id, join.room_id, join.user_id, join.joined_at))
        return added

    async def waiting(self) -> list[Join]:
        """Joins not looked at yet, oldest first."""
        rows = await self._db.fetchall(
            "SELECT event_id, room_id, user_id, joined_at FROM welcomes "
            "WHERE handled_at IS NULL ORDER BY joined_at, event_id")
        return [Join(*row) for row in rows]

    async def mark_handled(self, event_ids: Sequence[str], greeted: Sequence[str],
                           at: int) -> None:
        """These joins were looked at; those in `greeted` got a welcome."""
        chosen = set(greeted)
        await self._db.executemany(
            "UPDATE welcomes SET handled_at = ?, greeted = ? WHERE event_id = ?",
            [(at, int(event_id in chosen), event_id) for event_id in event_ids])

    async def greeted_since(self, room_id: str, user_id: str, since: int) -> bool:
        """Whether this member was welcomed in this room since then."""
        row = await self._db.fetchone(
            "SELECT 1 FROM welcomes WHERE room_id = ? AND user_id = ? AND greeted = 1 "
            "AND handled_at >= ? LIMIT 1", (room_id, user_id, since))
        return row is not None

    async def forget_handled_before(self, at: int) -> None:
        await self._db.execute(
            "DELETE FROM welcomes WHERE handled_at IS NOT NULL AND handled_at < ?", (at,))
