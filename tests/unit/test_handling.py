import pytest

from bot.handling import CommandHandler, reply_txn_id
from bot.permissions import Permissions
from storage.inbox import InboxMessage
from tests.unit.fakes import ALICE, BOB, BOSS, OTHER_ROOM, ROOM, make_services, set_language

NOW = 1_700_000_000_000


class Replies:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, room_id: str) -> None:
        self.calls += 1


async def room_state(room_id):
    return ({"users": {BOB: 50}},
            {"type": "m.room.create", "sender": ALICE, "content": {"room_version": "10"}})


@pytest.fixture
def on_reply():
    return Replies()


@pytest.fixture
def handler(storage, on_reply):
    permissions = Permissions(room_state, admins=[BOSS], moderator_level=50)
    return CommandHandler(make_services(storage), permissions, "de", lambda: NOW, on_reply)


def cmd(event_id: str, body: str, sender: str = ALICE, room_id: str = ROOM) -> InboxMessage:
    return InboxMessage(event_id, room_id, sender, body, NOW - 10)


def test_reply_txn_id_is_stable_and_distinct():
    assert reply_txn_id("$a", 0) == reply_txn_id("$a", 0)
    assert reply_txn_id("$a", 0) != reply_txn_id("$a", 1)
    assert reply_txn_id("$a", 0) != reply_txn_id("$b", 0)
    assert reply_txn_id("$a:example.org", 0).startswith("reply-")
    assert "$" not in reply_txn_id("$a/b", 0) and "/" not in reply_txn_id("$a/b", 0)


async def test_a_command_queues_its_reply_and_is_marked_handled(storage, handler, on_reply):
    message = cmd("$ping", "!ping")
    await storage.inbox.add([message], received_at=NOW)
    await handler.handle(await storage.inbox.next_for_room(ROOM))
    reply = await storage.outbox.next_for_room(ROOM)
    assert reply.txn_id == reply_txn_id("$ping", 0)
    assert reply.content["body"] == "Pong! Ich bin da."
    assert reply.content["msgtype"] == "m.notice"
    assert reply.content["m.mentions"] == {}
    assert reply.content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$ping"}}
    assert await storage.outbox.count() == 1
    assert await storage.inbox.count() == 0
    assert await storage.inbox.is_handled("$ping")
    assert on_reply.calls == 1


async def test_a_non_command_queues_nothing_but_is_marked_handled(storage, handler, on_reply):
    await storage.inbox.add([cmd("$chat", "hallo zusammen")], received_at=NOW)
    await handler.handle(await storage.inbox.next_for_room(ROOM))
    assert await storage.outbox.count() == 0
    assert await storage.inbox.is_handled("$chat")
    assert await storage.inbox.count() == 0
    assert on_reply.calls == 0


async def test_reply_and_handled_mark_are_one_transaction(storage, handler, on_reply,
                                                          monkeypatch):
    await storage.inbox.add([cmd("$ping", "!ping")], received_at=NOW)
    message = await storage.inbox.next_for_room(ROOM)

    async def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(storage.inbox, "mark_handled", crash)
    with pytest.raises(RuntimeError):
        await handler.handle(message)
    assert await storage.outbox.count() == 0
    assert await storage.inbox.next_for_room(ROOM) == message
    assert on_reply.calls == 0


async def test_handling_twice_queues_one_reply(storage, handler):
    message = cmd("$ping", "!ping")
    await handler.handle(message)
    await handler.handle(message)
    assert await storage.outbox.count() == 1


async def test_a_long_reply_is_queued_as_pages_under_stable_txn_ids(storage, monkeypatch):
    from commands.framework import Router
    from commands.i18n import Text

    router = Router("core")

    @router.command("ping", "ping")
    async def long_ping(ctx):
        return Text.join(Text.raw(f"Zeile {i} " + "x" * 90) for i in range(1500))

    services = make_services(storage, [router])
    permissions = Permissions(room_state, admins=[], moderator_level=50)
    handler = CommandHandler(services, permissions, "en", lambda: NOW, Replies())
    await handler.handle(cmd("$long", "!ping"))
    txn_ids = []
    while (m := await storage.outbox.next_for_room(ROOM)) is not None:
        txn_ids.append(m.txn_id)
        assert m.content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$long"}}
        await storage.outbox.remove(m.txn_id)
    assert len(txn_ids) > 1
    assert txn_ids == [reply_txn_id("$long", page) for page in range(len(txn_ids))]


async def test_room_language_and_default_language(storage, handler):
    await set_language(storage, OTHER_ROOM, "en")
    await handler.handle(cmd("$de", "!ping"))
    await handler.handle(cmd("$en", "!ping", room_id=OTHER_ROOM))
    assert (await storage.outbox.next_for_room(ROOM)).content["body"] == "Pong! Ich bin da."
    assert (await storage.outbox.next_for_room(OTHER_ROOM)).content["body"] == "Pong! I'm here."


async def test_levels_come_from_the_room_state(storage, handler):
    await handler.handle(cmd("$m", "!sprache en", sender=ALICE))
    assert await storage.rooms.language(ROOM) is None
    await handler.handle(cmd("$b", "!sprache en", sender=BOB))
    assert await storage.rooms.language(ROOM) == "en"
    await handler.handle(cmd("$s", "!status", sender=BOSS))
    bodies = []
    while (m := await storage.outbox.next_for_room(ROOM)) is not None:
        bodies.append(m.content["body"])
        await storage.outbox.remove(m.txn_id)
    assert "Moderation" in bodies[0]
    assert bodies[1].startswith("Got it")
    assert bodies[2].startswith("Status")  # in English now


async def test_drain_room_answers_in_order(storage, handler):
    await storage.inbox.add([cmd("$1", "!ping"), cmd("$2", "kein Befehl"),
                             cmd("$3", "!pong"), cmd("$x", "!ping", room_id=OTHER_ROOM)],
                            received_at=NOW)
    await handler.drain_room(ROOM)
    assert await storage.inbox.pending_rooms() == [OTHER_ROOM]
    first = await storage.outbox.next_for_room(ROOM)
    assert first.txn_id == reply_txn_id("$1", 0)
    await storage.outbox.remove(first.txn_id)
    second = await storage.outbox.next_for_room(ROOM)
    assert second.txn_id == reply_txn_id("$3", 0)
    assert "Meintest du" in second.content["body"]


async def test_an_unreachable_homeserver_keeps_a_moderator_command_queued(storage, on_reply):
    from bot.matrix import TransientError
    from commands.framework import RetryLater

    async def unreachable(room_id):
        raise TransientError("HTTP 502")

    permissions = Permissions(unreachable, admins=[BOSS], moderator_level=50)
    handler = CommandHandler(make_services(storage), permissions, "de", lambda: NOW, on_reply)
    await storage.inbox.add([cmd("$lang", "!sprache en", sender=BOB)], received_at=NOW)
    with pytest.raises(RetryLater):
        await handler.handle(await storage.inbox.next_for_room(ROOM))
    assert await storage.inbox.count() == 1  # still there, answered once the server is back
    assert await storage.outbox.count() == 0
    assert not await storage.inbox.is_handled("$lang")


async def test_file_and_direct_replies_go_to_the_askers_direct_room(storage, on_reply):
    from bot.handling import DirectRooms
    from commands.framework import Attachment, Reply, Router
    from commands.i18n import Text

    router = Router("test")

    @router.command("export", "export")
    async def export(ctx):
        return [Reply(Text.raw("Schau in deine Direktnachrichten.")),
                Reply(Text.raw("Deine Daten"), Attachment("daten.json", "application/json",
                                                          b'{"a": 1}'), direct=True)]

    created: list[str] = []

    async def create(user_id: str) -> str:
        created.append(user_id)
        return "!dm:test"

    direct = DirectRooms(storage.rooms, create)
    permissions = Permissions(room_state, admins=[BOSS], moderator_level=50)
    handler = CommandHandler(make_services(storage, routers=[router]), permissions, "de",
                             lambda: NOW, on_reply, direct_rooms=direct.room_for)
    for event_id in ("$e1", "$e2"):
        await storage.inbox.add([cmd(event_id, "!export")], received_at=NOW)
        await handler.handle(await storage.inbox.next_for_room(ROOM))
    assert created == [ALICE]  # made once, then remembered
    in_room = await storage.outbox.next_for_room(ROOM)
    assert in_room.content["m.relates_to"]["m.in_reply_to"]["event_id"] == "$e1"
    file = await storage.outbox.next_for_room("!dm:test")
    assert file.txn_id == reply_txn_id("$e1", 1)
    assert file.file_data == b'{"a": 1}'
    assert file.content["msgtype"] == "m.file" and file.content["filename"] == "daten.json"
    assert file.content["body"] == "Deine Daten" and file.content["m.mentions"] == {}
    assert "m.relates_to" not in file.content  # no reply relation across rooms


async def test_an_unreadable_message_is_explained_once_a_day_per_person(storage, handler):
    from storage.undecrypted import Undecrypted

    def pending(event_id: str, sender: str) -> Undecrypted:
        return Undecrypted(event_id, ROOM, sender, {"algorithm": "m.megolm.v1.aes-sha2"},
                           NOW - 10, NOW - 10)

    events = [pending("$1", ALICE), pending("$2", ALICE), pending("$3", BOB)]
    await storage.undecrypted.add(events)
    for event in events:
        await handler.explain_undecryptable(event)
    rows = await storage.db.fetchall("SELECT content FROM outbox ORDER BY seq")
    assert len(rows) == 2  # Alice once, Bob once
    import json

    first = json.loads(rows[0][0])
    assert "nicht entschlüsseln" in first["body"]
    assert first["m.relates_to"]["m.in_reply_to"]["event_id"] == "$1"
    assert await storage.undecrypted.all() == []  # nothing left to try
