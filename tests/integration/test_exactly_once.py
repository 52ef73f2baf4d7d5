"""Every command is answered exactly once: across restarts, downtime and bursts; and what it
causes (direct messages to others) happens once, whatever fails on the way."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import nio
import pytest

from bot.devtools.testserver import Homeserver
from bot.matrix.connection import MatrixConnection, TransientError
from tests.integration.conftest import MakeMember
from tests.integration.harness import (
    BotAccount,
    Member,
    assert_answered_once,
    record_syncs,
    replies_to,
)

pytestmark = pytest.mark.synapse

BERLIN = ZoneInfo("Europe/Berlin")


async def devices_of(bot_account: BotAccount) -> list[str]:
    assert bot_account.running is not None and bot_account.running.connection is not None
    response = await bot_account.running.connection.client.devices()
    assert isinstance(response, nio.DevicesResponse), response
    return [d.id for d in response.devices]


# -- 3. restart between two commands -----------------------------------------------------------


async def test_restart_between_two_commands_answers_each_once_on_the_same_device(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    bot = bot_account.user_id
    device = await bot_account.device_id()
    assert bot_account.running.connection.client.device_id == device
    devices = await devices_of(bot_account)  # registering the account made one more
    assert device in devices

    first = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot, [first])
    await bot_account.stop()

    await bot_account.start()
    # Same database, same device: the stored session was reused, no new login happened.
    assert await bot_account.device_id() == device
    assert bot_account.running.connection.client.device_id == device
    assert await devices_of(bot_account) == devices

    second = await member.send(room, "!ping")
    messages = await member.wait_for_replies(room, bot, [first, second])
    await member.settle(1.0)
    assert_answered_once(member.messages_from(room, bot), [first, second])
    assert len(replies_to(messages, second)) == 1


# -- 4. a command sent while the bot is stopped --------------------------------------------------


async def test_command_sent_while_stopped_is_answered_once_after_start(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    bot = bot_account.user_id
    await bot_account.stop()
    while_down = await member.send(room, "!ping")
    await member.sync(timeout_ms=300)
    assert member.messages_from(room, bot) == []

    await bot_account.start()
    await member.wait_for_replies(room, bot, [while_down])
    after = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot, [while_down, after])
    await member.settle(1.0)
    assert_answered_once(member.messages_from(room, bot), [while_down, after])


async def test_stopping_at_any_moment_never_loses_or_repeats_an_answer(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    """Stop the bot while it is somewhere between reading a command and sending its reply."""
    bot = bot_account.user_id
    sent: list[str] = []
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2):
        sent += await member.send_many(room, ["!ping", "!hilfe"])
        await asyncio.sleep(delay)
        await bot_account.stop()
        await bot_account.start()
    await member.wait_for_replies(room, bot, sent)
    await member.settle(1.0)
    assert_answered_once(member.messages_from(room, bot), sent)


# -- 5. a hundred commands at once --------------------------------------------------------------


async def test_hundred_concurrent_commands_are_each_answered_once(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    bot = bot_account.user_id
    # Each body differs (trailing spaces, which the bot strips): a burst of byte-identical
    # events from one device once came back from Synapse with one event id for two sends.
    sent = await member.send_many(room, ["!ping" + " " * i for i in range(100)],
                                  concurrently=True)
    assert len(set(sent)) == 100
    await member.wait_for_replies(room, bot, sent, timeout=45)
    await member.settle(1.0)
    assert_answered_once(member.messages_from(room, bot), sent)


async def test_hundred_commands_while_stopped_are_paged_back_and_each_answered_once(
    bot_account: BotAccount, member: Member, room: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than the sync's 50-event timeline: a sync after the start is `limited`, the bot
    pages back to where it stopped reading."""
    bot = bot_account.user_id
    before = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot, [before])
    await bot_account.stop()

    sent = await member.send_many(room, ["!ping"] * 100)
    with record_syncs(monkeypatch) as syncs:
        await bot_account.start()
        await member.wait_for_replies(room, bot, [before, *sent], timeout=45)
        await member.settle(1.0)
    assert_answered_once(member.messages_from(room, bot), [before, *sent])
    timelines = [t for batch in syncs.batches for t in batch.rooms if t.room_id == room]
    # (The very first sync may be Synapse's cached answer to the stopped bot's last long poll.)
    assert any(t.limited and len(t.events) >= 50 for t in timelines), "no sync was limited"
    assert any(r == room for r, _ in syncs.pages), "the bot never paged back"


async def test_commands_in_the_gap_are_answered_when_the_sync_state_holds_the_bots_join(
    homeserver: Homeserver, bot_account: BotAccount, member: Member, room: str,
    make_member: MakeMember, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A limited sync's `state` block may carry the bot's own (old) join event.

    With lazy-loaded members Synapse puts the membership of every sender in the timeline into
    `state` unless it remembers having sent it to this device; that memory is in-process and
    expires after 30 minutes, so after a Synapse restart (or a quiet half hour) the bot's own
    join comes along as soon as one of its own events is among the timeline's last 50. That old
    join is no reason to drop the gap the bot paged back for.
    """
    bot = bot_account.user_id
    first = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot, [first])
    await bot_account.stop()

    other_device = await make_member(user_id=bot)  # e.g. an admin's client on the bot account
    gap = await member.send_many(room, ["!ping"] * 60)
    own = await other_device.send_raw(room, "m.room.message",
                                      {"msgtype": "m.notice", "body": "Wartung beendet."})
    recent = await member.send_many(room, ["!ping"] * 5)
    homeserver.restart()  # forgets which memberships it sent to which device (about 1 s)

    with record_syncs(monkeypatch) as syncs:
        await bot_account.start()
        sentinel = await member.send(room, "!ping")
        await member.wait_for_replies(room, bot, [sentinel])  # everything before is read now
        await member.settle(0.7)
    messages = [m for m in member.messages_from(room, bot) if m["event_id"] != own]
    assert_answered_once(messages, [first, *gap, *recent, sentinel])
    # And the case this test is about did happen: a limited sync with the bot's join in `state`.
    timelines = [t for batch in syncs.batches for t in batch.rooms if t.room_id == room]
    assert any(t.limited for t in timelines), "no sync was limited"
    assert any(e.type == "m.room.member" and e.state_key == bot
               for t in timelines for e in t.state), "the bot's join was not in `state`"


# -- what a command causes: once, through faults at every step ----------------------------------


async def direct_rooms_of(person: Member, besides: str, timeout: float = 30.0) -> list[str]:
    """The rooms `person` was invited to other than `besides`, waiting for at least one."""
    deadline = time.monotonic() + timeout
    while True:
        await person.sync(timeout_ms=300)
        rooms = [r for r in person.invites if r != besides]
        if rooms or time.monotonic() > deadline:
            return rooms


async def test_a_cancellation_tells_each_registrant_once_through_a_lost_answer_502_and_restart(
    bot_account: BotAccount, member: Member, room: str, make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bot = bot_account.user_id
    day = (datetime.now(BERLIN) + timedelta(days=10)).date()
    added = await member.ask(room, bot, f"!werkstatt neu {day:%d.%m.%Y} 10:00-12:00 KI")
    assert "Angelegt" in added["content"]["body"], added["content"]["body"]
    registrants = [await make_member("angemeldet") for _ in range(3)]
    for person in registrants:
        await member.invite(room, person.user_id)
        await person.join(room)
        signed_up = await person.ask(room, bot, "!anmelden 1")
        assert "angemeldet" in signed_up["content"]["body"]

    # The first direct room is made, but the answer never arrives; the next creation gets a 502.
    create_room = MatrixConnection.create_room
    tries: list[str] = []

    async def faulty(self: MatrixConnection, **kwargs: Any) -> str:
        if not kwargs.get("is_direct"):
            return await create_room(self, **kwargs)
        tries.append(kwargs["invite"][0])
        if len(tries) == 1:
            await create_room(self, **kwargs)
            raise TransientError("ServerDisconnectedError")
        if len(tries) == 2:
            raise TransientError("create room: HTTP 502")
        return await create_room(self, **kwargs)

    monkeypatch.setattr(MatrixConnection, "create_room", faulty)
    cancelled = await member.ask(room, bot, "!werkstatt absagen 1")
    assert "Abgesagt: KI" in cancelled["content"]["body"]
    await bot_account.stop()  # while the direct messages go out
    await bot_account.start()

    for person in registrants:
        [direct] = await direct_rooms_of(person, room)
        await person.join(direct)
        [told] = await person.wait_for_messages(direct, bot, 1)
        assert "leider abgesagt" in told["content"]["body"]
    await bot_account.wait_idle()
    for person in registrants:
        await person.settle(1.0)
        [direct] = [r for r in person.invites if r != room]  # one room each, never a second
        assert len(person.messages_from(direct, bot)) == 1
    await member.settle(0.5)
    assert sum("Abgesagt: KI" in m["content"]["body"]
               for m in member.messages_from(room, bot)) == 1
    assert len(tries) >= 3
    assert await bot_account.running.storage.outbox.failed() == []
