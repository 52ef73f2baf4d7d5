"""Messages waiting to be sent, each with the transaction id that makes its sending idempotent.

A message goes to a room, or (a direct message) to a member: its `room_id` is then the member's
user id, and the sender finds or makes the direct room when it sends. A message the homeserver
refused for good is set aside (`set_aside`): kept a while for the operator, never sent again.

Each room's waiting messages are kept in memory in step with the commits (`RoomQueues`), so the
send lanes take the next message without a query.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database
from storage.member_data import Deleted
from storage.room_queues import RoomQueues

FAILED_KEPT_MS = 30 * 24 * 3600 * 1000  # how long a message set aside stays for the operator


def is_member_address(room_id: str) -> bool:
    """Whether a message's `room_id` is a member's user id (a direct message)."""
    return room_id.startswith("@")


@dataclass(frozen=True)
class OutgoingMessage:
    txn_id: str
    room_id: str  # a room id, or for a direct message the member's user id
    content: dict[str, Any]
    event_type: str = "m.room.message"
    seq: int = 0
    # A file to upload first; its `mxc://` URL then goes into the content's `url`.
    file_data: bytes | None = None
    # Once sent, recorded by the feature that declared this kind (`Schema.when_sent`), under
    # this key: (kind, key), e.g. ("workshop_post", "12").
    record_as: tuple[str, str] | None = None

    def __repr__(self) -> str:
        return f"OutgoingMessage(txn_id={self.txn_id!r}, room_id={self.room_id!r})"


# What records a sent message of one kind: (database, key, message, its event id) → messages
# to queue with it (the bot's own reactions on it), in the transaction that drops it.
RecordSent = Callable[[Database, str, "OutgoingMessage", str], Awaitable[list["OutgoingMessage"]]]


class OutboxRepository:
    def __init__(self, db: Database, recorders: Mapping[str, RecordSent] | None = None) -> None:
        self._db = db
        self._recorders = dict(recorders or {})  # by kind
        self._waiting: RoomQueues[OutgoingMessage] = RoomQueues(
            db, room_of=lambda m: m.room_id, id_of=lambda m: m.txn_id)

    async def add(self, messages: list[OutgoingMessage], created_at: int) -> None:
        """Queue messages; a transaction id already queued is not queued again."""
        if not messages:
            return

        new: list[OutgoingMessage] = []

        def insert(conn: sqlite3.Connection) -> None:
            new.extend(m for m in messages if conn.execute(
                "INSERT INTO outbox (txn_id, room_id, event_type, content, created_at, "
                "file_data, record_kind, record_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (txn_id) DO NOTHING",
                (m.txn_id, m.room_id, m.event_type, json.dumps(m.content, ensure_ascii=False),
                 created_at, m.file_data, *(m.record_as or (None, None))),
            ).rowcount)

        async with self._db.transaction():
            # Nobody waits for the insert: it goes out with the transaction's next hand-off
            # (for a command's reply: its COMMIT, together with marking the command handled).
            await self._db.run_later(insert)
            self._db.after_commit(lambda: self._waiting.remember(new))

    async def pending_rooms(self) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT room_id FROM outbox WHERE failed_at IS NULL GROUP BY room_id "
            "ORDER BY MIN(seq)"
        )
        return [r[0] for r in rows]

    async def next_for_room(self, room_id: str) -> OutgoingMessage | None:
        """The room's next message to send (it stays until `remove`)."""

        async def read() -> list[OutgoingMessage]:
            rows = await self._db.fetchall(
                "SELECT txn_id, room_id, content, event_type, seq, file_data, record_kind, "
                "record_key FROM outbox WHERE room_id = ? AND failed_at IS NULL ORDER BY seq",
                (room_id,),
            )
            return [OutgoingMessage(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5],
                                    (row[6], row[7]) if row[6] is not None else None)
                    for row in rows]

        return await self._waiting.first(room_id, read)

    async def remove(self, txn_id: str, room_id: str | None = None) -> None:
        """Drop a message (sent); its room, when known, saves a search."""
        await self._db.execute("DELETE FROM outbox WHERE txn_id = ?", (txn_id,))
        self._db.after_commit(lambda: self._waiting.forget(txn_id, room_id))

    async def sent(self, message: OutgoingMessage, event_id: str | None, at: int) -> None:
        """A message the homeserver took (as `event_id`): dropped. One to be recorded
        (`record_as`) is recorded by its feature in the same transaction, with the messages
        that go with it (the bot's ✅ on a post of a workshop, so that signing up is one tap),
        so each is recorded exactly once."""
        async with self._db.transaction():
            if message.record_as is not None and event_id:
                kind, key = message.record_as
                recorder = self._recorders.get(kind)
                if recorder is not None:  # else its feature is no longer in the bot
                    await self.add(await recorder(self._db, key, message, event_id),
                                   created_at=at)
            await self.remove(message.txn_id, message.room_id)

    async def set_aside(self, txn_id: str, room_id: str, errcode: str, at: int) -> None:
        """A message the homeserver refused for good: out of its room's queue, but kept (with
        the error code) until `forget_failed_before`. Its transaction id stays taken, so the
        same message queued again is not sent again."""
        await self._db.execute(
            "UPDATE outbox SET failed_at = ?, failed_errcode = ?, file_data = NULL "
            "WHERE txn_id = ?", (at, errcode, txn_id))
        self._db.after_commit(lambda: self._waiting.forget(txn_id, room_id))

    async def failed(self) -> list[tuple[str, str, str, int]]:
        """The messages set aside: (transaction id, room or member, error code, when), oldest
        first."""
        rows = await self._db.fetchall(
            "SELECT txn_id, room_id, failed_errcode, failed_at FROM outbox "
            "WHERE failed_at IS NOT NULL ORDER BY seq")
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    async def forget_failed_before(self, ts_ms: int) -> int:
        return await self._db.execute(
            "DELETE FROM outbox WHERE failed_at IS NOT NULL AND failed_at < ?", (ts_ms,))

    async def delete_to_member(self, user_id: str, now: datetime) -> Deleted:
        """A member's deletion: the direct messages to them not sent yet or refused."""
        return await self._drop("room_id = ?", user_id)

    async def delete_refused_naming(self, user_id: str, now: datetime) -> Deleted:
        """A member's deletion: messages the homeserver refused that name them."""
        return await self._drop("failed_at IS NOT NULL AND instr(content, ?) > 0", user_id)

    async def _drop(self, condition: str, user_id: str) -> Deleted:
        found = await self._db.fetchall(
            f"SELECT txn_id, room_id FROM outbox WHERE {condition}", (user_id,))
        for txn_id, room_id in found:
            await self.remove(txn_id, room_id)
        return Deleted(len(found))

    async def count(self) -> int:
        """Messages waiting to be sent (those set aside not counted)."""
        row = await self._db.fetchone("SELECT COUNT(*) FROM outbox WHERE failed_at IS NULL")
        return int(row[0])

    async def count_failed(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM outbox WHERE failed_at IS NOT NULL")
        return int(row[0])


def thread_of(content: dict[str, Any]) -> str | None:
    """The thread a message's content puts it in (its root's event id); None: the main
    timeline."""
    relates = content.get("m.relates_to")
    if isinstance(relates, dict) and relates.get("rel_type") == "m.thread":
        root = relates.get("event_id")
        return root if isinstance(root, str) else None
    return None


def bot_reaction(room_id: str, post_event_id: str, key: str) -> OutgoingMessage:
    """The bot's own `key` on its post, under a transaction id of the post's and the key's."""
    digest = hashlib.sha256(f"{post_event_id} {key}".encode()).hexdigest()[:32]
    return OutgoingMessage(f"react-{digest}", room_id, {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": post_event_id, "key": key}},
        event_type="m.reaction")
