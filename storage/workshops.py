"""Workshops ("Werkstätten"): dates, places, registrations and the waiting list.

Schema (migration 5):

- `workshops`: one row per workshop; `number` is what members type (`!werkstatt 12`) and is
  never reused. Times are UTC milliseconds plus the IANA time zone they were entered in, so
  the wall-clock time a moderator typed comes back as typed. `sequence` grows with every
  change (also when it fills up or has a place free again), so a calendar that imported the
  workshop takes the newer version, and each version of the bot's posts is edited in once.
- `workshop_registrations`: who signed up for which workshop, `registered` or `waiting`; `id`
  grows with every sign-up and orders the waiting list (first come, first served).

Cancelling a workshop keeps its rows (its page says "abgesagt"); withdrawing deletes the
member's row. Whenever places are free (someone withdrew, the capacity grew or was lifted),
the first on the waiting list move up in the same transaction, and the caller gets them
to tell them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from storage.database import Database, utc_ms
from storage.member_data import Action, Deleted, MemberColumn
from storage.outbox import OutgoingMessage, thread_of
from storage.schema import Migration

PLANNED = "planned"
CANCELLED = "cancelled"
REGISTERED = "registered"
WAITING = "waiting"

def _moment(ms: int, tz: str) -> datetime:
    return (datetime.fromtimestamp(ms // 1000, UTC)
            + timedelta(milliseconds=ms % 1000)).astimezone(ZoneInfo(tz))


def _digest(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()[:8]


# -- models -------------------------------------------------------------------------------------


@dataclass
class Workshop:
    """One workshop. `starts_at` and `ends_at` are aware, in the zone they were entered in."""

    title: str
    starts_at: datetime
    ends_at: datetime
    created_by: str
    number: int = 0  # 0 until stored
    community: str | None = None
    room_id: str | None = None  # where it was added: its reminders go there
    location: str | None = None
    url: str | None = None
    description: str | None = None
    capacity: int | None = None  # None: no limit
    status: str = PLANNED
    created_at: datetime | None = None
    updated_at: datetime | None = None
    sequence: int = 0
    network_wide: bool = True  # False: a room moderator's, listed only in `room_id`

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED

    def __repr__(self) -> str:
        return f"Workshop(#{self.number}, {self.status})"


@dataclass(frozen=True)
class Registration:
    workshop: int
    user_id: str
    registered_at: datetime
    status: str  # REGISTERED or WAITING
    position: int = 0  # on the waiting list, from 1; 0 for a registered member

    def __repr__(self) -> str:  # who goes where is personal: never in a log
        return f"Registration(#{self.workshop}, {_digest(self.user_id)}, {self.status})"


@dataclass(frozen=True)
class Counts:
    registered: int = 0
    waiting: int = 0


@dataclass(frozen=True)
class SignUp:
    """The outcome of `register`: the member's registration, and whether it is new."""

    registration: Registration
    new: bool
    filled: bool = False  # it took the last place: the workshop is full now


@dataclass(frozen=True)
class Withdrawal:
    """The outcome of `withdraw`: the removed registration (None if there was none) and who
    moved up from the waiting list because of it."""

    removed: Registration | None
    promoted: list[Registration]
    freed: bool = False  # the workshop was full and has a free place now


_COLUMNS = ("number, title, community, room_id, starts_at, ends_at, timezone, location, url, "
            "description, capacity, status, created_by, created_at, updated_at, sequence, "
            "network_wide")


def _workshop(row) -> Workshop:
    tz = row["timezone"]
    return Workshop(
        number=row["number"], title=row["title"], community=row["community"],
        room_id=row["room_id"], starts_at=_moment(row["starts_at"], tz),
        ends_at=_moment(row["ends_at"], tz), location=row["location"], url=row["url"],
        description=row["description"], capacity=row["capacity"], status=row["status"],
        created_by=row["created_by"], created_at=_moment(row["created_at"], tz),
        updated_at=_moment(row["updated_at"], tz), sequence=row["sequence"],
        network_wide=bool(row["network_wide"]),
    )


def _zone_name(moment: datetime) -> str:
    tz = moment.tzinfo
    if not isinstance(tz, ZoneInfo):
        raise ValueError("workshop times must be aware datetimes in a ZoneInfo time zone")
    return tz.key


class WorkshopRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- workshops ------------------------------------------------------------------------------

    async def add(self, workshop: Workshop, at: datetime) -> Workshop:
        """Store a new workshop; returns it with its number."""
        tz = _zone_name(workshop.starts_at)
        number = await self._db.execute_returning_id(
            "INSERT INTO workshops (number, title, community, room_id, starts_at, ends_at, "
            "timezone, location, url, description, capacity, status, created_by, created_at, "
            "updated_at, sequence, network_wide) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (workshop.number or None, workshop.title, workshop.community, workshop.room_id,
             utc_ms(workshop.starts_at), utc_ms(workshop.ends_at), tz, workshop.location,
             workshop.url, workshop.description, workshop.capacity, workshop.status,
             workshop.created_by, utc_ms(at), utc_ms(at), int(workshop.network_wide)),
        )
        found = await self.get(number)
        assert found is not None
        return found

    async def get(self, number: int) -> Workshop | None:
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM workshops WHERE number = ?",
                                      (number,))
        return _workshop(row) if row else None

    async def update(self, workshop: Workshop, at: datetime) -> list[Registration]:
        """Save the changed fields of a stored workshop; returns who moved up from the waiting
        list (when the capacity grew or was lifted)."""
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE workshops SET title = ?, community = ?, room_id = ?, starts_at = ?, "
                "ends_at = ?, timezone = ?, location = ?, url = ?, description = ?, "
                "capacity = ?, updated_at = ?, sequence = sequence + 1 WHERE number = ?",
                (workshop.title, workshop.community, workshop.room_id,
                 utc_ms(workshop.starts_at), utc_ms(workshop.ends_at),
                 _zone_name(workshop.starts_at), workshop.location, workshop.url,
                 workshop.description, workshop.capacity, utc_ms(at), workshop.number),
            )
            return await self._fill(workshop.number)

    async def cancel(self, number: int, at: datetime) -> list[Registration]:
        """Mark a workshop cancelled; returns everyone registered or waiting, to tell them.
        Nobody when it was cancelled already."""
        async with self._db.transaction():
            changed = await self._db.execute(
                "UPDATE workshops SET status = ?, updated_at = ?, sequence = sequence + 1 "
                "WHERE number = ? AND status = ?", (CANCELLED, utc_ms(at), number, PLANNED),
            )
            return await self.registrations(number) if changed else []

    async def upcoming(self, now: datetime, limit: int | None = None, *,
                       seen_in: str | None = None) -> list[Workshop]:
        """Planned workshops that have not ended, soonest first: those shown network-wide and,
        with `seen_in`, that room's own."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM workshops WHERE status = ? AND ends_at > ? "
            "AND (network_wide = 1 OR room_id = ?) ORDER BY starts_at, number LIMIT ?",
            (PLANNED, utc_ms(now), seen_in, -1 if limit is None else limit),
        )
        return [_workshop(row) for row in rows]

    async def starting_between(self, start: datetime, end: datetime) -> list[Workshop]:
        """Planned workshops that start in [start, end)."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM workshops WHERE status = ? AND starts_at >= ? "
            "AND starts_at < ? ORDER BY starts_at, number",
            (PLANNED, utc_ms(start), utc_ms(end)),
        )
        return [_workshop(row) for row in rows]

    async def titles_and_starts(self) -> list[tuple[str, int]]:
        """The title and start (`utc_ms`) of every stored workshop, planned or cancelled: what
        tells an import that a workshop is already there."""
        rows = await self._db.fetchall("SELECT title, starts_at FROM workshops")
        return [(row[0], int(row[1])) for row in rows]

    # -- registrations --------------------------------------------------------------------------

    async def register(self, number: int, user_id: str, at: datetime) -> SignUp:
        """Sign a member up: a place while there is one and nobody waits, else the waiting
        list. Signing up twice changes nothing."""
        async with self._db.transaction():
            found = await self.registration(number, user_id)
            if found is not None:
                return SignUp(found, new=False)
            row = await self._db.fetchone("SELECT capacity FROM workshops WHERE number = ?",
                                          (number,))
            if row is None:
                raise LookupError(f"no workshop {number}")
            counts = await self.counts(number)
            full = row["capacity"] is not None and counts.registered >= row["capacity"]
            status = WAITING if full or counts.waiting else REGISTERED
            await self._db.execute(
                "INSERT INTO workshop_registrations (workshop, user_id, registered_at, status) "
                "VALUES (?, ?, ?, ?)", (number, user_id, utc_ms(at), status),
            )
            await self._fill(number)  # a waiting list with free places never stays so
            found = await self.registration(number, user_id)
            assert found is not None
            return SignUp(found, new=True, filled=await self._fullness_changed(number, full))

    async def withdraw(self, number: int, user_id: str) -> Withdrawal:
        """Take a member off a workshop (place or waiting list); the first waiting move up."""
        async with self._db.transaction():
            found = await self.registration(number, user_id)
            if found is None:
                return Withdrawal(None, [])
            was_full = await self._full(number)
            await self._db.execute(
                "DELETE FROM workshop_registrations WHERE workshop = ? AND user_id = ?",
                (number, user_id),
            )
            promoted = await self._fill(number)
            return Withdrawal(found, promoted,
                              freed=await self._fullness_changed(number, was_full))

    async def registration(self, number: int, user_id: str) -> Registration | None:
        row = await self._db.fetchone(
            "SELECT r.workshop, r.user_id, r.registered_at, r.status, w.timezone, "
            "CASE WHEN r.status = 'waiting' THEN (SELECT COUNT(*) FROM workshop_registrations o "
            "WHERE o.workshop = r.workshop AND o.status = 'waiting' AND o.id <= r.id) ELSE 0 END "
            "FROM workshop_registrations r JOIN workshops w ON w.number = r.workshop "
            "WHERE r.workshop = ? AND r.user_id = ?", (number, user_id),
        )
        if row is None:
            return None
        return Registration(row[0], row[1], _moment(row[2], row[4]), row[3], row[5])

    async def registrations(self, number: int) -> list[Registration]:
        """Everyone signed up: the registered in the order they came, then the waiting list."""
        rows = await self._db.fetchall(
            "SELECT r.workshop, r.user_id, r.registered_at, r.status, w.timezone "
            "FROM workshop_registrations r JOIN workshops w ON w.number = r.workshop "
            "WHERE r.workshop = ? ORDER BY r.status = 'waiting', r.id", (number,),
        )
        found: list[Registration] = []
        position = 0
        for row in rows:
            position += row[3] == WAITING
            found.append(Registration(row[0], row[1], _moment(row[2], row[4]), row[3],
                                      position if row[3] == WAITING else 0))
        return found

    async def counts(self, number: int) -> Counts:
        return (await self.counts_of([number]))[number]

    async def counts_of(self, numbers: list[int]) -> dict[int, Counts]:
        found = {number: Counts() for number in numbers}
        if not numbers:
            return found
        marks = ", ".join("?" for _ in numbers)
        rows = await self._db.fetchall(
            "SELECT workshop, SUM(status = 'registered'), SUM(status = 'waiting') "
            f"FROM workshop_registrations WHERE workshop IN ({marks}) GROUP BY workshop",
            numbers,
        )
        for row in rows:
            found[row[0]] = Counts(int(row[1] or 0), int(row[2] or 0))
        return found

    # -- the bot's posts, and the ✅ that signed up on them ------------------------------------

    async def workshop_of_post(self, event_id: str) -> int | None:
        """The workshop whose post the bot sent as `event_id` (`storage.outbox` records it)."""
        row = await self._db.fetchone("SELECT workshop FROM workshop_posts WHERE event_id = ?",
                                      (event_id,))
        return int(row[0]) if row else None

    async def posts(self, number: int) -> list[tuple[str, str]]:
        """The bot's posts of a workshop: (event id, room or member of a direct chat)."""
        rows = await self._db.fetchall(
            "SELECT event_id, room_id FROM workshop_posts WHERE workshop = ? ORDER BY rowid",
            (number,))
        return [(row[0], row[1]) for row in rows]

    async def thread_of_posts(self, number: int, room_id: str) -> str | None:
        """The thread of the bot's newest post of a workshop in `room_id`: the post itself, or
        the thread it went into; None without a post there."""
        row = await self._db.fetchone(
            "SELECT coalesce(thread_root, event_id) FROM workshop_posts "
            "WHERE workshop = ? AND room_id = ? ORDER BY rowid DESC LIMIT 1", (number, room_id))
        return str(row[0]) if row else None

    async def add_reaction(self, event_id: str, number: int, user_id: str) -> None:
        """A member's ✅ that signed them up: its removal withdraws them."""
        await self._db.execute(
            "INSERT INTO workshop_reactions (event_id, workshop, user_id) VALUES (?, ?, ?) "
            "ON CONFLICT (event_id) DO NOTHING", (event_id, number, user_id))

    async def take_reaction(self, event_id: str, user_id: str) -> int | None:
        """Forget `user_id`'s ✅ `event_id`; the workshop it signed them up for, if it did."""
        row = await self._db.fetchone(
            "SELECT workshop FROM workshop_reactions WHERE event_id = ? AND user_id = ?",
            (event_id, user_id))
        if row is None:
            return None
        await self._db.execute("DELETE FROM workshop_reactions WHERE event_id = ?", (event_id,))
        return int(row[0])

    async def delete_member(self, user_id: str, now: datetime) -> Deleted:
        """`delete_all_of` for a member's deletion: the rows, and who moved up (to be told)."""
        row = await self._db.fetchone(
            "SELECT count(*) FROM workshop_registrations WHERE user_id = ?", (user_id,))
        return Deleted(int(row[0]), await self.delete_all_of(user_id, now))

    async def delete_all_of(self, user_id: str, now: datetime | None = None) -> list[Registration]:
        """Remove every registration of a member (e.g. when they delete their data), each as
        a withdrawal; returns who moved up from waiting lists because of it. With `now`, nobody
        moves up into a workshop that has begun by then: its row just goes."""
        async with self._db.transaction():
            await self._db.execute("DELETE FROM workshop_reactions WHERE user_id = ?",
                                   (user_id,))
            rows = await self._db.fetchall(
                "SELECT r.workshop, w.starts_at FROM workshop_registrations r "
                "JOIN workshops w ON w.number = r.workshop WHERE r.user_id = ? ORDER BY r.id",
                (user_id,))
            promoted: list[Registration] = []
            for number, starts_at in rows:
                if now is not None and starts_at <= utc_ms(now):
                    await self._db.execute(
                        "DELETE FROM workshop_registrations WHERE workshop = ? AND user_id = ?",
                        (number, user_id))
                else:
                    promoted += (await self.withdraw(number, user_id)).promoted
            return promoted

    async def _full(self, number: int) -> bool:
        row = await self._db.fetchone("SELECT capacity FROM workshops WHERE number = ?",
                                      (number,))
        if row is None or row["capacity"] is None:
            return False
        return (await self.counts(number)).registered >= row["capacity"]

    async def _fullness_changed(self, number: int, was_full: bool) -> bool:
        """Whether the workshop filled up or has a free place again since `was_full`; if so,
        its `sequence` grows (inside the caller's transaction): the bot's posts of it say
        "ausgebucht" or not, and each version of a post is edited once under it."""
        if await self._full(number) == was_full:
            return False
        await self._db.execute("UPDATE workshops SET sequence = sequence + 1 WHERE number = ?",
                               (number,))
        return True

    async def _fill(self, number: int) -> list[Registration]:
        """Move the first waiting up into free places (inside the caller's transaction)."""
        row = await self._db.fetchone(
            "SELECT capacity, status FROM workshops WHERE number = ?", (number,))
        if row is None or row["status"] != PLANNED:
            return []
        counts = await self.counts(number)
        free = counts.waiting if row["capacity"] is None else row["capacity"] - counts.registered
        if free <= 0 or not counts.waiting:
            return []
        moving = await self._db.fetchall(
            "SELECT id, user_id FROM workshop_registrations WHERE workshop = ? "
            "AND status = 'waiting' ORDER BY id LIMIT ?", (number, free),
        )
        await self._db.executemany(
            "UPDATE workshop_registrations SET status = 'registered' WHERE id = ?",
            [(r[0],) for r in moving],
        )
        promoted = []
        for r in moving:
            found = await self.registration(number, r[1])
            assert found is not None
            promoted.append(found)
        return promoted



async def move_room(db: Database, old: str, new: str) -> dict[str, object]:
    """An upgraded room: the workshops added there are the successor's (its reminders go there)."""
    moved = await db.execute("UPDATE workshops SET room_id = ? WHERE room_id = ?", (new, old))
    return {"workshops": moved} if moved else {}


# The kind of the bot's post of a workshop in the outbox (`OutgoingMessage.record_as`), and
# the reaction that signs up on it.
WORKSHOP_POST = "workshop_post"
SIGN_UP_KEY = "✅"


async def record_post(db: Database, key: str, message: OutgoingMessage,
                      event_id: str) -> list[OutgoingMessage]:
    """The bot's post of workshop `key` was sent: recorded under its event id (a ✅ on it signs
    up), with the thread it went into; the bot puts the first ✅ on it, so that signing up is
    one tap."""
    await db.execute(
        "INSERT INTO workshop_posts (event_id, workshop, room_id, thread_root) "
        "SELECT ?, number, ?, ? FROM workshops WHERE number = ? "
        "ON CONFLICT (event_id) DO NOTHING",
        (event_id, message.room_id, thread_of(message.content), int(key)))
    return [first_sign_up(message.room_id, event_id)]


def first_sign_up(room_id: str, post_event_id: str) -> OutgoingMessage:
    """The bot's own ✅ on its post of a workshop, under a transaction id of the post's own."""
    digest = hashlib.sha256(post_event_id.encode()).hexdigest()[:32]
    return OutgoingMessage(f"react-{digest}", room_id, {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": post_event_id, "key": SIGN_UP_KEY}},
        event_type="m.reaction")

# The tables of this part of the database (see `storage/schema.py`): append new steps, never
# edit old ones.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "workshops, their registrations and waiting lists",
        """
        CREATE TABLE workshops (
            number INTEGER PRIMARY KEY AUTOINCREMENT,  -- what members type; never reused
            title TEXT NOT NULL,
            community TEXT,
            room_id TEXT,  -- the room it was added in: its reminders go there
            starts_at INTEGER NOT NULL,  -- UTC milliseconds
            ends_at INTEGER NOT NULL,
            timezone TEXT NOT NULL,  -- IANA name of the zone the times were entered in
            location TEXT,
            url TEXT,
            description TEXT,
            capacity INTEGER CHECK (capacity IS NULL OR capacity > 0),
            status TEXT NOT NULL DEFAULT 'planned' CHECK (status IN ('planned', 'cancelled')),
            created_by TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            sequence INTEGER NOT NULL DEFAULT 0,  -- grows with each change (iCalendar SEQUENCE)
            CHECK (ends_at > starts_at)
        );
        CREATE INDEX workshops_by_start ON workshops (status, starts_at);
        CREATE TABLE workshop_registrations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- sign-up order: orders the waiting list
            workshop INTEGER NOT NULL REFERENCES workshops (number) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            registered_at INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('registered', 'waiting')),
            UNIQUE (workshop, user_id)
        );
        CREATE INDEX workshop_registrations_by_user ON workshop_registrations (user_id)
        """,
        shared_step=5,
    ),
    Migration(
        2,
        "workshops shown network-wide or only in the room they were added in",
        """
        -- 1: listed everywhere (added by a network moderator, imported, or from before);
        -- 0: a room moderator's, listed only in its room
        ALTER TABLE workshops ADD COLUMN network_wide INTEGER NOT NULL DEFAULT 1
        """,
        shared_step=12,
    ),
    Migration(
        3,
        "workshop posts: the bot's posts of a workshop, and the ✅ reactions that signed up",
        """
        -- set on a message that is a post of this workshop: once sent, it is recorded below
        ALTER TABLE outbox ADD COLUMN post_of_workshop INTEGER;
        -- room_id: where it was queued (a room, or the member of a direct chat)
        CREATE TABLE workshop_posts (
            event_id TEXT PRIMARY KEY,
            workshop INTEGER NOT NULL REFERENCES workshops (number) ON DELETE CASCADE,
            room_id TEXT NOT NULL
        );
        CREATE INDEX workshop_posts_by_workshop ON workshop_posts (workshop);
        -- a member's ✅ on a post that signed them up: its redaction withdraws them
        CREATE TABLE workshop_reactions (
            event_id TEXT PRIMARY KEY,
            workshop INTEGER NOT NULL REFERENCES workshops (number) ON DELETE CASCADE,
            user_id TEXT NOT NULL
        );
        CREATE INDEX workshop_reactions_by_user ON workshop_reactions (user_id)
        """,
        shared_step=15,
    ),
    Migration(
        4,
        "the thread a post went into: its reminders go there",
        """
        -- the thread a post of a workshop went into (NULL: the main timeline): its reminders
        -- go into that thread, a post inside a thread cannot root one of its own
        ALTER TABLE workshop_posts ADD COLUMN thread_root TEXT
        """,
        shared_step=17,
    ),
    Migration(
        5,
        "the bot's posts in the outbox under the core's record kind and key",
        """
        UPDATE outbox SET record_kind = 'workshop_post', record_key = CAST(post_of_workshop AS TEXT)
            WHERE post_of_workshop IS NOT NULL;
        ALTER TABLE outbox DROP COLUMN post_of_workshop
        """,
    ),
)


# The columns of this part that can name a member (see `storage/member_data.py`).
MEMBER_DATA: tuple[MemberColumn, ...] = (
    MemberColumn("workshop_reactions", "user_id", Action.DELETE,
                 "the member's ✅ on workshop posts that signed them up"),
    MemberColumn("workshop_registrations", "user_id", Action.DELETE,
                 "sign-ups and waiting-list places: withdrawn, the next waiting move up",
                 repository="workshops", delete_with=WorkshopRepository.delete_member),
    MemberColumn("workshops", "created_by", Action.PSEUDONYMISE,
                 "workshops the member added stay for the others"),
)
