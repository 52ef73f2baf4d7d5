"""Who counts as a moderator in a room, read from the room's live state.

A moderator is anyone with at least the configured power level (50) in that room. In room
version 12 the room's creators hold unlimited power outside `m.room.power_levels`, so they count
too. Bot admins from the config are admins everywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from commands.framework import Level

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


def level_of(user_id: str, *, admins: Iterable[str], moderator_level: int,
             power_levels: dict[str, Any] | None, create_event: dict[str, Any] | None) -> Level:
    if user_id in set(admins):
        return Level.ADMIN
    level = power_level(user_id, power_levels, create_event)
    if level is None or level >= moderator_level:
        return Level.MODERATOR
    return Level.MEMBER


StateFetcher = Callable[[str], Awaitable[tuple[dict[str, Any] | None, dict[str, Any] | None]]]


class Permissions:
    """Caches each room's power levels until the sync shows that they changed."""

    def __init__(self, fetch_state: StateFetcher, admins: Iterable[str], moderator_level: int):
        self._fetch = fetch_state  # room_id -> (power levels content, create event)
        self._admins = frozenset(admins)
        self._moderator_level = moderator_level
        self._cache: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]] = {}
        self._generation: dict[str, int] = {}

    def forget(self, room_id: str) -> None:
        self._cache.pop(room_id, None)
        # A read already under way may predate the change: it must not refill the cache.
        self._generation[room_id] = self._generation.get(room_id, 0) + 1

    async def level(self, room_id: str, user_id: str) -> Level:
        if user_id in self._admins:
            return Level.ADMIN
        state = self._cache.get(room_id)
        if state is None:
            generation = self._generation.get(room_id, 0)
            state = await self._fetch(room_id)
            if self._generation.get(room_id, 0) == generation:
                self._cache[room_id] = state
        power_levels, create_event = state
        return level_of(user_id, admins=self._admins, moderator_level=self._moderator_level,
                        power_levels=power_levels, create_event=create_event)
