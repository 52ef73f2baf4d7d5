"""Rooms the bot makes for itself (a pair's room, a member's direct room): found again after a
crash by their alias, and written into only when they are verifiably the bot's own.

Creating a room is not idempotent; an alias makes it so: a second creation with the same alias is
refused, and the alias leads to the room of the first. So each such room gets an alias, and
- the alias is a keyed hash (HMAC with a random key the bot keeps in its database): no member can
  work it out and claim it first;
- whatever room an alias leads to is used only if the bot created it (the sender of its
  `m.room.create`) and marked it at creation as exactly this room (a state event the bot sent,
  e.g. naming the pair); anything else is left alone and the room is made without the alias.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from bot.matrix.connection import RefusedError
from storage.rooms import RoomRepository

log = logging.getLogger(__name__)

DIRECT_STATE_EVENT = "org.nextnetz.direct"  # in each direct room: the member it is for


class RoomFinder(Protocol):
    async def resolve_alias(self, alias: str) -> str | None: ...

    async def state_events(self, room_id: str) -> list[dict[str, Any]]: ...


def keyed_alias(key: bytes, kind: str, name: str) -> str:
    """The local part of the alias for the room `name` of `kind` (`meet`, `dm`)."""
    digest = hmac.new(key, f"{kind}\n{name}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"next-{kind}-{digest}"


def full_alias(local_part: str, bot_user_id: str) -> str:
    return f"#{local_part}:{bot_user_id.split(':', 1)[1]}"


async def is_own_room(rooms: RoomFinder, room_id: str, bot_user_id: str, marker_type: str,
                      marker: dict[str, Any]) -> bool:
    """Whether the bot created `room_id` and marked it at creation with `marker` (read from the
    room's live state; a room the bot cannot read is not its own)."""
    try:
        events = await rooms.state_events(room_id)
    except RefusedError:
        return False

    def state(event_type: str) -> dict[str, Any] | None:
        return next((e for e in events
                     if e.get("type") == event_type and e.get("state_key") == ""), None)

    create, mark = state("m.room.create"), state(marker_type)
    return (create is not None and create.get("sender") == bot_user_id
            and mark is not None and mark.get("sender") == bot_user_id
            and mark.get("content") == marker)


async def find_own_room(rooms: RoomFinder, alias: str, bot_user_id: str, marker_type: str,
                        marker: dict[str, Any]) -> str | None:
    """The room `alias` (`#local:server`) leads to, if it is the bot's own marked room."""
    room_id = await rooms.resolve_alias(alias)
    if room_id is None:
        return None
    if await is_own_room(rooms, room_id, bot_user_id, marker_type, marker):
        return room_id
    log.warning("alias %s leads to room %s, which the bot did not make for it: not used",
                alias, room_id)
    return None


async def create_own_room(rooms: RoomFinder, create: Callable[[str | None], Awaitable[str]], *,
                          alias: str, bot_user_id: str, marker_type: str,
                          marker: dict[str, Any]) -> tuple[str, bool]:
    """`create(alias)` (the local part); when that is refused, the room an attempt before made
    under the alias, else `create(None)`: without an alias (someone else holds it, or the
    homeserver allows none). Returns the room and whether it was found rather than made."""
    try:
        return await create(alias), False
    except RefusedError:
        existing = await rooms.resolve_alias(full_alias(alias, bot_user_id))
        if existing is not None:
            if await is_own_room(rooms, existing, bot_user_id, marker_type, marker):
                return existing, True  # made by an attempt whose answer never arrived
            log.warning("alias %s is held by room %s, which the bot did not make; making the "
                        "room without an alias", alias, existing)
        else:
            log.warning("the homeserver refused the alias %s; making the room without one",
                        alias)
    return await create(None), False


class DirectRoomMaker(RoomFinder, Protocol):
    async def create_direct_room(self, user_id: str, *, alias: str | None = None,
                                 initial_state: Sequence[dict[str, Any]] = ()) -> str: ...

    async def invite(self, room_id: str, user_id: str) -> None: ...


class DirectRooms:
    """The bot's direct room with each member: made on first use, then remembered. Made under
    a keyed alias, so that a crash between making and remembering it finds it again."""

    def __init__(self, repository: RoomRepository, matrix: DirectRoomMaker,
                 bot_user_id: str) -> None:
        self._repository = repository
        self._matrix = matrix
        self._bot = bot_user_id

    async def room_for(self, user_id: str) -> str:
        """The room (TransientError: try later; RefusedError: no room can be made, e.g. the
        account does not exist)."""
        room_id = await self._repository.direct_room(user_id)
        if room_id is not None:
            return room_id
        marker = {"member": user_id}
        state = [{"type": DIRECT_STATE_EVENT, "state_key": "", "content": marker}]

        async def create(alias: str | None) -> str:
            return await self._matrix.create_direct_room(user_id, alias=alias,
                                                         initial_state=state)

        alias = keyed_alias(await self._repository.alias_key(), "dm", user_id)
        room_id, found = await create_own_room(self._matrix, create, alias=alias,
                                               bot_user_id=self._bot,
                                               marker_type=DIRECT_STATE_EVENT, marker=marker)
        if found:  # its invite may not have gone out before the crash
            try:
                await self._matrix.invite(room_id, user_id)
            except RefusedError:
                pass  # invited or joined already
        await self._repository.set_direct_room(user_id, room_id)
        return room_id
