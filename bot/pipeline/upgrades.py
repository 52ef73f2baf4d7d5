"""Upgraded rooms: the sync loop records each tombstone (`tombstone_of`, in the batch's
transaction, so none is lost or seen twice); this task follows them.

It joins the successor (the network is needed: never inside a transaction), checks that the
successor names the old room as its predecessor, moves everything bound to the old room in one
transaction (`storage/upgrades.py`, exactly once), then tells the features that listen
(`FeatureContext.room_upgraded`: the communities put the successor into the network's space).
A successor the bot cannot join yet (invite-only, not invited) is tried again later. The
configuration cannot be rewritten: a configured room that was upgraded is logged, for the
operator to replace its id.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from bot.feature_context import FeatureContext, RoomUpgraded
from bot.matrix.connection import RefusedError, RoomEvent, TransientError
from bot.pipeline.backoff import Backoff
from commands.framework import RetryLater, Services
from commands.room_settings import defaults_of
from storage.database import storable
from storage.upgrades import RoomUpgrade

log = logging.getLogger(__name__)

POLL_S = 2.0  # how often the task looks for tombstones the sync loop recorded
JOIN_RETRY_CAP_S = 600.0  # a successor the bot may not join yet: tried at most this far apart
MAX_ROOM_ID_BYTES = 255
_ROOM_ID = re.compile(r"![A-Za-z0-9._=+/-]{4,}(?::\S+)?")  # not a command prefix such as "!"


def tombstone_of(event: RoomEvent, now: int) -> RoomUpgrade | None:
    """The upgrade a tombstone announces; None for anything else. Only a state event counts
    (the homeserver lets only those with its power level send one); a message event of the same
    type, which any member may send, or a `replacement_room` that is no room id, is ignored."""
    if event.type != "m.room.tombstone" or event.state_key != "":
        return None
    replacement = event.content.get("replacement_room")
    if (not isinstance(replacement, str) or not replacement.startswith("!")
            or replacement == event.room_id or not storable(replacement)
            or len(replacement.encode()) > MAX_ROOM_ID_BYTES
            or any(ch.isspace() for ch in replacement)):
        return None
    return RoomUpgrade(event.room_id, replacement, event.event_id, now)


class UpgradeConnection(Protocol):
    async def join(self, room_id: str) -> bool: ...
    async def state_events(self, room_id: str) -> list[dict[str, Any]]: ...


class RoomUpgrades:
    def __init__(self, services: Services, connection: UpgradeConnection, *, user_id: str,
                 now_ms: Callable[[], int], configured: Mapping[str, list[str]] | None = None,
                 replan: Callable[[], Awaitable[None]] | None = None,
                 listeners: Sequence[RoomUpgraded] = (), poll_s: float = POLL_S,
                 backoff: Backoff | None = None) -> None:
        self._services = services
        self._connection = connection
        self._user_id = user_id
        self._now_ms = now_ms
        self._configured = dict(configured or {})  # "[meet] rooms" -> the room ids there
        self._replan = replan  # the scheduler plans anew: reminders go to the successor
        self._listeners = listeners  # told of each upgrade until it is done
        self._poll_s = poll_s
        self._backoff = backoff or Backoff(base=POLL_S, cap=JOIN_RETRY_CAP_S)
        self.upgrades = services.storage.upgrades

    async def run(self) -> None:
        while True:
            try:
                waiting = await self.follow_pending()
            except Exception:
                delay = await self._backoff.wait()
                log.exception("following upgraded rooms failed; retried after %.1f s", delay)
                continue
            if waiting:
                await self._backoff.wait()
            else:
                self._backoff.reset()
                await asyncio.sleep(self._poll_s)

    async def follow_pending(self) -> bool:
        """Follow every recorded upgrade as far as possible; whether one still waits (its
        successor not joinable yet, or the homeserver did not answer)."""
        waiting = False
        for upgrade in await self.upgrades.pending():
            try:
                waiting |= not await self.follow(upgrade)
            except RetryLater as exc:
                log.warning("upgrade of %s: homeserver not reachable (%s); tried again later",
                            upgrade.old_room_id, exc)
                waiting = True
        return waiting

    async def follow(self, upgrade: RoomUpgrade) -> bool:
        """Join, carry over, relink; False when the successor cannot be joined yet."""
        old, new = upgrade.old_room_id, upgrade.new_room_id
        if not await _checked(self._connection.join(new)):
            log.info("upgrade of %s: cannot join the successor %s yet (not invited?)", old, new)
            return False
        if upgrade.carried_over_at is None:
            if not await self._is_successor(upgrade):
                log.warning("tombstone %s in %s names %s, which is not its successor: ignored",
                            upgrade.event_id, old, new)
                await self.upgrades.forget(old)
                return True
            await self._carry_over(upgrade)
        for listener in self._listeners:
            await listener(old, new)
        await self.upgrades.mark_done(old, self._now_ms())
        return True

    async def _is_successor(self, upgrade: RoomUpgrade) -> bool:
        """Whether the new room's creation names the old room as its predecessor."""
        try:
            state = await _checked(self._connection.state_events(upgrade.new_room_id))
        except RefusedError:
            return False
        for event in state:
            if event.get("type") == "m.room.create" and event.get("state_key") == "":
                content = event.get("content")
                predecessor = content.get("predecessor") if isinstance(content, dict) else None
                return (isinstance(predecessor, dict)
                        and predecessor.get("room_id") == upgrade.old_room_id)
        return False

    async def _carry_over(self, upgrade: RoomUpgrade) -> None:
        old, new = upgrade.old_room_id, upgrade.new_room_id
        storage = self._services.storage
        by_config = [key for key, rooms in defaults_of(self._services).switched_on.items()
                     if old in rooms]
        carried = await self.upgrades.carry_over(upgrade, self._now_ms(), changed_by=self._user_id,
                                                 switched_on_by_config=by_config)
        storage.rooms.forget_settings(old, new)
        if carried is None:
            return
        if self._replan is not None:
            await self._replan()
        log.info("room %s upgraded to %s: carried over %s", old, new, carried)
        for place, rooms in self._configured.items():
            if old in rooms:
                log.warning("room %s was upgraded to %s: replace its id in %s of the "
                            "configuration", old, new, place)


async def _checked(request: Awaitable[Any]) -> Any:
    """The connection's transient failures as `RetryLater`, like the room admin's."""
    try:
        return await request
    except TransientError as exc:
        raise RetryLater(str(exc)) from exc


def configured_rooms(settings: Any) -> dict[str, list[str]]:
    """Where the configuration names rooms by id (`[meet] rooms`, `[bot] network_rooms` …), in
    any section: what the operator must edit after an upgrade."""
    found: dict[str, list[str]] = {}
    for section, values in settings.model_dump().items():
        for key, value in (values.items() if isinstance(values, dict) else ()):
            ids = [v for v in (value if isinstance(value, list) else [value])
                   if isinstance(v, str) and _ROOM_ID.fullmatch(v)]
            if ids:
                found[f"[{section}] {key}"] = ids
    return found


def setup(context: FeatureContext) -> Awaitable[None]:
    """Follows upgraded rooms: the sync loop records their tombstones."""
    upgrades = RoomUpgrades(context.services, context.connection, user_id=context.user_id,
                            now_ms=context.now_ms, configured=configured_rooms(context.settings),
                            replan=context.replan,
                            # the list itself: features set up after the core add to it
                            listeners=context.room_upgraded)
    context.parts["upgrades"] = upgrades
    return upgrades.run()
