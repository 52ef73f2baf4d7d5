import dataclasses
import sqlite3

import pytest

from bot.matrix.own_rooms import DirectRooms
from bot.matrix.permissions import Permissions
from bot.pipeline.handling import CommandHandler, reply_txn_id
from bot.pipeline.sender import Sender
from commands import communities, core, workshops
from commands.framework import RetryLater, Router
from commands.i18n import Text
from storage.inbox import InboxMessage
from tests.unit.fakes import (
    ALICE,
    BOB,
    BOSS,
    BOT,
    INTERNAL_ERRORS,
    OTHER_ROOM,
    ROOM,
    FakeHomeserver,
    Sleeps,
    make_services,
    no_jitter_backoff,
    set_language,
)

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
    from bot.matrix.connection import TransientError
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


async def test_file_and_direct_replies_wait_for_the_member_not_for_a_room(storage, on_reply):
    from commands.framework import Attachment, Reply, Router
    from commands.i18n import Text

    router = Router("test")

    @router.command("export", "export")
    async def export(ctx):
        return [Reply(Text.raw("Schau in deine Direktnachrichten.")),
                Reply(Text.raw("Deine Daten"), Attachment("daten.json", "application/json",
                                                          b'{"a": 1}'), direct=True)]

    permissions = Permissions(room_state, admins=[BOSS], moderator_level=50)
    handler = CommandHandler(make_services(storage, routers=[router]), permissions, "de",
                             lambda: NOW, on_reply)
    await storage.inbox.add([cmd("$e1", "!export")], received_at=NOW)
    await handler.handle(await storage.inbox.next_for_room(ROOM))
    in_room = await storage.outbox.next_for_room(ROOM)
    assert in_room.content["m.relates_to"]["m.in_reply_to"]["event_id"] == "$e1"
    # Queued for the member: the sender finds or makes the room (no network call here).
    file = await storage.outbox.next_for_room(ALICE)
    assert file.txn_id == reply_txn_id("$e1", 1)
    assert file.file_data == b'{"a": 1}'
    assert file.content["msgtype"] == "m.file" and file.content["filename"] == "daten.json"
    assert file.content["body"] == "Deine Daten" and file.content["m.mentions"] == {}
    assert "m.relates_to" not in file.content  # no reply relation across rooms
    assert on_reply.calls == 2  # the room's lane and the member's


def in_thread(command_event_id: str) -> dict:
    return {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True,
            "m.in_reply_to": {"event_id": command_event_id}}


async def test_a_command_in_a_thread_is_answered_in_the_thread_on_every_page(storage):
    router = Router("core")

    @router.command("ping", "ping")
    async def long_ping(ctx):
        return Text.join(Text.raw(f"Zeile {i} " + "x" * 90) for i in range(1500))

    permissions = Permissions(room_state, admins=[], moderator_level=50)
    handler = CommandHandler(make_services(storage, [router]), permissions, "de", lambda: NOW,
                             Replies())
    threaded = dataclasses.replace(cmd("$long", "!ping"), thread_root="$root")
    await storage.inbox.add([threaded], received_at=NOW)
    await handler.handle(await storage.inbox.next_for_room(ROOM))
    pages = []
    while (m := await storage.outbox.next_for_room(ROOM)) is not None:
        pages.append(m.content["m.relates_to"])
        await storage.outbox.remove(m.txn_id)
    assert len(pages) > 1
    assert pages == [in_thread("$long")] * len(pages)


async def test_a_direct_reply_to_a_command_in_a_thread_stays_outside_the_thread(storage,
                                                                                on_reply):
    from commands.framework import Reply

    router = Router("test")

    @router.command("export", "export")
    async def export(ctx):
        return [Reply(Text.raw("Schau in deine Direktnachrichten.")),
                Reply(Text.raw("Deine Daten"), direct=True)]

    permissions = Permissions(room_state, admins=[], moderator_level=50)
    handler = CommandHandler(make_services(storage, routers=[router]), permissions, "de",
                             lambda: NOW, on_reply)
    await handler.handle(dataclasses.replace(cmd("$e1", "!export"), thread_root="$root"))
    assert (await storage.outbox.next_for_room(ROOM)).content["m.relates_to"] == in_thread("$e1")
    assert "m.relates_to" not in (await storage.outbox.next_for_room(ALICE)).content


async def test_a_command_in_a_thread_is_answered_there_after_a_restart(tmp_path):
    from commands.features import open_storage

    path = tmp_path / "bot.db"
    before = await open_storage(path)
    threaded = dataclasses.replace(cmd("$ping", "!ping"), thread_root="$root")
    await before.inbox.add([threaded, cmd("$main", "!ping")], received_at=NOW)
    await before.close()  # the bot stops before answering

    after = await open_storage(path)
    try:
        permissions = Permissions(room_state, admins=[], moderator_level=50)
        handler = CommandHandler(make_services(after), permissions, "de", lambda: NOW, Replies())
        await handler.drain_room(ROOM)
        relations = []
        while (m := await after.outbox.next_for_room(ROOM)) is not None:
            relations.append(m.content["m.relates_to"])
            await after.outbox.remove(m.txn_id)
        assert relations == [in_thread("$ping"), {"m.in_reply_to": {"event_id": "$main"}}]
    finally:
        await after.close()


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


# -- what a command causes is committed with it, and sent once (issue 17, item 5) ----------------

CAROL = "@carol:example.org"
REGISTRANTS = (ALICE, BOB, CAROL)


class FailOnce:
    """Wraps a coroutine function: the first call raises `error`, later ones go through."""

    def __init__(self, fn, error: Exception) -> None:
        self.fn, self.error, self.failed = fn, error, False

    async def __call__(self, *args, **kwargs):
        if not self.failed:
            self.failed = True
            raise self.error
        return await self.fn(*args, **kwargs)


class Running:
    """The command handler and the sender on one database and one fake homeserver; a new
    `Running` on the same two is the bot after a restart."""

    def __init__(self, storage, homeserver: FakeHomeserver, room_admin=None) -> None:
        self.storage = storage
        self.homeserver = homeserver
        self.planned: list[str] = []
        services = make_services(storage, [core.router, workshops.router, communities.router])
        services.room_admin = room_admin

        async def schedule_changed(source: str) -> None:
            assert not storage.db.in_transaction()  # told only what is committed
            self.planned.append(source)

        services.schedule_changed = schedule_changed
        permissions = Permissions(room_state, admins=[BOSS], moderator_level=50)
        self.handler = CommandHandler(services, permissions, "de", lambda: NOW, lambda a: None)
        direct_rooms = DirectRooms(storage.rooms, homeserver, BOT)
        self.sender = Sender(homeserver, storage.outbox, sleep=Sleeps(),
                             backoff_factory=no_jitter_backoff, direct_rooms=direct_rooms.room_for)

    async def command(self, event_id: str, body: str, sender: str = BOSS) -> None:
        await self.storage.inbox.add([cmd(event_id, body, sender=sender)], received_at=NOW)
        await self.handler.drain_room(ROOM)

    async def send_all(self) -> None:
        for address in await self.storage.outbox.pending_rooms():
            await self.sender.drain_room(address)

    def direct_messages(self, user_id: str) -> list[str]:
        """The bodies the bot sent into rooms it made with `user_id` invited."""
        rooms = [r for r in self.homeserver.made_by_bot()
                 if user_id in self.homeserver.rooms[r]["invited"]]
        return [c["body"] for room in rooms for c in self.homeserver.sent_to(room)]

    def in_room(self) -> list[str]:
        return [c["body"] for c in self.homeserver.sent_to(ROOM) if "body" in c]  # no ✅


async def workshop_with_registrants(storage, homeserver: FakeHomeserver) -> Running:
    bot = Running(storage, homeserver)
    await bot.command("$new", "!werkstatt neu 10.05.2024 10:00-12:00 KI in der Verwaltung")
    for person in REGISTRANTS:
        await bot.command(f"$rsvp-{person}", "!anmelden 1", sender=person)
    await bot.send_all()
    assert len(bot.in_room()) == 4 and homeserver.made_by_bot() == []
    return bot


def assert_each_registrant_told_once(bot: Running) -> None:
    for person in REGISTRANTS:
        [told] = bot.direct_messages(person)
        assert "leider abgesagt" in told
    assert len(bot.homeserver.made_by_bot()) == len(REGISTRANTS)  # one room each


@pytest.mark.parametrize("failing", ["outbox.add", "inbox.mark_handled"])
async def test_a_command_failing_before_its_commit_leaves_nothing_and_its_retry_does_all_once(
        storage, failing, monkeypatch):
    homeserver = FakeHomeserver()
    bot = await workshop_with_registrants(storage, homeserver)
    repository, method = failing.split(".")
    target = getattr(storage, repository)
    monkeypatch.setattr(target, method, FailOnce(getattr(target, method),
                                                 sqlite3.OperationalError("database is locked")))
    await storage.inbox.add([cmd("$cancel", "!werkstatt absagen 1", sender=BOSS)],
                            received_at=NOW)
    with pytest.raises(sqlite3.OperationalError):
        await bot.handler.handle(await storage.inbox.next_for_room(ROOM))
    assert not (await storage.workshops.get(1)).cancelled  # rolled back with the messages
    assert bot.planned == ["workshops"]  # from `!werkstatt neu`; not from the failed run
    await bot.handler.drain_room(ROOM)  # the lane's retry
    assert (await storage.workshops.get(1)).cancelled
    await bot.send_all()
    assert "Abgesagt: KI in der Verwaltung" in bot.in_room()[-1]  # not "bereits abgesagt"
    assert_each_registrant_told_once(bot)
    assert bot.planned == ["workshops", "workshops"]


async def test_direct_messages_survive_a_502_and_a_lost_answer_at_room_creation(storage):
    homeserver = FakeHomeserver()
    bot = await workshop_with_registrants(storage, homeserver)
    await bot.command("$cancel", "!werkstatt absagen 1")
    homeserver.fail_creations = 1  # the first direct room: 502, nothing made
    homeserver.lose_creations = 1  # the next: made, but the answer never arrives
    await bot.send_all()
    assert_each_registrant_told_once(bot)
    assert await storage.outbox.count() == 0 and await storage.outbox.failed() == []


async def test_a_crash_between_making_a_direct_room_and_recording_it_makes_no_second_room(
        storage, monkeypatch):
    homeserver = FakeHomeserver()
    bot = await workshop_with_registrants(storage, homeserver)
    await bot.command("$cancel", "!werkstatt absagen 1")
    monkeypatch.setattr(storage.rooms, "set_direct_room", FailOnce(
        storage.rooms.set_direct_room, RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        await bot.send_all()
    assert len(homeserver.made_by_bot()) == 1  # made, not recorded
    restarted = Running(storage, homeserver)
    await restarted.send_all()
    assert_each_registrant_told_once(restarted)


async def test_a_restart_after_the_commit_sends_what_was_queued_once(storage):
    homeserver = FakeHomeserver()
    bot = await workshop_with_registrants(storage, homeserver)
    await bot.command("$cancel", "!werkstatt absagen 1")
    # The bot dies before sending anything; after the restart the same command is delivered
    # again (a sync replayed): it was handled, so nothing is done twice.
    restarted = Running(storage, homeserver)
    await restarted.command("$cancel", "!werkstatt absagen 1")
    await restarted.send_all()
    await restarted.send_all()
    assert_each_registrant_told_once(restarted)
    assert sum("Abgesagt" in body for body in restarted.in_room()) == 1


async def test_a_new_workshop_is_made_once_when_the_first_try_fails_at_its_commit(
        storage, monkeypatch):
    bot = Running(storage, FakeHomeserver())
    monkeypatch.setattr(storage.inbox, "mark_handled", FailOnce(
        storage.inbox.mark_handled, sqlite3.OperationalError("database is locked")))
    await storage.inbox.add([cmd("$new", "!werkstatt neu 10.05.2024 10:00-12:00 KI",
                                 sender=BOSS)], received_at=NOW)
    with pytest.raises(sqlite3.OperationalError):
        await bot.handler.handle(await storage.inbox.next_for_room(ROOM))
    await bot.handler.drain_room(ROOM)
    assert [tuple(r) for r in await storage.db.fetchall("SELECT title FROM workshops")] == [
        ("KI",)]


async def test_a_handler_that_fails_half_way_keeps_none_of_its_writes(storage):
    from commands.framework import Router

    router = Router("test")

    @router.command("half", "halb")
    async def half(ctx):
        await ctx.services.storage.rooms.change_setting(ROOM, "language", "en",
                                                        changed_by=ctx.sender, changed_at=1)
        raise RuntimeError("a bug")

    permissions = Permissions(room_state, admins=[BOSS], moderator_level=50)
    handler = CommandHandler(make_services(storage, [router]), permissions, "de", lambda: NOW,
                             lambda a: None)
    await handler.handle(cmd("$half", "!halb"))
    assert await storage.rooms.language(ROOM) is None
    [reply] = [(await storage.outbox.next_for_room(ROOM)).content["body"]]
    assert reply in INTERNAL_ERRORS
    assert await storage.inbox.is_handled("$half")


class RoomAdminChecked:
    """A `RoomAdmin` that checks nobody holds the database while it is called; `fail_next`
    names a call that fails once as unreachable."""

    def __init__(self, db) -> None:
        self.db = db
        self.calls: list[str] = []
        self.fail_next: str | None = None
        self.made = 0

    async def _call(self, name: str, result=None):
        assert not self.db.in_transaction() and not self.db._lock.locked(), name
        if self.fail_next == name:
            self.fail_next = None
            raise RetryLater(name)
        self.calls.append(name)
        return result

    async def create_room(self, *, name, topic, moderators, space=False) -> str:
        self.made += 1
        return await self._call("create_room", f"!c{self.made}:example.org")

    async def add_to_space(self, space_id, room_id) -> None:
        await self._call("add_to_space")

    async def invite(self, room_id, user_id) -> None:
        await self._call("invite")

    async def find_room(self, text) -> str | None:
        return await self._call("find_room")

    async def is_member(self, room_id, user_id) -> bool:
        return await self._call("is_member", False)

    async def member_count(self, room_id) -> int:
        return await self._call("member_count", 3)


async def test_homeserver_calls_are_made_outside_the_transaction_and_once_per_command(storage):
    admin = RoomAdminChecked(storage.db)
    bot = Running(storage, FakeHomeserver(), room_admin=admin)
    admin.fail_next = "invite"  # after the space and the room were made: unreachable
    await storage.inbox.add([cmd("$c", "!community anlegen ki KI in der Verwaltung",
                                 sender=BOSS)], received_at=NOW)
    with pytest.raises(RetryLater):
        await bot.handler.handle(await storage.inbox.next_for_room(ROOM))
    assert await storage.communities.active() == []  # nothing committed yet
    await bot.handler.drain_room(ROOM)  # the lane's retry
    # Each made once, though the command ran once per call and was retried.
    assert admin.calls == ["create_room", "create_room", "add_to_space", "invite"]
    [made] = await storage.communities.active()
    assert made.slug == "ki" and made.room_id == "!c2:example.org"
    assert await storage.communities.space() == "!c1:example.org"
    await bot.send_all()
    assert "KI in der Verwaltung" in bot.in_room()[-1]
    await bot.command("$list", "!gemeinschaften", sender=ALICE)
    assert admin.calls[-1] == "member_count"


async def test_a_command_asking_the_homeserver_without_end_is_answered_as_a_failure(storage):
    import itertools

    from commands.framework import Router

    router = Router("test")
    asked = itertools.count()

    @router.command("endless", "endlos")
    async def endless(ctx):
        await ctx.services.room_admin.find_room(f"#room{next(asked)}:example.org")

    services = make_services(storage, [router])
    services.room_admin = RoomAdminChecked(storage.db)
    handler = CommandHandler(services, Permissions(room_state, admins=[], moderator_level=50),
                             "de", lambda: NOW, lambda a: None)
    await handler.handle(cmd("$endless", "!endlos"))
    assert (await storage.outbox.next_for_room(ROOM)).content["body"] in INTERNAL_ERRORS
    assert await storage.inbox.is_handled("$endless")


async def test_a_level_already_known_costs_no_second_run(storage, on_reply):
    """Only a level the bot must ask the homeserver for ends a run of the command."""
    runs: list[str] = []
    fetched: list[str] = []
    counting = Router("core")

    @counting.command("count", "zaehlen")
    async def count(ctx):
        runs.append(ctx.request.event_id)
        return Text.raw(str(await ctx.level()))

    async def counting_state(room_id):
        fetched.append(room_id)
        return await room_state(room_id)

    permissions = Permissions(counting_state, admins=[BOSS], moderator_level=50)
    handler = CommandHandler(make_services(storage, [counting]), permissions, "de",
                             lambda: NOW, on_reply)
    await handler.handle(cmd("$first", "!zaehlen", sender=BOB))
    await handler.handle(cmd("$second", "!zaehlen", sender=BOB))
    assert runs == ["$first", "$first", "$second"]  # the first asked for the room's state
    assert fetched == [ROOM]
