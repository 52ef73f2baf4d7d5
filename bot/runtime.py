"""Wiring: settings → database → Matrix connection → sync loop, command handling, sending.

The features come from `bot/features.py`; this module names none of them: it takes each one's
router, configuration, scheduler sources and Matrix-side setups (`commands/feature.py`).

```
sync loop ──► inbox (SQLite) ──► command lanes (per room) ──► outbox (SQLite) ──► send lanes
```
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.feature_context import FeatureContext
from bot.features import FEATURES
from bot.matrix.connection import LoginError, MatrixConnection
from bot.matrix.crypto import StoreKeyError
from bot.matrix.own_rooms import DirectRooms
from bot.matrix.permissions import NetworkRooms, Permissions
from bot.metrics import Metrics, MetricsAddressError, MetricsServer
from bot.pipeline.handling import CommandHandler
from bot.pipeline.lanes import RoomLanes
from bot.pipeline.rate_limit import MemberRateLimit
from bot.pipeline.scheduler import Scheduler
from bot.pipeline.sender import Sender
from bot.pipeline.syncer import Syncer, SyncListener
from bot.settings import Settings
from commands.feature import Feature, routers
from commands.features import open_storage
from commands.framework import Registry, Services
from commands.i18n import Catalog
from commands.room_settings import RoomDefaults
from storage import Storage
from storage.outbox import FAILED_KEPT_MS
from storage.schema import DatabaseTooNewError
from storage.undecrypted import Undecrypted

log = logging.getLogger(__name__)

HANDLED_EVENTS_KEPT_MS = 30 * 24 * 3600 * 1000
# On stop (SIGTERM): how long to let commands being handled finish, then to send what is
# queued. Together well under the 10 s a service manager waits; the rest stays queued.
STOP_HANDLING_S = 3.0
STOP_SENDING_S = 4.0


def feature_configs(settings: Settings, features: Sequence[Feature]) -> dict[str, object]:
    """Each feature's configuration from its settings section, by the feature's name; and the
    room settings' defaults: the bot's language, and the rooms each feature's configured rooms
    switch a setting on in."""
    configs: dict[str, object] = {f.name: f.configure(settings) for f in features
                                  if f.configure is not None}
    switched_on: dict[str, frozenset[str]] = {}
    for feature in features:
        if feature.switched_on is not None:
            switched_on.update(feature.switched_on(settings))
    configs["room_settings"] = RoomDefaults(settings.bot.language, switched_on)
    return configs


class _BotSyncListener(SyncListener):
    """Where what a sync brought goes: commands to their rooms' lanes, changed power levels to
    the permissions, joins to the features that listen (welcomes), unreadable messages to the
    handler that explains them."""

    def __init__(self, settings: Settings, context: FeatureContext, command_lanes: RoomLanes,
                 send_lanes: RoomLanes, permissions: Permissions,
                 handler: CommandHandler) -> None:
        self._settings = settings
        self._context = context
        self._command_lanes = command_lanes
        self._send_lanes = send_lanes
        self._permissions = permissions
        self._handler = handler

    def may_join(self, inviter: str | None) -> bool:
        return bool(inviter) and self._settings.may_invite(inviter)

    def commands_waiting(self, room_id: str) -> None:
        self._command_lanes.wake(room_id)

    def power_levels_changed(self, room_id: str) -> None:
        self._permissions.forget(room_id)

    def joins_recorded(self) -> None:
        for listener in self._context.join_listeners:
            listener()

    async def undecryptable(self, pending: Undecrypted) -> None:
        await self._handler.explain_undecryptable(pending)

    async def until_answered(self, rooms: list[str]) -> None:
        """For latency only: these rooms' commands handled and their replies sent."""
        await self._command_lanes.settled(rooms)
        await self._send_lanes.settled(rooms)


class SystemClock:
    def __init__(self, settings: Settings) -> None:
        self._tz = settings.tzinfo

    def now(self) -> datetime:
        return datetime.now(self._tz)


def now_ms() -> int:
    return int(time.time() * 1000)


class Bot:
    """The whole bot in one object: `await bot.start()`, later `await bot.stop()`."""

    def __init__(self, settings: Settings, features: Sequence[Feature] | None = None) -> None:
        self.settings = settings
        self.features = list(features if features is not None else FEATURES)
        self.storage: Storage | None = None
        self.connection: MatrixConnection | None = None
        self.scheduler: Scheduler | None = None
        self.parts: dict[str, Any] = {}  # what the features' setups made, by name
        self.metrics = Metrics()
        self.metrics_server: MetricsServer | None = None
        self._handler: CommandHandler | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def user_id(self) -> str:
        return self.settings.matrix.user_id

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._close()
            raise

    async def _start(self) -> None:
        settings = self.settings
        self.storage = storage = await open_storage(settings.storage.database)
        await storage.inbox.forget_handled_before(now_ms() - HANDLED_EVENTS_KEPT_MS)
        await storage.outbox.forget_failed_before(now_ms() - FAILED_KEPT_MS)
        self.connection = connection = MatrixConnection(settings.matrix)
        await connection.start_session(storage.session)
        services = Services(storage=storage, catalog=Catalog.load(),
                            registry=Registry(routers(self.features)),
                            clock=SystemClock(settings), prefix=settings.bot.command_prefix,
                            configs=feature_configs(settings, self.features))
        direct_rooms = DirectRooms(storage.rooms, connection, self.user_id)
        sender = Sender(connection, storage.outbox, metrics=self.metrics,
                        direct_rooms=direct_rooms.room_for, now_ms=now_ms)
        send_lanes = RoomLanes("send", storage.outbox.pending_rooms, sender.drain_room)

        async def schedule_changed(source_name: str) -> None:
            assert self.scheduler is not None
            await self.scheduler.schedule_changed(source_name)

        async def replan() -> None:
            assert self.scheduler is not None
            await self.scheduler.plan_all()

        context = FeatureContext(settings, services, storage, connection, now_ms=now_ms,
                                 wake_sender=send_lanes.wake, schedule_changed=schedule_changed,
                                 replan=replan,
                                 network_rooms=list(settings.bot.network_rooms),
                                 parts=self.parts)
        background = [(f"{feature.name}:{setup.__module__.rsplit('.', 1)[-1]}", task)
                      for feature in self.features for setup in feature.setups
                      if (task := setup(context)) is not None]
        network_rooms = NetworkRooms(context.network_rooms, connection.resolve_alias,
                                     context.remembered_network_rooms)
        permissions = Permissions(connection.room_state, settings.bot.admins,
                                  settings.bot.moderator_level,
                                  network_moderators=settings.bot.moderators,
                                  network_rooms=network_rooms.ids,
                                  is_direct_room=storage.rooms.is_direct_room)
        rate_limit = MemberRateLimit(settings.bot.member_rate_limit,
                                     settings.bot.member_rate_window_seconds * 1000,
                                     exempt=settings.bot.admins)
        self._handler = handler = CommandHandler(
            services, permissions, settings.bot.language, now_ms, on_reply=send_lanes.wake,
            rate_limit=rate_limit, metrics=self.metrics)
        command_lanes = RoomLanes("commands", storage.inbox.pending_rooms, handler.drain_room)
        self.scheduler = Scheduler(
            storage, [source for feature in self.features if feature.sources is not None
                      for source in feature.sources(services)],
            clock=services.clock, timezone=settings.tzinfo,
            grace=timedelta(minutes=settings.scheduler.grace_minutes),
            catalog=services.catalog, default_language=settings.bot.language,
            on_queued=send_lanes.wake,
        )
        services.schedule_changed = self.scheduler.schedule_changed
        services.on_command = self.metrics.command_done
        listener = _BotSyncListener(settings, context, command_lanes, send_lanes, permissions,
                                    handler)
        self.syncer = Syncer(connection, storage, listener, prefix=settings.bot.command_prefix,
                             now_ms=now_ms, metrics=self.metrics,
                             reaction_keys=services.registry.reaction_keys())
        await self.scheduler.start()  # catches up on what fell due while the bot was down
        self._tasks = [
            asyncio.create_task(send_lanes.run(), name="send-lanes"),
            asyncio.create_task(command_lanes.run(), name="command-lanes"),
            asyncio.create_task(self.syncer.run(), name="sync"),
            *(asyncio.create_task(task, name=name) for name, task in background),
        ]
        self._sync_task = next(t for t in self._tasks if t.get_name() == "sync")
        if settings.metrics.address is not None:
            scheduler = self.scheduler
            self.metrics_server = MetricsServer(
                self.metrics, settings.metrics.address,
                refresh=lambda: self.metrics.refresh(storage, len(scheduler.job_ids()),
                                                     rate_limit.limited_members(now_ms())),
                sync_running=self.sync_running)
            await self.metrics_server.start()
        log.info("bot %s running with %d commands", self.user_id,
                 len(services.registry.all()))

    async def wait(self) -> None:
        """Until a task ends: only a lost login or a bug ends one."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()

    def sync_running(self) -> bool:
        return self._sync_task is not None and not self._sync_task.done()

    async def stop(self) -> None:
        """Take no more commands, let those being handled finish and what they queued go out
        (each for a few seconds), then close. What is left waits in the database: the next
        start answers and sends it, under the same transaction ids."""
        if self.scheduler is not None:
            self.scheduler.stop()
        if self._sync_task is not None:
            self._sync_task.cancel()
        if self._handler is not None:
            self._handler.stop_taking()
            await self._wait_a_little(self._handler.wait_idle, STOP_HANDLING_S,
                                      "commands still being handled are answered after a restart")
            await self._wait_a_little(self._outbox_empty, STOP_SENDING_S,
                                      "messages not sent yet are sent after a restart")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._close()

    async def _wait_a_little(self, until: Callable[[], Awaitable[None]], seconds: float,
                             left: str) -> None:
        if not self._tasks:
            return  # never started: nothing is in flight
        try:
            async with asyncio.timeout(seconds):
                await until()
        except TimeoutError:
            log.warning("stopping: %s", left)

    async def _outbox_empty(self) -> None:
        assert self.storage is not None
        while True:  # the send lanes wake on new work, not on work done: look now and then
            if await self.storage.outbox.count() == 0:
                return
            await asyncio.sleep(0.05)

    async def _close(self) -> None:
        if self.metrics_server is not None:
            await self.metrics_server.stop()
            self.metrics_server = None
        if self.connection is not None:
            await self.connection.close()
            self.connection = None
        if self.storage is not None:
            await self.storage.close()
            self.storage = None


async def run_bot(settings: Settings) -> None:
    bot = Bot(settings)
    try:
        await bot.start()
        await bot.wait()
    except (LoginError, StoreKeyError, DatabaseTooNewError, MetricsAddressError) as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
    finally:
        await bot.stop()
