"""A room's old history is never answered: not from before the first start, not from before a join.

What happens while the bot is stopped after it joined is no history: that is answered.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.matrix.connection import MatrixConnection
from tests.integration.conftest import MakeMember
from tests.integration.harness import BotAccount, Member, assert_answered_once, replies_to

pytestmark = pytest.mark.synapse

OLD = ["!ping", "!hilfe", "!sprache en", "!hlfe"]


def commands(count: int) -> list[str]:
    return [OLD[i % len(OLD)] for i in range(count)]


async def assert_only_new_answered(member: Member, room_id: str, bot: str) -> None:
    """A new command is answered once, and nothing else is.

    The bot reads a room in order and answers it in order: once the new command's reply is
    there, a reply to anything older would be there too.
    """
    new = await member.send(room_id, "!ping")
    await member.wait_for_replies(room_id, bot, [new])
    await member.settle(0.7)
    assert_answered_once(member.messages_from(room_id, bot), [new])


# -- 6a. before the bot's first start ----------------------------------------------------------


@pytest.mark.parametrize("count", [4, 60])
async def test_commands_from_before_the_first_start_are_not_answered(
    bot_account: BotAccount, member: Member, make_member: MakeMember, count: int
) -> None:
    # The bot's account is in the room before the bot ever ran (joined by hand, another device).
    room_id = await member.create_room(invite=[bot_account.user_id])
    by_hand = await make_member(user_id=bot_account.user_id)
    await by_hand.join(room_id)
    await member.send_many(room_id, commands(count), concurrently=True)

    await bot_account.start()
    await bot_account.wait_synced()
    await assert_only_new_answered(member, room_id, bot_account.user_id)


@pytest.mark.parametrize("count", [4, 60])
async def test_commands_before_an_invite_waiting_at_the_first_start_are_not_answered(
    bot_account: BotAccount, member: Member, count: int
) -> None:
    room_id = await member.create_room()
    await member.send_many(room_id, commands(count), concurrently=True)
    await member.invite(room_id, bot_account.user_id)

    await bot_account.start()
    assert await member.wait_joined(room_id, bot_account.user_id)
    await assert_only_new_answered(member, room_id, bot_account.user_id)


# -- 6b. before the bot joined -----------------------------------------------------------------


@pytest.mark.parametrize("count", [4, 60])
async def test_commands_from_before_the_join_are_not_answered(
    bot_account: BotAccount, member: Member, count: int
) -> None:
    await bot_account.start()
    await bot_account.wait_synced()
    room_id = await member.create_room()  # private chat: history "shared", the bot may read it
    state = await member.client.room_get_state_event(room_id, "m.room.history_visibility")
    assert state.content["history_visibility"] == "shared"
    await member.send_many(room_id, commands(count), concurrently=True)

    await member.invite(room_id, bot_account.user_id)
    assert await member.wait_joined(room_id, bot_account.user_id)
    await assert_only_new_answered(member, room_id, bot_account.user_id)


async def test_commands_from_before_a_rejoin_are_not_answered(
    bot_account: BotAccount, member: Member, room: str, make_member: MakeMember
) -> None:
    bot = bot_account.user_id
    first = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot, [first])
    kicked = await member.client.room_kick(room, bot)
    assert type(kicked).__name__ == "RoomKickResponse", kicked
    assert await member.wait_membership(room, bot, "leave") == "leave"

    await member.send_many(room, commands(8), concurrently=True)
    await member.invite(room, bot)
    assert await member.wait_membership(room, bot, "join") == "join"
    new = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot, [first, new])
    await member.settle(0.7)
    assert_answered_once(member.messages_from(room, bot), [first, new])


# -- after the join, while the bot is stopped: no history ------------------------------------


@pytest.mark.parametrize("count", [4, 60])
async def test_commands_after_a_join_made_while_stopped_are_answered(
    bot_account: BotAccount, member: Member, make_member: MakeMember, count: int
) -> None:
    """The account joined (by hand, e.g. from Element) while the bot was down; then commands."""
    bot = bot_account.user_id
    await bot_account.start()
    await bot_account.wait_synced()
    await bot_account.stop()

    room_id = await member.create_room()
    await member.send_many(room_id, ["!ping"] * 3)  # before the join: history
    await member.invite(room_id, bot)
    by_hand = await make_member(user_id=bot)
    await by_hand.join(room_id)
    after = await member.send_many(room_id, ["!ping"] * count)

    await bot_account.start()
    sentinel = await member.send(room_id, "!ping")
    await member.wait_for_replies(room_id, bot, [sentinel])  # everything before is read now
    await member.settle(0.7)
    assert_answered_once(member.messages_from(room_id, bot), [*after, sentinel])


async def test_commands_sent_while_the_first_start_is_still_joining_are_answered(
    bot_account: BotAccount, member: Member, make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first start accepts waiting invites; a join can take long (over federation: seconds).

    Commands sent after the bot joined a room, or in a room it was already in, while that first
    sync is still busy joining, come after the start: they are no history and must be answered.
    """
    bot = bot_account.user_id
    already_in = await member.create_room(invite=[bot])
    by_hand = await make_member(user_id=bot)
    await by_hand.join(already_in)
    await member.send(already_in, "!ping")  # history: not answered
    invited = await member.create_room(invite=[bot])

    join = MatrixConnection.join
    joined, sent = asyncio.Event(), asyncio.Event()

    async def slow_join(self: MatrixConnection, room_id: str) -> bool:
        ok = await join(self, room_id)
        joined.set()
        await sent.wait()  # the join's answer is slow to come back
        return ok

    monkeypatch.setattr(MatrixConnection, "join", slow_join)
    await bot_account.start()
    await asyncio.wait_for(joined.wait(), 10)
    assert await member.membership(invited, bot) == "join"
    during = [await member.send(invited, "!ping"), await member.send(already_in, "!ping")]
    sent.set()

    later = [await member.send(invited, "!ping"), await member.send(already_in, "!ping")]
    await member.wait_for_replies(invited, bot, [later[0]])
    await member.wait_for_replies(already_in, bot, [later[1]])
    await member.settle(0.7)
    unanswered = {
        name: not replies_to(member.messages_from(room_id, bot), event_id)
        for name, room_id, event_id in (("in the room just joined", invited, during[0]),
                                        ("in the room it was in", already_in, during[1]))
    }
    assert not any(unanswered.values()), f"sent during the first sync, not answered: {unanswered}"
    assert_answered_once(member.messages_from(invited, bot), [during[0], later[0]])
    assert_answered_once(member.messages_from(already_in, bot), [during[1], later[1]])
