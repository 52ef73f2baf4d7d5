"""Commands received but not yet answered, and the record of those already handled.

The sync loop adds commands here in the same transaction as the new sync token; a worker marks
each one handled in the same transaction that queues its reply. So a crash loses nothing, and a
redelivered event is never answered twice.

Each room's waiting commands are kept in memory in step with the commits (`RoomQueues`), so taking
the next command costs no query.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from storage.database import Database
from storage.room_queues import RoomQueues


@dataclass(frozen=True)
class InboxMessage:
    event_id: str
    room_id: str
    sender: str
    body: str
    origin_ts: int
    seq: int = 0
    # The root of the thread the command was written in: its answer goes into that thread.
    thread_root: str | None = None

    def __repr__(self) -> str:  # the body is what a member wrote: keep it out of logs
        return f"InboxMessage(event_id={self.event_id!r}, room_id={self.room_id!r})"


def _insert_new(conn: sqlite3.Connection, messages: list[InboxMessage],
                received_at: int) -> list[InboxMessage]:
    """Insert on SQLite's thread; the commands that were neither queued nor handled before."""
    return [m for m in messages if conn.execute(
        "INSERT INTO inbox (event_id, room_id, sender, body, origin_ts, received_at, "
        "thread_root) SELECT ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS "
        "(SELECT 1 FROM handled_events WHERE event_id = ?) "
        "ON CONFLICT (event_id) DO NOTHING",
        (m.event_id, m.room_id, m.sender, m.body, m.origin_ts, received_at, m.thread_root,
         m.event_id),
    ).rowcount]


class InboxRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: RoomQueues[InboxMessage] = RoomQueues(
            db, room_of=lambda m: m.room_id, id_of=lambda m: m.event_id)

    async def add(self, messages: Iterable[InboxMessage], received_at: int) -> int:
        """Add new commands, skipping any already queued or handled; returns how many were new."""
        return len(await self.add_new(messages, received_at))

    async def add_new(self, messages: Iterable[InboxMessage],
                      received_at: int) -> list[InboxMessage]:
        """Like `add`, but returns the commands that were new, in order (one hand-off)."""
        messages = list(messages)
        if not messages:
            return []

        async with self._db.transaction():
            new = await self._db.run(lambda conn: _insert_new(conn, messages, received_at))
            self._db.after_commit(lambda: self._waiting.remember(new))
        return new

    async def add_on_commit(self, messages: Iterable[InboxMessage],
                            received_at: int) -> list[InboxMessage]:
        """Like `add_new` inside the caller's transaction, without a hand-off of its own: the
        insert goes along with the transaction's next one (the sync loop's: its COMMIT). The
        list returned is filled with the commands that were new once that has run."""
        messages = list(messages)
        new: list[InboxMessage] = []
        if not messages:
            return new

        async with self._db.transaction():
            await self._db.run_later(
                lambda conn: new.extend(_insert_new(conn, messages, received_at)))
            self._db.after_commit(lambda: self._waiting.remember(new))
        return new

    async def pending_rooms(self) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT room_id FROM inbox GROUP BY room_id ORDER BY MIN(seq)"
        )
        return [r[0] for r in rows]

    async def next_for_room(self, room_id: str) -> InboxMessage | None:
        """The room's oldest command not handled yet (it stays until `mark_handled`)."""

        async def read() -> list[InboxMessage]:
            rows = await self._db.fetchall(
                "SELECT event_id, room_id, sender, body, origin_ts, seq, thread_root FROM inbox "
                "WHERE room_id = ? ORDER BY seq",
                (room_id,),
            )
            return [InboxMessage(*row) for row in rows]

        return await self._waiting.first(room_id, read)

    async def count(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM inbox")
        return int(row[0])

    async def mark_handled(self, message: InboxMessage, handled_at: int) -> None:
        """Call inside the transaction that queues the reply."""

        def mark(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM inbox WHERE event_id = ?", (message.event_id,))
            conn.execute(
                "INSERT OR IGNORE INTO handled_events (event_id, room_id, handled_at) "
                "VALUES (?, ?, ?)",
                (message.event_id, message.room_id, handled_at),
            )

        async with self._db.transaction():
            await self._db.run_later(mark)  # goes out with the COMMIT: one hand-off less
            self._db.after_commit(lambda: self._waiting.forget(message.event_id, message.room_id))

    async def is_handled(self, event_id: str) -> bool:
        row = await self._db.fetchone(
            "SELECT 1 FROM handled_events WHERE event_id = ?", (event_id,)
        )
        return row is not None

    async def forget_handled_before(self, ts_ms: int) -> int:
        """Old records can go: the sync cursors keep such old events from coming back."""
        return await self._db.execute("DELETE FROM handled_events WHERE handled_at < ?", (ts_ms,))
