"""Searching the expert directory: the query, synonyms, the FTS5 MATCH expression, ranking.

The search tables themselves (`profile_search`, `profile_search_short`) are written by
`storage.experts.ExpertRepository` with every change of a profile; this module only reads them.

Ranking (`ExpertSearch.search`): first by *where* the search words match – (1) topics,
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from time import monotonic

from storage.database import Database
from storage.experts import SHORT_COLUMNS, TEXT_COLUMNS, normalize_level, state_token
from storage.text import STOPWORDS, tokens

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


# -- the query and its hits ---------------------------------------------------------------------


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
        parts.append('(state : "' + (state_token(query.state) or "_") + '")')
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


# -- running a search ---------------------------------------------------------------------------


def _bm25(table: str, weights: Sequence[float]) -> str:
    return f"bm25({table}, " + ", ".join(str(w) for w in weights) + ")"


def _at_level(table: str, level: str | None) -> str:
    """The search table, joined to the profiles when their level is checked (the search table
    stays the outer loop: MATCH drives, the order is its rowid order)."""
    return table if level is None else f"{table} CROSS JOIN profiles ON profiles.id = {table}.rowid"


_LEVEL_IS = " AND profiles.level = ?"


def _level_args(level: str | None) -> tuple[str, ...]:
    return () if level is None else (level,)


class ExpertSearch:
    """Answers searches from the search tables; remembers the share of each level a while."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._shares: tuple[float, dict[str, float]] | None = None

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
