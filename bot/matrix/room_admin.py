"""`RoomAdmin` (commands/framework.py) on the Matrix connection: which state events make a space,
and which failures a command should retry (RetryLater) or answer (ActionRefused)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from bot.feature_context import FeatureContext
from bot.matrix.connection import MatrixConnection, RefusedError, TransientError
from bot.settings import server_of
from commands.framework import ActionRefused, RetryLater, Services

log = logging.getLogger(__name__)

T = TypeVar("T")


async def _checked(request: Awaitable[T]) -> T:
    try:
        return await request
    except TransientError as exc:
        raise RetryLater(str(exc)) from exc
    except RefusedError as exc:
        raise ActionRefused(str(exc)) from exc


class MatrixRoomAdmin:
    def __init__(self, connection: MatrixConnection, encrypt_rooms: bool = True) -> None:
        self._connection = connection
        self._encrypt_rooms = encrypt_rooms
        self._via = [server_of(connection.user_id)]

    async def create_room(self, *, name: str, topic: str, moderators: Sequence[str],
                          space: bool = False) -> str:
        # Rooms are encrypted like a client's private rooms; a space carries no messages.
        return await _checked(self._connection.create_room(
            name=name, topic=topic, moderators=moderators, space=space,
            encrypted=self._encrypt_rooms and not space))

    async def add_to_space(self, space_id: str, room_id: str) -> None:
        await _checked(self._connection.put_state(
            space_id, "m.space.child", {"via": self._via}, state_key=room_id))
        try:  # the room's own pointer back needs power there, which a linked room may not give
            await _checked(self._connection.put_state(
                room_id, "m.space.parent", {"via": self._via, "canonical": True},
                state_key=space_id))
        except ActionRefused:
            pass

    async def remove_from_space(self, space_id: str, room_id: str) -> None:
        # An m.space.child event without `via` removes the child (Matrix spec, spaces).
        await _checked(self._connection.put_state(space_id, "m.space.child", {},
                                                  state_key=room_id))
        try:
            await _checked(self._connection.put_state(room_id, "m.space.parent", {},
                                                      state_key=space_id))
        except ActionRefused:
            pass

    async def find_room(self, text: str) -> str | None:
        text = text.strip()
        if text.startswith("#") and ":" in text:
            return await _checked(self._connection.resolve_alias(text))
        if text.startswith("!") and ":" in text:
            return text
        return None

    async def join(self, room_id: str) -> bool:
        return await _checked(self._connection.join(room_id))

    async def is_member(self, room_id: str, user_id: str) -> bool:
        return await _checked(self._connection.membership(room_id, user_id)) == "join"

    async def invite(self, room_id: str, user_id: str) -> None:
        await _checked(self._connection.invite(room_id, user_id))

    async def set_topic(self, room_id: str, topic: str) -> None:
        await _checked(self._connection.put_state(room_id, "m.room.topic", {"topic": topic}))

    async def member_count(self, room_id: str) -> int:
        return await _checked(self._connection.joined_member_count(room_id))


def setup(context: FeatureContext) -> None:
    """The communities' Matrix side: rooms and the space made and joined through this
    connection; the network's space counts as a network room (bot/matrix/permissions.py)."""
    settings = context.settings
    context.services.room_admin = MatrixRoomAdmin(
        context.connection, settings.matrix.encryption and settings.communities.encrypt_rooms)
    context.network_rooms.append(settings.communities.space)
    context.remembered_network_rooms.append(context.storage.communities.space)
    context.room_upgraded.append(functools.partial(
        relink_space, context.services, settings.communities.space))


async def relink_space(services: Services, configured_space: str | None, old: str,
                       new: str) -> None:
    """An upgraded room: the space lists the successor instead of the old room (and the
    successor points back where the bot may); a space that was itself upgraded gets every
    community as a child. Harmless twice."""
    admin = services.room_admin
    if admin is None:
        return
    storage = services.storage.communities
    space = await storage.space()
    if configured_space and configured_space != old:
        space = await admin.find_room(configured_space)
    if space is None:
        return
    try:
        if space == new:
            for community in await storage.active():
                await admin.add_to_space(new, community.room_id)
        elif await storage.by_room(new) is not None:
            await admin.add_to_space(space, new)
            await admin.remove_from_space(space, old)
    except ActionRefused as exc:
        log.warning("upgrade of %s: the space %s could not be changed (%s)", old, space, exc)
