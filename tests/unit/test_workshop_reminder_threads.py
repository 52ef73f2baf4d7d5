"""A workshop's reminder goes into the thread of the bot's post of it in that room, so the
room's main timeline stays calm; without a post there, into the main timeline (issue 20)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.pipeline.scheduler import Scheduler
from commands import core, room_settings, workshops
from commands.workshops import WorkshopConfig, WorkshopReminders
from storage.outbox import OutgoingMessage
from storage.workshops import WORKSHOP_POST, Workshop
from tests.unit.fakes import BOSS, CATALOG, OTHER_ROOM, ROOM, make_services

BERLIN = ZoneInfo("Europe/Berlin")
STARTS = datetime(2026, 12, 3, 10, tzinfo=BERLIN)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment


async def reminder_contents(storage, *posts: tuple[str, str, dict]) -> dict[str, dict]:
    """The reminder an hour before the workshop (in ROOM and OTHER_ROOM) after the bot sent
    `posts` of it ((event id, room, content)): each room's queued content."""
    services = make_services(storage, [core.router, room_settings.router, workshops.router])
    clock = Clock(datetime(2026, 11, 20, 9, tzinfo=BERLIN))
    services.clock = clock
    services.configs["workshops"] = WorkshopConfig(
        reminders=[timedelta(hours=1)], rooms=[ROOM, OTHER_ROOM], timezone=BERLIN)
    await storage.workshops.add(Workshop(title="KI", starts_at=STARTS,
                                         ends_at=STARTS + timedelta(hours=2), created_by=BOSS,
                                         room_id=None), clock.now())
    for n, (event_id, room_id, content) in enumerate(posts):
        await storage.outbox.sent(OutgoingMessage(f"post-{n}", room_id, content,
                                                  record_as=(WORKSHOP_POST, "1")),
                                  event_id, 0)
    await storage.db.execute("DELETE FROM outbox")  # the bot's ✅: not what is looked at here
    scheduler = Scheduler(storage, [WorkshopReminders(services)], clock=clock, timezone=BERLIN,
                          grace=timedelta(hours=1), catalog=CATALOG, default_language="de",
                          on_queued=lambda room: None)
    clock.moment = STARTS - timedelta(hours=1)
    for occurrence in await WorkshopReminders(services).occurrences(
            clock.moment - timedelta(minutes=1), clock.moment + timedelta(minutes=1)):
        assert await scheduler.deliver(occurrence) == "sent"
    rows = await storage.db.fetchall("SELECT room_id, content FROM outbox")
    return {row[0]: json.loads(row[1]) for row in rows}


def post(body: str = "Werkstatt 1") -> dict:
    return {"msgtype": "m.notice", "body": body}


async def test_a_reminder_goes_into_the_thread_of_the_post_in_its_room(storage):
    contents = await reminder_contents(storage, ("$old", ROOM, post()), ("$new", ROOM, post()))
    assert "Erinnerung" in contents[ROOM]["body"]
    assert contents[ROOM]["m.relates_to"] == {  # the newest post's thread
        "rel_type": "m.thread", "event_id": "$new", "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$new"}}
    assert "m.relates_to" not in contents[OTHER_ROOM]  # no post there: the main timeline


async def test_a_post_inside_a_thread_has_its_reminders_in_that_thread(storage):
    threaded = {**post(), "m.relates_to": {"rel_type": "m.thread", "event_id": "$root",
                                           "is_falling_back": True,
                                           "m.in_reply_to": {"event_id": "$command"}}}
    contents = await reminder_contents(storage, ("$answer", ROOM, threaded))
    relation = contents[ROOM]["m.relates_to"]
    assert (relation["rel_type"], relation["event_id"]) == ("m.thread", "$root")


async def test_without_posts_a_reminder_stays_in_the_main_timeline(storage):
    contents = await reminder_contents(storage, ("$direct", "@alice:example.org", post()))
    assert set(contents) == {ROOM, OTHER_ROOM}
    assert all("m.relates_to" not in content for content in contents.values())
