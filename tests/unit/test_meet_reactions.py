""""Did you meet?" answered with a tap: the bot's 👍 and 👎 on its question after a date, and a
member's 👍 or 👎 counted like `!getroffen ja` or `!getroffen nein` (issue 20)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.matrix.connection import RoomEvent
from bot.pipeline.rate_limit import MemberRateLimit
from bot.pipeline.scheduler import Scheduler
from commands import core, meet, room_settings
from commands.schedule import Occurrence
from storage.meet import Round
from tests.unit.fakes import (
    ALICE,
    BOB,
    BOT,
    CATALOG,
    OTHER_ROOM,
    ROOM,
    FakePipeline,
    make_services,
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


def reaction(event_id: str, target: str, sender: str, key: str, room_id: str = ROOM):
    return RoomEvent(event_id, room_id, sender, "m.reaction", NOW + 1,
                     {"m.relates_to": {"rel_type": "m.annotation", "event_id": target,
                                       "key": key}})


class Bot(FakePipeline):
    """NExT-to-meet-you and its scheduler on the pipeline; ROOM is the pair's room."""

    def __init__(self, storage, rate_limit: MemberRateLimit | None = None) -> None:
        services = make_services(storage, [core.router, room_settings.router, meet.router])
        self.clock = Clock(datetime(2026, 3, 12, 14, tzinfo=BERLIN))
        services.clock = self.clock
        services.configs["meet"] = meet.MeetConfig.create(link="https://meet.example.org")
        services.configs["room_settings"] = room_settings.RoomDefaults("de")
        super().__init__(storage, services, rate_limit=rate_limit)
        self.scheduler = Scheduler(storage, [meet.MeetFollowUps(self.services)],
                                   clock=self.clock, timezone=BERLIN,
                                   grace=timedelta(hours=1), catalog=CATALOG,
                                   default_language="de", on_queued=lambda room: None)

    async def start(self) -> None:
        start = int(datetime(2026, 3, 12, 12, tzinfo=BERLIN).timestamp() * 1000)
        await self.storage.meet.add_round(Round("2026-03-12", start, start, 2),
                                          [(ALICE, BOB)], keep_members_of=3)
        await self.storage.meet.set_room(GROUP, ROOM)
        await self.first_sync()

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
        await super().receive(*events, rooms=(ROOM, OTHER_ROOM))

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
