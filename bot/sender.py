"""Sending the outbox: per room in order, rate limits honoured, retries idempotent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bot.backoff import Backoff
from bot.matrix import SendOutcome, SendResult, TransientError
from bot.metrics import Metrics
from storage.outbox import OutboxRepository, OutgoingMessage

log = logging.getLogger(__name__)

# A homeserver's "retry after" is honoured up to this; past it the send is simply tried again
# (a server still limiting says so once more), so a wild value never stalls a room for days.
MAX_RATE_LIMIT_WAIT_S = 300.0


class Transport(Protocol):
    async def send(self, room_id: str, event_type: str, content: dict[str, Any],
                   txn_id: str) -> SendResult: ...

    async def upload(self, room_id: str, data: bytes, mimetype: str,
                     filename: str) -> dict[str, Any]: ...


class Sender:
    def __init__(
        self,
        transport: Transport,
        outbox: OutboxRepository,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff_factory: Callable[[], Backoff] = Backoff,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._transport = transport
        self._outbox = outbox
        self._sleep = sleep
        self._backoff_factory = backoff_factory

    async def _send(self, message: OutgoingMessage) -> SendResult:
        content = message.content
        if message.file_data is not None:
            mimetype = content.get("info", {}).get("mimetype", "application/octet-stream")
            try:
                media = await self._transport.upload(message.room_id, message.file_data,
                                                     mimetype, content.get("filename", "file"))
            except TransientError:
                return SendResult(SendOutcome.TRANSIENT, errcode="upload")
            content = {**content, **media}
        return await self._transport.send(message.room_id, message.event_type, content,
                                          message.txn_id)

    async def drain_room(self, room_id: str) -> None:
        backoff = self._backoff_factory()
        while (message := await self._outbox.next_for_room(room_id)) is not None:
            result = await self._send(message)
            self._metrics.send_result(result.outcome.value)
            if result.outcome is SendOutcome.SENT:
                await self._outbox.remove(message.txn_id, room_id)
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
                # The server will never take it (not in the room, too large, …): drop, not block.
                log.error("room %s: message %s refused (%s), dropped", room_id, message.txn_id,
                          result.errcode)
                await self._outbox.remove(message.txn_id, room_id)
