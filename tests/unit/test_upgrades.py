"""Upgraded rooms: the sync loop records tombstones, the task carries a room's data over once."""

from __future__ import annotations

import functools

import pytest

from bot.matrix.connection import RoomEvent
from bot.matrix.room_admin import relink_space
from bot.pipeline.syncer import Syncer, SyncListener
from bot.pipeline.upgrades import RoomUpgrades, configured_rooms, tombstone_of
from commands.room_settings import RoomDefaults
from storage import Storage
from storage.communities import Community
from storage.upgrades import RoomUpgrade
from tests.unit.fakes import ALICE, BOB, BOT, ROOM, FakeSyncSource, batch, make_services, timeline
from tests.unit.test_communities import FakeRoomAdmin

NEW = "!successor:example.org"
SPACE = "!space:example.org"
T0 = 1_700_000_000_000


def tombstone(event_id: str = "$tomb", *, room_id: str = ROOM, replacement: object = NEW,
              state_key: str | None = "", sender: str = ALICE) -> RoomEvent:
    return RoomEvent(event_id, room_id, sender, "m.room.tombstone", T0 + 1,
                     {"body": "upgraded", "replacement_room": replacement}, state_key=state_key)


class FakeConnection:
    def __init__(self, predecessor: str | None = ROOM, joinable: bool = True) -> None:
        self.predecessor = predecessor
        self.joinable = joinable
        self.joined: list[str] = []

    async def join(self, room_id: str) -> bool:
        if self.joinable:
            self.joined.append(room_id)
        return self.joinable

    async def state_events(self, room_id: str) -> list[dict]:
        content = {"room_version": "12"}
        if self.predecessor is not None:
            content["predecessor"] = {"room_id": self.predecessor}
        return [{"type": "m.room.create", "state_key": "", "sender": ALICE, "content": content}]


# -- recording --------------------------------------------------------------------------------


def test_only_a_state_tombstone_with_a_room_id_counts() -> None:
    assert tombstone_of(tombstone(), T0) == RoomUpgrade(ROOM, NEW, "$tomb", T0)
    assert tombstone_of(tombstone(state_key=None), T0) is None  # a message anyone may send
    assert tombstone_of(tombstone(state_key="x"), T0) is None
    for bad in (None, 42, "#alias:example.org", "", ROOM, "!a b:example.org", "!x" * 200):
        assert tombstone_of(tombstone(replacement=bad), T0) is None, bad


async def test_the_sync_loop_records_a_tombstone_once(logged_in: Storage) -> None:
    source = FakeSyncSource([
        batch("s1", timeline([])),
        batch("s2", timeline([tombstone()])),
        batch("s3", timeline([tombstone("$again", replacement="!other:example.org"),
                              tombstone("$hostile", room_id="!else:example.org",
                                        state_key=None)])),
        batch("s4", timeline([], state=[tombstone()])),
    ])
    syncer = Syncer(source, logged_in, SyncListener(), prefix="!", now_ms=lambda: T0)
    for _ in range(4):
        await syncer.sync_once()
    upgrades = logged_in.upgrades
    assert [(u.old_room_id, u.new_room_id, u.event_id) for u in await upgrades.pending()] == [
        (ROOM, NEW, "$tomb")]


# -- carrying over ------------------------------------------------------------------------------


async def room_with_everything(storage: Storage) -> None:
    await storage.rooms.change_setting(ROOM, "language", "en", changed_by=ALICE, changed_at=T0)
    await storage.rooms.change_setting(ROOM, "welcome", "Hi there", changed_by=ALICE,
                                       changed_at=T0 + 1)
    await storage.rooms.change_setting(ROOM, "announcements", "on", changed_by=BOB,
                                       changed_at=T0 + 2)
    await storage.communities.add(Community("ki", "KI", "", "", ROOM, ALICE, T0))
    await storage.communities.set_space(SPACE)
    db = storage.db
    await db.execute(
        "INSERT INTO workshops (title, room_id, starts_at, ends_at, timezone, created_by, "
        "created_at, updated_at) VALUES ('W', ?, ?, ?, 'Europe/Berlin', ?, 0, 0)",
        (ROOM, T0, T0 + 1, ALICE))
    await db.execute("INSERT INTO meet_rounds (date, starts_at, paired_at, participants) "
                     "VALUES ('2024-01-01', 0, 0, 2)")
    await db.execute("INSERT INTO meet_groups (key, round, size, room_id) "
                     "VALUES ('g1', '2024-01-01', 2, ?)", (ROOM,))
    await storage.rooms.set_direct_room(BOB, ROOM)
    await db.execute("INSERT INTO inbox (event_id, room_id, sender, body, origin_ts, "
                     "received_at) VALUES ('$cmd', ?, ?, '!hilfe', 0, 0)", (ROOM, ALICE))


async def rooms_in(storage: Storage, table: str) -> list[str]:
    return [row[0] for row in await storage.db.fetchall(f"SELECT room_id FROM {table}")]


REPLANS: list[str] = []


async def replan() -> None:
    REPLANS.append("all")


def worker(storage: Storage, connection: FakeConnection, *, configured=None,
           meet_rooms=frozenset()) -> tuple[RoomUpgrades, FakeRoomAdmin]:
    REPLANS.clear()
    services = make_services(storage)
    services.configs["room_settings"] = RoomDefaults("de", {"meet_reminders": meet_rooms})
    admin = FakeRoomAdmin()
    admin.children[SPACE] = {ROOM}
    services.room_admin = admin
    # The communities' listener, as `bot/matrix/room_admin.py` sets it up.
    relink = functools.partial(relink_space, services, None)
    return RoomUpgrades(services, connection, user_id=BOT, now_ms=lambda: T0 + 100,
                        configured=configured, replan=replan, listeners=[relink]), admin


async def test_everything_bound_to_the_room_moves_to_its_successor_once(
        storage: Storage, caplog: pytest.LogCaptureFixture) -> None:
    await room_with_everything(storage)
    assert (await storage.rooms.settings(ROOM))["language"] == "en"  # cached now
    upgrades, admin = worker(storage, FakeConnection(), meet_rooms=frozenset({ROOM}),
                             configured={"[meet] rooms": [ROOM]})
    await upgrades.upgrades.record([RoomUpgrade(ROOM, NEW, "$tomb", T0)])

    assert await upgrades.follow_pending() is False

    rooms = storage.rooms
    assert await rooms.settings(NEW) == {"language": "en", "welcome": "Hi there",
                                         "announcements": "on", "meet_reminders": "on"}
    assert await rooms.settings(ROOM) == {}
    history = await rooms.setting_changes(NEW)
    assert [(c.key, c.changed_by) for c in history] == [
        ("meet_reminders", BOT), ("announcements", BOB), ("welcome", ALICE), ("language", ALICE)]
    assert (await storage.communities.get("ki")).room_id == NEW
    assert await storage.communities.by_room(ROOM) is None
    assert admin.children[SPACE] == {NEW}
    assert await rooms_in(storage, "workshops") == [NEW]
    assert await rooms_in(storage, "meet_groups") == [NEW]
    assert await rooms.direct_room(BOB) == NEW
    assert await rooms_in(storage, "inbox") == [ROOM]  # in flight: stays
    assert "replace its id in [meet] rooms" in caplog.text
    assert "Hi there" not in caplog.text
    assert REPLANS == ["all"]  # reminders are planned for the successor at once
    assert await upgrades.upgrades.pending() == []

    # Seen again (a restart, a second tombstone): nothing changes a second time.
    await rooms.change_setting(NEW, "language", "de", changed_by=ALICE, changed_at=T0 + 200)
    assert await upgrades.upgrades.record([RoomUpgrade(ROOM, NEW, "$tomb", T0)]) == 0
    upgrade = await upgrades.upgrades.get(ROOM)
    assert await upgrades.upgrades.carry_over(upgrade, T0 + 300, changed_by=BOT) is None
    assert (await rooms.settings(NEW))["language"] == "de"
    assert len(await rooms.setting_changes(NEW)) == 5


async def test_a_tombstone_naming_a_room_that_is_no_successor_moves_nothing(
        storage: Storage) -> None:
    await room_with_everything(storage)
    connection = FakeConnection(predecessor="!someone-elses:example.org")
    upgrades, admin = worker(storage, connection)
    await upgrades.upgrades.record([RoomUpgrade(ROOM, NEW, "$tomb", T0)])

    await upgrades.follow_pending()

    assert (await storage.rooms.settings(ROOM))["language"] == "en"
    assert await storage.rooms.settings(NEW) == {}
    assert (await storage.communities.get("ki")).room_id == ROOM
    assert admin.children[SPACE] == {ROOM}
    assert await upgrades.upgrades.get(ROOM) is None  # a genuine one may still come


async def test_a_successor_the_bot_cannot_join_yet_is_tried_again(storage: Storage) -> None:
    await room_with_everything(storage)
    connection = FakeConnection(joinable=False)
    upgrades, _ = worker(storage, connection)
    await upgrades.upgrades.record([RoomUpgrade(ROOM, NEW, "$tomb", T0)])

    assert await upgrades.follow_pending() is True  # still waiting
    assert (await storage.communities.get("ki")).room_id == ROOM

    connection.joinable = True  # invited meanwhile
    assert await upgrades.follow_pending() is False
    assert (await storage.communities.get("ki")).room_id == NEW
    assert connection.joined == [NEW]


async def test_an_upgraded_space_lists_every_community(storage: Storage) -> None:
    await storage.communities.add(Community("ki", "KI", "", "", ROOM, ALICE, T0))
    await storage.communities.set_space(SPACE)
    upgrades, admin = worker(storage, FakeConnection(predecessor=SPACE))
    await upgrades.upgrades.record([RoomUpgrade(SPACE, NEW, "$tomb", T0)])

    await upgrades.follow_pending()

    assert await storage.communities.space() == NEW
    assert admin.children[NEW] == {ROOM}


def test_the_rooms_the_configuration_names_are_found_in_any_section(tmp_path):
    from tests.unit.test_features import settings

    path_settings = settings(tmp_path)
    assert configured_rooms(path_settings) == {"[meet] rooms": ["!meet:example.org"],
                                               "[announcements] rooms": ["!news:example.org"]}
