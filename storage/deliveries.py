"""The scheduler's record: which occurrence was delivered (or skipped), and how far it looked."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from storage.database import Database

STATUSES = ("sent", "late", "skipped")


@dataclass(frozen=True)
class Delivery:
    key: str
    source: str
    room_id: str
    due_at: int
    recorded_at: int
    status: str


class DeliveryRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> Delivery | None:
        row = await self._db.fetchone(
            "SELECT key, source, room_id, due_at, recorded_at, status FROM deliveries "
            "WHERE key = ?", (key,))
        return Delivery(*row) if row else None

    async def recorded(self, keys: Iterable[str]) -> set[str]:
        """Which of `keys` were recorded: one query, however many keys."""
        keys = list(keys)
        if not keys:
            return set()
        rows = await self._db.fetchall(
            "SELECT key FROM deliveries WHERE key IN (SELECT value FROM json_each(?))",
            (json.dumps(keys),))
        return {row[0] for row in rows}

    async def record(self, delivery: Delivery) -> bool:
        """False when the key was recorded before: the caller must then send nothing."""
        added = await self._db.execute(
            "INSERT INTO deliveries (key, source, room_id, due_at, recorded_at, status) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (delivery.key, delivery.source, delivery.room_id, delivery.due_at,
             delivery.recorded_at, delivery.status))
        return added == 1

    async def count(self, status: str | None = None) -> int:
        if status is None:
            row = await self._db.fetchone("SELECT COUNT(*) FROM deliveries")
        else:
            row = await self._db.fetchone(
                "SELECT COUNT(*) FROM deliveries WHERE status = ?", (status,))
        return int(row[0])

    async def checked_until(self) -> int | None:
        row = await self._db.fetchone("SELECT checked_until FROM scheduler_state WHERE id = 1")
        return int(row[0]) if row else None

    async def set_checked_until(self, ms: int) -> None:
        await self._db.execute(
            "INSERT INTO scheduler_state (id, checked_until) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE "
            "SET checked_until = MAX(checked_until, excluded.checked_until)",
            (ms,))
