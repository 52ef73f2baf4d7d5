"""Sending the outbox: per room in order, rate limits honoured, retries idempotent.

A direct message waits under the member's user id; its room is found (or made, once) when it is
sent, so a command's state change and its direct messages are committed together, before any
network call. A message refused for good is set aside and the room's next one goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bot.matrix.connection import RefusedError, SendOutcome, SendResult, TransientError
from bot.metrics import Metrics
from bot.pipeline.backoff import Backoff
from storage.outbox import OutboxRepository, OutgoingMessage, is_member_address

log = logging.getLogger(__name__)

# A homeserver's "retry after" is honoured up to this; past it the send is simply tried again
# (a server still limiting says so once more), so a wild value never stalls a room for days.
MAX_RATE_LIMIT_WAIT_S = 300.0


class Transport(Protocol):
    async def send(self, room_id: str, event_type: str, content: dict[str, Any],
                   txn_id: str) -> SendResult: ...

    async def upload(self, room_id: str, data: bytes, mimetype: str,
                     filename: str) -> dict[str, Any]: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _no_direct_rooms(user_id: str) -> str:
    raise RuntimeError("no direct-message rooms configured")


class Sender:
    def __init__(
        self,
        transport: Transport,
        outbox: OutboxRepository,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff_factory: Callable[[], Backoff] = Backoff,
        metrics: Metrics | None = None,
        direct_rooms: Callable[[str], Awaitable[str]] | None = None,
        now_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._transport = transport
        self._outbox = outbox
        self._sleep = sleep
        self._backoff_factory = backoff_factory
        # user id -> the bot's direct room with them, made on first use (`own_rooms.DirectRooms`)
        self._direct_rooms = direct_rooms or _no_direct_rooms
        self._now_ms = now_ms

    async def _send(self, message: OutgoingMessage) -> SendResult:
        room_id = message.room_id
        if is_member_address(room_id):
            try:
                room_id = await self._direct_rooms(room_id)
            except TransientError:
                return SendResult(SendOutcome.TRANSIENT, errcode="direct room")
            except RefusedError as exc:  # e.g. no such member: no room can ever be made
                return SendResult(SendOutcome.REFUSED, errcode=exc.errcode)
        content = message.content
        if message.file_data is not None:
            mimetype = content.get("info", {}).get("mimetype", "application/octet-stream")
            try:
                media = await self._transport.upload(room_id, message.file_data,
                                                     mimetype, content.get("filename", "file"))
            except TransientError:
                return SendResult(SendOutcome.TRANSIENT, errcode="upload")
            content = {**content, **media}
        return await self._transport.send(room_id, message.event_type, content, message.txn_id)

    async def drain_room(self, room_id: str) -> None:
        backoff = self._backoff_factory()
        while (message := await self._outbox.next_for_room(room_id)) is not None:
            result = await self._send(message)
            self._metrics.send_result(result.outcome.value)
            if result.outcome is SendOutcome.SENT:
                await self._outbox.sent(message, result.event_id, self._now_ms())
                backoff.reset()
            elif result.outcome is SendOutcome.RATE_LIMITED:
                wait = min(result.retry_after_ms / 1000, MAX_RATE_LIMIT_WAIT_S)
                log.info("room %s: rate limited, waiting %.1f s", room_id, wait)
                await self._sleep(wait)
            elif result.outcome is SendOutcome.TRANSIENT:
                delay = backoff.next_delay()
                log.warning("room %s: send failed (%s), retrying in %.1f s", room_id,
                            result.errcode or "network", delay)
                await self._sleep(delay)
            else:
                # The server will never take it (not in the room, too large, …): set aside, so
                # that it neither blocks the room's queue nor is tried again forever.
                errcode = result.errcode or "refused"
                log.error("room %s: message %s refused for good (%s); set aside, the room's "
                          "queue goes on", room_id, message.txn_id, errcode)
                await self._outbox.set_aside(message.txn_id, room_id, errcode, self._now_ms())
                self._metrics.send_refused(errcode)
                backoff.reset()
