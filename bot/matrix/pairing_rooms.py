"""NExT-to-meet-you pairing at run time: the round when it is due, then a room for each group.

Every `interval` (and when woken) `PairingRooms` asks `commands.meet.pair_due_round` to pair
the next date if its time has come; that stores the round and all its groups in one
transaction, once. Then each group without a room gets one, exactly once, also across a crash
or restart at any point:

1. the group is marked as "room requested" before anything is sent to the homeserver;
2. the room is created with an alias keyed from the group's key (`own_rooms.keyed_alias`) and a
   state event `org.nextnetz.pairing` naming the group, the members invited;
3. its id is recorded in the same transaction that queues the introduction under transaction
   ids derived from the group's key (for encrypted rooms only once the bot's client has seen
   the room in a sync: `after_rooms_synced`).

If the bot dies between 1 and 3, the next attempt finds the room by its alias (a second
creation with the same alias is refused by the server) instead of making another. The
introduction names the pair, their organisations and roles: a room an alias leads to is used
only if the bot made it for this very group (`own_rooms`); any other room is left alone and the
group's room made without the alias, as when the homeserver refuses aliases altogether.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from bot.feature_context import FeatureContext
from bot.matrix.connection import RefusedError, TransientError
from bot.matrix.own_rooms import create_own_room, find_own_room, full_alias, keyed_alias
from bot.matrix.render import page_labels, paginate
from commands import meet
from commands.framework import Services
from storage.database import utc_ms
from storage.meet import GroupRow
from storage.outbox import OutgoingMessage
from storage.rooms import RoomRepository

log = logging.getLogger(__name__)

CHECK_EVERY_S = 60.0


class RoomMaker(Protocol):
    async def create_room(self, *, name: str | None = None, topic: str | None = None,
                          invite: Sequence[str] = (), is_direct: bool = False,
                          initial_state: Sequence[dict[str, Any]] = (),
                          alias: str | None = None, encrypted: bool = False) -> str: ...

    async def resolve_alias(self, alias: str) -> str | None: ...

    async def state_events(self, room_id: str) -> list[dict[str, Any]]: ...


def intro_txn_id(group_key: str, page: int) -> str:
    return f"meet-intro-{hashlib.sha256(group_key.encode()).hexdigest()[:32]}-{page}"


class PairingRooms:
    def __init__(self, services: Services, rooms: RoomMaker, bot_user_id: str,
                 default_language: str, on_queued: Callable[[str], None],
                 interval_s: float = CHECK_EVERY_S, encrypt: bool = False,
                 synced: Callable[[list[str]], Awaitable[None]] | None = None) -> None:
        self._services = services
        self._rooms = rooms
        self._bot = bot_user_id
        self._language = default_language
        self._on_queued = on_queued
        self._interval = interval_s
        self._encrypt = encrypt
        # Awaited between making encrypted rooms and introducing: until the bot's client knows
        # the rooms, so it can encrypt there (`after_rooms_synced`).
        self._synced = synced
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except TransientError as exc:
                log.warning("pairing: homeserver not reachable (%s); trying again later", exc)
            except Exception:  # a bug must not end the loop; the next tick tries again
                log.exception("pairing: round or rooms failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    async def tick(self) -> int:
        """Pair a due round, then make the missing rooms; returns how many rooms were made."""
        paired = await meet.pair_due_round(self._services)
        if paired is not None:
            log.info("pairing: round for %s stored", paired.key)
        opened: list[tuple[GroupRow, str]] = []
        unreachable: TransientError | None = None
        for group in await self._services.storage.meet.groups(without_room=True):
            if not group.members:
                continue  # forgotten members of an old round: nothing to make
            try:
                opened.append((group, await self.room_for(group)))
            except RefusedError as exc:  # e.g. a member's account is gone: the others go on
                log.warning("pairing: no room for group %s (%s); trying again later",
                            group.key, exc)
            except TransientError as exc:  # the rest later; those made are introduced now
                unreachable = exc
                break
        if opened and self._encrypt and self._synced is not None:
            await self._synced([room_id for _, room_id in opened])
        for group, room_id in opened:
            await self.introduce(group, room_id)
        if unreachable is not None:
            raise unreachable
        return len(opened)

    async def room_for(self, group: GroupRow) -> str:
        """The group's room: found by its alias if an attempt before made it, else made."""
        storage = self._services.storage
        alias = keyed_alias(await storage.rooms.alias_key(), "meet", group.key)
        if group.room_requested_at is not None:  # an attempt before may have made it
            room_id = await find_own_room(self._rooms, full_alias(alias, self._bot), self._bot,
                                          meet.STATE_EVENT, self._marker(group))
            if room_id is not None:
                return room_id
        name = meet.room_name(self._services, group.round, self._language)
        await storage.meet.mark_room_requested(group.key, utc_ms(self._services.clock.now()))
        return await self._create(group, name, alias)

    async def introduce(self, group: GroupRow, room_id: str) -> None:
        """Record the room and queue the introduction, in one transaction (once)."""
        storage = self._services.storage
        _, intro = await meet.introduction(self._services, group, self._language)
        contents = paginate(intro.text, page_labels(self._services.catalog, self._language),
                            mentions=intro.mentions)
        messages = [OutgoingMessage(intro_txn_id(group.key, page), room_id, content)
                    for page, content in enumerate(contents)]
        async with storage.db.transaction():
            if await storage.meet.set_room(group.key, room_id):
                await storage.outbox.add(messages, created_at=utc_ms(self._services.clock.now()))
        log.info("pairing: room %s for group %s", room_id, group.key)
        self._on_queued(room_id)

    @staticmethod
    def _marker(group: GroupRow) -> dict[str, Any]:
        return {"group": group.key}

    async def _create(self, group: GroupRow, name: str, alias: str) -> str:
        state = [{"type": meet.STATE_EVENT, "state_key": "", "content": self._marker(group)}]
        invite = [u for u in group.members if u != self._bot]

        async def create(alias: str | None) -> str:
            return await self._rooms.create_room(name=name, invite=invite, is_direct=True,
                                                 initial_state=state, alias=alias,
                                                 encrypted=self._encrypt)

        room_id, _ = await create_own_room(self._rooms, create, alias=alias,
                                           bot_user_id=self._bot, marker_type=meet.STATE_EVENT,
                                           marker=self._marker(group))
        return room_id


async def after_rooms_synced(rooms: RoomRepository, room_ids: Sequence[str],
                             timeout_s: float = 60.0) -> None:
    """Until the sync loop has read each of these new rooms (or `timeout_s`): the client can
    encrypt only into a room it knows. That sync may not show every invite yet; the invited
    members' devices get the room key all the same, as sending into an encrypted room first
    loads its members, the invited included (`MatrixConnection._know_devices`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    waiting = list(room_ids)
    while waiting and loop.time() < deadline:
        waiting = [r for r in waiting if await rooms.cursor(r) is None]
        if waiting:
            await asyncio.sleep(0.1)
    if waiting:
        log.warning("pairing: %d new room(s) not seen in a sync yet; introducing anyway",
                    len(waiting))


def setup(context: FeatureContext) -> Awaitable[None]:
    """NExT-to-meet-you's Matrix side: the pairs' rooms, made in the background."""
    settings = context.settings
    rooms = PairingRooms(context.services, context.connection, context.user_id,
                         settings.bot.language, on_queued=context.wake_sender,
                         encrypt=settings.matrix.encryption and settings.meet.encrypt_rooms,
                         synced=lambda ids: after_rooms_synced(context.storage.rooms, ids))
    context.parts["pairing"] = rooms
    return rooms.run()
