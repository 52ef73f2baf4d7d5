"""Who may do what: the level of a member for a command written in a room (`Level`).

- Bot admins (`[bot] admins`) are admins everywhere.
- Network moderators are configured (`[bot] moderators`) or hold at least the moderator power
  level (50) in one of the network's rooms: `[bot] network_rooms` and the network's space.
- A room moderator holds that power in the room the command is written in. Anyone can make a
  room in which they hold power 100, so that power never reaches beyond the room; and in the
  bot's direct chat with a member, the member's power counts for nothing.
In room version 12 the room's creators hold unlimited power outside `m.room.power_levels`, so
they count too. Power levels are read from the rooms' live state and cached until the sync
shows that they changed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from bot.matrix.connection import RefusedError
from commands.framework import Level

log = logging.getLogger(__name__)

# Room versions in which the creators stand above every power level.
PRIVILEGED_CREATOR_VERSIONS = {"12", "org.matrix.hydra.11"}


def room_creators(create_event: dict[str, Any]) -> set[str]:
    content = create_event.get("content") or {}
    version = str(content.get("room_version", "1"))
    if version not in PRIVILEGED_CREATOR_VERSIONS:
        return set()
    additional = content.get("additional_creators") or []
    return {create_event.get("sender", ""), *(u for u in additional if isinstance(u, str))}


def power_level(user_id: str, power_levels: dict[str, Any] | None,
                create_event: dict[str, Any] | None) -> int | None:
    """The user's power level; None stands for the unlimited power of a v12 creator."""
    if create_event and user_id in room_creators(create_event):
        return None
    if power_levels is None:
        # Without a power-levels event, the creator has 100 and everyone else 0.
        sender = (create_event or {}).get("sender")
        return 100 if user_id == sender else 0
    users = power_levels.get("users") or {}
    level = users.get(user_id, power_levels.get("users_default", 0))
    try:
        return int(level)
    except (TypeError, ValueError):
        return 0


def has_power(user_id: str, moderator_level: int, power_levels: dict[str, Any] | None,
              create_event: dict[str, Any] | None) -> bool:
    level = power_level(user_id, power_levels, create_event)
    return level is None or level >= moderator_level


RoomState = tuple[dict[str, Any] | None, dict[str, Any] | None]  # power levels, create event
StateFetcher = Callable[[str], Awaitable[RoomState]]



class NetworkRooms:
    """The rooms whose moderators moderate the whole network: the configured ones (ids or
    aliases; `[bot] network_rooms`, the network's space) and those the bot made and remembers
    (`remembered`: the network's space it created)."""

    def __init__(self, configured: Sequence[str],
                 resolve_alias: Callable[[str], Awaitable[str | None]],
                 remembered: Sequence[Callable[[], Awaitable[str | None]]] = ()) -> None:
        self._configured = [room for room in configured if room]
        self._resolve_alias = resolve_alias
        self._remembered = list(remembered)
        self._resolved: dict[str, str] = {}  # alias -> room id, once found

    async def ids(self, cached_only: bool = False) -> list[str]:
        """The rooms' ids; `cached_only`: NotCached if an alias would have to be resolved."""
        found: list[str] = []
        for room in self._configured:
            if not room.startswith("#"):
                found.append(room)
            elif room in self._resolved:
                found.append(self._resolved[room])
            elif cached_only:
                raise NotCached(room)
            else:
                room_id = await self._resolve_alias(room)
                if room_id is None:
                    log.warning("network room %s: no such alias", room)
                    continue
                found.append(self._resolved.setdefault(room, room_id))
        for remembered in self._remembered:
            room_id = await remembered()
            if room_id is not None:
                found.append(room_id)
        return list(dict.fromkeys(found))


class NotCached(Exception):
    """The level cannot be told without asking the homeserver."""


async def _no_rooms(cached_only: bool = False) -> list[str]:
    return []


async def _no_direct_room(room_id: str) -> bool:
    return False


class Permissions:
    """The level of a member in a room; each room's power levels are cached until the sync
    shows that they changed."""

    def __init__(self, fetch_state: StateFetcher, admins: Iterable[str], moderator_level: int,
                 *, network_moderators: Iterable[str] = (),
                 network_rooms: Callable[[bool], Awaitable[list[str]]] = _no_rooms,
                 is_direct_room: Callable[[str], Awaitable[bool]] = _no_direct_room) -> None:
        self._fetch = fetch_state  # room_id -> (power levels content, create event)
        self._admins = frozenset(admins)
        self._network_moderators = frozenset(network_moderators)
        self._moderator_level = moderator_level
        self._network_rooms = network_rooms
        self._is_direct_room = is_direct_room
        self._cache: dict[str, RoomState] = {}
        self._generation: dict[str, int] = {}

    def forget(self, room_id: str) -> None:
        self._cache.pop(room_id, None)
        # A read already under way may predate the change: it must not refill the cache.
        self._generation[room_id] = self._generation.get(room_id, 0) + 1

    async def level(self, room_id: str, user_id: str, *, cached_only: bool = False) -> Level:
        """`cached_only`: without asking the homeserver, else NotCached (a command's handler
        runs inside a database transaction, where no network call may wait)."""
        if user_id in self._admins:
            return Level.ADMIN
        if (user_id in self._network_moderators
                or await self._moderates_network(user_id, cached_only)):
            return Level.NETWORK_MODERATOR
        if await self._is_direct_room(room_id):
            return Level.MEMBER  # the bot's direct chat: the member's power there is no role
        if has_power(user_id, self._moderator_level, *await self._state(room_id, cached_only)):
            return Level.ROOM_MODERATOR
        return Level.MEMBER

    async def _moderates_network(self, user_id: str, cached_only: bool) -> bool:
        for room_id in await self._network_rooms(cached_only):
            try:
                state = await self._state(room_id, cached_only)
            except RefusedError:  # the bot is not (or no longer) in it: it grants nothing
                log.warning("network room %s: its power levels cannot be read", room_id)
                self._cache[room_id] = (None, None)  # until the sync shows a change
                continue
            if has_power(user_id, self._moderator_level, *state):
                return True
        return False

    async def _state(self, room_id: str, cached_only: bool = False) -> RoomState:
        state = self._cache.get(room_id)
        if state is None and cached_only:
            raise NotCached(room_id)
        if state is None:
            generation = self._generation.get(room_id, 0)
            state = await self._fetch(room_id)
            if self._generation.get(room_id, 0) == generation:
                self._cache[room_id] = state
        return state
