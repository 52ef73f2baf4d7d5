"""The expert directory's profiles: the model, its keys and limits, and the repository that
stores a profile with its topics and its search rows (searching them: `storage.expert_search`).

Schema (migration 3; migration 7 adds the 4-letter prefix index):

- `profiles`: one row per member who gave consent; `id` is also the rowid of both search tables.
- `profile_topics`: the topics of a profile, one row each, with a folded `topic_key`.
- `topic_counts`: profiles per topic key, kept in step by every write, so `!topics` reads a few
  rows instead of grouping the whole topic table.
- `profile_search` (FTS5): every searchable field as *folded* text (see `text.fold`), bio included;
  `profile_search_short` (FTS5): the same without the bio. The short one is small, so ranking
  and counting the common case never walks the long doclists of words that occur in many bios.
  Their `state` and `level` columns hold one key token each and are only reached through a
  column filter. Every write of a profile rewrites its rows in the same transaction.
- `profile_removals`: whose profile a bot admin removed, by whom, when; no profile content.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from storage.database import Database
from storage.member_data import Action, Deleted, MemberColumn
from storage.schema import Migration
from storage.text import STATES, compact, normalize_state, tokens

LEVELS = ("kommune", "land", "bund", "other")

# The text columns of the search tables, in order; the short table has all but the bio.
TEXT_COLUMNS = ("topics", "organisation", "municipality", "role", "name", "bio")
SHORT_COLUMNS = TEXT_COLUMNS[:5]

_LEVEL_WORDS = {
    "kommune": ("kommune", "kommunal", "kommunen", "gemeinde", "stadt", "kreis", "landkreis",
                "municipal", "municipality", "local"),
    "land": ("land", "laender", "landesebene", "landesverwaltung", "state"),
    "bund": ("bund", "bundesebene", "bundesverwaltung", "federal"),
    "other": ("other", "sonstige", "sonstiges", "andere", "anderes", "weitere"),
}


# -- keys (folding itself: storage/text.py) -----------------------------------------------------


def _key(text: str) -> str:
    return " ".join(tokens(text))


_STATE_CODE = {name: code for name, code, _ in STATES}
_LEVEL_BY_KEY = {word: level for level, words in _LEVEL_WORDS.items() for word in words}


def normalize_level(text: str) -> str | None:
    """`kommune`, `land`, `bund` or `other` from the English or German word; None if unknown."""
    return _LEVEL_BY_KEY.get(compact(text))


def topic_key(topic: str) -> str:
    """Topics that differ only in case, accents or punctuation are the same topic."""
    return _key(topic)


def state_token(state: str | None) -> str:
    """What the index holds for a state: its code (`he`), or its words for anything else."""
    if not state:
        return ""
    canonical = normalize_state(state)
    return _STATE_CODE[canonical] if canonical else compact(state)


# -- limits and cleaning (the same for members' commands and operators' imports) ----------------

MAX_TOPICS = 20
MAX_LANGUAGES = 10
# Longest value of each free-text field, in characters (the bio's comes from the settings).
MAX_LENGTH = {"display_name": 80, "organisation": 120, "municipality": 80, "role": 100,
              "topic": 60, "language": 40}


# -- models -------------------------------------------------------------------------------------


@dataclass
class Profile:
    """A member's entry in the expert directory. `consent_at` is when they agreed to it."""

    user_id: str
    display_name: str | None = None
    organisation: str | None = None
    level: str | None = None  # one of LEVELS
    municipality: str | None = None
    state: str | None = None  # canonical name, see normalize_state
    topics: list[str] = field(default_factory=list)
    role: str | None = None
    bio: str | None = None
    languages: list[str] = field(default_factory=list)
    consent_at: datetime | None = None
    updated_at: datetime | None = None

    def __repr__(self) -> str:  # profiles are personal data: never in a log
        digest = hashlib.sha256(self.user_id.encode()).hexdigest()[:8]
        return f"Profile(#{digest}, topics={len(self.topics)})"

    def to_json(self) -> dict[str, Any]:
        """Every field, as the member gets it from `!profile export`."""
        return {
            "user_id": self.user_id,
            "display_name": self.display_name,
            "organisation": self.organisation,
            "level": self.level,
            "municipality": self.municipality,
            "state": self.state,
            "topics": list(self.topics),
            "role": self.role,
            "bio": self.bio,
            "languages": list(self.languages),
            "consent_at": _iso(self.consent_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class TopicCount:
    topic: str
    profiles: int


@dataclass(frozen=True)
class Removal:
    user_id: str
    removed_by: str
    removed_at: datetime


# -- the repository -----------------------------------------------------------------------------

_FIELDS = ("user_id", "display_name", "organisation", "level", "municipality", "state", "role",
           "bio", "languages", "consent_at", "updated_at")
_SELECT = "SELECT id, " + ", ".join(_FIELDS) + " FROM profiles"
# The same and, last, the profile's topics in order as a JSON array.
_SELECT_WITH_TOPICS = (
    "SELECT id, " + ", ".join(_FIELDS) + ", (SELECT json_group_array(topic) FROM (SELECT topic "
    "FROM profile_topics WHERE profile_id = profiles.id ORDER BY position)) FROM profiles"
)
# Parameters per `IN (…)` list: far below SQLite's limit, few round trips.
_CHUNK = 500


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _placeholders(n: int) -> str:
    return "(" + ", ".join("?" * n) + ")"


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _now() -> datetime:
    return datetime.now(UTC)


def _clean_topics(topics: Iterable[str]) -> list[tuple[str, str]]:
    """(topic, key) pairs, first spelling wins, topics without any word dropped."""
    seen: dict[str, str] = {}
    for topic in topics:
        key = topic_key(topic)
        if key and key not in seen:
            seen[key] = topic.strip()
    return [(topic, key) for key, topic in seen.items()]


def _content(profile: Profile, stored_consent: int | None) -> tuple:
    """What the profiles table holds of `profile` but `updated_at`: the `_FIELDS` from `user_id`
    to `consent_at`; without a consent time, `stored_consent` (ms) stands in."""
    return (
        profile.user_id, profile.display_name, profile.organisation, profile.level,
        profile.municipality, profile.state, profile.role, profile.bio,
        json.dumps(list(profile.languages), ensure_ascii=False) if profile.languages else "[]",
        _ms(profile.consent_at) if profile.consent_at is not None else stored_consent,
    )


def unchanged(new: Profile, stored: Profile) -> bool:
    """True if `ExpertRepository.upsert_many` would leave `stored` as it is when given `new`:
    every field the same, topics (as they would be stored) and languages included, but
    `updated_at`. `new` without a consent time keeps the stored one."""
    content = _content(stored, None)
    return (_content(new, content[-1]) == content
            and (new.topics == stored.topics
                 or [t for t, _ in _clean_topics(new.topics)] == stored.topics))


# Where in `_content` are the fields the search rows are made of (but the topics).
_SHORT_FROM = tuple(_FIELDS.index(f) for f in ("display_name", "organisation", "level",
                                                "municipality", "state", "role"))
_BIO = _FIELDS.index("bio")


def _index_row(profile_id: int, profile: Profile, topics: list[tuple[str, str]]) -> tuple:
    """The row of profile_search: rowid, the text columns folded, state and level keys."""
    localpart = profile.user_id.removeprefix("@").split(":", 1)[0]
    return (
        profile_id,
        " ".join(key for _, key in topics),
        _key(profile.organisation or ""),
        _key(profile.municipality or ""),
        _key(profile.role or ""),
        _key(f"{profile.display_name or ''} {localpart}"),
        _key(profile.bio or ""),
        state_token(profile.state),
        profile.level or "",
    )


def _short_row(row: tuple) -> tuple:
    return row[:6] + row[7:]  # without the bio


_FULL_COLUMNS = (*TEXT_COLUMNS, "state", "level")
_INSERT_FULL = ("INSERT INTO profile_search (rowid, " + ", ".join(_FULL_COLUMNS) + ") "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_INSERT_SHORT = ("INSERT INTO profile_search_short (rowid, " + ", ".join(SHORT_COLUMNS)
                 + ", state, level) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_SEARCH_TABLES = ("profile_search", "profile_search_short")


class ExpertRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- reading --------------------------------------------------------------------------------

    async def get(self, user_id: str) -> Profile | None:
        row = await self._db.fetchone(_SELECT + " WHERE user_id = ?", (user_id,))
        if row is None:
            return None
        topics = await self._topics_of([row[0]])
        return self._profile(row, topics.get(row[0], []))

    async def get_many(self, user_ids: Iterable[str]) -> dict[str, Profile]:
        """The profiles of those of `user_ids` that have one, by user id (topics included)."""
        return {user_id: self._profile(row, json.loads(row[12]))
                for user_id, row in (await self._rows_of(user_ids)).items()}

    async def user_ids(self) -> set[str]:
        """Every user id that has a profile (read from the index, no profile content)."""
        return {r[0] for r in await self._db.fetchall("SELECT user_id FROM profiles")}

    async def count(self) -> int:
        row = await self._db.fetchone("SELECT count(*) FROM profiles")
        return int(row[0])

    async def all_profiles(self, batch: int = 1000) -> AsyncIterator[Profile]:
        """Every profile, in user-id order, read in batches (the whole table never is in memory)."""
        after = ""
        while True:
            rows = await self._db.fetchall(
                _SELECT + " WHERE user_id > ? ORDER BY user_id LIMIT ?", (after, batch)
            )
            if not rows:
                return
            topics = await self._topics_of([r[0] for r in rows])
            for row in rows:
                yield self._profile(row, topics.get(row[0], []))
            after = rows[-1][1]

    async def top_topics(self, n: int = 20) -> list[TopicCount]:
        rows = await self._db.fetchall(
            "SELECT label, profiles FROM topic_counts ORDER BY profiles DESC, topic_key LIMIT ?",
            (n,),
        )
        return [TopicCount(r[0], r[1]) for r in rows]

    async def removals(self, user_id: str | None = None) -> list[Removal]:
        sql = "SELECT user_id, removed_by, removed_at FROM profile_removals"
        rows = await (self._db.fetchall(sql + " WHERE user_id = ? ORDER BY id", (user_id,))
                      if user_id is not None else self._db.fetchall(sql + " ORDER BY id"))
        return [Removal(r[0], r[1], _datetime(r[2])) for r in rows]

    # -- writing --------------------------------------------------------------------------------

    async def give_consent(self, user_id: str, at: datetime) -> tuple[Profile, bool]:
        """Record consent once: (the profile, True if it was given just now)."""
        async with self._db.transaction():
            existing = await self.get(user_id)
            if existing is not None:
                return existing, False
            profile = Profile(user_id, consent_at=at, updated_at=at)
            await self.save(profile)
            return profile, True

    async def save(self, profile: Profile) -> None:
        """Insert or update a profile, its topics and its search entry, in one transaction."""
        if profile.consent_at is None:
            raise ValueError("a profile is stored only with consent")
        if profile.level is not None and profile.level not in LEVELS:
            raise ValueError("unknown level")
        if profile.updated_at is None:
            profile = replace(profile, updated_at=_now())
        topics = _clean_topics(profile.topics)
        async with self._db.transaction():
            row = await self._db.fetchone("SELECT id FROM profiles WHERE user_id = ?",
                                          (profile.user_id,))
            old_keys: set[str] = set()
            if row is None:
                profile_id = await self._db.execute_returning_id(
                    "INSERT INTO profiles (" + ", ".join(_FIELDS) + ") "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self._values(profile),
                )
            else:
                profile_id = row[0]
                await self._db.execute(
                    "UPDATE profiles SET " + ", ".join(f"{f} = ?" for f in _FIELDS[1:])
                    + " WHERE id = ?", (*self._values(profile)[1:], profile_id),
                )
                old_keys = {r[0] for r in await self._db.fetchall(
                    "SELECT topic_key FROM profile_topics WHERE profile_id = ?", (profile_id,))}
                await self._db.execute("DELETE FROM profile_topics WHERE profile_id = ?",
                                       (profile_id,))
                for table in _SEARCH_TABLES:
                    await self._db.execute(f"DELETE FROM {table} WHERE rowid = ?",
                                           (profile_id,))
            await self._db.executemany(
                "INSERT INTO profile_topics (profile_id, position, topic, topic_key) "
                "VALUES (?, ?, ?, ?)",
                [(profile_id, i, topic, key) for i, (topic, key) in enumerate(topics)],
            )
            index_row = _index_row(profile_id, profile, topics)
            await self._db.execute(_INSERT_FULL, index_row)
            await self._db.execute(_INSERT_SHORT, _short_row(index_row))
            new = {key: topic for topic, key in topics}
            await self._count_topics({k: t for k, t in new.items() if k not in old_keys},
                                     old_keys - new.keys())

    async def export_member(self, user_id: str) -> list[dict[str, Any]]:
        """A member's profile with its topics, for `!profil export`."""
        profile = await self.get(user_id)
        return [profile.to_json()] if profile is not None else []

    async def delete_member(self, user_id: str, now: datetime) -> Deleted:
        return Deleted(int(await self.delete_profile(user_id)))

    async def delete_profile(self, user_id: str) -> bool:
        """Remove the profile of `user_id` with its topics and search entry (joins the caller's
        transaction; the rest of a member's data: `storage.member_data`). False if there was
        none."""
        async with self._db.transaction():
            return await self._delete_profile(user_id)

    async def record_removal(self, user_id: str, admin: str, at: datetime | None = None) -> None:
        """Log that a bot admin removed what was stored about `user_id`: whose, by whom, when."""
        await self._db.execute(
            "INSERT INTO profile_removals (user_id, removed_by, removed_at) VALUES (?, ?, ?)",
            (user_id, admin, _ms(at or _now())),
        )

    async def upsert_many(self, profiles: list[Profile]) -> tuple[int, int, int]:
        """Insert or replace many profiles in ONE transaction: (created, updated, unchanged).

        A profile without `consent_at` keeps the stored one, or gets the current time if new.
        If a user id occurs twice, the later profile wins. A profile whose stored content is the
        same already (see `unchanged`) is not written at all and keeps its `updated_at`; of a
        changed one, its topics and each search row are rewritten only if their fields change.
        """
        latest: dict[str, Profile] = {}
        for profile in profiles:
            if profile.level is not None and profile.level not in LEVELS:
                raise ValueError("unknown level")
            latest[profile.user_id] = profile
        if not latest:
            return 0, 0, 0
        now = _ms(_now())
        async with self._db.transaction():
            stored = await self._rows_of(latest)
            row = await self._db.fetchone("SELECT coalesce(max(id), 0) FROM profiles")
            next_id = int(row[0]) + 1
            inserts: list[tuple] = []
            updates: list[tuple] = []
            topic_rows: list[tuple] = []
            full_rows: list[tuple] = []
            short_rows: list[tuple] = []
            # the profiles whose topics, full search row, short search row are replaced
            old_topics_of: list[int] = []
            old_full_of: list[int] = []
            old_short_of: list[int] = []
            same = 0  # profiles left as they are
            for user_id, profile in latest.items():
                old = stored.get(user_id)
                content = _content(profile, old[10] if old is not None else now)
                updated_at = _ms(profile.updated_at) if profile.updated_at is not None else now
                if old is None:
                    profile_id = next_id
                    next_id += 1
                    inserts.append((profile_id, *content, updated_at))
                    topics = _clean_topics(profile.topics)
                    new_topics = new_short = new_full = True
                else:
                    stored_topics = json.loads(old[12])
                    # Unchanged topics are the common case: no need to clean them again.
                    topics = None if profile.topics == stored_topics else _clean_topics(
                        profile.topics)
                    new_topics = topics is not None and [t for t, _ in topics] != stored_topics
                    if not new_topics and content == tuple(old[1:11]):
                        same += 1
                        continue
                    profile_id = old[0]
                    updates.append((*content[1:], updated_at, profile_id))
                    if topics is None:
                        topics = _clean_topics(profile.topics)
                    # A search row changes only if a field it is made of does.
                    new_short = new_topics or any(content[i] != old[i + 1] for i in _SHORT_FROM)
                    new_full = new_short or content[_BIO] != old[_BIO + 1]
                    if new_topics:
                        old_topics_of.append(profile_id)
                    if new_full:
                        old_full_of.append(profile_id)
                    if new_short:
                        old_short_of.append(profile_id)
                if new_topics:
                    topic_rows.extend((profile_id, i, t, k) for i, (t, k) in enumerate(topics))
                if new_full:
                    index = _index_row(profile_id, profile, topics)
                    full_rows.append(index)
                    if new_short:
                        short_rows.append(_short_row(index))
            removed_keys: list[str] = []
            for chunk in _chunks(old_topics_of):
                removed_keys.extend(r[0] for r in await self._db.fetchall(
                    "DELETE FROM profile_topics WHERE profile_id IN " + _placeholders(len(chunk))
                    + " RETURNING topic_key", chunk))
            # One by one: FTS5 deletes `WHERE rowid IN (…)` correctly, but more slowly.
            for table, ids in (("profile_search", old_full_of),
                               ("profile_search_short", old_short_of)):
                await self._db.executemany(f"DELETE FROM {table} WHERE rowid = ?",
                                           [(i,) for i in sorted(ids)])
            await self._db.executemany(
                "UPDATE profiles SET " + ", ".join(f"{f} = ?" for f in _FIELDS[1:])
                + " WHERE id = ?", updates,
            )
            await self._db.executemany(
                "INSERT INTO profiles (id, " + ", ".join(_FIELDS) + ") "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", inserts,
            )
            await self._db.executemany(
                "INSERT INTO profile_topics (profile_id, position, topic, topic_key) "
                "VALUES (?, ?, ?, ?)", topic_rows,
            )
            await self._db.executemany(_INSERT_FULL, full_rows)
            await self._db.executemany(_INSERT_SHORT, short_rows)
            await self._add_to_topic_counts(((r[2], r[3]) for r in topic_rows), removed_keys)
        return len(inserts), len(updates), same

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _values(profile: Profile) -> tuple:
        return (*_content(profile, None), _ms(profile.updated_at))

    @staticmethod
    def _profile(row: Any, topics: list[str]) -> Profile:
        return Profile(
            user_id=row[1], display_name=row[2], organisation=row[3], level=row[4],
            municipality=row[5], state=row[6], role=row[7], bio=row[8],
            languages=json.loads(row[9]) if row[9] not in (None, "[]") else [], topics=topics,
            consent_at=_datetime(row[10]), updated_at=_datetime(row[11]),
        )

    async def _rows_of(self, user_ids: Iterable[str]) -> dict[str, Any]:
        """The `_SELECT_WITH_TOPICS` rows of those of `user_ids` that have a profile."""
        found: dict[str, Any] = {}
        # In order, the lookups walk the user_id index (and mostly the table) front to back.
        for chunk in _chunks(sorted(set(user_ids))):
            rows = await self._db.fetchall(
                _SELECT_WITH_TOPICS + " WHERE user_id IN " + _placeholders(len(chunk)), chunk)
            found.update((r[1], r) for r in rows)
        return found

    async def _topics_of(self, profile_ids: list[int]) -> dict[int, list[str]]:
        if not profile_ids:
            return {}
        rows = await self._db.fetchall(
            "SELECT profile_id, topic FROM profile_topics WHERE profile_id IN ("
            + ", ".join("?" * len(profile_ids)) + ") ORDER BY profile_id, position", profile_ids,
        )
        found: dict[int, list[str]] = {}
        for profile_id, topic in rows:
            found.setdefault(profile_id, []).append(topic)
        return found

    async def _delete_profile(self, user_id: str) -> bool:
        row = await self._db.fetchone("SELECT id FROM profiles WHERE user_id = ?", (user_id,))
        if row is None:
            return False
        profile_id = row[0]
        keys = {r[0] for r in await self._db.fetchall(
            "SELECT topic_key FROM profile_topics WHERE profile_id = ?", (profile_id,))}
        for table in _SEARCH_TABLES:
            await self._db.execute(f"DELETE FROM {table} WHERE rowid = ?", (profile_id,))
            # A deleted row's words stay in the index's segments until they are merged;
            # merging now leaves no trace of the profile in the search index.
            await self._db.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")
        await self._db.execute("DELETE FROM profile_topics WHERE profile_id = ?", (profile_id,))
        await self._db.execute("DELETE FROM profiles WHERE id = ?", (profile_id,))
        await self._count_topics({}, keys)
        return True

    async def _count_topics(self, added: dict[str, str], removed: set[str]) -> None:
        await self._db.executemany(
            "INSERT INTO topic_counts (topic_key, label, profiles) VALUES (?, ?, 1) "
            "ON CONFLICT (topic_key) DO UPDATE SET profiles = profiles + 1",
            list(added.items()),
        )
        await self._db.executemany(
            "UPDATE topic_counts SET profiles = profiles - 1 WHERE topic_key = ?",
            [(k,) for k in removed],
        )
        if removed:
            await self._db.execute("DELETE FROM topic_counts WHERE profiles <= 0")

    async def _add_to_topic_counts(self, added: Iterable[tuple[str, str]],
                                   removed: Iterable[str]) -> None:
        """Count the (topic, key) rows `added` and the keys `removed` in topic_counts. A new
        key's label is its first spelling in sort order."""
        change: dict[str, int] = {}
        label: dict[str, str] = {}
        for topic, key in added:
            change[key] = change.get(key, 0) + 1
            if key not in label or topic < label[key]:
                label[key] = topic
        for key in removed:
            change[key] = change.get(key, 0) - 1
        await self._db.executemany(
            "INSERT INTO topic_counts (topic_key, label, profiles) VALUES (?, ?, ?) "
            "ON CONFLICT (topic_key) DO UPDATE SET profiles = profiles + excluded.profiles",
            [(key, label.get(key, key), n) for key, n in change.items() if n],
        )
        if any(n < 0 for n in change.values()):
            await self._db.execute("DELETE FROM topic_counts WHERE profiles <= 0")


# The tables of this part of the database (see `storage/schema.py`): append new steps, never
# edit old ones.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "expert directory: profiles, topics, topic counts, search index, removal log",
        """
        CREATE TABLE profiles (
            id INTEGER PRIMARY KEY,  -- also the rowid of the profile's search entry
            user_id TEXT NOT NULL UNIQUE,
            display_name TEXT,
            organisation TEXT,
            level TEXT CHECK (level IN ('kommune', 'land', 'bund', 'other')),
            municipality TEXT,
            state TEXT,  -- canonical German name of one of the 16 states
            role TEXT,
            bio TEXT,
            languages TEXT NOT NULL DEFAULT '[]',  -- JSON list of strings
            consent_at INTEGER NOT NULL,  -- milliseconds; no row exists without consent
            updated_at INTEGER NOT NULL
        );
        CREATE TABLE profile_topics (
            profile_id INTEGER NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            topic TEXT NOT NULL,
            topic_key TEXT NOT NULL,  -- folded: one topic however it is spelled
            PRIMARY KEY (profile_id, topic_key)
        ) WITHOUT ROWID;
        CREATE INDEX profile_topics_by_key ON profile_topics (topic_key);
        -- Kept in step with profile_topics by every write, so !topics reads only a few rows.
        CREATE TABLE topic_counts (
            topic_key TEXT PRIMARY KEY,
            label TEXT NOT NULL,
            profiles INTEGER NOT NULL
        );
        CREATE INDEX topic_counts_by_profiles ON topic_counts (profiles DESC, topic_key);
        -- Folded text only (storage/experts.py fold()); rowid = profiles.id. The short twin
        -- lacks the bio: ranking and counting mostly stay on its much smaller doclists.
        CREATE VIRTUAL TABLE profile_search USING fts5 (
            topics, organisation, municipality, role, name, bio, state, level,
            tokenize = 'unicode61 remove_diacritics 2',
            prefix = '3'
        );
        CREATE VIRTUAL TABLE profile_search_short USING fts5 (
            topics, organisation, municipality, role, name, state, level,
            tokenize = 'unicode61 remove_diacritics 2',
            prefix = '3'
        );
        -- A moderation log: whose profile a bot admin removed, and when; never its content.
        CREATE TABLE profile_removals (
            id INTEGER PRIMARY KEY,
            user_id TEXT NOT NULL,
            removed_by TEXT NOT NULL,
            removed_at INTEGER NOT NULL
        );
        CREATE INDEX profile_removals_by_user ON profile_removals (user_id)
        """,
        shared_step=3,
    ),
    Migration(
        2,
        "expert search: prefix index for 4 letters too",
        """
        -- Prefixes of 4 letters (`Digi`, `akte`, `harz`) are common search words; without their
        -- own index FTS5 merges every matching term's doclist, and bm25 does it a second time.
        -- FTS5 cannot change the option in place: each table is rebuilt with the same rows.
        CREATE VIRTUAL TABLE profile_search_rebuilt USING fts5 (
            topics, organisation, municipality, role, name, bio, state, level,
            tokenize = 'unicode61 remove_diacritics 2',
            prefix = '3 4'
        );
        INSERT INTO profile_search_rebuilt (rowid, topics, organisation, municipality, role, name,
                                            bio, state, level)
            SELECT rowid, topics, organisation, municipality, role, name, bio, state, level
            FROM profile_search;
        DROP TABLE profile_search;
        ALTER TABLE profile_search_rebuilt RENAME TO profile_search;
        CREATE VIRTUAL TABLE profile_search_short_rebuilt USING fts5 (
            topics, organisation, municipality, role, name, state, level,
            tokenize = 'unicode61 remove_diacritics 2',
            prefix = '3 4'
        );
        INSERT INTO profile_search_short_rebuilt (rowid, topics, organisation, municipality,
                                                  role, name, state, level)
            SELECT rowid, topics, organisation, municipality, role, name, state, level
            FROM profile_search_short;
        DROP TABLE profile_search_short;
        ALTER TABLE profile_search_short_rebuilt RENAME TO profile_search_short
        """,
        shared_step=7,
    ),
)


# The columns of this part that can name a member (see `storage/member_data.py`).
MEMBER_DATA: tuple[MemberColumn, ...] = (
    MemberColumn("profiles", "user_id", Action.DELETE,
                 "the directory profile, its topics and search entry, the consent",
                 repository="experts", export_with=ExpertRepository.export_member,
                 delete_with=ExpertRepository.delete_member),
    MemberColumn("profile_removals", "user_id", Action.DELETE,
                 "that a bot admin removed the member's data (an admin's removal keeps it)",
                 hidden=("removed_by",)),
    MemberColumn("profile_removals", "removed_by", Action.PSEUDONYMISE,
                 "an admin's removals of others: the moderation record stays",
                 hidden=("user_id",)),
)
