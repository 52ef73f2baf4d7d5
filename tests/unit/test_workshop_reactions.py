"""A ✅ on the bot's post of a workshop signs up; taking it away withdraws (issue 20)."""

from bot.matrix.connection import RoomEvent, SendOutcome, SendResult
from bot.pipeline.handling import edit_txn_id
from commands import core, workshops
from storage.inbox import InboxMessage
from storage.workshops import REGISTERED, WAITING
from tests.unit.fakes import (
    ALICE,
    BOB,
    BOSS,
    BOT,
    ROOM,
    FakeHomeserver,
    FakePipeline,
    FakeSyncSource,
    make_services,
)

NOW = 1_700_000_000_000
CAROL = "@carol:example.org"
CHECK = "✅"


def reaction(event_id: str, target: str, sender: str, key: str = CHECK, ts: int = NOW + 1):
    return RoomEvent(event_id, ROOM, sender, "m.reaction", ts,
                     {"m.relates_to": {"rel_type": "m.annotation", "event_id": target,
                                       "key": key}})


def redaction(event_id: str, target: str, sender: str, ts: int = NOW + 2):
    return RoomEvent(event_id, ROOM, sender, "m.room.redaction", ts, {"redacts": target})


class Bot(FakePipeline):
    """The workshops on the pipeline; a new `Bot` on the same database and homeserver is the
    bot after a restart."""

    def __init__(self, storage, homeserver: FakeHomeserver, source: FakeSyncSource) -> None:
        super().__init__(storage, make_services(storage, [core.router, workshops.router]),
                         homeserver, source)

    async def command(self, event_id: str, body: str, sender: str = BOSS) -> None:
        await self.storage.inbox.add([InboxMessage(event_id, ROOM, sender, body, NOW)],
                                     received_at=NOW)
        await self.handler.drain_room(ROOM)
        await self.send_all()

    def sent(self, event_type: str, room_id: str = ROOM) -> list[tuple[str, dict]]:
        """(transaction id, content) of what the bot sent into `room_id`."""
        return [(txn, content) for room, etype, content, txn in self.homeserver.sent
                if room == room_id and etype == event_type]

    def direct_messages(self, user_id: str) -> list[str]:
        rooms = [r for r in self.homeserver.made_by_bot()
                 if user_id in self.homeserver.rooms[r]["invited"]]
        return [c["body"] for room in rooms for c in self.homeserver.sent_to(room)]


async def started(storage, homeserver=None, source=None) -> Bot:
    bot = Bot(storage, homeserver or FakeHomeserver(), source or FakeSyncSource())
    await bot.first_sync()
    return bot


async def with_post(storage, capacity: str = "") -> tuple[Bot, str]:
    bot = await started(storage)
    await bot.command("$new", f"!werkstatt neu 10.05.2024 10:00-12:00 KI {capacity}".strip())
    [(_, post)] = bot.sent("m.room.message")
    [post_id] = [f"$sent{n}" for n, sent in enumerate(bot.homeserver.sent, 1)
                 if sent[2] is post]
    return bot, post_id


async def test_the_bot_puts_the_first_check_mark_on_its_post_once(storage):
    bot, post_id = await with_post(storage)
    assert await storage.workshops.workshop_of_post(post_id) == 1
    [(_, mark)] = bot.sent("m.reaction")
    assert mark == {"m.relates_to": {"rel_type": "m.annotation", "event_id": post_id,
                                     "key": CHECK}}
    await bot.command("$show", "!werkstatt 1", sender=ALICE)
    assert len(bot.sent("m.reaction")) == 2  # the shown workshop is a post too
    assert len(await storage.workshops.posts(1)) == 2
    await bot.send_all()
    assert len(bot.sent("m.reaction")) == 2  # each post once


async def test_a_check_mark_signs_up_and_its_removal_withdraws_by_direct_message(storage):
    bot, post_id = await with_post(storage)
    in_room = len(bot.homeserver.sent_to(ROOM))
    await bot.receive(reaction("$r1", post_id, ALICE))
    assert (await storage.workshops.registration(1, ALICE)).status == REGISTERED
    [signed_up] = bot.direct_messages(ALICE)
    assert "angemeldet" in signed_up
    await bot.receive(redaction("$x1", "$r1", ALICE))
    assert await storage.workshops.registration(1, ALICE) is None
    assert len(bot.direct_messages(ALICE)) == 2
    assert "abgemeldet" in bot.direct_messages(ALICE)[1]
    assert len(bot.homeserver.sent_to(ROOM)) == in_room  # the room stays calm


async def test_a_withdrawn_check_mark_moves_the_waiting_list_up(storage):
    bot, post_id = await with_post(storage, "plätze=1")
    await bot.receive(reaction("$r1", post_id, ALICE), reaction("$r2", post_id, BOB))
    assert (await storage.workshops.registration(1, BOB)).status == WAITING
    await bot.receive(redaction("$x1", "$r1", ALICE))
    assert (await storage.workshops.registration(1, BOB)).status == REGISTERED
    assert "Platz frei geworden" in bot.direct_messages(BOB)[-1]


async def test_only_a_members_own_check_mark_on_a_post_counts(storage):
    bot, post_id = await with_post(storage)
    await bot.receive(reaction("$own", post_id, BOT),  # the bot's own first ✅
                      reaction("$thumb", post_id, ALICE, key="👍"),
                      reaction("$elsewhere", "$some-message", BOB))
    assert await storage.workshops.registrations(1) == []
    await bot.receive(reaction("$r1", post_id, ALICE))
    await bot.receive(redaction("$x1", "$r1", BOB))  # not hers to take back
    assert (await storage.workshops.registration(1, ALICE)).status == REGISTERED
    assert bot.direct_messages(BOB) == []


async def test_a_check_mark_delivered_twice_signs_up_once_also_after_a_restart(storage):
    bot, post_id = await with_post(storage)
    mark = reaction("$r1", post_id, ALICE)
    await bot.receive(mark)
    restarted = Bot(storage, bot.homeserver, bot.source)
    await restarted.receive(mark)  # the homeserver sends it again
    assert len(restarted.direct_messages(ALICE)) == 1
    await restarted.receive(redaction("$x1", "$r1", ALICE))  # withdrawn after the restart
    assert await storage.workshops.registration(1, ALICE) is None


async def test_an_encrypted_check_mark_signs_up_once_readable(storage):
    bot, post_id = await with_post(storage)
    sealed = RoomEvent("$enc", ROOM, ALICE, "m.room.encrypted", NOW + 1,
                       {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA…"})
    bot.source.readable["$enc"] = reaction("$enc", post_id, ALICE)
    await bot.receive(sealed)
    await bot.receive()  # the next sync tries again, now readable
    assert (await storage.workshops.registration(1, ALICE)).status == REGISTERED


async def test_a_check_mark_on_a_cancelled_workshop_is_answered_alone(storage):
    bot, post_id = await with_post(storage)
    await bot.command("$cancel", "!werkstatt absagen 1")
    in_room = len(bot.homeserver.sent_to(ROOM))
    await bot.receive(reaction("$r1", post_id, ALICE))
    assert await storage.workshops.registration(1, ALICE) is None
    [answer] = bot.direct_messages(ALICE)
    assert "abgesagt" in answer
    assert len(bot.homeserver.sent_to(ROOM)) == in_room



# -- current posts: the bot edits its posts of a workshop when what they say changes -----------


def edits(bot: Bot) -> list[tuple[str, str, dict]]:
    """(transaction id, edited post, content) of each edit the bot sent into the room."""
    return [(txn, content["m.relates_to"]["event_id"], content)
            for txn, content in bot.sent("m.room.message")
            if content.get("m.relates_to", {}).get("rel_type") == "m.replace"]


def new_body(content: dict) -> str:
    new = content["m.new_content"]
    assert content["body"] == f"* {new['body']}"
    assert new["msgtype"] == "m.notice" and new["format"] == "org.matrix.custom.html"
    return new["body"]


async def with_two_posts(storage, capacity: str = "plätze=1") -> tuple[Bot, list[str]]:
    bot, _ = await with_post(storage, capacity)
    await bot.command("$show", "!werkstatt 1", sender=CAROL)
    return bot, [event_id for event_id, _ in await storage.workshops.posts(1)]


async def test_the_last_place_taken_and_freed_again_edits_each_post_once(storage):
    bot, posts = await with_two_posts(storage)
    assert len(posts) == 2 and posts[0] != posts[1]
    await bot.receive(reaction("$r1", posts[0], ALICE))  # the last place, by ✅
    full = edits(bot)
    assert sorted(post for _, post, _ in full) == sorted(posts)  # one edit per post
    for _, _, content in full:
        body = new_body(content)
        assert "ausgebucht" in body and "Warteliste" in body
        assert "angemeldet." not in body  # shared: nothing about one member
    await bot.command("$bob", "!anmelden 1", sender=BOB)  # the waiting list: nothing changes
    await bot.receive(redaction("$x1", "$r1", ALICE))  # Bob moves up: still full
    assert len(edits(bot)) == 2
    await bot.command("$bob-off", "!abmelden 1", sender=BOB)  # a place is free again
    freed = edits(bot)[2:]
    assert sorted(post for _, post, _ in freed) == sorted(posts)
    assert all("noch frei" in new_body(c) and "ausgebucht" not in new_body(c)
               for _, _, c in freed)
    await bot.command("$carol", "!anmelden 1", sender=CAROL)  # full again: a third version
    assert len(edits(bot)) == 6
    assert len({txn for txn, _, _ in edits(bot)}) == 6  # none taken for another


async def test_a_change_and_a_cancellation_edit_each_post_with_the_new_text(storage):
    bot, posts = await with_two_posts(storage, "")
    await bot.command("$edit", "!werkstatt ändern 1 zeit=14:00-16:00 ort=Rathaus")
    changed = edits(bot)
    assert sorted(post for _, post, _ in changed) == sorted(posts)
    assert all("14:00–16:00" in new_body(c) and "Rathaus" in new_body(c) for _, _, c in changed)
    await bot.command("$cancel", "!werkstatt absagen 1 Referentin erkrankt")
    cancelled = edits(bot)[2:]
    assert sorted(post for _, post, _ in cancelled) == sorted(posts)
    assert all("abgesagt" in new_body(c) and "✅" not in new_body(c) for _, _, c in cancelled)


async def test_an_edit_is_sent_once_across_retries_and_redelivery(storage):
    bot, posts = await with_two_posts(storage)
    # The homeserver fails each edit once: the retry reuses its transaction id.
    send, failed = bot.homeserver.send, set()

    async def flaky(room_id, event_type, content, txn_id):
        if txn_id.startswith("edit-") and txn_id not in failed:
            failed.add(txn_id)
            bot.homeserver.sent.append((room_id, event_type, content, txn_id))
            return SendResult(SendOutcome.TRANSIENT)
        return await send(room_id, event_type, content, txn_id)

    bot.homeserver.send = flaky
    await bot.receive(reaction("$r1", posts[0], ALICE))
    await bot.receive(reaction("$r1", posts[0], ALICE))  # the same ✅ delivered again
    await bot.command("$bob", "!anmelden 1", sender=BOB)  # no change of what the posts say
    txns = [txn for txn, _, _ in edits(bot)]
    assert len(txns) == 4 and len(set(txns)) == 2  # one edit per post, resent as itself
    sequence = (await storage.workshops.get(1)).sequence
    assert set(txns) == {edit_txn_id(post, sequence) for post in posts}
