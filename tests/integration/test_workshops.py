"""Workshops as members and moderators use them, and a reminder fired by the real scheduler."""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import nio
import pytest

from commands.dates import offset_label
from commands.schedule import Occurrence
from storage.workshops import Workshop
from tests.integration.conftest import MakeMember
from tests.integration.harness import BotAccount, Member

pytestmark = pytest.mark.synapse

BERLIN = ZoneInfo("Europe/Berlin")


async def test_list_details_calendar_signup_waiting_list_and_cancellation(
    bot_account: BotAccount, member: Member, room: str, make_member: MakeMember
) -> None:
    bot = bot_account.user_id
    day = (datetime.now(BERLIN) + timedelta(days=10)).date()
    # The room's creator is its moderator (room version 12).
    added = await member.ask(room, bot, f"!werkstatt neu {day:%d.%m.%Y} 10:00-12:00 "
                                        "KI in der Verwaltung ort=Rathaus Wiesbaden plätze=1")
    assert "Angelegt" in added["content"]["body"], added["content"]["body"]

    listing = (await member.ask(room, bot, "!werkstätten"))["content"]["body"]
    assert "KI in der Verwaltung" in listing
    assert f"{day:%d.%m.%Y}, 10:00–12:00 Uhr" in listing

    details = (await member.ask(room, bot, "!werkstatt 1"))["content"]["body"]
    assert "Rathaus Wiesbaden" in details

    calendar = (await member.ask(room, bot, "!werkstatt 1 ics"))["content"]
    assert calendar["msgtype"] == "m.file"
    assert calendar["info"]["mimetype"].startswith("text/calendar")
    download = await member.client.download(calendar["url"])
    assert isinstance(download, nio.DownloadResponse), download
    ics = download.body.decode()
    assert "BEGIN:VEVENT" in ics and "TZID=Europe/Berlin" in ics
    assert f"DTSTART;TZID=Europe/Berlin:{day:%Y%m%d}T100000" in ics

    first, second = await make_member("erste"), await make_member("zweite")
    for person in (first, second):
        await member.invite(room, person.user_id)
        await person.join(room)
    registered = (await first.ask(room, bot, "!anmelden 1"))["content"]["body"]
    assert "Du bist angemeldet" in registered
    waiting = (await second.ask(room, bot, "!anmelden 1"))["content"]["body"]
    assert "Warteliste" in waiting  # one place only

    await first.ask(room, bot, "!abmelden 1")
    direct = await second.wait_for_invite()  # moved up, told by direct message
    await second.join(direct)
    [moved_up] = await second.wait_for_messages(direct, bot, 1)
    assert "Platz frei geworden" in moved_up["content"]["body"]

    cancelled = (await member.ask(room, bot, "!werkstatt absagen 1"))["content"]["body"]
    assert "Abgesagt" in cancelled
    messages = await second.wait_for_messages(direct, bot, 2)
    assert "abgesagt" in messages[-1]["content"]["body"]
    listing = (await member.ask(room, bot, "!werkstätten"))["content"]["body"]
    assert "KI in der Verwaltung" not in listing


async def test_a_reminder_is_posted_into_the_room_mentioning_the_registered(
    bot_account: BotAccount, member: Member, make_member: MakeMember
) -> None:
    bot_account.sections = {"workshops": {"reminders": ["1h"]}}
    await bot_account.start()
    await bot_account.wait_synced()
    room = await member.create_room(invite=[bot_account.user_id])
    assert await member.wait_joined(room, bot_account.user_id)
    running = bot_account.running
    assert running is not None and running.storage is not None

    # Due in a few seconds: starts in an hour and four seconds, reminded an hour before.
    start = datetime.now(BERLIN).replace(microsecond=0) + timedelta(hours=1, seconds=4)
    workshop = await running.storage.workshops.add(
        Workshop(title="OZG-Sprechstunde", starts_at=start, ends_at=start + timedelta(hours=1),
                 created_by=member.user_id, room_id=room), datetime.now(BERLIN))
    await member.ask(room, bot_account.user_id, f"!anmelden {workshop.number}")
    await running.scheduler.schedule_changed("workshops")

    messages = await member.wait_for_messages(room, bot_account.user_id, 2, timeout=30)
    reminder = messages[-1]["content"]
    assert "Erinnerung" in reminder["body"] and "OZG-Sprechstunde" in reminder["body"]
    assert reminder["m.mentions"] == {"user_ids": [member.user_id]}
    await member.settle(2)
    assert len(member.messages_from(room, bot_account.user_id)) == 2  # posted once


async def _wait_for_check_mark(member: Member, room: str, sender: str, post: str,
                               timeout: float = 20.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        marks = [ev for ev in member.timeline.get(room, [])
                 if ev.get("type") == "m.reaction" and ev.get("sender") == sender
                 and ev["content"].get("m.relates_to", {}).get("event_id") == post]
        if marks or asyncio.get_running_loop().time() > deadline:
            assert marks, "the bot put no ✅ on its post"
            return marks[0]
        await member.sync()


async def _until(condition, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.2)


async def test_a_check_mark_signs_up_and_its_removal_withdraws_also_across_a_restart(
    bot_account: BotAccount, member: Member, room: str, make_member: MakeMember
) -> None:
    bot = bot_account.user_id
    day = (datetime.now(BERLIN) + timedelta(days=10)).date()
    post = await member.ask(room, bot, f"!werkstatt neu {day:%d.%m.%Y} 10:00-12:00 "
                                       "KI in der Verwaltung plätze=1")
    mark = await _wait_for_check_mark(member, room, bot, post["event_id"])
    assert mark["content"]["m.relates_to"]["key"] == "✅"

    first, second = await make_member("erste"), await make_member("zweite")
    for person in (first, second):
        await member.invite(room, person.user_id)
        await person.join(room)

    def check_mark() -> dict:
        return {"m.relates_to": {"rel_type": "m.annotation", "event_id": post["event_id"],
                                 "key": "✅"}}

    signed_up = await first.send_raw(room, "m.reaction", check_mark())
    first_direct = await first.wait_for_invite()
    await first.join(first_direct)
    [told] = await first.wait_for_messages(first_direct, bot, 1)
    assert "Du bist angemeldet" in told["content"]["body"]
    await second.send_raw(room, "m.reaction", check_mark())
    second_direct = await second.wait_for_invite()
    await second.join(second_direct)
    [waiting] = await second.wait_for_messages(second_direct, bot, 1)
    assert "Warteliste" in waiting["content"]["body"]  # one place only

    await bot_account.stop()
    redacted = await first.client.room_redact(room, signed_up)  # while the bot is away
    assert isinstance(redacted, nio.RoomRedactResponse), redacted
    await bot_account.start()

    moved_up = await second.wait_for_messages(second_direct, bot, 2)
    assert "Platz frei geworden" in moved_up[-1]["content"]["body"]
    withdrawn = await first.wait_for_messages(first_direct, bot, 2)
    assert "abgemeldet" in withdrawn[-1]["content"]["body"]
    running = bot_account.running
    assert running is not None and running.storage is not None
    workshops = running.storage.workshops
    assert await workshops.registration(1, first.user_id) is None
    assert (await workshops.registration(1, second.user_id)).status == "registered"
    def said_in_room() -> list[dict]:  # the edits of the post (it filled up) aside
        return [ev for ev in member.messages_from(room, bot)
                if ev["content"].get("m.relates_to", {}).get("rel_type") != "m.replace"]

    room_messages = len(said_in_room())
    await member.settle()
    assert len(said_in_room()) == room_messages == 1  # the room stays calm: only the post


async def _wait_for_edit(member: Member, room: str, sender: str, post: str, seen: int = 0,
                         timeout: float = 20.0) -> dict:
    """The bot's next edit (`m.replace`) of `post`, after the `seen` it made before."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [ev for ev in member.messages_from(room, sender)
                 if ev["content"].get("m.relates_to", {}) == {"rel_type": "m.replace",
                                                              "event_id": post}]
        if len(found) > seen or asyncio.get_running_loop().time() > deadline:
            assert len(found) > seen, "the bot did not edit its post"
            return found[seen]
        await member.sync()


async def test_the_post_is_edited_when_the_workshop_fills_and_when_it_is_cancelled(
    bot_account: BotAccount, member: Member, room: str, make_member: MakeMember
) -> None:
    bot = bot_account.user_id
    day = (datetime.now(BERLIN) + timedelta(days=10)).date()
    post = await member.ask(room, bot, f"!werkstatt neu {day:%d.%m.%Y} 10:00-12:00 "
                                       "KI in der Verwaltung plätze=1")
    assert "ausgebucht" not in post["content"]["body"]
    first = await make_member("erste")
    await member.invite(room, first.user_id)
    await first.join(room)

    await first.ask(room, bot, "!anmelden 1")  # the last place
    full = (await _wait_for_edit(member, room, bot, post["event_id"]))["content"]
    assert "ausgebucht" in full["m.new_content"]["body"]
    assert full["body"].startswith("* ")

    await member.ask(room, bot, "!werkstatt absagen 1")
    cancelled = (await _wait_for_edit(member, room, bot, post["event_id"], seen=1))["content"]
    assert "abgesagt" in cancelled["m.new_content"]["body"]
    await member.settle()
    edits = [ev for ev in member.messages_from(room, bot)
             if ev["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"]
    assert len(edits) == 2  # each once


async def test_a_reminder_goes_into_the_thread_of_the_workshops_post(
    bot_account: BotAccount, member: Member
) -> None:
    bot = bot_account.user_id
    bot_account.sections = {"workshops": {"reminders": ["1d"]}}
    running = await bot_account.start()
    await bot_account.wait_synced()
    assert running.storage is not None and running.scheduler is not None
    room = await member.create_room(invite=[bot])
    assert await member.wait_joined(room, bot)
    day = (datetime.now(BERLIN) + timedelta(days=10)).date()
    # The room's creator is its moderator; the answer is the workshop's post.
    post = await member.ask(room, bot, f"!werkstatt neu {day:%d.%m.%Y} 10:00-12:00 "
                                       "OZG-Sprechstunde")
    assert "Angelegt" in post["content"]["body"], post["content"]["body"]
    workshops = running.storage.workshops

    async def recorded() -> bool:
        return await workshops.workshop_of_post(post["event_id"]) == 1

    await _until(recorded)

    # The reminder a day before, as the scheduler delivers it when due.
    start = datetime.combine(day, time(10, 0), BERLIN)
    key = f"workshop:1:{start:%Y%m%dT%H%M}:{offset_label(timedelta(days=1))}:{room}"
    delivered = await running.scheduler.deliver(
        Occurrence(key, "workshops", start - timedelta(days=1), room, "1"))
    assert delivered == "sent"
    messages = await member.wait_for_messages(room, bot, 2)
    reminders = [m for m in messages if "Erinnerung" in m["content"]["body"]]
    assert reminders, "no reminder arrived"
    [reminder] = reminders
    assert "OZG-Sprechstunde" in reminder["content"]["body"]
    relates = reminder["content"].get("m.relates_to", {})
    assert relates.get("rel_type") == "m.thread", relates
    assert relates.get("event_id") == post["event_id"]
    # Clients without threads show it as a reply to the post.
    assert relates.get("m.in_reply_to") == {"event_id": post["event_id"]}
