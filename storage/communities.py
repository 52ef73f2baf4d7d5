"""Communities (a slug, a title, a topic, a description, their Matrix room), the network's space,
and the joins waiting for their welcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.database import Database

COMMUNITY_FIELDS = "slug, title, topic, description, room_id, created_by, created_at, archived_at"


@dataclass(frozen=True)
class Community:
    slug: str
    title: str
    topic: str
    description: str
    room_id: str
    created_by: str
    created_at: int  # milliseconds
    archived_at: int | None = None


@dataclass(frozen=True)
class Join:
    """A member's join seen in a room; its membership event id makes it unique."""

    event_id: str
    room_id: str
    user_id: str
    joined_at: int  # milliseconds, the server's timestamp


class CommunityRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- communities -----------------------------------------------------------------------------

    async def add(self, community: Community) -> None:
        """Insert, or bring back an archived community under the same slug."""
        await self._db.execute(
            f"INSERT INTO communities ({COMMUNITY_FIELDS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL) "
            "ON CONFLICT (slug) DO UPDATE SET title = excluded.title, topic = excluded.topic, "
            "description = excluded.description, room_id = excluded.room_id, "
            "created_by = excluded.created_by, created_at = excluded.created_at, "
            "archived_at = NULL",
            (community.slug, community.title, community.topic, community.description,
             community.room_id, community.created_by, community.created_at))

    async def get(self, slug: str) -> Community | None:
        row = await self._db.fetchone(
            f"SELECT {COMMUNITY_FIELDS} FROM communities WHERE slug = ?", (slug,))
        return Community(*row) if row else None

    async def by_room(self, room_id: str) -> Community | None:
        """The active community kept in this room, if any."""
        row = await self._db.fetchone(
            f"SELECT {COMMUNITY_FIELDS} FROM communities "
            "WHERE room_id = ? AND archived_at IS NULL", (room_id,))
        return Community(*row) if row else None

    async def active(self) -> list[Community]:
        rows = await self._db.fetchall(
            f"SELECT {COMMUNITY_FIELDS} FROM communities WHERE archived_at IS NULL "
            "ORDER BY slug")
        return [Community(*row) for row in rows]

    async def update(self, slug: str, *, title: str | None = None, topic: str | None = None,
                     description: str | None = None) -> None:
        await self._db.execute(
            "UPDATE communities SET title = COALESCE(?, title), topic = COALESCE(?, topic), "
            "description = COALESCE(?, description) WHERE slug = ?",
            (title, topic, description, slug))

    async def archive(self, slug: str, at: int) -> None:
        await self._db.execute(
            "UPDATE communities SET archived_at = ? WHERE slug = ? AND archived_at IS NULL",
            (at, slug))

    # -- the network's space ---------------------------------------------------------------------

    async def space(self) -> str | None:
        row = await self._db.fetchone("SELECT room_id FROM network_space WHERE id = 1")
        return row[0] if row else None

    async def set_space(self, room_id: str) -> None:
        await self._db.execute(
            "INSERT INTO network_space (id, room_id) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET room_id = excluded.room_id", (room_id,))

    # -- welcomes --------------------------------------------------------------------------------

    async def add_joins(self, joins: Sequence[Join]) -> int:
        """Remember joins to greet; one seen before (same event) is ignored. Returns how many
        were new."""
        added = 0
        for join in joins:
            added += await self._db.execute(
                "INSERT INTO welcomes (event_id, room_id, user_id, joined_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING",
                (join.event_id, join.room_id, join.user_id, join.joined_at))
        return added

    async def waiting_joins(self) -> list[Join]:
        """Joins not looked at yet, oldest first."""
        rows = await self._db.fetchall(
            "SELECT event_id, room_id, user_id, joined_at FROM welcomes "
            "WHERE handled_at IS NULL ORDER BY joined_at, event_id")
        return [Join(*row) for row in rows]

    async def mark_handled(self, event_ids: Sequence[str], greeted: Sequence[str],
                           at: int) -> None:
        """These joins were looked at; those in `greeted` got a welcome."""
        chosen = set(greeted)
        await self._db.executemany(
            "UPDATE welcomes SET handled_at = ?, greeted = ? WHERE event_id = ?",
            [(at, int(event_id in chosen), event_id) for event_id in event_ids])

    async def greeted_since(self, room_id: str, user_id: str, since: int) -> bool:
        """Whether this member was welcomed in this room since then."""
        row = await self._db.fetchone(
            "SELECT 1 FROM welcomes WHERE room_id = ? AND user_id = ? AND greeted = 1 "
            "AND handled_at >= ? LIMIT 1", (room_id, user_id, since))
        return row is not None

    async def forget_handled_before(self, at: int) -> None:
        await self._db.execute(
            "DELETE FROM welcomes WHERE handled_at IS NOT NULL AND handled_at < ?", (at,))
