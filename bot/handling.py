"""Answering the inbox: one command at a time per room, its reply queued for sending.

The command is marked handled in the same transaction that queues its reply pages under
transaction ids derived from the command's event id, so whatever happens afterwards, the
reply is sent once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.matrix import TransientError
from bot.metrics import Metrics
from bot.permissions import Permissions
from bot.rate_limit import MemberRateLimit, Verdict
from bot.render import file_message, page_labels, paginate
from commands.framework import Level, Reply, Request, RetryLater, Services, dispatch
from storage.inbox import InboxMessage
from storage.outbox import OutgoingMessage
from storage.rooms import RoomRepository
from storage.undecrypted import Undecrypted

log = logging.getLogger(__name__)

NOTICE_AGAIN_AFTER_MS = 24 * 3600 * 1000  # "I could not decrypt" at most once a day per person


def reply_txn_id(event_id: str, page: int) -> str:
    """Stable per command and page: a resend after a crash reuses it, so the server dedupes."""
    digest = hashlib.sha256(event_id.encode()).hexdigest()[:32]
    return f"reply-{digest}-{page}"


async def _no_direct_rooms(user_id: str) -> str:
    raise RuntimeError("no direct-message rooms configured")


class DirectRooms:
    """The bot's direct-message room with each member: made on first use, then remembered."""

    def __init__(self, rooms: RoomRepository, create: Callable[[str], Awaitable[str]]) -> None:
        self._rooms = rooms
        self._create = create

    async def room_for(self, user_id: str) -> str:
        room_id = await self._rooms.direct_room(user_id)
        if room_id is None:
            room_id = await self._create(user_id)
            await self._rooms.set_direct_room(user_id, room_id)
        return room_id


class CommandHandler:
    def __init__(
        self,
        services: Services,
        permissions: Permissions,
        default_language: str,
        now_ms: Callable[[], int],
        on_reply: Callable[[str], None],
        direct_rooms: Callable[[str], Awaitable[str]] | None = None,
        rate_limit: MemberRateLimit | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._direct_rooms = direct_rooms or _no_direct_rooms
        self._services = services
        self._permissions = permissions
        self._default_language = default_language
        self._now_ms = now_ms
        self._on_reply = on_reply
        self._rate_limit = rate_limit or MemberRateLimit(0, 1)
        self._metrics = metrics or Metrics()
        self._stopping = False
        self._handling = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._counted: set[str] = set()  # commands waiting for a retry, counted by the limit

    def stop_taking(self) -> None:
        """Take no more commands from the inbox (they stay there for the next start)."""
        self._stopping = True

    async def wait_idle(self) -> None:
        """Until no command is being handled."""
        await self._idle.wait()

    async def drain_room(self, room_id: str) -> None:
        inbox = self._services.storage.inbox
        while not self._stopping and (message := await inbox.next_for_room(room_id)) is not None:
            if self._stopping:
                return
            self._handling += 1
            self._idle.clear()
            try:
                await self.handle(message)
            finally:
                self._handling -= 1
                if self._handling == 0:
                    self._idle.set()

    async def handle(self, message: InboxMessage) -> None:
        storage = self._services.storage
        language = await storage.rooms.language(message.room_id) or self._default_language
        if message.event_id in self._counted:  # a retry is not another command
            self._counted.discard(message.event_id)
            verdict = Verdict.ALLOW
        else:
            verdict = self._rate_limit.check(message.sender, self._now_ms())
        if verdict is not Verdict.ALLOW:
            await self._hold_back(message, language, verdict)
            return
        try:
            await self._answer(message, language)
        except Exception:
            self._counted.add(message.event_id)  # the lane retries it: not another command
            raise

    async def _answer(self, message: InboxMessage, language: str) -> None:
        async def level() -> Level:
            try:
                return await self._permissions.level(message.room_id, message.sender)
            except TransientError as exc:
                raise RetryLater from exc  # the command stays in the inbox

        request = Request(message.event_id, message.room_id, message.sender, message.body,
                          language, level)
        replies = await dispatch(request, self._services)
        outgoing: list[OutgoingMessage] = []
        for reply in replies:
            room_id, reply_to = message.room_id, message.event_id
            if reply.direct:
                # A reply relation cannot point into another room.
                recipient = reply.recipient or message.sender
                room_id, reply_to = await self._direct_rooms(recipient), None
            for content, file_data in self._contents(reply, language, reply_to):
                outgoing.append(OutgoingMessage(reply_txn_id(message.event_id, len(outgoing)),
                                                room_id, content, file_data=file_data))
        await self._finish(message, outgoing)

    async def _hold_back(self, message: InboxMessage, language: str, verdict: Verdict) -> None:
        """A member over the limit: one "slow down" in reply, then silence; handled either way."""
        outgoing: list[OutgoingMessage] = []
        if verdict is Verdict.SLOW_DOWN:
            log.info("room=%s outcome=rate_limited: a member is asked to slow down",
                     message.room_id)
            text = self._services.catalog.text(language, "errors.slow_down")
            outgoing = [OutgoingMessage(reply_txn_id(message.event_id, page), message.room_id,
                                        content)
                        for page, (content, _) in enumerate(
                            self._contents(Reply(text), language, message.event_id))]
        self._metrics.rate_limited(answered=bool(outgoing))
        await self._finish(message, outgoing)

    async def _finish(self, message: InboxMessage, outgoing: list[OutgoingMessage]) -> None:
        """Queue the replies and mark the command handled: one transaction, so exactly once."""
        storage = self._services.storage
        now = self._now_ms()
        async with storage.db.transaction():
            await storage.outbox.add(outgoing, created_at=now)
            await storage.inbox.mark_handled(message, handled_at=now)
        for room_id in {m.room_id for m in outgoing}:
            self._on_reply(room_id)

    async def explain_undecryptable(self, pending: Undecrypted) -> None:
        """Tell the sender once (a day, per room) that the bot could not read their message."""
        storage = self._services.storage
        now = self._now_ms()
        told = await storage.undecrypted.notified_at(pending.room_id, pending.sender)
        outgoing: list[OutgoingMessage] = []
        if told is None or now - told > NOTICE_AGAIN_AFTER_MS:
            language = await storage.rooms.language(pending.room_id) or self._default_language
            text = self._services.catalog.text(language, "errors.undecryptable")
            outgoing = [OutgoingMessage(f"undecryptable-{reply_txn_id(pending.event_id, page)}",
                                        pending.room_id, content)
                        for page, (content, _) in enumerate(
                            self._contents(Reply(text), language, pending.event_id))]
        async with storage.db.transaction():
            await storage.undecrypted.remove(pending.event_id)
            if outgoing:
                await storage.outbox.add(outgoing, created_at=now)
                await storage.undecrypted.set_notified(pending.room_id, pending.sender, now)
        if outgoing:
            self._on_reply(pending.room_id)

    def _contents(self, reply: Reply, language: str,
                  reply_to: str | None) -> list[tuple[dict[str, Any], bytes | None]]:
        if reply.attachment is not None:
            file = reply.attachment
            content = file_message(reply.text, file.filename, file.mimetype, len(file.data),
                                   reply_to)
            return [(content, file.data)]

        label = page_labels(self._services.catalog, language)
        return [(content, None)
                for content in paginate(reply.text, label, reply_to, mentions=reply.mentions)]
