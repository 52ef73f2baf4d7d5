"""Workshops as members and moderators use them, and a reminder fired by the real scheduler."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import nio
import pytest

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
