"""The member register: the organisations (municipalities, districts, states, federal agencies)
that joined the network, and the feed's bookkeeping.

Schema (migration 10):

- `municipalities`: one row per member organisation. `name_key` is the folded name used to
  recognise duplicates; `ags` the 8-digit official municipality key (Amtlicher
  Gemeindeschlüssel) where there is one. `registered_at` is when the bot learnt of the join;
  `announce` says whether that join is announced (0: seeded silently, e.g. the feed's first
  poll). An admin's removal keeps the row with `removed_at` set, so a feed that still lists the
  member does not add (and announce) it again.
- `member_feed`: per feed address, the HTTP validators of the last good poll (ETag,
  Last-Modified), how many rows it had, and when it seeded the register.

Duplicates: the same AGS is the same member; without an AGS on either side, the same folded
name in the same state is (`find_same`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from storage.database import Database
from storage.member_data import Action, MemberColumn
from storage.schema import Migration
from storage.text import STATES, clean_text, tokens

KINDS = ("stadt", "gemeinde", "landkreis", "land", "bund", "other")
# The words for each kind, folded (see commands.framework.keyword), German and English.
KIND_WORDS: dict[str, tuple[str, ...]] = {
    "stadt": ("stadt", "city", "town", "kreisfreiestadt", "grossstadt"),
    "gemeinde": ("gemeinde", "municipality", "kommune", "markt", "ortsgemeinde"),
    "landkreis": ("landkreis", "kreis", "district", "county", "kreisverwaltung"),
    "land": ("land", "bundesland", "state", "landesverwaltung", "landesbehoerde"),
    "bund": ("bund", "bundesbehoerde", "federal", "federalagency", "bundesverwaltung"),
    "other": ("other", "sonstige", "sonstiges", "andere", "anderes"),
}
_KIND_BY_WORD = {word: kind for kind, words in KIND_WORDS.items() for word in words}

# The first two digits of an AGS: the state (Land) it lies in.
LAND_CODES: dict[str, str] = {
    "01": "Schleswig-Holstein", "02": "Hamburg", "03": "Niedersachsen", "04": "Bremen",
    "05": "Nordrhein-Westfalen", "06": "Hessen", "07": "Rheinland-Pfalz",
    "08": "Baden-Württemberg", "09": "Bayern", "10": "Saarland", "11": "Berlin",
    "12": "Brandenburg", "13": "Mecklenburg-Vorpommern", "14": "Sachsen",
    "15": "Sachsen-Anhalt", "16": "Thüringen",
}
assert set(LAND_CODES.values()) == {name for name, _, _ in STATES}

MAX_LENGTH = {"name": 120, "website": 300}
_AGS_SEPARATORS = re.compile(r"[\s.\-/]")


class AgsError(ValueError):
    """Why a text is no AGS: `reason` is `digits`, `land` or `state` (a catalog key's end)."""

    def __init__(self, reason: str, land: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.land = land  # the state the AGS belongs to (reason `state`)


def normalize_ags(text: str, state: str | None = None) -> str:
    """The AGS as 8 digits (`06 4 14 000` and `06.414.000` are read too). AgsError when it is
    not 8 digits, its first two digits are no state (01–16), or they name another state than
    `state` (canonical name) when that is given."""
    digits = _AGS_SEPARATORS.sub("", text.strip())
    if len(digits) != 8 or not digits.isascii() or not digits.isdigit():
        raise AgsError("digits")
    land = LAND_CODES.get(digits[:2])
    if land is None:
        raise AgsError("land")
    if state is not None and land != state:
        raise AgsError("state", land)
    return digits


def state_of_ags(ags: str) -> str | None:
    return LAND_CODES.get(ags[:2])


def normalize_kind(text: str) -> str | None:
    """`stadt`, `gemeinde`, `landkreis`, `land`, `bund` or `other` from a German or English
    word; None if unknown."""
    return _KIND_BY_WORD.get("".join(tokens(text)))


def name_key(name: str) -> str:
    """Names that differ only in case, accents, spacing or punctuation are the same name."""
    return " ".join(tokens(name))


def normalize_website(text: str) -> str | None:
    """An http(s) address (`www.…` gets `https://`); None when it is none."""
    value = clean_text(text)
    if not value:
        return None
    if value.lower().startswith("www."):
        value = "https://" + value
    if not re.match(r"^https?://[^\s/$.?#][^\s]*$", value, re.IGNORECASE):
        return None
    return value


# -- models -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A member organisation. `state` is a canonical state name (see storage.text.STATES)."""

    name: str
    state: str
    kind: str = "other"
    ags: str | None = None
    joined_on: date | None = None
    website: str | None = None
    id: int | None = None
    source: str = ""  # `moderator`, `import` or `feed`
    added_by: str = ""
    registered_at: int = 0  # ms
    announce: bool = True
    removed_at: int | None = None

    @property
    def key(self) -> str:
        return name_key(self.name)


def same_member(a: Member, b: Member) -> bool:
    """Duplicates: by AGS where both have one, else by folded name and state."""
    if a.ags and b.ags:
        return a.ags == b.ags
    return a.key == b.key and a.state == b.state


class MemberIndex:
    """Members looked up by `same_member` in memory: for checking whole files and feeds."""

    def __init__(self, members: Iterable[Member] = ()) -> None:
        self._by_ags: dict[str, Any] = {}
        self._by_name: dict[tuple[str, str], list[tuple[Member, Any]]] = {}
        for member in members:
            self.add(member, member)

    def add(self, member: Member, value: Any) -> None:
        if member.ags:
            self._by_ags.setdefault(member.ags, value)
        self._by_name.setdefault((member.key, member.state), []).append((member, value))

    def find(self, member: Member) -> Any:
        """The value stored with a member `member` duplicates, else None."""
        if member.ags and member.ags in self._by_ags:
            return self._by_ags[member.ags]
        for other, value in self._by_name.get((member.key, member.state), ()):
            if same_member(other, member):
                return value
        return None


@dataclass(frozen=True)
class FeedState:
    url: str
    etag: str | None
    last_modified: str | None
    rows: int  # rows in the last good poll
    seeded_at: int | None  # ms; None: not polled successfully yet


_COLUMNS = ("id, name, state, kind, ags, joined_on, website, source, added_by, registered_at, "
            "announce, removed_at")


def _member(row: tuple) -> Member:
    (id_, name, state, kind, ags, joined_on, website, source, added_by, registered_at,
     announce, removed_at) = row
    return Member(name=name, state=state, kind=kind, ags=ags,
                  joined_on=date.fromisoformat(joined_on) if joined_on else None,
                  website=website, id=id_, source=source, added_by=added_by,
                  registered_at=registered_at, announce=bool(announce), removed_at=removed_at)


class MunicipalityRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- reading ------------------------------------------------------------------------------

    async def count(self) -> int:
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM municipalities WHERE removed_at IS NULL")
        return int(row[0])

    async def get(self, member_id: int) -> Member | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM municipalities WHERE id = ?", (member_id,))
        return _member(row) if row else None

    async def get_many(self, ids: list[int]) -> list[Member]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM municipalities WHERE id IN ({marks}) ORDER BY id",
            tuple(ids))
        return [_member(r) for r in rows]

    async def find_same(self, member: Member, *, removed: bool = True) -> Member | None:
        """The stored member that `member` duplicates (see `same_member`), removed ones too
        unless `removed` is False."""
        gone = "" if removed else " AND removed_at IS NULL"
        if member.ags:
            row = await self._db.fetchone(
                f"SELECT {_COLUMNS} FROM municipalities WHERE ags = ?{gone}", (member.ags,))
            if row:
                return _member(row)
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM municipalities WHERE name_key = ? AND state = ?{gone} "
            "ORDER BY removed_at IS NOT NULL, id", (member.key, member.state))
        for row in rows:
            found = _member(row)
            if same_member(found, member):
                return found
        return None

    async def by_name(self, text: str) -> list[Member]:
        """Current members whose folded name is `text`'s, or whose AGS it is."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM municipalities WHERE removed_at IS NULL "
            "AND (name_key = ? OR ags = ?) ORDER BY state, id",
            (name_key(text), _AGS_SEPARATORS.sub("", text.strip())))
        return [_member(r) for r in rows]

    async def latest(self, limit: int, state: str | None = None) -> list[Member]:
        """Current members, latest join first (by date joined, then by registration)."""
        where, params = "removed_at IS NULL", ()
        if state is not None:
            where, params = where + " AND state = ?", (state,)
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM municipalities WHERE {where} "
            "ORDER BY COALESCE(joined_on, '') DESC, id DESC LIMIT ?", (*params, limit))
        return [_member(r) for r in rows]

    async def of_state(self, state: str) -> list[Member]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM municipalities WHERE removed_at IS NULL AND state = ? "
            "ORDER BY name_key, id", (state,))
        return [_member(r) for r in rows]

    async def count_by_state(self) -> list[tuple[str, int]]:
        """(state, members) for every state with members, most first."""
        rows = await self._db.fetchall(
            "SELECT state, COUNT(*) AS n FROM municipalities WHERE removed_at IS NULL "
            "GROUP BY state ORDER BY n DESC, state")
        return [(state, int(n)) for state, n in rows]

    async def count_registered_until(self, member: Member) -> int:
        """Current members registered up to and including `member` (the total it made)."""
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM municipalities WHERE removed_at IS NULL "
            "AND (registered_at < ? OR (registered_at = ? AND id <= ?))",
            (member.registered_at, member.registered_at, member.id))
        return int(row[0])

    async def to_announce(self, registered_from: int, registered_until: int) -> list[Member]:
        """Current members to be announced, registered in [from, until) (ms), oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM municipalities WHERE announce = 1 AND removed_at IS NULL "
            "AND registered_at >= ? AND registered_at < ? ORDER BY registered_at, id",
            (registered_from, registered_until))
        return [_member(r) for r in rows]

    async def identities(self) -> list[Member]:
        """Every stored member, removed ones too (for duplicate checks of whole files)."""
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM municipalities ORDER BY id")
        return [_member(r) for r in rows]

    # -- writing ------------------------------------------------------------------------------

    async def add(self, member: Member) -> Member:
        member_id = await self._db.execute_returning_id(
            "INSERT INTO municipalities (name, name_key, state, kind, ags, joined_on, website, "
            "source, added_by, registered_at, announce) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (member.name, member.key, member.state, member.kind, member.ags,
             member.joined_on.isoformat() if member.joined_on else None, member.website,
             member.source, member.added_by, member.registered_at, int(member.announce)))
        return replace(member, id=member_id, removed_at=None)

    async def add_new(self, members: list[Member]) -> tuple[list[Member], list[Member]]:
        """Add the members that are no duplicates, in one transaction: (added, duplicates).
        A removed member counts as a duplicate: only `restore` brings it back."""
        added: list[Member] = []
        duplicates: list[Member] = []
        async with self._db.transaction():
            stored = MemberIndex(await self.identities())
            for member in members:
                if stored.find(member) is not None:
                    duplicates.append(member)
                else:
                    added.append(await self.add(member))
                    stored.add(member, member)
        return added, duplicates

    async def is_empty(self) -> bool:
        """No member was ever registered (removed ones count as registered)."""
        return await self._db.fetchone("SELECT 1 FROM municipalities LIMIT 1") is None

    async def restore(self, member_id: int, registered_at: int, added_by: str) -> None:
        await self._db.execute(
            "UPDATE municipalities SET removed_at = NULL, registered_at = ?, added_by = ?, "
            "announce = 1 WHERE id = ?", (registered_at, added_by, member_id))

    async def remove(self, member_id: int, removed_at: int) -> bool:
        changed = await self._db.execute(
            "UPDATE municipalities SET removed_at = ? WHERE id = ? AND removed_at IS NULL",
            (removed_at, member_id))
        return changed == 1

    # -- the feed -----------------------------------------------------------------------------

    async def feed_state(self, url: str) -> FeedState | None:
        row = await self._db.fetchone(
            "SELECT url, etag, last_modified, rows, seeded_at FROM member_feed WHERE url = ?",
            (url,))
        return FeedState(*row) if row else None

    async def set_feed_state(self, state: FeedState) -> None:
        await self._db.execute(
            "INSERT INTO member_feed (url, etag, last_modified, rows, seeded_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (url) DO UPDATE SET etag = excluded.etag, "
            "last_modified = excluded.last_modified, rows = excluded.rows, "
            "seeded_at = excluded.seeded_at",
            (state.url, state.etag, state.last_modified, state.rows, state.seeded_at))


# The tables of this part of the database (see `storage/schema.py`): append new steps, never
# edit old ones.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "the member register (municipalities and other member organisations) and its feed",
        """
        CREATE TABLE municipalities (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            name_key TEXT NOT NULL,
            state TEXT NOT NULL,
            kind TEXT NOT NULL,
            ags TEXT,
            joined_on TEXT,
            website TEXT,
            source TEXT NOT NULL,
            added_by TEXT NOT NULL,
            registered_at INTEGER NOT NULL,
            announce INTEGER NOT NULL,
            removed_at INTEGER
        );
        CREATE UNIQUE INDEX municipalities_ags ON municipalities (ags) WHERE ags IS NOT NULL;
        CREATE INDEX municipalities_name ON municipalities (name_key, state);
        CREATE INDEX municipalities_registered ON municipalities (registered_at)
            WHERE announce = 1;
        -- per feed address: the validators of its last good poll, and when it seeded
        CREATE TABLE member_feed (
            url TEXT PRIMARY KEY,
            etag TEXT,
            last_modified TEXT,
            rows INTEGER NOT NULL,
            seeded_at INTEGER
        )
        """,
        shared_step=10,
    ),
)


# The columns of this part that can name a member (see `storage/member_data.py`).
MEMBER_DATA: tuple[MemberColumn, ...] = (
    MemberColumn("municipalities", "added_by", Action.PSEUDONYMISE,
                 "member organisations the member registered"),
)
