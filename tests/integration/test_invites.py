"""Invite policy: invites from allowed servers (and from bot admins) are joined, others refused."""

from __future__ import annotations

import pytest

from tests.integration.conftest import MakeBot
from tests.integration.harness import BotAccount, Member, replies_to

pytestmark = pytest.mark.synapse


async def test_invite_from_allowed_server_is_joined_and_served(
    bot_account: BotAccount, member: Member
) -> None:
    # Default settings of the harness: allowed_servers = [the test server] ("localhost").
    await bot_account.start()
    await bot_account.wait_synced()
    room_id = await member.create_room(invite=[bot_account.user_id])
    assert await member.wait_membership(room_id, bot_account.user_id, "join") == "join"
    event_id = await member.send(room_id, "!ping")
    messages = await member.wait_for_replies(room_id, bot_account.user_id, [event_id])
    assert len(replies_to(messages, event_id)) == 1


async def test_invite_from_server_not_allowed_is_rejected(
    make_bot: MakeBot, member: Member
) -> None:
    bot = await make_bot(allowed_servers=["example.org"])
    await bot.start()
    await bot.wait_synced()
    room_id = await member.create_room(invite=[bot.user_id])
    # The invite itself went through; the bot answers it by leaving ("leave" = rejected).
    assert await member.wait_membership(room_id, bot.user_id, "leave") == "leave"
    # And it stays out: a command in the room gets no answer.
    await member.send(room_id, "!ping")
    await member.settle(0.7)
    assert member.messages_from(room_id, bot.user_id) == []
    assert await member.membership(room_id, bot.user_id) == "leave"


async def test_invite_waiting_at_first_start_from_server_not_allowed_is_rejected(
    make_bot: MakeBot, member: Member
) -> None:
    """The invite arrives while the bot never ran yet: its very first sync must judge it too."""
    bot = await make_bot(allowed_servers=["example.org"])
    room_id = await member.create_room(invite=[bot.user_id])
    assert await member.membership(room_id, bot.user_id) == "invite"
    await bot.start()
    assert await member.wait_membership(room_id, bot.user_id, "leave") == "leave"


async def test_invite_from_admin_is_joined_even_if_their_server_is_not_allowed(
    make_bot: MakeBot, member: Member
) -> None:
    bot = await make_bot(allowed_servers=["example.org"], admins=[member.user_id])
    await bot.start()
    await bot.wait_synced()
    room_id = await member.create_room(invite=[bot.user_id])
    assert await member.wait_membership(room_id, bot.user_id, "join") == "join"
    event_id = await member.send(room_id, "!ping")
    messages = await member.wait_for_replies(room_id, bot.user_id, [event_id])
    assert len(replies_to(messages, event_id)) == 1
    # And the admin may run the admin-only command.
    status = (await member.ask(room_id, bot.user_id, "!status"))["content"]["body"]
    assert status.startswith("Status\n- Version:")


async def test_invite_waiting_at_first_start_from_allowed_server_is_joined(
    bot_account: BotAccount, member: Member
) -> None:
    room_id = await member.create_room(invite=[bot_account.user_id])
    await bot_account.start()
    assert await member.wait_membership(room_id, bot_account.user_id, "join") == "join"
