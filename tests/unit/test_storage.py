import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from commands.features import open_storage
from storage.inbox import InboxMessage
from storage.outbox import OutboxRepository, OutgoingMessage
from storage.rooms import RoomCursor
from tests.unit.fakes import ALICE, BOT, OTHER_ROOM, ROOM, set_language


def cmd(event_id: str, room_id: str = ROOM, body: str = "!ping") -> InboxMessage:
    return InboxMessage(event_id, room_id, ALICE, body, 1000)


def out(txn_id: str, room_id: str = ROOM, body: str = "x") -> OutgoingMessage:
    return OutgoingMessage(txn_id, room_id, {"msgtype": "m.notice", "body": body})


# -- transactions -------------------------------------------------------------------------------


async def test_a_failing_transaction_leaves_no_rows(storage):
    with pytest.raises(RuntimeError):
        async with storage.db.transaction():
            await storage.inbox.add([cmd("$a")], received_at=1)
            await storage.outbox.add([out("t1")], created_at=1)
            await set_language(storage, ROOM, "en")
            raise RuntimeError("boom")
    assert await storage.inbox.count() == 0
    assert await storage.outbox.count() == 0
    assert await storage.rooms.language(ROOM) is None
    # The connection is usable again afterwards.
    async with storage.db.transaction():
        await storage.outbox.add([out("t2")], created_at=1)
    assert await storage.outbox.count() == 1


async def test_a_failing_statement_rolls_back_the_earlier_ones(storage):
    with pytest.raises(sqlite3.IntegrityError):
        async with storage.db.transaction():
            await storage.outbox.add([out("t1")], created_at=1)
            await storage.db.execute("INSERT INTO room_cursor (room_id) VALUES (?)", (ROOM,))
    assert await storage.outbox.count() == 0


async def test_nested_transactions_join_the_outer_one(storage):
    with pytest.raises(RuntimeError):
        async with storage.db.transaction():
            async with storage.db.transaction():
                await storage.outbox.add([out("t1")], created_at=1)
            raise RuntimeError("after the inner block")
    assert await storage.outbox.count() == 0


async def test_other_tasks_never_see_an_open_transaction(storage):
    inside, proceed = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with storage.db.transaction():
            await storage.outbox.add([out("t1")], created_at=1)
            inside.set()
            await proceed.wait()
            raise RuntimeError("abort")

    writing = asyncio.create_task(writer())
    await inside.wait()
    reading = asyncio.create_task(storage.outbox.count())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not reading.done()  # waits for the writer's transaction to end
    proceed.set()
    with pytest.raises(RuntimeError):
        await writing
    assert await reading == 0


# -- inbox --------------------------------------------------------------------------------------


async def test_inbox_ignores_events_already_queued(storage):
    assert await storage.inbox.add([cmd("$a"), cmd("$b")], received_at=1) == 2
    assert await storage.inbox.add([cmd("$a"), cmd("$c")], received_at=2) == 1
    assert await storage.inbox.count() == 3


async def test_inbox_ignores_events_already_handled(storage):
    await storage.inbox.add([cmd("$a")], received_at=1)
    message = await storage.inbox.next_for_room(ROOM)
    await storage.inbox.mark_handled(message, handled_at=5)
    assert await storage.inbox.is_handled("$a")
    assert await storage.inbox.count() == 0
    assert await storage.inbox.add([cmd("$a")], received_at=6) == 0
    assert await storage.inbox.next_for_room(ROOM) is None


async def test_inbox_order_per_room_and_rooms_by_oldest_command(storage):
    await storage.inbox.add([cmd("$1", OTHER_ROOM), cmd("$2"), cmd("$3", OTHER_ROOM)], 1)
    await storage.inbox.add([cmd("$4")], 2)
    assert await storage.inbox.pending_rooms() == [OTHER_ROOM, ROOM]
    seen = []
    while (m := await storage.inbox.next_for_room(OTHER_ROOM)) is not None:
        seen.append(m.event_id)
        await storage.inbox.mark_handled(m, 3)
    assert seen == ["$1", "$3"]
    first = await storage.inbox.next_for_room(ROOM)
    assert (first.event_id, first.sender, first.body, first.origin_ts) == ("$2", ALICE,
                                                                           "!ping", 1000)


async def test_old_handled_records_can_be_forgotten(storage):
    await storage.inbox.mark_handled(cmd("$old"), handled_at=10)
    await storage.inbox.mark_handled(cmd("$new"), handled_at=20)
    assert await storage.inbox.forget_handled_before(15) == 1
    assert not await storage.inbox.is_handled("$old")
    assert await storage.inbox.is_handled("$new")


async def test_mark_handled_and_outbox_add_share_one_transaction(storage):
    await storage.inbox.add([cmd("$a")], received_at=1)
    message = await storage.inbox.next_for_room(ROOM)
    with pytest.raises(RuntimeError):
        async with storage.db.transaction():
            await storage.outbox.add([out("reply-a")], created_at=2)
            await storage.inbox.mark_handled(message, handled_at=2)
            raise RuntimeError("crash before commit")
    assert await storage.outbox.count() == 0
    assert not await storage.inbox.is_handled("$a")
    assert await storage.inbox.next_for_room(ROOM) == message

    async with storage.db.transaction():
        await storage.outbox.add([out("reply-a")], created_at=2)
        await storage.inbox.mark_handled(message, handled_at=2)
    assert await storage.outbox.count() == 1
    assert await storage.inbox.is_handled("$a")
    assert await storage.inbox.count() == 0


def test_inbox_message_repr_hides_the_body():
    assert "geheim" not in repr(cmd("$a", body="!ping geheim"))


# -- outbox -------------------------------------------------------------------------------------


async def test_a_sent_message_is_recorded_by_the_feature_of_its_kind(storage):
    seen = []

    async def record(db, key, message, event_id):
        seen.append((key, message.txn_id, event_id, db is storage.db))
        return [out("follows")]

    outbox = OutboxRepository(storage.db, {"thing": record})
    await outbox.add([out("t1"), OutgoingMessage("t2", ROOM, {}, record_as=("thing", "7")),
                              OutgoingMessage("t3", ROOM, {}, record_as=("retired", "1"))],
                             created_at=1)
    for event_id in ("$1", "$2", "$3"):
        await outbox.sent(await outbox.next_for_room(ROOM), event_id, 2)
    # Recorded once, with what it queued; a kind no feature declares any longer is just sent.
    assert seen == [("7", "t2", "$2", True)]
    assert (await outbox.next_for_room(ROOM)).txn_id == "follows"
    assert await outbox.count() == 1


async def test_outbox_keeps_order_per_room(storage):
    await storage.outbox.add([out("a1"), out("b1", OTHER_ROOM), out("a2")], created_at=1)
    await storage.outbox.add([out("a3")], created_at=2)
    assert await storage.outbox.pending_rooms() == [ROOM, OTHER_ROOM]
    sent = []
    while (m := await storage.outbox.next_for_room(ROOM)) is not None:
        sent.append(m.txn_id)
        await storage.outbox.remove(m.txn_id)
    assert sent == ["a1", "a2", "a3"]
    assert await storage.outbox.pending_rooms() == [OTHER_ROOM]


async def test_outbox_does_not_queue_a_txn_id_twice_and_keeps_content(storage):
    content = {"msgtype": "m.notice", "body": "Grüße „zurück“ 🎉", "m.mentions": {}}
    await storage.outbox.add([OutgoingMessage("t1", ROOM, content)], created_at=1)
    await storage.outbox.add([OutgoingMessage("t1", ROOM, {"body": "other"})], created_at=2)
    assert await storage.outbox.count() == 1
    message = await storage.outbox.next_for_room(ROOM)
    assert message.content == content
    assert message.event_type == "m.room.message"
    assert "Grüße" not in repr(message)


# -- session ------------------------------------------------------------------------------------


async def test_session_save_and_restore_across_restarts(tmp_path):
    path = tmp_path / "bot.db"
    store = await open_storage(path)
    assert await store.session.get() is None
    await store.session.save_login(BOT, "DEV1", "tok-1")
    await store.session.set_sync_token("s1")
    await store.session.set_first_synced_at(1000)
    await store.session.set_first_synced_at(2000)  # the first one stays
    await store.close()

    store = await open_storage(path)
    try:
        session = await store.session.get()
        assert (session.user_id, session.device_id, session.access_token) == (BOT, "DEV1",
                                                                              "tok-1")
        assert (session.sync_token, session.first_synced_at) == ("s1", 1000)
        assert "tok-1" not in repr(session)
    finally:
        await store.close()


# -- who may read the database's files -----------------------------------------------------------


@pytest.fixture
def permissive_umask():
    """Files made now are readable (and writable) by everyone unless the bot says otherwise."""
    before = os.umask(0o000)
    yield
    os.umask(before)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def database_files(path: Path) -> list[Path]:
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm")]


async def test_the_database_is_made_owner_only_whatever_the_umask(tmp_path, permissive_umask):
    path = tmp_path / "data" / "bot.db"
    store = await open_storage(path)
    try:
        await store.session.save_login(BOT, "DEV1", "tok-1")  # the access token
        assert [mode(file) for file in database_files(path)] == [0o600] * 3
        assert mode(path.parent) == 0o700
    finally:
        await store.close()


async def test_an_existing_database_readable_by_others_is_tightened(tmp_path):
    path = tmp_path / "bot.db"
    first = await open_storage(path)
    try:
        await first.session.save_login(BOT, "DEV1", "tok-1")  # keeps -wal and -shm open
        for file in database_files(path):
            file.chmod(0o644)  # as an earlier version left them
        second = await open_storage(path)
        await second.close()
        assert [mode(file) for file in database_files(path)] == [0o600] * 3
    finally:
        await first.close()


async def test_new_login_of_the_same_account_keeps_the_sync_history(storage):
    await storage.session.save_login(BOT, "DEV1", "tok-1")
    await storage.session.set_sync_token("s1")
    await storage.session.set_first_synced_at(1000)
    await storage.session.save_login(BOT, "DEV2", "tok-2")
    session = await storage.session.get()
    assert (session.device_id, session.access_token) == ("DEV2", "tok-2")
    assert (session.sync_token, session.first_synced_at) == ("s1", 1000)


async def test_login_of_another_account_starts_a_new_sync_history(storage):
    await storage.session.save_login(BOT, "DEV1", "tok-1")
    await storage.session.set_sync_token("s1")
    await storage.session.set_first_synced_at(1000)
    await storage.session.save_login("@other:example.org", "DEV9", "tok-9")
    session = await storage.session.get()
    assert session.user_id == "@other:example.org"
    assert (session.sync_token, session.first_synced_at) == (None, None)


# -- rooms --------------------------------------------------------------------------------------


async def test_room_language(storage):
    assert await storage.rooms.language(ROOM) is None
    await set_language(storage, ROOM, "en")
    await set_language(storage, OTHER_ROOM, "de")
    await set_language(storage, ROOM, "de")
    await set_language(storage, ROOM, "en")
    assert await storage.rooms.language(ROOM) == "en"
    assert await storage.rooms.language(OTHER_ROOM) == "de"


async def test_room_cursor(storage):
    assert await storage.rooms.cursor(ROOM) is None
    await storage.rooms.set_cursor(RoomCursor(ROOM, "$1", 10))
    await storage.rooms.set_cursor(RoomCursor(ROOM, "$2", 20))
    assert await storage.rooms.cursor(ROOM) == RoomCursor(ROOM, "$2", 20)
