"""Communities (a slug, a title, a topic, a description, their Matrix room) and the network's
space."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from storage.database import Database
from storage.member_data import Action, MemberColumn
from storage.schema import Migration

log = logging.getLogger(__name__)

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



async def move_room(db: Database, old: str, new: str) -> dict[str, object]:
    """An upgraded room: its active community is kept in the successor, unless the successor
    already holds one (a room holds one community); the network's space is the successor."""
    moved: dict[str, object] = {}
    row = await db.fetchone(
        "SELECT slug FROM communities WHERE room_id = ? AND archived_at IS NULL", (old,))
    if row is not None:
        theirs = await db.fetchone(
            "SELECT slug FROM communities WHERE room_id = ? AND archived_at IS NULL", (new,))
        if theirs is None:
            await db.execute("UPDATE communities SET room_id = ? WHERE slug = ?", (new, row[0]))
            moved["community"] = row[0]
        else:
            log.warning("room %s upgraded to %s, which already holds the community %s: the old "
                        "room's community %s was left as it is", old, new, theirs[0], row[0])
    if await db.execute("UPDATE network_space SET room_id = ? WHERE room_id = ?", (new, old)):
        moved["the network's space"] = new
    return moved

# The tables of this part of the database (see `storage/schema.py`): append new steps, never
# edit old ones.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "communities and the network's space",
        """
        CREATE TABLE communities (
            slug TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            topic TEXT NOT NULL DEFAULT '',
            description TEXT NOT NULL DEFAULT '',
            room_id TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            archived_at INTEGER
        );
        CREATE UNIQUE INDEX communities_active_room ON communities (room_id)
            WHERE archived_at IS NULL;
        -- the space the bot created or was given; one row
        CREATE TABLE network_space (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            room_id TEXT NOT NULL
        )
        """,
        shared_step=9,
    ),
)


# The columns of this part that can name a member (see `storage/member_data.py`).
MEMBER_DATA: tuple[MemberColumn, ...] = (
    MemberColumn("communities", "created_by", Action.PSEUDONYMISE,
                 "communities the member created stay"),
)
