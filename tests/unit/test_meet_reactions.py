""""Did you meet?" answered with a tap: the bot's 👍 and 👎 on its question after a date, and a
member's 👍 or 👎 counted like `!getroffen ja` or `!getroffen nein` (issue 20)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.matrix.connection import RoomEvent
from bot.matrix.own_rooms import DirectRooms
from bot.matrix.permissions import Permissions
from bot.pipeline.handling import CommandHandler
from bot.pipeline.rate_limit import MemberRateLimit
from bot.pipeline.scheduler import Scheduler
from bot.pipeline.sender import Sender
from bot.pipeline.syncer import Syncer, SyncListener
from commands import core, meet, room_settings
from commands.schedule import Occurrence
from storage.meet import Round
from tests.unit.fakes import (
    ALICE,
    BOB,
    BOSS,
    BOT,
    CATALOG,
    OTHER_ROOM,
    ROOM,
    FakeHomeserver,
    FakeSyncSource,
    Sleeps,
    batch,
    make_services,
    no_jitter_backoff,
    timeline,
)

BERLIN = ZoneInfo("Europe/Berlin")
NOW = 1_700_000_000_000
GROUP = "2026-03-12:1"
YES, NO = "👍", "👎"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment


async def room_state(room_id):
    return ({"users": {BOSS: 100}},
            {"type": "m.room.create", "sender": BOSS, "content": {"room_version": "10"}})


def reaction(event_id: str, target: str, sender: str, key: str, room_id: str = ROOM):
    return RoomEvent(event_id, room_id, sender, "m.reaction", NOW + 1,
                     {"m.relates_to": {"rel_type": "m.annotation", "event_id": target,
                                       "key": key}})


class Bot:
    """The scheduler, the sync loop, the command lanes and the sender on one database and a
    fake homeserver; ROOM is the pair's room."""

    def __init__(self, storage, rate_limit: MemberRateLimit | None = None) -> None:
        self.storage, self.homeserver, self.source = storage, FakeHomeserver(), FakeSyncSource()
        self.services = make_services(storage, [core.router, room_settings.router, meet.router])
        self.clock = Clock(datetime(2026, 3, 12, 14, tzinfo=BERLIN))
        self.services.clock = self.clock
        self.services.configs["meet"] = meet.MeetConfig.create(link="https://meet.example.org")
        self.services.configs["room_settings"] = room_settings.RoomDefaults("de")
        permissions = Permissions(room_state, admins=[BOSS], moderator_level=50)
        self.handler = CommandHandler(self.services, permissions, "de", lambda: NOW,
                                      lambda a: None, rate_limit=rate_limit)
        self.sender = Sender(self.homeserver, storage.outbox, sleep=Sleeps(),
                             backoff_factory=no_jitter_backoff,
                             direct_rooms=DirectRooms(storage.rooms, self.homeserver,
                                                      BOT).room_for)
        self.syncer = Syncer(self.source, storage, SyncListener(), prefix="!",
                             now_ms=lambda: NOW)
        self.scheduler = Scheduler(storage, [meet.MeetFollowUps(self.services)],
                                   clock=self.clock, timezone=BERLIN,
                                   grace=timedelta(hours=1), catalog=CATALOG,
                                   default_language="de", on_queued=lambda room: None)

    async def start(self) -> None:
        await self.storage.session.save_login(BOT, "DEVICE", "token-123")
        start = int(datetime(2026, 3, 12, 12, tzinfo=BERLIN).timestamp() * 1000)
        await self.storage.meet.add_round(Round("2026-03-12", start, start, 2),
                                          [(ALICE, BOB)], keep_members_of=3)
        await self.storage.meet.set_room(GROUP, ROOM)
        self.source.script.append(batch("s0"))
        await self.syncer.sync_once()  # the first sync: from now on, events are answered

    async def ask(self) -> str:
        """The question after the date, delivered and sent: its event id."""
        occurrence = Occurrence(f"meet-ask:{GROUP}", meet.MeetFollowUps.name,
                                self.clock.now(), ROOM, GROUP)
        assert await self.scheduler.deliver(occurrence) == "sent"
        await self.send_all()
        [question] = [n for n, sent in enumerate(self.homeserver.sent, 1)
                      if sent[1] == "m.room.message"]
        return f"$sent{question}"

    async def receive(self, *events: RoomEvent) -> None:
        self.source.script.append(batch(f"s{len(self.source.sync_calls)}",
                                        timeline(list(events))))
        await self.syncer.sync_once()
        for room_id in (ROOM, OTHER_ROOM):
            await self.handler.drain_room(room_id)
        await self.send_all()

    async def send_all(self) -> None:
        while rooms := await self.storage.outbox.pending_rooms():
            for address in rooms:
                await self.sender.drain_room(address)

    async def met(self) -> bool | None:
        [group] = await self.storage.meet.groups(key=GROUP)
        return group.met


async def test_the_question_says_how_to_tap_and_gets_the_bots_thumbs_once(storage):
    bot = Bot(storage)
    await bot.start()
    question = await bot.ask()
    [content] = [c for _, t, c, _ in bot.homeserver.sent if t == "m.room.message"]
    assert "👍 oder 👎" in content["body"] and "!getroffen ja" in content["body"]
    assert await storage.meet.group_of_follow_up(question) == (GROUP, ROOM)
    marks = [c["m.relates_to"] for _, t, c, _ in bot.homeserver.sent if t == "m.reaction"]
    assert marks == [{"rel_type": "m.annotation", "event_id": question, "key": key}
                     for key in (YES, NO)]
    assert await bot.scheduler.deliver(Occurrence(f"meet-ask:{GROUP}", meet.MeetFollowUps.name,
                                                  bot.clock.now(), ROOM, GROUP)) == "already"
    await bot.send_all()
    assert len(bot.homeserver.sent) == 3  # the question and its two thumbs, once


async def test_a_thumb_on_the_question_counts_like_met_and_a_later_one_replaces_it(storage):
    bot = Bot(storage)
    await bot.start()
    question = await bot.ask()
    sent_before = len(bot.homeserver.sent)
    await bot.receive(reaction("$up", question, ALICE, YES))
    assert await bot.met() is True
    assert len(bot.homeserver.sent) == sent_before  # the tap shows; nothing is said
    await bot.receive(reaction("$down", question, BOB, NO + "\ufe0f"))
    assert await bot.met() is False  # as `!getroffen nein` after `!getroffen ja`
    await bot.receive(reaction("$up2", question, BOB, "👍🏽"))  # with a skin tone
    assert await bot.met() is True
    _, groups, answered, met = await storage.meet.totals()
    assert (groups, answered, met) == (1, 1, 1)  # only the count is kept: one group, one answer


async def test_only_a_thumb_on_the_question_in_the_pairs_room_counts(storage):
    bot = Bot(storage)
    await bot.start()
    question = await bot.ask()
    await bot.receive(reaction("$bot", question, BOT, YES),  # the bot's own
                      reaction("$other", "$some-message", ALICE, YES),  # another message
                      reaction("$heart", question, ALICE, "❤️"))  # another key
    await bot.receive(reaction("$elsewhere", question, ALICE, YES, room_id=OTHER_ROOM))
    assert await bot.met() is None


async def test_a_thumb_delivered_twice_counts_once_and_is_never_rate_limited(storage):
    bot = Bot(storage, rate_limit=MemberRateLimit(1, 60_000))  # one command a minute
    await bot.start()
    question = await bot.ask()
    await bot.receive(reaction("$x", "$a", ALICE, YES), reaction("$y", "$b", ALICE, YES))
    await bot.receive(reaction("$up", question, ALICE, YES))
    await bot.receive(reaction("$up", question, ALICE, YES))  # the same event again
    assert await bot.met() is True
    assert [t for _, t, _, _ in bot.homeserver.sent] == ["m.room.message", "m.reaction",
                                                         "m.reaction"]
