"""Welcomes: the sync loop records each member's join (in the same transaction as its token, so
none is lost or seen twice); this task greets them.

A room's waiting joins are greeted together once nobody joined there for `quiet` (at most
`MAX_WAIT_FACTOR` times that after the first), so several joins get one combined greeting. A
greeting is queued in the same transaction that marks its joins greeted, under a transaction id
made from the first join's event id: never twice, also across a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.feature_context import FeatureContext
from bot.matrix.render import page_labels, paginate
from bot.pipeline.backoff import Backoff
from commands import communities, room_settings
from commands.framework import Services
from storage.joins import Join
from storage.outbox import OutgoingMessage

log = logging.getLogger(__name__)

MAX_WAIT_FACTOR = 4
GREET_AGAIN_AFTER_MS = 7 * 24 * 3600 * 1000  # a quick leave and rejoin is not greeted again
KEEP_GREETED_MS = 30 * 24 * 3600 * 1000


class Welcomer:
    def __init__(self, services: Services, *, now_ms: Callable[[], int],
                 on_queued: Callable[[str], None], quiet_ms: int,
                 ignore: Sequence[str] = (), backoff: Backoff | None = None) -> None:
        self._services = services
        self._now_ms = now_ms
        self._on_queued = on_queued
        self._quiet_ms = quiet_ms
        self._ignore = list(ignore)
        self._backoff = backoff or Backoff()
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """New joins were recorded."""
        self._woken.set()

    async def run(self) -> None:
        await self._services.storage.joins.forget_handled_before(
            self._now_ms() - KEEP_GREETED_MS)
        while True:
            try:
                wait_ms = await self.greet_due()
            except Exception:
                delay = await self._backoff.wait()
                log.exception("welcomes failed; retried after %.1f s", delay)
                continue
            self._backoff.reset()
            timeout = None if wait_ms is None else wait_ms / 1000
            try:
                await asyncio.wait_for(self._woken.wait(), timeout)
            except TimeoutError:
                pass
            self._woken.clear()

    async def greet_due(self) -> int | None:
        """Greet in every room whose joins are due; milliseconds until the next room is due
        (None: nobody waiting)."""
        now = self._now_ms()
        waiting: dict[str, list[Join]] = {}
        for join in await self._services.storage.joins.waiting():
            waiting.setdefault(join.room_id, []).append(join)
        next_due: int | None = None
        for room_id, joins in waiting.items():
            due = min(max(j.joined_at for j in joins) + self._quiet_ms,
                      min(j.joined_at for j in joins) + MAX_WAIT_FACTOR * self._quiet_ms)
            if due > now:
                next_due = due - now if next_due is None else min(next_due, due - now)
                continue
            await self._greet(room_id, joins, now)
        return next_due

    async def _greet(self, room_id: str, joins: list[Join], now: int) -> None:
        storage = self._services.storage
        people: list[str] = []
        greeted: list[str] = []  # the join events the welcome covers
        for join in joins:
            if join.user_id in people or communities.is_ignored(join.user_id, self._ignore):
                continue
            if await storage.joins.greeted_since(room_id, join.user_id,
                                                       now - GREET_AGAIN_AFTER_MS):
                continue
            people.append(join.user_id)
            greeted.append(join.event_id)
        language = await room_settings.language(self._services, room_id)
        text = (await communities.welcome(self._services, room_id, people, language)
                if people else None)
        messages: list[OutgoingMessage] = []
        if text is not None:
            label = page_labels(self._services.catalog, language)
            messages = [OutgoingMessage(f"welcome-{joins[0].event_id}-{page}", room_id, content)
                        for page, content in enumerate(
                            paginate(text, label, mentions=tuple(people)))]
        async with storage.db.transaction():
            await storage.joins.mark_handled([j.event_id for j in joins],
                                                   greeted if messages else [], now)
            await storage.outbox.add(messages, created_at=now)
        if messages:
            log.info("welcomed %d newcomer(s) in %s", len(people), room_id)
            self._on_queued(room_id)


def setup(context: FeatureContext) -> Awaitable[None]:
    """The communities' welcomes: greets the joins each sync records."""
    settings = context.settings.communities
    welcomer = Welcomer(context.services, now_ms=context.now_ms,
                        on_queued=context.wake_sender,
                        quiet_ms=settings.welcome_delay_seconds * 1000,
                        ignore=settings.no_welcome)
    context.join_listeners.append(welcomer.wake)
    return welcomer.run()
