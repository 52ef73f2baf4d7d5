"""The expert directory: profiles, consent, search, topics, deletion, export."""

import json
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest

from bot.matrix.render import to_html
from commands import core, experts
from commands.experts import ExpertConfig, ExpertSettings, parse_query
from commands.framework import Level, Registry, dispatch, parse_args
from commands.i18n import LANGUAGES
from storage.expert_search import (
    COUNT_LIMIT,
    DEFAULT_SYNONYMS,
    SearchQuery,
    compiled_synonyms,
    match_expression,
)
from storage.experts import Profile, _clean_topics, _index_row, _short_row, normalize_level
from storage.text import STATES, fold, normalize_state, tokens
from tests.unit.fakes import ALICE, BOB, BOSS, CATALOG, make_services, request

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SYNONYMS = compiled_synonyms(tuple(tuple(g) for g in DEFAULT_SYNONYMS))
INTERNAL = {CATALOG.template(lang, "errors.internal") for lang in LANGUAGES}


@pytest.fixture
def services(storage):
    return make_services(storage, [core.router, experts.router])


async def ask(services, body, sender=ALICE, level=Level.MEMBER, language="de"):
    return await dispatch(request(body, level=level, language=language, sender=sender), services)


async def say(services, body, **kwargs) -> str:
    """The plain text of the one reply to `body`."""
    replies = await ask(services, body, **kwargs)
    assert len(replies) == 1, replies
    assert replies[0].text.plain not in INTERNAL
    return replies[0].text.plain


def profile(user: str, **fields) -> Profile:
    return Profile(user, consent_at=NOW, updated_at=NOW, **fields)


def user(n: int) -> str:
    return f"@user{n:03d}:example.org"


async def search(storage, text: str, limit: int = 5, offset: int = 0):
    query = parse_query(text, SYNONYMS).query
    total, hits = await storage.expert_search.search(query, limit, offset)
    return total, [h.user_id for h in hits]


async def table_names(db) -> list[str]:
    rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return [r[0] for r in rows]


async def rows_mentioning(db, *needles: str) -> dict[str, int]:
    """Per table (FTS shadow tables included): rows holding any needle, blobs searched too."""
    found: dict[str, int] = {}
    for name in await table_names(db):
        if name == "schema_versions":  # the parts' names ("municipalities" holds "ali")
            continue
        for row in await db.fetchall(f'SELECT * FROM "{name}"'):
            cells = [c.decode("latin-1") if isinstance(c, bytes) else str(c) for c in row]
            if any(n in cell for n in needles for cell in cells):
                found[name] = found.get(name, 0) + 1
    return found


# -- folding and the MATCH expression -----------------------------------------------------------


@pytest.mark.parametrize(("text", "folded"), [
    ("Müller", "mueller"), ("MÜLLER", "mueller"), ("Mu\u0308ller", "mueller"),
    ("Straße", "strasse"), ("STRAẞE", "strasse"), ("Café Déjà-vu", "cafe deja-vu"),
    ("Łódź", "lodz"), ("Thüringen", "thueringen"),
])
def test_fold(text, folded):
    assert fold(text) == folded


def test_tokens_are_folded_alphanumeric_words():
    assert tokens("E-Akte, 'KI'; (OZG)* \"x\"") == ["e", "akte", "ki", "ozg", "x"]
    assert tokens("__--**") == []


@pytest.mark.parametrize("hostile", [
    '"', "*", "NEAR(", "OR", "AND NOT", "'; DROP TABLE profiles; --", ")", "(", "^", ":",
    '"KI" OR "x"*', "col:value", "{topics}:x", "-x", "+", "NOT KI", "ki\"*", "\x00", "ä\u0308",
    "NEAR(a b, 3)", "a AND (b OR", "🙂", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "٣", "Ǆ",
])
def test_match_expression_quotes_every_word(hostile):
    expression = match_expression(SearchQuery((hostile, "KI"), synonyms=SYNONYMS))
    assert expression is not None
    # Outside the quoted phrases only our own syntax is left.
    outside = re.sub(r'"[^"]*"\*?', "", expression)
    assert re.fullmatch(r"[(){} :A-Za-z]*", outside), expression
    assert set(re.sub(r"\b(AND|OR|NOT|topics|organisation|municipality|role|name|bio)\b", "",
                      outside)) <= set("(){} :")
    for phrase in re.findall(r'"([^"]*)"', expression):
        assert re.fullmatch(r"[^\W_]+( [^\W_]+)*", phrase), phrase


async def test_hostile_words_never_break_the_search(storage):
    await storage.experts.save(profile(ALICE, display_name="Anna", topics=["KI"]))
    for text in ['"', "*", "NEAR(", "OR", "AND NOT", "'; DROP TABLE profiles; --", ")",
                 '") OR 1=1 --', "x* OR y*", "{bio}:x", "\\", "%", "_", "ä\u0308"]:
        await storage.expert_search.search(SearchQuery((text,), synonyms=SYNONYMS))
        await storage.expert_search.search(SearchQuery(("KI",), organisation=text))
    assert await storage.experts.count() == 1


# -- search rules -------------------------------------------------------------------------------


async def test_umlauts_and_case_fold(storage):
    await storage.experts.save(profile(ALICE, display_name="Anna Müller"))
    await storage.experts.save(profile(BOB, display_name="Bernd Mueller"))
    for text in ("Müller", "mueller", "MUELLER", "MÜLLER", "müll"):
        total, found = await search(storage, text)
        assert (total, set(found)) == (2, {ALICE, BOB}), text


async def test_sharp_s_folds(storage):
    await storage.experts.save(profile(ALICE, organisation="Amt für Straßenbau"))
    for text in ("Straßenbau", "strassenbau", "STRASSE", "straße"):
        assert await search(storage, text) == (1, [ALICE]), text


async def test_prefixes_match_but_short_words_only_exactly(storage):
    await storage.experts.save(profile(ALICE, topics=["Digitalisierung"]))
    await storage.experts.save(profile(BOB, topics=["KI"], bio="Ich leite eine Kita."))
    assert await search(storage, "digital") == (1, [ALICE])
    assert await search(storage, "Digitalisierungsstrategie") == (0, [])
    assert await search(storage, "KI") == (1, [BOB])  # `KI` must not find `Kita` (or Kinder)
    await storage.experts.save(profile(BOSS, topics=["Kinderschutz"]))
    assert await search(storage, "KI") == (1, [BOB])


async def test_synonyms_find_each_other(storage):
    await storage.experts.save(profile(ALICE, topics=["Künstliche Intelligenz"]))
    await storage.experts.save(profile(BOB, topics=["KI"]))
    await storage.experts.save(profile(BOSS, bio="Erfahrung mit AI-Projekten"))
    for text in ("KI", "künstliche Intelligenz", "AI", '"kuenstliche intelligenz"'):
        total, found = await search(storage, text)
        assert (total, set(found)) == (3, {ALICE, BOB, BOSS}), text
    # Without synonyms, only the words themselves.
    total, found = await storage.expert_search.search(SearchQuery(("KI",)))
    assert total == 1


async def test_hyphenated_synonyms(storage):
    await storage.experts.save(profile(ALICE, topics=["E-Akte"]))
    await storage.experts.save(profile(BOB, topics=["elektronische Akte"]))
    await storage.experts.save(profile(BOSS, role="eAkte-Beauftragte"))
    for text in ("E-Akte", "elektronische Akte", "eAkte", "e akte"):
        total, found = await search(storage, text)
        assert (total, set(found)) == (3, {ALICE, BOB, BOSS}), text


async def test_all_words_must_match(storage):
    await storage.experts.save(profile(ALICE, topics=["OZG", "Cloud"]))
    await storage.experts.save(profile(BOB, topics=["OZG"]))
    assert await search(storage, "OZG Cloud") == (1, [ALICE])
    # Stopwords are dropped unless nothing else is left.
    assert await search(storage, "Cloud und OZG") == (1, [ALICE])


async def test_filters(storage):
    await storage.experts.save(profile(ALICE, topics=["OZG"], state="Hessen", level="kommune",
                                       organisation="Stadt Wiesbaden"))
    await storage.experts.save(profile(BOB, topics=["OZG"], state="Bayern", level="land",
                                       organisation="Staatsministerium für Digitales"))
    await storage.experts.save(profile(BOSS, topics=["OZG"], state="Nordrhein-Westfalen",
                                       level="kommune", organisation="Stadt Köln"))
    assert await search(storage, "OZG state:Hessen") == (1, [ALICE])
    assert await search(storage, "OZG state:he") == (1, [ALICE])
    assert await search(storage, "OZG state:NRW") == (1, [BOSS])
    assert await search(storage, 'OZG state:"nordrhein westfalen"') == (1, [BOSS])
    assert (await search(storage, "OZG level:kommune"))[0] == 2
    assert await search(storage, "OZG ebene:Landesebene") == (1, [BOB])
    assert await search(storage, 'OZG org:"Stadt Wiesbaden"') == (1, [ALICE])
    assert await search(storage, "org:wies") == (1, [ALICE])
    assert await search(storage, "org:koeln") == (1, [BOSS])
    # The last word of an organisation may be a beginning; the others are whole words.
    assert await search(storage, 'org:"Stadt Wies"') == (1, [ALICE])
    assert await search(storage, 'org:"Wiesbaden Stadt"') == (1, [ALICE])
    assert await search(storage, 'org:"Sta Wiesbaden"') == (0, [])
    assert await search(storage, "org:Stadt level:kommune state:Hessen") == (1, [ALICE])
    assert await search(storage, "OZG state:Hessen level:land") == (0, [])
    # Filter words are not search words: `Hessen` is nowhere in the text.
    assert await search(storage, "Hessen") == (0, [])


async def test_ranking_topics_before_organisation_before_role_and_name_before_bio(storage):
    # Created in reverse, so the order is not the order of creation.
    await storage.experts.save(profile(user(1), bio="Ich mag Cloud-Lösungen sehr."))
    await storage.experts.save(profile(user(2), display_name="Clouda Schmidt"))
    await storage.experts.save(profile(user(3), organisation="Cloud-Kompetenzzentrum"))
    await storage.experts.save(profile(user(4), topics=["Cloud", "OZG"]))
    total, found = await search(storage, "cloud")
    assert total == 4
    assert found == [user(4), user(3), user(2), user(1)]


async def test_within_a_tier_bm25_prefers_the_more_specific_profile(storage):
    await storage.experts.save(profile(user(1), topics=["Cloud", "OZG", "KI", "BIM", "GIS"]))
    await storage.experts.save(profile(user(2), topics=["Cloud"]))
    assert (await search(storage, "cloud"))[1] == [user(2), user(1)]


async def test_words_in_different_fields_match_together(storage):
    await storage.experts.save(profile(ALICE, topics=["OZG"], bio="Früher im Jugendamt."))
    assert await search(storage, "OZG Jugendamt") == (1, [ALICE])


async def test_matched_topics_are_reported(storage):
    await storage.experts.save(profile(ALICE, topics=["Digitalisierung", "OZG", "KI"]))
    _, hits = await storage.expert_search.search(parse_query("digital künstliche", SYNONYMS).query)
    assert hits == []
    _, hits = await storage.expert_search.search(parse_query("digital", SYNONYMS).query)
    assert hits[0].matched_topics == ("Digitalisierung",)
    _, hits = await storage.expert_search.search(parse_query("AI", SYNONYMS).query)
    assert hits[0].matched_topics == ("KI",)


async def test_paging_covers_every_hit_once(storage):
    await storage.experts.upsert_many(
        [profile(user(n), topics=["OZG"] if n % 2 else ["Cloud"], bio="OZG") for n in range(12)]
    )
    pages = [await search(storage, "OZG", 5, offset) for offset in (0, 5, 10, 15)]
    assert [len(found) for _, found in pages] == [5, 5, 2, 0]
    assert all(total == 12 for total, _ in pages)
    seen = [u for _, found in pages for u in found]
    assert sorted(seen) == sorted(user(n) for n in range(12))
    # Topic matches (odd numbers) come before the bio-only ones.
    assert all(int(u[5:8]) % 2 for u in seen[:6])


async def test_counting_stops_at_the_limit(storage):
    await storage.experts.upsert_many(
        [profile(user(n), bio="Open Data") for n in range(COUNT_LIMIT + 5)]
    )
    assert (await search(storage, "open data"))[0] == COUNT_LIMIT + 1
    assert (await search(storage, "state:Hessen"))[0] == 0


async def test_only_filters_list_the_newest_first(storage):
    for n in range(3):
        await storage.experts.save(profile(user(n), state="Hessen"))
    assert await search(storage, "state:Hessen") == (3, [user(2), user(1), user(0)])


# -- repository ---------------------------------------------------------------------------------


async def test_save_get_update(storage):
    repo = storage.experts
    await repo.save(profile(ALICE, display_name="Anna", topics=["KI", "ki", " OZG "],
                            languages=["de", "en"], state="Hessen", level="kommune"))
    found = await repo.get(ALICE)
    assert found.topics == ["KI", "OZG"]  # the same topic twice is kept once
    assert (found.display_name, found.languages, found.consent_at) == ("Anna", ["de", "en"], NOW)
    found.bio = "Neu hier"
    found.topics = ["Cloud"]
    await repo.save(found)
    again = await repo.get(ALICE)
    assert (again.bio, again.topics) == ("Neu hier", ["Cloud"])
    assert await search(storage, "OZG") == (0, [])  # the index follows the profile
    assert await search(storage, "Cloud") == (1, [ALICE])
    assert await repo.get(BOB) is None


async def test_save_needs_consent_and_a_known_level(storage):
    with pytest.raises(ValueError):
        await storage.experts.save(Profile(ALICE))
    with pytest.raises(ValueError):
        await storage.experts.save(profile(ALICE, level="galaxis"))
    assert await storage.experts.count() == 0


def test_profile_repr_has_no_personal_data():
    text = repr(profile(ALICE, display_name="Anna Geheim", bio="privat", topics=["KI"]))
    for secret in ("alice", "Anna", "Geheim", "privat", "KI"):
        assert secret not in text


async def test_upsert_many_counts_created_and_updated(storage):
    repo = storage.experts
    await repo.save(profile(ALICE, topics=["KI"]))
    before = await repo.get(ALICE)
    counts = await repo.upsert_many([
        Profile(ALICE, topics=["Cloud"]),  # no consent time: the stored one stays
        profile(BOB, topics=["Cloud"]),
        profile(BOSS, topics=["OZG"]),
        profile(BOSS, topics=["OZG", "Cloud"]),  # the later one wins
    ])
    assert counts == (2, 1, 0)  # created, updated, unchanged
    assert (await repo.get(ALICE)).consent_at == before.consent_at
    assert (await repo.get(BOSS)).topics == ["OZG", "Cloud"]
    assert [(t.topic, t.profiles) for t in await repo.top_topics()] == [("Cloud", 3), ("OZG", 1)]
    assert await search(storage, "KI") == (0, [])
    assert (await search(storage, "cloud"))[0] == 3
    assert await repo.upsert_many([]) == (0, 0, 0)


async def changes(db) -> int:
    return (await db.fetchone("SELECT total_changes()"))[0]


async def assert_index_consistent(storage) -> None:
    """Both search rows of every profile are what `save` would write for it now, and FTS5's
    own check finds its index to hold exactly the words of those rows."""
    db = storage.db
    ids = {r[1]: r[0] for r in await db.fetchall("SELECT id, user_id FROM profiles")}
    expected = {}
    async for p in storage.experts.all_profiles():
        expected[ids[p.user_id]] = _index_row(ids[p.user_id], p, _clean_topics(p.topics))
    full = await db.fetchall("SELECT rowid, * FROM profile_search")
    assert {r[0]: tuple(r) for r in full} == expected
    short = await db.fetchall("SELECT rowid, * FROM profile_search_short")
    assert {r[0]: tuple(r) for r in short} == {k: _short_row(v) for k, v in expected.items()}
    for table in ("profile_search", "profile_search_short"):
        await db.execute(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")


async def test_upsert_many_writes_nothing_for_unchanged_profiles(storage):
    repo = storage.experts
    stored = [profile(ALICE, display_name="Anna", topics=["KI", "OZG"], languages=["de"],
                      bio="Bio", state="Hessen", level="kommune"),
              profile(BOB, display_name="Bert")]
    await repo.upsert_many(stored)
    before = await changes(storage.db)
    later = NOW + timedelta(days=1)
    again = [
        # the same content; a new updated_at, topics as a member might type them, no consent
        Profile(ALICE, display_name="Anna", topics=["KI", " ki", "OZG ", "--"],
                languages=["de"], bio="Bio", state="Hessen", level="kommune",
                updated_at=later),
        profile(BOB, display_name="Bert"),
    ]
    assert await repo.upsert_many(again) == (0, 0, 2)
    assert await changes(storage.db) == before  # not a single row written
    alice = await repo.get(ALICE)
    assert (alice.topics, alice.updated_at, alice.consent_at) == (["KI", "OZG"], NOW, NOW)


@pytest.mark.parametrize("change", [
    {"display_name": "Anna B"}, {"organisation": "Stadt Ulm"}, {"level": "land"},
    {"municipality": "Ulm"}, {"state": "Bayern"}, {"role": "CDO"}, {"bio": "Neu"},
    {"languages": ["de", "en"]}, {"languages": []}, {"topics": ["OZG", "KI"]},
    {"topics": ["KI"]}, {"topics": ["Ki", "OZG"]}, {"consent_at": NOW + timedelta(seconds=1)},
    {"display_name": None},
])
async def test_upsert_many_updates_a_profile_if_any_field_changes(storage, change):
    repo = storage.experts
    fields = dict(display_name="Anna", organisation="Stadt Köln", level="kommune",
                  municipality="Köln", state="Hessen", role="Leitung", bio="Bio",
                  languages=["de"], topics=["KI", "OZG"])
    await repo.upsert_many([profile(ALICE, **fields)])
    later = NOW + timedelta(days=1)
    assert await repo.upsert_many([Profile(ALICE, **{**fields, "consent_at": NOW, **change},
                                           updated_at=later)]) == (0, 1, 0)
    found = await repo.get(ALICE)
    for name, value in change.items():
        assert getattr(found, name) == value
    assert found.updated_at == later
    await assert_index_consistent(storage)


async def test_upsert_many_rewrites_only_what_changed_and_search_follows(storage):
    repo = storage.experts
    await repo.upsert_many([
        profile(user(n), display_name=f"Person {n}", topics=["OZG", f"Thema{n:03d}"],
                bio=f"Alt{n:03d} Jugendamt", role="Referent") for n in range(600)])
    changed = [
        profile(user(n), display_name=f"Person {n}", topics=["OZG", f"Thema{n:03d}"],
                bio=f"Alt{n:03d} Jugendamt", role="Referent") for n in range(600)]
    changed[1].bio = "Neu1 Bauamt"  # only the full search row changes
    changed[2].role = "Amtsleiterin"  # both search rows
    changed[3].topics = ["Cloud"]  # topics and both search rows
    changed[4].languages = ["en"]  # no search row
    for n in range(10, 600, 2):  # more than one chunk of deletes
        changed[n].topics = ["OZG", f"Thema{n:03d}", "Cloud"]
    assert await repo.upsert_many(changed) == (0, 4 + 295, 301)
    await assert_index_consistent(storage)
    assert await search(storage, "Neu1 Bauamt") == (1, [user(1)])
    assert await search(storage, "Alt001") == (0, [])
    assert await search(storage, "Alt002") == (1, [user(2)])
    assert await search(storage, "Amtsleiterin") == (1, [user(2)])
    assert (await search(storage, "Thema003"))[0] == 0
    assert (await search(storage, "Cloud"))[0] == COUNT_LIMIT + 1
    assert (await search(storage, "Thema010 Cloud")) == (1, [user(10)])
    assert (await repo.get(user(4))).languages == ["en"]
    counts = {t.topic: t.profiles for t in await repo.top_topics(3)}
    assert counts == {"OZG": 599, "Cloud": 296, "Thema000": 1}
    kept = await storage.db.fetchall("SELECT topic_key, profiles FROM topic_counts")
    actual = await storage.db.fetchall(
        "SELECT topic_key, count(*) FROM profile_topics GROUP BY topic_key")
    assert sorted(map(tuple, kept)) == sorted(map(tuple, actual))  # "thema003" is gone


async def test_upsert_many_keeps_topic_counts_in_step(storage):
    repo = storage.experts
    await repo.save(profile(ALICE, topics=["Cloud"]))
    await repo.upsert_many([profile(BOB, topics=["ki", "Cloud"]), profile(BOSS, topics=["KI"])])
    counts = [(t.topic, t.profiles) for t in await repo.top_topics()]
    assert counts == [("Cloud", 2), ("KI", 2)]  # a new topic: its first spelling in sort order
    await repo.upsert_many([profile(BOB, topics=["OZG"]), profile(BOSS, topics=["KI"])])
    counts = [(t.topic, t.profiles) for t in await repo.top_topics()]
    assert counts == [("Cloud", 1), ("KI", 1), ("OZG", 1)]
    await repo.upsert_many([profile(BOSS, topics=[])])
    assert [t.topic for t in await repo.top_topics()] == ["Cloud", "OZG"]


async def test_get_many(storage):
    repo = storage.experts
    await repo.upsert_many([profile(user(n), topics=[f"T{n}", "KI"], languages=["de"])
                            for n in range(700)])
    found = await repo.get_many([user(n) for n in range(0, 1400, 2)] + [user(4)])
    assert sorted(found) == [user(n) for n in range(0, 700, 2)]
    assert found[user(4)] == await repo.get(user(4))
    assert (found[user(4)].topics, found[user(4)].languages) == (["T4", "KI"], ["de"])
    assert await repo.get_many([]) == {}
    assert await repo.user_ids() == {user(n) for n in range(700)}


async def test_all_profiles_in_user_id_order(storage):
    await storage.experts.upsert_many([profile(user(n), topics=[f"T{n}"]) for n in (5, 1, 3, 2)])
    found = [p async for p in storage.experts.all_profiles(batch=3)]
    assert [p.user_id for p in found] == [user(1), user(2), user(3), user(5)]
    assert [p.topics for p in found] == [["T1"], ["T2"], ["T3"], ["T5"]]


async def test_topic_counts_follow_every_change(storage):
    repo = storage.experts
    await repo.save(profile(ALICE, topics=["KI", "OZG"]))
    await repo.save(profile(BOB, topics=["ki", "Cloud"]))
    await repo.save(profile(BOSS, topics=["KI"]))
    assert [(t.topic, t.profiles) for t in await repo.top_topics(2)] == [("KI", 3), ("Cloud", 1)]
    await storage.member_data.delete(BOB, NOW)
    await repo.save(profile(BOSS, topics=["OZG"]))
    assert [(t.topic, t.profiles) for t in await repo.top_topics()] == [("OZG", 2), ("KI", 1)]
    # Cloud is gone with its last profile: no row with a count of 0 stays behind.
    rows = await storage.db.fetchall("SELECT label FROM topic_counts ORDER BY topic_key")
    assert [r[0] for r in rows] == ["KI", "OZG"]


# -- consent ------------------------------------------------------------------------------------


async def test_nothing_is_stored_before_consent(services, storage):
    for body in ("!profil setzen bundesland Hessen", "!profil themen hinzufügen KI",
                 "!profile set name Anna"):
        text = await say(services, body)
        assert "!profil zustimmen" in text or "!profile consent" in text
    assert (await say(services, "!profil")).startswith("Du hast noch kein Profil")
    for name in ("profiles", "profile_topics", "topic_counts", "profile_removals",
                 "profile_search", "profile_search_short"):
        assert await storage.db.fetchall(f"SELECT * FROM {name}") == [], name


async def test_consent_is_recorded_once(services, storage):
    text = await say(services, "!profil zustimmen")
    assert "01.05.2024, 12:00 Uhr" in text
    assert (await storage.experts.get(ALICE)).consent_at == NOW
    services.clock.now = lambda: NOW + timedelta(days=3)
    text = await say(services, "!profile consent", language="en")
    assert "already" in text and "2024-05-01 12:00" in text
    assert (await storage.experts.get(ALICE)).consent_at == NOW
    assert "Gespeichert" in await say(services, "!profil setzen bundesland Hessen")
    assert (await storage.experts.get(ALICE)).updated_at == NOW + timedelta(days=3)


async def test_consent_again_after_delete(services, storage):
    await say(services, "!profil zustimmen")
    await say(services, "!profil löschen")
    assert "zustimmen" in await say(services, "!profil setzen name Anna")
    assert await storage.experts.get(ALICE) is None


# -- !profile set and topics ---------------------------------------------------------------------


@pytest.fixture
async def consented(services):
    await say(services, "!profil zustimmen")
    return services


@pytest.mark.parametrize(("body", "field", "value"), [
    ("!profil setzen bundesland nrw", "state", "Nordrhein-Westfalen"),
    ("!profil setzen Bundesland BW", "state", "Baden-Württemberg"),
    ("!profil setzen bundesland by", "state", "Bayern"),
    ("!profil setzen bundesland thueringen", "state", "Thüringen"),
    ("!profile set state Hesse", "state", "Hessen"),
    ("!profil setzen ebene Kommune", "level", "kommune"),
    ("!profil setzen ebene bundesebene", "level", "bund"),
    ("!profile set level federal", "level", "bund"),
    ("!profil setzen ebene sonstige", "level", "other"),
    ("!profil setzen name  Anna   Müller ", "display_name", "Anna Müller"),
    ("!profil setzen organisation Stadt Wiesbaden", "organisation", "Stadt Wiesbaden"),
    ("!profil setzen kommune Wiesbaden", "municipality", "Wiesbaden"),
    ("!profil setzen rolle CDO", "role", "CDO"),
    ("!profil setzen bio Ich mag **Markdown** <b>nicht</b>.", "bio",
     "Ich mag **Markdown** <b>nicht</b>."),
    ("!profil setzen sprachen Deutsch, Englisch; Leichte Sprache", "languages",
     ["Deutsch", "Englisch", "Leichte Sprache"]),
    ("!profil setzen themen KI, OZG", "topics", ["KI", "OZG"]),
])
async def test_set_fields(consented, storage, body, field, value):
    text = await say(consented, body)
    assert text.startswith(("Gespeichert", "Saved")), text
    assert getattr(await storage.experts.get(ALICE), field) == value


async def test_clearing_a_field(consented, storage):
    await say(consented, "!profil setzen rolle CDO")
    assert "leer" in await say(consented, "!profil setzen rolle -")
    assert (await storage.experts.get(ALICE)).role is None


@pytest.mark.parametrize(("body", "expected"), [
    ("!profil setzen bundesland Atlantis", "„Atlantis“ ist kein Bundesland"),
    ("!profil setzen bundesland Bund", "kein Bundesland"),
    ("!profil setzen ebene Galaxis", "keine Verwaltungsebene"),
    ("!profil setzen name " + "x" * 81, "höchstens 80 Zeichen lang sein; deine Eingabe hat 81"),
    ("!profil setzen bio " + "x" * 501, "höchstens 500 Zeichen"),
    ("!profil setzen hobby Segeln", "Das Feld „hobby“ kenne ich nicht"),
    ("!profil setzen", "Welches Feld"),
    ("!profil setzen rolle", "Bitte gib einen Wert"),
    ("!profil setzen themen " + ", ".join(f"T{n}" for n in range(21)), "höchstens 20"),
    ("!profil setzen themen " + "y" * 61, "höchstens 60 Zeichen"),
    ("!profile set state Atlantis", "is not a German state"),
    ("!profil zaubern", "zaubern kenne ich bei !profil nicht. Was geht, zeigt !hilfe profil."),
    ("!profil export jetzt", "So funktioniert der Befehl"),
])
async def test_set_validation(consented, storage, body, expected):
    before = await storage.experts.get(ALICE)
    language = "en" if body.startswith("!profile ") else "de"
    assert expected in await say(consented, body, language=language)
    assert await storage.experts.get(ALICE) == before


async def test_bio_limit_comes_from_the_config(consented, storage):
    consented.configs["experts"] = ExpertConfig(synonyms=[], bio_max_length=20)
    assert "höchstens 20 Zeichen" in await say(consented, "!profil setzen bio " + "x" * 21)
    assert "Gespeichert" in await say(consented, "!profil setzen bio " + "x" * 20)


async def test_topics_add_and_remove(consented, storage):
    assert "KI, OZG" in await say(consented, "!profil themen hinzufügen KI, OZG")
    assert "Keine Änderung" in await say(consented, "!profil themen hinzufuegen ki")
    assert "KI, OZG, Cloud" in await say(consented, "!profil themen add Cloud")
    assert "KI, Cloud" in await say(consented, "!profil themen entfernen ozg")
    assert "„Blockchain“ steht nicht" in await say(consented,
                                                   "!profil themen entfernen Blockchain")
    assert "Hinzufügen" in await say(consented, "!profil themen")
    assert "Hinzufügen" in await say(consented, "!profil themen hinzufügen")
    assert (await storage.experts.get(ALICE)).topics == ["KI", "Cloud"]
    assert "höchstens 20" in await say(
        consented, "!profil themen hinzufügen " + ", ".join(f"T{n}" for n in range(19)))


async def test_show_profile(consented):
    await say(consented, "!profil setzen name Anna *Müller*")
    await say(consented, "!profil themen hinzufügen KI")
    replies = await ask(consented, "!profil")
    text = replies[0].text
    assert "Name: Anna *Müller*" in text.plain
    assert "Themen: KI" in text.plain
    assert "Zugestimmt am 01.05.2024, 12:00 Uhr" in text.plain
    html = to_html(text.markdown)
    assert "<em>" not in html and "<li>Name: Anna *Müller*</li>" in html


async def test_help_describes_each_profile_subcommand(services):
    text = await say(services, "!hilfe profil löschen")
    assert "!profil löschen" in text and "Löscht alles" in text
    text = await say(services, "!help profile topics", language="en")
    assert "!profile topics [add|remove] [topics]" in text
    assert "!profile topics add AI, OZG" in text
    listing = await say(services, "!hilfe profil")
    for word in ("zustimmen", "setzen", "themen", "export", "löschen"):
        assert f"!profil {word}" in listing, word


@pytest.mark.parametrize(("body", "language", "expected"), [
    ("!profil löshcen", "de", "Meintest du !profil löschen?"),
    ("!profil zustimen", "de", "Meintest du !profil zustimmen?"),
    ("!profile delte", "en", "Did you mean !profile delete"),
])
async def test_a_mistyped_profile_subcommand_gets_a_suggestion(services, storage, body,
                                                               language, expected):
    assert expected in await say(services, body, language=language)
    assert await storage.experts.get(ALICE) is None


def test_profile_levels_are_declared_on_the_subcommands():
    registry = Registry([core.router, experts.router])
    levels = {sub.name: sub.required_level for sub in registry.find("profil").subcommands}
    assert levels == {"show": Level.MEMBER, "consent": Level.MEMBER, "set": Level.MEMBER,
                      "topics": Level.MEMBER, "export": Level.MEMBER, "delete": Level.MEMBER,
                      "remove": Level.ADMIN}


async def test_every_profile_subcommand_but_remove_is_for_members(services, storage):
    for body in ("!profil anzeigen", "!profil zustimmen", "!profil setzen rolle CDO",
                 "!profil themen hinzufügen KI", "!profil export", "!profil löschen"):
        for reply in await ask(services, body):
            assert "dürfen nur" not in reply.text.plain, body
    text = await say(services, f"!profil entfernen {BOB}", level=Level.NETWORK_MODERATOR)
    assert "!profil entfernen" in text and "Bot-Administration" in text


# -- delete, export, admin removal ----------------------------------------------------------------

MARKER = "Zqxwvyt"


async def fill(services, sender):
    await say(services, "!profil zustimmen", sender=sender)
    for body in (f"!profil setzen name {MARKER} {sender[1:4]}",
                 f"!profil setzen organisation {MARKER}amt",
                 f"!profil setzen bio Mein Geheimnis: {MARKER}bio",
                 "!profil setzen bundesland Hessen", "!profil setzen ebene kommune",
                 f"!profil themen hinzufügen {MARKER}thema {sender[1:4]}, KI"):
        await say(services, body, sender=sender)


async def test_delete_leaves_no_row_anywhere(services, storage):
    await fill(services, ALICE)
    await fill(services, BOB)
    needles = (ALICE, f"{MARKER} ali".casefold(), "ali")
    before = await rows_mentioning(storage.db, *needles)
    # The scan sees the profile in every kind of table, the search indexes' shadow tables too.
    assert {"profiles", "profile_topics", "profile_search_content",
            "profile_search_short_content"} <= set(before)

    assert "gelöscht" in await say(services, "!profil löschen")

    assert await rows_mentioning(storage.db, *needles) == {}
    for table in ("profile_search", "profile_search_short"):
        await storage.db.execute(
            f"CREATE VIRTUAL TABLE temp.vocab_{table} USING fts5vocab(main, {table}, row)")
        terms = {r[0] for r in await storage.db.fetchall(f"SELECT term FROM vocab_{table}")}
        assert "ali" not in terms and "bob" in terms, table
    assert await storage.experts.get(ALICE) is None
    assert await search(storage, "ali") == (0, [])
    # Bob's profile and the shared topic are still there.
    assert await search(storage, MARKER) == (1, [BOB])
    assert [(t.topic, t.profiles) for t in await storage.experts.top_topics()] == [
        ("KI", 1), (f"{MARKER}thema bob", 1)]
    assert "nichts gespeichert" in await say(services, "!profil löschen")


async def test_export_sends_every_field_as_json_in_a_direct_message(consented, storage):
    await say(consented, "!profil setzen name Anna Müller")
    await say(consented, "!profil setzen sprachen Deutsch, Englisch")
    await say(consented, "!profil themen hinzufügen KI, OZG")
    direct, room = await ask(consented, "!profil export")
    assert direct.direct and not room.direct and room.attachment is None
    assert "Direktnachricht" in room.text.plain
    attachment = direct.attachment
    assert (attachment.filename, attachment.mimetype) == ("nextbot-profil.json",
                                                          "application/json")
    data = json.loads(attachment.data)
    assert data["user_id"] == ALICE
    assert data["profile"] == {
        "user_id": ALICE, "display_name": "Anna Müller", "organisation": None, "level": None,
        "municipality": None, "state": None, "topics": ["KI", "OZG"], "role": None, "bio": None,
        "languages": ["Deutsch", "Englisch"], "consent_at": "2024-05-01T12:00:00+00:00",
        "updated_at": "2024-05-01T12:00:00+00:00",
    }
    assert set(data["profile"]) == set(Profile.__dataclass_fields__)
    assert data["removals_by_admins"] == []


async def test_export_without_a_profile(services):
    assert "nichts gespeichert" in await say(services, "!profil export")


async def test_admin_removal_is_logged_without_content(services, storage):
    await fill(services, BOB)
    text = await say(services, f"!profil entfernen {BOB}")  # Alice is no admin
    assert "Bot-Administration" in text
    assert await storage.experts.get(BOB) is not None

    text = await say(services, f"!profil entfernen {BOB}", sender=BOSS, level=Level.ADMIN)
    assert "ist entfernt" in text
    assert await storage.experts.get(BOB) is None
    [removal] = await storage.experts.removals()
    assert (removal.user_id, removal.removed_by, removal.removed_at) == (BOB, BOSS, NOW)
    columns = [r[1] for r in await storage.db.fetchall("PRAGMA table_info(profile_removals)")]
    assert columns == ["id", "user_id", "removed_by", "removed_at"]
    assert await rows_mentioning(storage.db, MARKER, MARKER.casefold()) == {}

    text = await say(services, f"!profil entfernen {BOB}", sender=BOSS, level=Level.ADMIN)
    assert "nichts gespeichert" in text
    assert len(await storage.experts.removals()) == 1
    text = await say(services, "!profil entfernen bob", sender=BOSS, level=Level.ADMIN)
    assert "Matrix-ID" in text

    # The removed member still gets what is stored about them, and can delete it.
    direct, _ = await ask(services, "!profil export", sender=BOB)
    data = json.loads(direct.attachment.data)
    assert data["profile"] is None
    assert data["removals_by_admins"] == [{"removed_at": "2024-05-01T12:00:00+00:00"}]
    assert "gelöscht" in await say(services, "!profil löschen", sender=BOB)
    assert await storage.experts.removals() == []


# -- !experts -----------------------------------------------------------------------------------


async def test_search_answer_links_without_markup_injection(services, storage):
    await storage.experts.save(profile(ALICE, display_name="Anna [x](javascript:y) *M*",
                                       organisation="Stadt Wiesbaden", state="Hessen",
                                       topics=["Digitalisierung", "OZG"]))
    [reply] = await ask(services, "!experten digital")
    plain = reply.text.plain
    assert plain.startswith("Ein Treffer für digital")
    assert "Stadt Wiesbaden · Hessen · Themen: Digitalisierung" in plain
    assert "OZG" not in plain  # only the topics that matched
    html = to_html(reply.text.markdown)
    links = re.findall(r'<a href="([^"]*)">(.*?)</a>', html)
    assert links == [("https://matrix.to/#/@alice:example.org",
                      "Anna [x](javascript:y) *M*")]
    assert "<em>" not in html and "javascript:y\"" not in html


async def test_search_pages(services, storage):
    await storage.experts.upsert_many([profile(user(n), display_name=f"Person {n}",
                                               topics=["OZG"]) for n in range(12)])
    first = await say(services, "!experten OZG")
    assert first.startswith("12 Treffer für OZG – hier 1 bis 5")
    assert "Seite 1 von 3. Weiter mit !experten OZG --seite 2" in first
    third = await say(services, "!experten OZG --seite 3")
    assert "hier 11 bis 12" in third and "Weiter" not in third
    assert await say(services, "!experts OZG --page=2", language="en") != first
    assert "Seite 4 gibt es nicht" in await say(services, "!experten OZG --page 4")
    numbers = [re.findall(r"Person (\d+)", await say(services, f"!experten OZG --seite {p}"))
               for p in (1, 2, 3)]
    assert sorted(int(n) for page in numbers for n in page) == list(range(12))


async def test_search_with_more_hits_than_counted(services, storage):
    await storage.experts.upsert_many([profile(user(n), topics=["OZG"])
                                       for n in range(COUNT_LIMIT + 1)])
    text = await say(services, "!experten OZG")
    assert text.startswith(f"Mehr als {COUNT_LIMIT} Treffer")
    assert "Weiter mit !experten OZG --seite 2" in text
    assert "keine Treffer mehr" in await say(services, "!experten OZG --seite 999")


async def test_no_hits_suggest_close_topics(services, storage):
    await storage.experts.save(profile(ALICE, topics=["Digitalisierung", "Datenschutz"]))
    await storage.experts.save(profile(BOB, topics=["Registermodernisierung"]))
    text = await say(services, "!experten Digitalisirung")
    assert text == "Keine Treffer für Digitalisirung. Meintest du !experten Digitalisierung?"
    text = await say(services, "!experten Registermodernisirung state:Bayern")
    assert "!experten Registermodernisierung" in text
    text = await say(services, "!experten Quantenphysik")
    assert "Meintest" not in text and "!themen" in text


@pytest.mark.parametrize("query", [
    '"', "*", "NEAR(", "OR", "AND NOT", "'; DROP TABLE profiles; --", ")", "(", '""', "' OR 1=1",
    "state:", "level:", "org:", 'org:""', "org:***", "state:Hessen level:", "--page",
    "--page 0", "--page -1", "--page abc", "--seite 99999999999", "KI --page", "ebene:mond",
    "bundesland:Mars", 'org:"Stadt Wiesbaden', 'KI "Open', "🙂", "x" * 400,
    " ".join(["wort"] * 20), "topics:KI", "{bio}:KI", "NEAR(KI OZG, 2)", "KI*", "-KI", "^KI",
    "state:Hessen", "level:kommune", "org:Wiesbaden", "\u202e", "ä\u0308", "ǅ",
])
async def test_hostile_or_odd_queries_get_a_clear_answer(services, storage, query, caplog):
    await storage.experts.save(profile(ALICE, topics=["KI"], state="Hessen",
                                       organisation="Stadt Wiesbaden", level="kommune"))
    with caplog.at_level(logging.ERROR):
        text = await say(services, f"!experten {query}")
    assert text.strip()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert await storage.experts.count() == 1


@pytest.mark.parametrize("body", ["!experten", "!experten   ", "!experten ***", "!experten ()"])
async def test_empty_search_explains_itself(services, body):
    text = await say(services, body)
    assert text.startswith("Wonach soll ich suchen?")


async def test_search_with_only_filters(services, storage):
    await storage.experts.save(profile(ALICE, display_name="Anna", state="Hessen",
                                       topics=["KI", "OZG"]))
    text = await say(services, "!experten state:hessen")
    assert "Ein Treffer" in text and "Themen: KI, OZG" in text


def test_parse_query():
    parsed = parse_query('KI "open data" state:NRW org:"Stadt Köln" level:Kommunal --seite 3')
    query = parsed.query
    assert query.terms == ("KI", "open data")
    assert (query.state, query.level, query.organisation) == ("Nordrhein-Westfalen", "kommune",
                                                             "Stadt Köln")
    assert parsed.page == 3
    assert parse_query("OZG --page=2").page == 2
    assert parse_query("thema:KI https://x.org").query.terms == ("thema:KI", "https://x.org")


# -- !topics ------------------------------------------------------------------------------------


async def test_topics_lists_the_most_common(services, storage):
    assert "Noch hat niemand Themen" in await say(services, "!themen")
    await storage.experts.save(profile(ALICE, topics=["KI", "OZG"]))
    await storage.experts.save(profile(BOB, topics=["ki", "Cloud"]))
    await storage.experts.save(profile(BOSS, topics=["KI", "OZG"]))
    text = await say(services, "!themen")
    assert "- KI (3)\n- OZG (2)\n- Cloud (1)" in text
    assert "(Profile im Verzeichnis: 3)" in text
    assert "!experten KI" in text
    assert "Die 3 häufigsten Themen" in text


async def test_one_topic_and_one_hit_are_named_in_the_singular(services, storage):
    await storage.experts.save(profile(ALICE, topics=["KI"]))
    assert "Das häufigste Thema" in await say(services, "!themen")
    assert "The most common topic" in await say(services, "!topics", language="en")
    assert (await say(services, "!experts KI", language="en")).startswith("One hit for KI:")


# -- declaration, catalogs, settings ------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("command", experts.router.commands, ids=lambda c: c.name)
def test_examples_are_valid_calls(command, lang):
    registry = Registry([core.router, experts.router])
    for line in CATALOG.template(lang, f"commands.{command.name}.examples").splitlines():
        name, _, rest = line[1:].partition(" ")
        assert registry.find(name) is command, line
        parse_args(command, rest)
    for arg in command.args:
        assert CATALOG.has(lang, f"args.{arg.name}")
    assert CATALOG.has(lang, "groups.experts")


def test_states_and_levels():
    assert len(STATES) == 16
    for name, code, _ in STATES:
        assert normalize_state(name) == name
        assert normalize_state(code.upper()) == name
        assert normalize_state(fold(name)) == name
    assert normalize_state("Bund") is None
    assert normalize_level("LAND") == "land"
    assert normalize_level("Mars") is None


def test_settings_default_to_the_built_in_synonyms():
    settings = ExpertSettings()
    assert settings.synonyms == [list(g) for g in DEFAULT_SYNONYMS]
    assert settings.bio_max_length == 500
    assert ExpertConfig.default() == ExpertConfig(settings.synonyms, settings.bio_max_length)
    with pytest.raises(ValueError):
        ExpertSettings(synonyms=[["allein"]])


async def test_configured_synonyms_are_used(services, storage):
    await storage.experts.save(profile(ALICE, topics=["Fahrrad"]))
    assert "Keine Treffer" in await say(services, "!experten Velo")
    services.configs["experts"] = ExpertConfig(synonyms=[["Velo", "Fahrrad"]], bio_max_length=500)
    assert "Ein Treffer" in await say(services, "!experten Velo")


async def test_stopwords_inside_a_synonym_are_kept(storage):
    await storage.experts.save(profile(ALICE, topics=["EfA"]))
    assert await search(storage, "Einer für Alle") == (1, [ALICE])
    assert await search(storage, "EfA in der Verwaltung") == (0, [])
    assert await search(storage, "EfA in der") == (1, [ALICE])


async def test_level_filter_finds_the_same_on_the_profile_row_as_in_the_index(storage,
                                                                             monkeypatch):
    # A common level is checked on the profile row, a rare one inside MATCH: the same hits,
    # in the same order, either way.
    from storage import expert_search as module

    levels = ["kommune"] * 9 + ["bund", "land", None]
    await storage.experts.upsert_many([
        profile(user(n), level=levels[n % len(levels)], organisation="Stadt Köln" if n % 3
                else "Landkreis Harz", topics=["OZG", "Cloud"] if n % 4 else ["Cloud"],
                bio="OZG im Alltag" if n % 5 == 0 else None) for n in range(130)
    ])
    queries = ["OZG level:kommune", "OZG level:bund", "cloud level:land",
               'OZG org:"Landkreis Harz" level:kommune', "Cloud level:kommune state:Hessen",
               "Stadt level:kommune"]
    found = {}
    for share in (0.0, 2.0):  # always on the profile row; never
        monkeypatch.setattr(module, "LEVEL_CHECK_SHARE", share)
        storage.expert_search._shares = None
        found[share] = [[await search(storage, q, 5, offset) for offset in (0, 5, 95, 120)]
                        for q in queries]
    assert found[0.0] == found[2.0]
    with_ozg = [n for n in range(130) if n % 4 or n % 5 == 0]
    assert found[0.0][0][0][0] == sum(levels[n % 12] == "kommune" for n in with_ozg)
    assert found[0.0][1][0][0] == 11  # n % 12 == 9: all odd, so all with OZG
    assert await storage.expert_search.search(SearchQuery(("OZG",), level="Mars")) == (0, [])
