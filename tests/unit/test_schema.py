"""The database in parts (`storage/schema.py`): each part's own steps and version, and the move
of a database from the one shared history (schema versions 1 … 17) to parts."""

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from commands.features import FEATURES, open_storage
from storage import Storage
from storage.core_schema import CORE
from storage.database import Database
from storage.schema import (
    PARTS_VERSION,
    SHARED_HISTORY_END,
    DatabaseTooNewError,
    Migration,
    Schema,
    migrate,
    versions,
)

# What a database of each version of the shared history held: the schema (`sqlite_master`)
# after steps 1 … k, recorded from the bot before the parts; the file holds each statement once
# and, per version, which of them made its schema.
_RECORDED = json.loads((Path(__file__).parent / "data" / "schemas_before_parts.json").read_text())
BEFORE_PARTS = {int(k): [_RECORDED["statements"][i] for i in ids]
                for k, ids in _RECORDED["versions"].items()}

PARTS = [CORE, *(f.schema for f in FEATURES if f.schema is not None)]


async def shape(db: Database) -> dict[str, object]:
    """What a schema is made of, however it came about: each table's columns (name, type,
    not null, default, key) and each index's table, columns and condition."""
    found: dict[str, object] = {}
    for kind, name, table in await db.fetchall(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
        if kind == "table":
            columns = await db.fetchall(f'PRAGMA table_xinfo("{name}")')
            found[name] = sorted((c[1], c[2], c[3], c[4], c[5]) for c in columns)
        elif kind == "index":
            columns = [c[2] for c in await db.fetchall(f'PRAGMA index_xinfo("{name}")')]
            where = (await db.fetchone("SELECT sql FROM sqlite_master WHERE name = ?",
                                       (name,)))[0]
            where = " ".join(where.split(" WHERE ", 1)[1].split()) if " WHERE " in where else ""
            found[name] = (table, columns, where)
    return found


async def shared_history_database(path: Path, version: int) -> None:
    """A database as the bot before the parts left it at `version` of the shared history."""
    conn = sqlite3.connect(path)
    for statement in BEFORE_PARTS[version]:
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


# -- every part, each on its own ----------------------------------------------------------------


async def test_a_new_database_has_every_part_at_its_latest_step(storage):
    assert await versions(storage.db) == {p.name: len(p.migrations) for p in PARTS}
    assert (await storage.db.fetchone("PRAGMA user_version"))[0] == PARTS_VERSION


async def test_migrating_again_changes_nothing(storage):
    before = await shape(storage.db)
    await migrate(storage.db, PARTS)
    assert await versions(storage.db) == {p.name: len(p.migrations) for p in PARTS}
    assert await shape(storage.db) == before


async def test_the_parts_make_the_schema_the_shared_history_made():
    """Split into parts, the seventeen steps still make exactly what they made together."""
    split = await Database.open(":memory:")
    old = await Database.open(":memory:")
    try:
        await migrate(split, [Schema(p.name, tuple(m for m in p.migrations if m.shared_step))
                              for p in PARTS])
        for statement in BEFORE_PARTS[SHARED_HISTORY_END]:
            await old.execute(statement)
        made = await shape(split)
        assert made.pop("schema_versions")
        assert made == await shape(old)
    finally:
        await split.close()
        await old.close()


def part(name: str, *sql: str) -> Schema:
    return Schema(name, tuple(Migration(n, f"step {n}", s) for n, s in enumerate(sql, 1)))


async def test_only_missing_steps_run_each_with_its_part_and_version():
    one = part("one", "CREATE TABLE a (x INTEGER)")
    db = await Database.open(":memory:")
    try:
        await migrate(db, [one])
        assert await versions(db) == {"one": 1}
        await migrate(db, [part("one", "CREATE TABLE a (x INTEGER)",
                                "CREATE TABLE b (y INTEGER); -- a comment\n"
                                "INSERT INTO a VALUES (1)"),
                           part("two", "CREATE TABLE c (z INTEGER)")])
        assert await versions(db) == {"one": 2, "two": 1}
        assert (await db.fetchone("SELECT COUNT(*) FROM a"))[0] == 1
    finally:
        await db.close()


async def test_a_failing_step_is_rolled_back_with_its_version():
    db = await Database.open(":memory:")
    try:
        await migrate(db, [part("one", "CREATE TABLE a (x INTEGER)")])
        broken = part("one", "CREATE TABLE a (x INTEGER)",
                      "CREATE TABLE b (y INTEGER); INSERT INTO nowhere VALUES (1)")
        with pytest.raises(sqlite3.OperationalError):
            await migrate(db, [broken])
        assert await versions(db) == {"one": 1}
        assert await db.fetchone("SELECT 1 FROM sqlite_master WHERE name = 'b'") is None
    finally:
        await db.close()


async def test_a_feature_added_later_gets_its_tables_and_the_others_keep_theirs(tmp_path):
    path = tmp_path / "bot.db"
    first = await Storage.open(path)  # the core alone
    await first.rooms.set_direct_room("@alice:example.org", "!dm:example.org")
    await first.close()
    later = await open_storage(path)
    try:
        assert await versions(later.db) == {p.name: len(p.migrations) for p in PARTS}
        assert await later.rooms.direct_room("@alice:example.org") == "!dm:example.org"
        assert await later.workshops.get(1) is None
    finally:
        await later.close()


async def test_a_part_the_bot_no_longer_has_is_left_as_it_is(tmp_path, caplog):
    caplog.set_level(logging.INFO, "storage.schema")
    path = tmp_path / "bot.db"
    store = await Storage.open(path, [part("retired", "CREATE TABLE kept (x INTEGER)",
                                           "INSERT INTO kept VALUES (7)")])
    await store.close()
    store = await Storage.open(path)
    try:
        assert (await versions(store.db))["retired"] == 2
        assert (await store.db.fetchone("SELECT x FROM kept"))[0] == 7
        assert "retired" in caplog.text
    finally:
        await store.close()


@pytest.mark.parametrize("parts, message", [
    ([Schema("one", (Migration(2, "two", "CREATE TABLE a (x)"),))], "without gaps"),
    ([part("one", "CREATE TABLE a (x)"), part("one", "CREATE TABLE b (x)")], "one name"),
    ([Schema("one", (Migration(1, "new", "CREATE TABLE a (x)"),
                     Migration(2, "old", "CREATE TABLE b (x)", shared_step=3)))],
     "shared history must come first"),
])
async def test_parts_are_declared_as_the_runner_expects(parts, message):
    db = await Database.open(":memory:")
    try:
        with pytest.raises(ValueError, match=message):
            await migrate(db, parts)
    finally:
        await db.close()


# -- a database newer than the bot --------------------------------------------------------------


async def test_a_part_newer_than_the_bot_refuses_to_start(tmp_path):
    path = tmp_path / "data" / "bot.db"
    store = await open_storage(path)
    latest = len(next(p for p in PARTS if p.name == "workshops").migrations)
    await store.db.execute("UPDATE schema_versions SET version = ? WHERE part = 'workshops'",
                           (latest + 6,))
    await store.close()

    with pytest.raises(DatabaseTooNewError) as info:
        await open_storage(path)
    message = str(info.value)
    assert "'workshops'" in message
    assert f"schema version {latest + 6}" in message and f"only knows up to {latest}" in message
    assert "Update the bot" in message and "backup" in message


async def test_a_database_laid_out_after_the_parts_is_refused(storage):
    await storage.db.execute(f"PRAGMA user_version = {PARTS_VERSION + 1}")
    with pytest.raises(DatabaseTooNewError, match=str(PARTS_VERSION + 1)):
        await migrate(storage.db, PARTS)


# -- from the shared history to parts -----------------------------------------------------------


@pytest.mark.parametrize("version", range(1, SHARED_HISTORY_END + 1))
async def test_a_database_from_the_shared_history_moves_to_parts(tmp_path, version):
    """At every version of the shared history: the steps it had made are not made again (they
    would fail: the tables exist), the missing ones are, and the result is a new database."""
    path = tmp_path / "bot.db"
    await shared_history_database(path, version)
    moved = await open_storage(path)
    fresh = await open_storage(":memory:")
    try:
        assert await versions(moved.db) == {p.name: len(p.migrations) for p in PARTS}
        assert (await moved.db.fetchone("PRAGMA user_version"))[0] == PARTS_VERSION
        assert await shape(moved.db) == await shape(fresh.db)
    finally:
        await moved.close()
        await fresh.close()


async def test_the_rows_of_a_shared_history_database_stay(tmp_path):
    path = tmp_path / "bot.db"
    await shared_history_database(path, SHARED_HISTORY_END)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO direct_rooms (user_id, room_id) VALUES ('@a:x', '!dm:x')")
    conn.execute("INSERT INTO workshops (title, starts_at, ends_at, timezone, created_by, "
                 "created_at, updated_at) VALUES ('Werkstatt', 10, 20, 'Europe/Berlin', '@a:x', "
                 "1, 1)")
    conn.commit()
    conn.close()
    store = await open_storage(path)
    try:
        assert await store.rooms.direct_room("@a:x") == "!dm:x"
        assert (await store.workshops.get(1)).title == "Werkstatt"
    finally:
        await store.close()


async def test_messages_queued_before_the_parts_are_recorded_as_before_once_sent(tmp_path):
    """A post of a workshop and a question after a date still in the outbox when the bot was
    updated: their record moved to the core's kind and key, so they are recorded once sent."""
    path = tmp_path / "bot.db"
    await shared_history_database(path, SHARED_HISTORY_END)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO workshops (title, starts_at, ends_at, timezone, created_by, "
                 "created_at, updated_at) VALUES ('Werkstatt', 10, 20, 'Europe/Berlin', '@a:x', "
                 "1, 1)")
    conn.execute("INSERT INTO meet_rounds VALUES ('2026-01-08', 10, 1, 2)")
    conn.execute("INSERT INTO meet_groups (key, round, size) VALUES ('g1', '2026-01-08', 2)")
    conn.execute("INSERT INTO outbox (txn_id, room_id, event_type, content, created_at, "
                 "post_of_workshop) VALUES ('t1', '!r:x', 'm.room.message', '{}', 1, 1)")
    conn.execute("INSERT INTO outbox (txn_id, room_id, event_type, content, created_at, "
                 "follow_up_of_group) VALUES ('t2', '!p:x', 'm.room.message', '{}', 1, 'g1')")
    conn.commit()
    conn.close()
    store = await open_storage(path)
    try:
        post = await store.outbox.next_for_room("!r:x")
        question = await store.outbox.next_for_room("!p:x")
        assert (post.record_as, question.record_as) == (("workshop_post", "1"),
                                                       ("meet_follow_up", "g1"))
        await store.outbox.sent(post, "$post", 2)
        await store.outbox.sent(question, "$question", 2)
        assert await store.workshops.workshop_of_post("$post") == 1
        reactions = [(await store.outbox.next_for_room(room)).content["m.relates_to"]["key"]
                     for room in ("!r:x", "!p:x")]
        assert reactions == ["✅", "👍"]
    finally:
        await store.close()


async def test_a_bot_from_before_the_parts_refuses_the_moved_database(storage):
    """It read `user_version` as its own history's number: 18 is more than its 17 steps."""
    assert (await storage.db.fetchone("PRAGMA user_version"))[0] > SHARED_HISTORY_END


async def test_a_feature_repository_cannot_take_a_core_name():
    with pytest.raises(ValueError, match="cannot be called 'outbox'"):
        await Storage.open(":memory:", [Schema("x", (), repositories={"outbox": lambda db: db})])
    store = await Storage.open(":memory:")
    try:
        with pytest.raises(AttributeError, match="is its feature in the list"):
            store.workshops  # noqa: B018
    finally:
        await store.close()
