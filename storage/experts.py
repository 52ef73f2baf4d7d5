"""The expert directory: opt-in profiles, their topics, and a German-aware full-text search.

Schema (migration 3; migration 7 adds the 4-letter prefix index):

- `profiles`: one row per member who gave consent; `id` is also the rowid of both search tables.
- `profile_topics`: the topics of a profile, one row each, with a folded `topic_key`.
- `topic_counts`: profiles per topic key, kept in step by every write, so `!topics` reads a few
  rows instead of grouping the whole topic table.
- `profile_search` (FTS5): every searchable field as *folded* text (see `text.fold`), bio included;
  `profile_search_short` (FTS5): the same without the bio. The short one is small, so ranking
  and counting the common case never walks the long doclists of words that occur in many bios.
  Their `state` and `level` columns hold one key token each and are only reached through a
  column filter.
- `profile_removals`: whose profile a bot admin removed, by whom, when; no profile content.

Ranking (`ExpertRepository.search`): first by *where* the search words match – (1) topics,
(2) organisation, (3) municipality, role or name, (4) only with the bio – then within tiers 1–3
by bm25 (weights `SHORT_WEIGHTS`) among the tier's newest `RANK_POOL` profiles, the rest of a
tier and all of tier 4 newest first. So the work per search stays bounded however many
profiles match; the count is exact up to `COUNT_LIMIT`.

Member text never reaches MATCH as syntax: the expression is built only from folded
alphanumeric tokens, each inside double quotes (`_phrase`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from time import monotonic
from typing import Any

from storage.database import Database
from storage.text import (
    STATES,
    STOPWORDS,
    compact,
    normalize_state,
    tokens,
)

LEVELS = ("kommune", "land", "bund", "other")

TEXT_COLUMNS = ("topics", "organisation", "municipality", "role", "name", "bio")
SHORT_COLUMNS = TEXT_COLUMNS[:5]
# bm25 weight of each column of profile_search_short, in column order; the filter columns
# (state, level) never add to a score.
SHORT_WEIGHTS = (10.0, 5.0, 4.0, 3.0, 2.0, 0.0, 0.0)
# Where a match counts most: each tier adds columns; a profile is in the first tier whose
# columns hold every search word (tier 4, the bio, is searched in profile_search).
TIERS = (("topics",), ("topics", "organisation"), SHORT_COLUMNS)
# Within a tier, bm25 orders its newest RANK_POOL profiles; the rest follow newest first.
RANK_POOL = 200
# Counting stops here: `search` reports COUNT_LIMIT + 1 for "more than COUNT_LIMIT".
COUNT_LIMIT = 100

# Terms shorter than this are matched exactly: `KI` must not find `Kita` or `Kinder`.
MIN_PREFIX_LENGTH = 3

DEFAULT_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("KI", "Künstliche Intelligenz", "AI", "Artificial Intelligence"),
    ("OZG", "Onlinezugangsgesetz"),
    ("E-Akte", "elektronische Akte", "eAkte"),
    ("Cloud", "Cloud Computing"),
    ("Chatbot", "Chatbots"),
    ("Open Data", "offene Daten"),
    ("Open Source", "quelloffen", "OSS"),
    ("IT-Sicherheit", "Informationssicherheit", "Cybersicherheit", "Cybersecurity"),
    ("Datenschutz", "DSGVO", "GDPR"),
    ("E-Government", "eGovernment", "digitale Verwaltung"),
    ("Digitalisierung", "digitale Transformation"),
    ("Registermodernisierung", "RegMo"),
    ("EfA", "Einer für Alle"),
    ("Smart City", "Smart Cities"),
    ("BIM", "Building Information Modeling"),
    ("GIS", "Geoinformationssystem", "Geoinformation"),
    ("Barrierefreiheit", "Accessibility", "BITV"),
    ("Low-Code", "Low Code", "No-Code"),
)

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


def _state_token(state: str | None) -> str:
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
class SearchHit:
    user_id: str
    display_name: str | None
    organisation: str | None
    municipality: str | None
    state: str | None
    level: str | None
    topics: tuple[str, ...]
    matched_topics: tuple[str, ...]  # the topics the search words matched

    def __repr__(self) -> str:
        digest = hashlib.sha256(self.user_id.encode()).hexdigest()[:8]
        return f"SearchHit(#{digest})"


@dataclass(frozen=True)
class Removal:
    user_id: str
    removed_by: str
    removed_at: datetime


class Synonyms:
    """Groups of words that mean the same (`KI` = `Künstliche Intelligenz` = `AI`)."""

    def __init__(self, groups: Iterable[Iterable[str]] = ()) -> None:
        self._groups: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {}
        for group in groups:
            variants = tuple(dict.fromkeys(t for t in (tuple(tokens(w)) for w in group) if t))
            for variant in variants:
                known = self._groups.get(variant, ())
                self._groups[variant] = tuple(dict.fromkeys((*known, *variants)))
        self.longest = max((len(v) for v in self._groups), default=0)

    def of(self, words: tuple[str, ...]) -> tuple[tuple[str, ...], ...] | None:
        return self._groups.get(words)


@lru_cache(maxsize=16)
def compiled_synonyms(groups: tuple[tuple[str, ...], ...]) -> Synonyms:
    return Synonyms(groups)


@dataclass(frozen=True)
class SearchQuery:
    """What to look for. `terms` are the member's words or quoted phrases, all required;
    `organisation` is matched word by word (prefixes) in the organisation only."""

    terms: tuple[str, ...] = ()
    state: str | None = None
    level: str | None = None
    organisation: str | None = None
    synonyms: Synonyms | None = None

    def __repr__(self) -> str:  # search words may be personal: not in logs
        return f"SearchQuery(terms={len(self.terms)})"


# -- building the MATCH expression --------------------------------------------------------------

Alternative = tuple[str, ...]  # folded tokens of one phrase


def _phrase(words: Alternative) -> str:
    # Only [^\W_]+ tokens get here, so a double quote can never occur inside.
    prefix = "*" if len(words[-1]) >= MIN_PREFIX_LENGTH else ""
    return '"' + " ".join(words) + '"' + prefix


def search_groups(query: SearchQuery) -> list[tuple[Alternative, ...]]:
    """The query's terms as AND-ed groups of OR-ed phrases, synonyms expanded."""
    units = [tuple(tokens(term)) for term in query.terms]
    units = [u for u in units if u]
    synonyms = query.synonyms
    groups: list[tuple[Alternative, ...]] = []
    i = 0
    while i < len(units):
        found = None
        if synonyms is not None and synonyms.longest:
            # The longest run of whole words that is a known synonym, e.g. `elektronische Akte`.
            for j in range(len(units), i, -1):
                words = tuple(w for unit in units[i:j] for w in unit)
                if len(words) <= synonyms.longest and (variants := synonyms.of(words)):
                    found = (j, variants)
                    break
        if found:
            i, variants = found
            groups.append(variants)
        else:
            groups.append((units[i],))
            i += 1
    # Stopwords go ("KI in der Verwaltung"), unless nothing else is left.
    meaningful = [g for g in groups if not (len(g) == 1 and g[0] in _STOP_UNITS)]
    return meaningful or groups


_STOP_UNITS = {(word,) for word in STOPWORDS}


def _groups_expression(groups: list[tuple[Alternative, ...]]) -> str:
    return " AND ".join(
        _phrase(g[0]) if len(g) == 1 else "(" + " OR ".join(_phrase(a) for a in g) + ")"
        for g in groups
    )


def _in(columns: Sequence[str], expression: str) -> str:
    return "({" + " ".join(columns) + "} : (" + expression + "))"


def filter_expression(query: SearchQuery) -> str | None:
    """The filters (`state:`, `level:`, `org:`) as FTS5 column filters, None without any."""
    parts = []
    if query.organisation is not None:
        words = tokens(query.organisation)
        if words:
            # Whole words, but the last may be a beginning (`org:"Stadt Wies"`): as a prefix, a
            # common word ("stadt"*) would merge the doclists of every word it begins.
            terms = [f'"{w}"' for w in words[:-1]] + [_phrase(words[-1:])]
            parts.append("(organisation : (" + " AND ".join(terms) + "))")
        else:
            parts.append('(organisation : "_")')  # matches nothing, stays valid
    if query.state is not None:
        parts.append('(state : "' + (_state_token(query.state) or "_") + '")')
    if query.level is not None:
        parts.append('(level : "' + (normalize_level(query.level) or "_") + '")')
    return " AND ".join(parts) if parts else None


# A level filter is checked on the profile row instead of in MATCH when at least this share
# of the profiles has that level: its key's doclist is then long, and bm25 would walk all of
# it for every ranked query (the level column has no weight, so the scores are the same).
LEVEL_CHECK_SHARE = 0.3
# How many of the newest profiles estimate the shares, and for how many seconds.
LEVEL_SAMPLE = 1000
LEVEL_SAMPLE_SECONDS = 60.0


def match_expression(query: SearchQuery, columns: Sequence[str] = TEXT_COLUMNS) -> str | None:
    """The FTS5 MATCH string for the search words in `columns` and the filters; None when
    nothing searchable is left."""
    groups = search_groups(query)
    parts = [_in(columns, _groups_expression(groups))] if groups else []
    filters = filter_expression(query)
    if filters:
        parts.append(filters)
    return " AND ".join(parts) if parts else None


def _matches(topic: Alternative, alternative: Alternative) -> bool:
    n = len(alternative)
    last_prefix = len(alternative[-1]) >= MIN_PREFIX_LENGTH
    for start in range(len(topic) - n + 1):
        window = topic[start:start + n]
        if window[:-1] == alternative[:-1] and (
            window[-1].startswith(alternative[-1]) if last_prefix
            else window[-1] == alternative[-1]
        ):
            return True
    return False


def matched_topics(topics: Sequence[str], groups: list[tuple[Alternative, ...]]) -> tuple[str, ...]:
    alternatives = [a for g in groups for a in g]
    return tuple(t for t in topics
                 if any(_matches(tuple(tokens(t)), a) for a in alternatives))


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
        _state_token(profile.state),
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


def _bm25(table: str, weights: Sequence[float]) -> str:
    return f"bm25({table}, " + ", ".join(str(w) for w in weights) + ")"


def _at_level(table: str, level: str | None) -> str:
    """The search table, joined to the profiles when their level is checked (the search table
    stays the outer loop: MATCH drives, the order is its rowid order)."""
    return table if level is None else f"{table} CROSS JOIN profiles ON profiles.id = {table}.rowid"


_LEVEL_IS = " AND profiles.level = ?"


def _level_args(level: str | None) -> tuple[str, ...]:
    return () if level is None else (level,)


class ExpertRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._shares: tuple[float, dict[str, float]] | None = None

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

    async def all_topics(self) -> list[str]:
        rows = await self._db.fetchall("SELECT label FROM topic_counts ORDER BY topic_key")
        return [r[0] for r in rows]

    async def removals(self, user_id: str | None = None) -> list[Removal]:
        sql = "SELECT user_id, removed_by, removed_at FROM profile_removals"
        rows = await (self._db.fetchall(sql + " WHERE user_id = ? ORDER BY id", (user_id,))
                      if user_id is not None else self._db.fetchall(sql + " ORDER BY id"))
        return [Removal(r[0], r[1], _datetime(r[2])) for r in rows]

    async def search(self, query: SearchQuery, limit: int = 5,
                     offset: int = 0) -> tuple[int, list[SearchHit]]:
        """(number of hits, the hits from `offset` on), best first.

        The number is exact up to COUNT_LIMIT; COUNT_LIMIT + 1 means "more than COUNT_LIMIT".
        All its queries (up to six) run in one hand-off to SQLite's thread.
        """
        return await self._db.run(lambda conn: self._search(conn, query, limit, offset))

    def _search(self, conn: sqlite3.Connection, query: SearchQuery, limit: int,
                offset: int) -> tuple[int, list[SearchHit]]:
        groups = search_groups(query)
        filters = filter_expression(query)
        if not groups and filters is None:
            return 0, []
        if not groups:  # only filters: nothing to rank by, newest first
            total = self._count(conn, "profile_search_short", filters)
            ids = [r[0] for r in conn.execute(
                "SELECT rowid FROM profile_search_short WHERE profile_search_short MATCH ? "
                "ORDER BY rowid DESC LIMIT ? OFFSET ?", (filters, limit, offset)).fetchall()]
        else:
            level = None
            if query.level is not None and (key := normalize_level(query.level)) is not None \
                    and self._level_shares(conn).get(key, 0.0) >= LEVEL_CHECK_SHARE:
                level = key
                filters = filter_expression(replace(query, level=None))
            ids, total = self._ranked(conn, groups, filters, limit, offset, level)
        return total, self._hits(conn, ids, groups)

    def _level_shares(self, conn: sqlite3.Connection) -> dict[str, float]:
        """The share of each level among the newest LEVEL_SAMPLE profiles, a little stale: it
        only chooses how a level filter is applied, never what is found."""
        now = monotonic()
        if self._shares is None or now - self._shares[0] > LEVEL_SAMPLE_SECONDS:
            rows = conn.execute(
                "SELECT level, count(*) FROM (SELECT level FROM profiles ORDER BY id DESC "
                "LIMIT ?) GROUP BY level", (LEVEL_SAMPLE,)).fetchall()
            total = sum(r[1] for r in rows) or 1
            self._shares = (now, {r[0]: r[1] / total for r in rows if r[0] is not None})
        return self._shares[1]

    def _ranked(self, conn: sqlite3.Connection, groups: list[tuple[Alternative, ...]],
                filters: str | None, limit: int, offset: int, level: str | None = None
                ) -> tuple[list[int], int]:
        """The page and the count for search words. `level`: only profiles of that level
        (checked on the profile row; `filters` then leaves the level out)."""
        words = _groups_expression(groups)

        def expression(columns: Sequence[str], without: Sequence[str] | None = None) -> str:
            found = _in(columns, words)
            if without:
                found = f"({found} NOT {_in(without, words)})"
            return f"{found} AND {filters}" if filters else found

        ids: list[int] = []
        seen: set[int] = set()  # every hit of the tiers passed so far
        skip = offset
        previous: Sequence[str] | None = None
        for columns in TIERS:
            if len(ids) >= limit:
                break  # the page is full
            wanted = max(RANK_POOL, skip + limit - len(ids))
            rows = self._scored(conn, expression(columns, previous), wanted, level)
            skip = self._take(rows, seen, skip, limit, ids)
            previous = columns
        # A tier that gave fewer than `wanted` rows gave all of its hits; one that gave
        # `wanted` filled the page. So with the page not full, `seen` is every hit outside the
        # bio. No count of those first: an empty tier costs about what counting would, and
        # the newest hits anywhere give the number.
        newest: list[int] | None = None  # hits anywhere, bio included, newest first
        if len(seen) <= COUNT_LIMIT:
            newest = self._newest(conn, expression(TEXT_COLUMNS), COUNT_LIMIT + 1, level)
        total = len(newest) if newest is not None else COUNT_LIMIT + 1
        if len(ids) < limit and (total > COUNT_LIMIT or len(seen) < total):
            # tier 4: the bio was needed to match; newest first
            wanted = skip + limit - len(ids) + len(seen)
            if newest is None or (len(newest) > COUNT_LIMIT and wanted > len(newest)):
                newest = self._newest(conn, expression(TEXT_COLUMNS), wanted, level)
            rest = [i for i in newest if i not in seen]
            ids.extend(rest[skip:skip + limit - len(ids)])
        return ids, total

    @staticmethod
    def _take(rows: list[tuple[int, float]], seen: set[int], skip: int, limit: int,
              ids: list[int]) -> int:
        """Add this tier's part of the page to `ids`; returns how many hits are still to skip.

        `rows` are the tier's hits newest first: the first RANK_POOL are ordered by score.
        """
        seen.update(r[0] for r in rows)
        if skip >= len(rows):
            return skip - len(rows)
        pool = sorted(rows[:RANK_POOL], key=lambda r: (r[1], -r[0]))
        ordered = pool + rows[RANK_POOL:]
        ids.extend(r[0] for r in ordered[skip:skip + limit - len(ids)])
        return 0

    @staticmethod
    def _count(conn: sqlite3.Connection, table: str, expression: str) -> int:
        row = conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ? LIMIT ?)",
            (expression, COUNT_LIMIT + 1),
        ).fetchone()
        return int(row[0])

    @staticmethod
    def _scored(conn: sqlite3.Connection, expression: str, limit: int,
                level: str | None = None) -> list[tuple[int, float]]:
        """(rowid, bm25) of the newest `limit` matches in profile_search_short; lower is better.
        With `level`, of the profiles of that level only.

        bm25 only ever runs on the short table: on the full one its document frequencies
        would walk the long doclists of words that occur in many bios.
        """
        table = "profile_search_short"
        rows = conn.execute(
            f"SELECT {table}.rowid, " + _bm25(table, SHORT_WEIGHTS)
            + f" FROM {_at_level(table, level)} WHERE {table} MATCH ?"
            + (_LEVEL_IS if level else "") + f" ORDER BY {table}.rowid DESC LIMIT ?",
            (expression, *_level_args(level), limit),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    @staticmethod
    def _newest(conn: sqlite3.Connection, expression: str, limit: int,
                level: str | None = None) -> list[int]:
        table = "profile_search"
        rows = conn.execute(
            f"SELECT {table}.rowid FROM {_at_level(table, level)} WHERE {table} MATCH ?"
            + (_LEVEL_IS if level else "") + f" ORDER BY {table}.rowid DESC LIMIT ?",
            (expression, *_level_args(level), limit),
        ).fetchall()
        return [r[0] for r in rows]

    @staticmethod
    def _hits(conn: sqlite3.Connection, ids: list[int], groups: list[tuple[Alternative, ...]]
              ) -> list[SearchHit]:
        if not ids:
            return []
        rows = conn.execute(
            "SELECT id, user_id, display_name, organisation, municipality, state, level, "
            "(SELECT json_group_array(topic) FROM (SELECT topic FROM profile_topics "
            "WHERE profile_id = profiles.id ORDER BY position)) "
            "FROM profiles WHERE id IN (" + ", ".join("?" * len(ids)) + ")", ids,
        ).fetchall()
        by_id = {r[0]: r for r in rows}
        hits = []
        for profile_id in ids:
            r = by_id.get(profile_id)
            if r is not None:
                own = json.loads(r[7])
                hits.append(SearchHit(r[1], r[2], r[3], r[4], r[5], r[6], tuple(own),
                                      matched_topics(own, groups)))
        return hits

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
