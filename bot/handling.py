"""Answering the inbox: one command at a time per room, its reply queued for sending.

The command is marked handled in the same transaction that queues its reply pages under
transaction ids derived from the command's event id, so whatever happens afterwards, the
reply is sent once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from bot.matrix import TransientError
from bot.permissions import Permissions
from bot.render import paginate
from commands.framework import Level, Request, RetryLater, Services, dispatch
from commands.i18n import Text
from storage.inbox import InboxMessage
from storage.outbox import OutgoingMessage

log = logging.getLogger(__name__)


def reply_txn_id(event_id: str, page: int) -> str:
    """Stable per command and page: a resend after a crash reuses it, so the server dedupes."""
    digest = hashlib.sha256(event_id.encode()).hexdigest()[:32]
    return f"reply-{digest}-{page}"


class CommandHandler:
    def __init__(
        self,
        services: Services,
        permissions: Permissions,
        default_language: str,
        now_ms: Callable[[], int],
        on_reply: Callable[[], None],
    ) -> None:
        self._services = services
        self._permissions = permissions
        self._default_language = default_language
        self._now_ms = now_ms
        self._on_reply = on_reply

    async def drain_room(self, room_id: str) -> None:
        inbox = self._services.storage.inbox
        while (message := await inbox.next_for_room(room_id)) is not None:
            await self.handle(message)

    async def handle(self, message: InboxMessage) -> None:
        storage = self._services.storage
        language = await storage.rooms.language(message.room_id) or self._default_language

        async def level() -> Level:
            try:
                return await self._permissions.level(message.room_id, message.sender)
            except TransientError as exc:
                raise RetryLater from exc  # the command stays in the inbox

        request = Request(message.event_id, message.room_id, message.sender, message.body,
                          language, level)
        reply = await dispatch(request, self._services)
        outgoing = []
        if reply is not None:

            def label(page: int, pages: int) -> Text:
                return self._services.catalog.text(language, "reply.page", page=page, pages=pages)

            for page, content in enumerate(paginate(reply, label, message.event_id)):
                outgoing.append(OutgoingMessage(reply_txn_id(message.event_id, page),
                                                message.room_id, content))
        now = self._now_ms()
        async with storage.db.transaction():
            await storage.outbox.add(outgoing, created_at=now)
            await storage.inbox.mark_handled(message, handled_at=now)
        if outgoing:
            self._on_reply()
