"""Fewer hand-offs to SQLite's thread without losing what transactions promise: deferred writes,
BEGIN with the first statement, after-commit callbacks, and the inbox/outbox kept in memory in step
with the database."""

import asyncio

import pytest

from commands.features import open_storage
from storage import Storage
from storage.inbox import InboxMessage
from storage.outbox import OutgoingMessage
from tests.unit.fakes import ALICE, OTHER_ROOM, ROOM


def cmd(event_id: str, room_id: str = ROOM) -> InboxMessage:
    return InboxMessage(event_id, room_id, ALICE, "!ping", 1000)


def out(txn_id: str, room_id: str = ROOM) -> OutgoingMessage:
    return OutgoingMessage(txn_id, room_id, {"msgtype": "m.notice", "body": txn_id})


class Boom(Exception):
    pass


async def handoffs(storage: Storage, work) -> int:
    """How many times `work()` handed something to SQLite's thread."""
    conn = storage.db._conn
    original, count = conn._execute, 0

    async def counting(fn, *args, **kwargs):
        nonlocal count
        count += 1
        return await original(fn, *args, **kwargs)

    conn._execute = counting
    try:
        await work()
    finally:
        conn._execute = original
    return count


async def test_deferred_writes_go_out_with_the_commit_in_one_handoff(storage):
    async def finish():
        async with storage.db.transaction():
            await storage.outbox.add([out("t1")], created_at=1)
            await storage.inbox.mark_handled(cmd("$1"), handled_at=1)

    assert await handoffs(storage, finish) == 1
    assert await storage.inbox.is_handled("$1")
    assert await storage.outbox.count() == 1


async def test_a_transaction_without_statements_sends_nothing(storage):
    async def empty():
        async with storage.db.transaction():
            pass

    assert await handoffs(storage, empty) == 0


async def test_deferred_writes_are_seen_by_later_reads_of_the_same_transaction(storage):
    async with storage.db.transaction():
        await storage.db.execute_later(
            "INSERT INTO handled_events (event_id, room_id, handled_at) VALUES ('$x', ?, 1)",
            (ROOM,))
        assert await storage.inbox.is_handled("$x")


async def test_a_rollback_drops_deferred_writes_and_after_commit_callbacks(storage):
    called = []
    with pytest.raises(Boom):
        async with storage.db.transaction():
            await storage.inbox.add([cmd("$1")], received_at=1)
            await storage.db.execute_later(
                "INSERT INTO handled_events (event_id, room_id, handled_at) VALUES ('$x', ?, 1)",
                (ROOM,))
            storage.db.after_commit(lambda: called.append(True))
            raise Boom
    assert not await storage.inbox.is_handled("$x")
    assert await storage.inbox.count() == 0
    assert called == []
    # and the connection is usable again, outside any transaction
    await storage.db.execute_later(
        "INSERT INTO handled_events (event_id, room_id, handled_at) VALUES ('$y', ?, 1)", (ROOM,))
    assert await storage.inbox.is_handled("$y")


async def test_a_failing_deferred_write_fails_the_transaction(storage):
    with pytest.raises(Exception, match="no such table"):
        async with storage.db.transaction():
            await storage.inbox.add([cmd("$1")], received_at=1)
            await storage.db.execute_later("INSERT INTO no_such_table VALUES (1)")
    assert await storage.inbox.count() == 0


async def test_run_executes_several_statements_atomically(storage):
    def two(conn):
        conn.execute("INSERT INTO handled_events (event_id, room_id, handled_at) "
                     "VALUES ('$a', 'r', 1)")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(Exception, match="no such table"):
        async with storage.db.transaction():
            await storage.db.run(two)
    assert not await storage.inbox.is_handled("$a")


async def test_inbox_is_read_once_per_room_then_kept_in_memory(storage):
    await storage.inbox.add([cmd("$1"), cmd("$2"), cmd("$3", OTHER_ROOM)], received_at=1)
    assert (await storage.inbox.next_for_room(ROOM)).event_id == "$1"

    async def take_and_mark():
        message = await storage.inbox.next_for_room(ROOM)
        assert message.event_id == "$1"
        await storage.inbox.mark_handled(message, handled_at=2)
        assert (await storage.inbox.next_for_room(ROOM)).event_id == "$2"

    assert await handoffs(storage, take_and_mark) == 1  # the mark only; no look-ups
    await storage.inbox.add([cmd("$4")], received_at=3)
    await storage.inbox.mark_handled(cmd("$2"), handled_at=3)
    assert (await storage.inbox.next_for_room(ROOM)).event_id == "$4"
    # what memory says is what the database says
    rows = await storage.db.fetchall("SELECT event_id FROM inbox WHERE room_id = ?", (ROOM,))
    assert [r[0] for r in rows] == ["$4"]
    assert (await storage.inbox.next_for_room(OTHER_ROOM)).event_id == "$3"


async def test_inbox_memory_ignores_duplicates_and_rolled_back_adds(storage):
    assert await storage.inbox.next_for_room(ROOM) is None  # read: empty
    await storage.inbox.add([cmd("$1")], received_at=1)
    assert await storage.inbox.add([cmd("$1")], received_at=1) == 0
    with pytest.raises(Boom):
        async with storage.db.transaction():
            await storage.inbox.add([cmd("$2")], received_at=1)
            raise Boom
    await storage.inbox.mark_handled(cmd("$1"), handled_at=2)
    assert await storage.inbox.next_for_room(ROOM) is None
    assert await storage.inbox.add([cmd("$1")], received_at=3) == 0  # handled already
    assert await storage.inbox.next_for_room(ROOM) is None


async def test_inbox_of_a_room_read_while_a_command_is_added_stays_in_step(storage):
    """The sync loop adding while a lane reads the room for the first time: nothing lost."""
    await storage.inbox.add([cmd("$1")], received_at=1)
    first, _ = await asyncio.gather(storage.inbox.next_for_room(ROOM),
                                    storage.inbox.add([cmd("$2")], received_at=2))
    assert first.event_id == "$1"
    await storage.inbox.mark_handled(first, handled_at=3)
    assert (await storage.inbox.next_for_room(ROOM)).event_id == "$2"


async def test_outbox_is_read_once_per_room_then_kept_in_memory(storage):
    await storage.outbox.add([out("t1"), out("t2"), out("t3", OTHER_ROOM)], created_at=1)
    assert (await storage.outbox.next_for_room(ROOM)).txn_id == "t1"

    async def send_two():
        for expected in ("t1", "t2"):
            message = await storage.outbox.next_for_room(ROOM)
            assert message.txn_id == expected
            await storage.outbox.remove(message.txn_id, ROOM)
        assert await storage.outbox.next_for_room(ROOM) is None

    assert await handoffs(storage, send_two) == 2  # the two deletes; no look-ups
    await storage.outbox.add([out("t4"), out("t4")], created_at=2)  # queued once
    await storage.outbox.remove("t3")  # without its room
    assert [(await storage.outbox.next_for_room(room)) for room in (OTHER_ROOM,)] == [None]
    message = await storage.outbox.next_for_room(ROOM)
    assert (message.txn_id, message.content["body"]) == ("t4", "t4")
    rows = await storage.db.fetchall("SELECT txn_id FROM outbox")
    assert [r[0] for r in rows] == ["t4"]


async def test_a_new_repository_reads_what_the_last_one_left(tmp_path):
    """A restart: memory is gone, the database still has everything."""
    path = tmp_path / "bot.db"
    first = await open_storage(path)
    await first.inbox.add([cmd("$1")], received_at=1)
    assert await first.inbox.next_for_room(ROOM) is not None
    await first.outbox.add([out("t1")], created_at=1)
    await first.close()
    second = await open_storage(path)
    try:
        assert (await second.inbox.next_for_room(ROOM)).event_id == "$1"
        assert (await second.outbox.next_for_room(ROOM)).txn_id == "t1"
    finally:
        await second.close()


async def test_a_sync_batch_is_one_handoff_and_says_which_commands_were_new(logged_in):
    storage = logged_in
    await storage.inbox.add([cmd("$old")], received_at=1)
    added: list[InboxMessage] = []

    async def sync_batch():
        nonlocal added
        async with storage.db.transaction():
            added = await storage.inbox.add_on_commit([cmd("$old"), cmd("$new")], received_at=2)
            assert added == []  # not known before the COMMIT
            await storage.session.set_sync_token("s2")

    assert await handoffs(storage, sync_batch) == 1
    assert [m.event_id for m in added] == ["$new"]
    assert (await storage.session.get()).sync_token == "s2"
    assert await storage.inbox.count() == 2
