"""What a feature's setup on the Matrix side gets at start (see `commands/feature.py`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.matrix.connection import MatrixConnection
from bot.settings import Settings
from commands.framework import Services
from storage import Storage

# Told after a room was upgraded and carried over (old room, successor); told again if the
# bot stopped before the upgrade was done, so it must be harmless twice.
RoomUpgraded = Callable[[str, str], Awaitable[None]]


@dataclass
class FeatureContext:
    settings: Settings
    services: Services
    storage: Storage
    connection: MatrixConnection
    # Milliseconds since the epoch, now.
    now_ms: Callable[[], int]
    # A message was queued for this room: send it.
    wake_sender: Callable[[str], None]
    # A feature's schedule changed (by its source's name): plan its reminders anew.
    schedule_changed: Callable[[str], Awaitable[None]]
    # Rooms changed under every schedule (an upgraded room): plan all reminders anew.
    replan: Callable[[], Awaitable[None]]
    # Rooms whose moderators moderate the whole network (ids or aliases), and ways to find
    # such rooms the bot made itself (the network's space): see bot/matrix/permissions.py.
    network_rooms: list[str] = field(default_factory=list)
    remembered_network_rooms: list[Callable[[], Awaitable[str | None]]] = field(
        default_factory=list)
    # Told when a sync recorded members' joins (for welcomes).
    join_listeners: list[Callable[[], None]] = field(default_factory=list)
    # Told after a room was upgraded and carried over (old room, successor).
    room_upgraded: list[RoomUpgraded] = field(default_factory=list)
    # What setups made and others may want to reach (a test, the operator's tools), by name.
    parts: dict[str, Any] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        return self.settings.matrix.user_id
