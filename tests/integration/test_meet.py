"""NExT-to-meet-you against Synapse: a reminder posted once across restarts; a pairing round
makes one room per pair with both invited and the introduction in it, also when the bot is
restarted in the middle of making them, and never posts into a room someone else made under the
pair room's alias."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import nio
import pytest

from bot.devtools.testserver import Homeserver
from bot.matrix.connection import MatrixConnection, TransientError
from bot.matrix.own_rooms import keyed_alias
from bot.runtime import Bot
from commands.meet import STATE_EVENT
from commands.schedule import Occurrence
from storage.meet import GroupRow
from tests.integration.conftest import MakeMember
from tests.integration.harness import BotAccount, Member
from tests.integration.test_encryption import EncryptingMember

pytestmark = pytest.mark.synapse

BERLIN = ZoneInfo("Europe/Berlin")
LINK = "https://meet.example.org/next"


def meet_section(start: datetime, **extra: Any) -> dict[str, Any]:
    """A daily meeting at `start`'s time of day, so that today's date is the one that counts."""
    return {"meet": {"rule": "FREQ=DAILY", "start_time": f"{start:%H:%M:%S}", "link": LINK,
                     **extra}}


async def test_a_reminder_is_posted_once_also_with_restarts_in_between(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    bot = bot_account.user_id
    switched = await member.ask(room, bot, "!einstellungen setzen treffen_erinnerungen an")
    assert "Gespeichert" in switched["content"]["body"]
    await bot_account.stop()

    # Reminded 15 minutes before: due a few seconds from now.
    start = datetime.now(BERLIN).replace(microsecond=0) + timedelta(minutes=15, seconds=12)
    bot_account.sections = meet_section(start, reminders=["15m"], pairing=False)
    await bot_account.start()  # plans the reminder …
    await bot_account.stop()
    await bot_account.start()  # … and plans it again after a restart before it is due

    messages = await member.wait_for_messages(room, bot, 2, timeout=40)
    assert len(messages) == 2, "no reminder arrived"
    reminder = messages[-1]["content"]["body"]
    assert "Erinnerung: NExT-to-meet-you" in reminder and LINK in reminder
    assert f"{start:%d.%m.%Y}, {start:%H:%M}–" in reminder

    await bot_account.stop()
    await bot_account.start()  # a restart after it was posted
    await bot_account.wait_synced()
    await member.settle(2)
    assert len(member.messages_from(room, bot)) == 2  # posted once


async def invites_of(person: Member) -> list[str]:
    await person.sync(timeout_ms=0)
    return list(person.invites)


async def test_a_round_makes_one_room_per_pair_with_the_introduction_even_across_a_restart(
    bot_account: BotAccount, member: Member, room: str, make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bot = bot_account.user_id
    joined = await member.ask(room, bot, "!treffen mitmachen")
    assert "dabei" in joined["content"]["body"]
    others = [await make_member("paar") for _ in range(3)]
    running = bot_account.running
    assert running is not None and running.storage is not None
    for person in others:  # as if they had said `!treffen mitmachen` somewhere
        await running.storage.meet.join(person.user_id, 0)
    await bot_account.stop()

    # The second room's creation reaches the server, but its answer is lost: the bot stays
    # without it until it is restarted.
    created: list[str] = []
    create_room = MatrixConnection.create_room

    async def losing_second_answer(self: MatrixConnection, **kwargs: Any) -> str:
        room_id = await create_room(self, **kwargs)
        created.append(room_id)
        if len(created) == 2:
            raise TransientError("answer lost")
        return room_id

    monkeypatch.setattr(MatrixConnection, "create_room", losing_second_answer)
    # Paired at once: the date is two hours from now, pairs are made a day before.
    start = datetime.now(BERLIN).replace(microsecond=0) + timedelta(hours=2)
    # Plain clients read the introductions: rooms unencrypted (encrypted ones: further down).
    bot_account.sections = meet_section(start, reminders=[], pairing_lead="1d",
                                        encrypt_rooms=False)
    await bot_account.start()
    everyone = [member, *others]
    for _ in range(100):
        if len(created) == 2:
            break
        await member.sync(timeout_ms=100)
    assert len(created) == 2
    await bot_account.stop()  # restart in the middle of the round
    monkeypatch.setattr(MatrixConnection, "create_room", create_room)
    await bot_account.start()
    running = bot_account.running
    assert running is not None and running.storage is not None

    # Every member invited exactly once, into one of exactly two rooms.
    invited: dict[str, list[str]] = {}
    for person in everyone:
        rooms = []
        for _ in range(40):
            rooms = [r for r in await invites_of(person) if r != room]
            if rooms:
                break
        invited[person.user_id] = rooms
    await bot_account.wait_idle()
    for person in everyone:  # whatever else may have come meanwhile
        invited[person.user_id] = [r for r in await invites_of(person) if r != room]
    assert all(len(rooms) == 1 for rooms in invited.values()), invited
    assert sorted({r for rooms in invited.values() for r in rooms}) == sorted(created)
    groups = await running.storage.meet.groups()
    assert sorted(g.room_id for g in groups) == sorted(created)
    for group in groups:
        assert sorted(u for u, rooms in invited.items() if rooms == [group.room_id]) == list(
            group.members)

    # Each room: direct, marked with its group, and the introduction once.
    for person in everyone:
        [pair_room] = invited[person.user_id]
        await person.join(pair_room)
        state = await person.client.room_get_state_event(pair_room, STATE_EVENT)
        assert isinstance(state, nio.RoomGetStateEventResponse), state
        assert state.content["group"].startswith(f"{start:%Y-%m-%d}:")
        [intro] = await person.wait_for_messages(pair_room, bot, 1)
        body = intro["content"]["body"]
        assert "Kennenlern-Paar" in body and LINK in body
        assert all(u in body for u in invited if invited[u] == [pair_room])
    await member.settle(1.5)
    for person in everyone:
        [pair_room] = invited[person.user_id]
        assert len(person.messages_from(pair_room, bot)) == 1


async def test_an_encrypted_pair_room_gets_an_introduction_both_can_read(
    bot_account: BotAccount, homeserver: Homeserver, tmp_path: Path,
) -> None:
    people = [await EncryptingMember.create(homeserver, tmp_path / f"member{i}")
              for i in range(2)]
    try:
        start = datetime.now(BERLIN).replace(microsecond=0) + timedelta(hours=2)
        meet = {"rule": "FREQ=DAILY", "start_time": f"{start:%H:%M}", "reminders": [],
                "pairing_lead": "1d", "encrypt_rooms": True}
        bot_account.sections = {"meet": {**meet, "pairing": False}}
        running = await bot_account.start()
        assert running.storage is not None
        for person in people:
            await running.storage.meet.join(person.client.user_id, 0)
        await bot_account.stop()
        bot_account.sections = {"meet": meet}  # paired at once, into an encrypted room
        running = await bot_account.start()
        assert running.storage is not None
        room_id = None
        for _ in range(300):
            groups = await running.storage.meet.groups()
            if groups and groups[0].room_id:
                room_id = groups[0].room_id
                break
            await asyncio.sleep(0.1)
        assert room_id is not None, "no room was made"
        for person in people:
            assert isinstance(await person.client.join(room_id), nio.JoinResponse)
        await bot_account.wait_idle(timeout=30)
        for person in people:
            intro: nio.Event | None = None
            for _ in range(40):  # a room key may arrive a sync after its message, as in Element
                await person.sync()
                sent = [e for e in person.events if e.sender == bot_account.user_id
                        and isinstance(e, nio.RoomMessage | nio.MegolmEvent)]
                for index, event in enumerate(sent):
                    if isinstance(event, nio.MegolmEvent):
                        with contextlib.suppress(nio.EncryptionError):
                            sent[index] = person.client.decrypt_event(event)
                intro = sent[0] if sent else None
                if intro is not None and not isinstance(intro, nio.MegolmEvent):
                    break
            assert isinstance(intro, nio.RoomMessageNotice), intro  # not a MegolmEvent
            assert intro.decrypted  # it came encrypted
            assert "Kennenlern-Paar" in intro.body
    finally:
        for person in people:
            await person.client.close()


async def test_a_room_a_member_made_under_the_pair_rooms_alias_gets_nothing(
    bot_account: BotAccount, member: Member, room: str, make_member: MakeMember,
) -> None:
    bot = bot_account.user_id
    joined = await member.ask(room, bot, "!treffen mitmachen")
    assert "dabei" in joined["content"]["body"]
    partner = await make_member("paar")
    running = bot_account.running
    assert running is not None and running.storage is not None
    await running.storage.meet.join(partner.user_id, 0)
    start = datetime.now(BERLIN).replace(microsecond=0) + timedelta(hours=2)
    group_key = f"{start:%Y-%m-%d}:1"  # the date and the pair's number: easy to predict
    # A member makes a room under the pair room's alias before the bot does, marks it as the
    # pair's room and lets the bot in: under the alias anyone could derive from the bot's id
    # and the group, and under the keyed one (as if they had found it out).
    squatter = await make_member("squatter")
    server = bot.split(":", 1)[1]
    derived = f"next-meet-{sha256(f'{bot}|{group_key}'.encode()).hexdigest()[:20]}"
    squat = await squatter.create_room(
        invite=[bot], alias=derived,
        initial_state=[{"type": STATE_EVENT, "state_key": "", "content": {"group": group_key}}])
    keyed = keyed_alias(await running.storage.rooms.alias_key(), "meet", group_key)
    claimed = await squatter.client.room_put_alias(f"#{keyed}:{server}", squat)
    assert isinstance(claimed, nio.RoomPutAliasResponse), claimed
    assert await squatter.wait_joined(squat, bot), "bot did not join"
    await bot_account.stop()

    # Plain clients read the introduction: the room unencrypted.
    bot_account.sections = meet_section(start, reminders=[], pairing_lead="1d",
                                        encrypt_rooms=False)
    group = await _the_pairs_room(await bot_account.start())
    assert group.key == group_key and group.room_id is not None and group.room_id != squat
    for person in (member, partner):
        await person.wait_invited(group.room_id)
        await person.join(group.room_id)
        [intro] = await person.wait_for_messages(group.room_id, bot, 1)
        assert "Kennenlern-Paar" in intro["content"]["body"]
    await bot_account.wait_idle()
    await squatter.settle(1.0)
    assert squatter.messages_from(squat, bot) == []  # the introduction never went there
    assert squat not in member.invites and squat not in partner.invites


async def _the_pairs_room(running: Bot) -> GroupRow:
    """The one pair of the round, once the bot has made its room (or after 30 s)."""
    assert running.storage is not None
    groups = []
    for _ in range(300):
        groups = await running.storage.meet.groups()
        if groups and groups[0].room_id:
            break
        await asyncio.sleep(0.1)
    [group] = groups
    return group


async def _paired_room(bot_account: BotAccount, member: Member, room: str,
                       make_member: MakeMember) -> tuple[str, str, Member]:
    """`member` and a partner paired at once into a room both joined: (group, room, partner)."""
    joined = await member.ask(room, bot_account.user_id, "!treffen mitmachen")
    assert "dabei" in joined["content"]["body"]
    partner = await make_member("paar")
    running = bot_account.running
    assert running is not None and running.storage is not None
    await running.storage.meet.join(partner.user_id, 0)
    await bot_account.stop()
    # Paired at once: the date is two hours from now, pairs are made a day before.
    start = datetime.now(BERLIN).replace(microsecond=0) + timedelta(hours=2)
    bot_account.sections = meet_section(start, reminders=[], pairing_lead="1d",
                                        encrypt_rooms=False)
    group = await _the_pairs_room(await bot_account.start())
    assert group.room_id is not None, "no room was made"
    for person in (member, partner):
        await person.wait_invited(group.room_id)
        await person.join(group.room_id)
        [intro] = await person.wait_for_messages(group.room_id, bot_account.user_id, 1)
        assert "Kennenlern-Paar" in intro["content"]["body"]
    return group.key, group.room_id, partner


def thumbs_up(event_id: str) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": "👍"}}


async def test_a_thumbs_up_on_the_question_after_a_date_counts_the_pair_as_met(
    bot_account: BotAccount, member: Member, network_room: str, make_member: MakeMember,
) -> None:
    bot = bot_account.user_id
    key, pair_room, partner = await _paired_room(bot_account, member, network_room,
                                                 make_member)
    running = bot_account.running
    assert running is not None and running.storage is not None and running.scheduler
    storage = running.storage
    [intro] = member.messages_from(pair_room, bot)

    # The question after the date, as the scheduler delivers it when due.
    asked = await running.scheduler.deliver(Occurrence(
        f"meet-ask:{key}", "meet-followups", datetime.now(BERLIN), pair_room, key))
    assert asked == "sent"
    messages = await member.wait_for_messages(pair_room, bot, 2)
    assert len(messages) == 2, "no question arrived"
    question = messages[-1]
    assert "getroffen" in question["content"]["body"]

    # The bot puts 👍 and 👎 on it, so that answering is one tap.
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        taps = sorted(ev["content"]["m.relates_to"]["key"]
                      for ev in member.timeline.get(pair_room, [])
                      if ev.get("type") == "m.reaction" and ev.get("sender") == bot
                      and ev["content"]["m.relates_to"].get("event_id") == question["event_id"])
        if len(taps) >= 2 or asyncio.get_running_loop().time() > deadline:
            break
        await member.sync()
    assert taps == sorted(["👍", "👎"])
    assert await storage.meet.group_of_follow_up(question["event_id"]) == (key, pair_room)

    async def met() -> bool | None:
        [group] = await storage.meet.groups()
        return group.met

    # A 👍 on any other message (the introduction) counts nothing.
    stray = await partner.send_raw(pair_room, "m.reaction", thumbs_up(intro["event_id"]))
    for _ in range(200):
        if await storage.inbox.is_handled(stray):
            break
        await asyncio.sleep(0.1)
    assert await storage.inbox.is_handled(stray), "the bot did not take the reaction"
    assert await met() is None

    # A 👍 on the question: met, as after `!getroffen ja`.
    await member.send_raw(pair_room, "m.reaction", thumbs_up(question["event_id"]))
    for _ in range(200):
        if await met() is not None:
            break
        await asyncio.sleep(0.1)
    assert await met() is True
    stats = (await member.ask(network_room, bot, "!treffen statistik"))["content"]["body"]
    assert "geantwortet 1, davon getroffen 1 (100 %)" in stats
    await bot_account.wait_idle()
    await member.settle(1.0)
    assert len(member.messages_from(pair_room, bot)) == 2  # the tap is answered by nothing
