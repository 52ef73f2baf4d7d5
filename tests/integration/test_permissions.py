"""Levels follow the room's power levels, also when a change races a level lookup."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.matrix.connection import MatrixConnection
from bot.matrix.permissions import Permissions
from tests.integration.conftest import MakeMember
from tests.integration.harness import BotAccount, Member

pytestmark = pytest.mark.synapse

REFUSED = "Den Befehl !sprache dürfen nur Personen mit der Rolle Raum-Moderation ausführen."
NETWORK_ONLY = "dürfen nur Personen mit der Rolle Netzwerk-Moderation ausführen."


async def test_demotion_during_a_level_lookup_is_not_forgotten(
    bot_account: BotAccount, member: Member, make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slow /state answer that was read before a demotion must not outlive the demotion.

    The bot caches each room's power levels and drops the cache when its sync shows a change.
    Here the state request of one command is still under way when the sync shows that the
    member was demoted; the answer (read before the demotion) arrives after the cache was
    dropped. The command itself may still count as the moderator's; every later one must not.
    """
    read_state = MatrixConnection.room_state
    forget = Permissions.forget
    state_read, forgotten, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_room_state(self: MatrixConnection, room_id: str) -> Any:
        result = await read_state(self, room_id)
        if not state_read.is_set():  # only the first lookup is held back
            state_read.set()
            await release.wait()
        return result

    def watched_forget(self: Permissions, room_id: str) -> None:
        forget(self, room_id)
        if state_read.is_set():
            forgotten.set()

    monkeypatch.setattr(MatrixConnection, "room_state", slow_room_state)
    monkeypatch.setattr(Permissions, "forget", watched_forget)

    bot = bot_account.user_id
    await bot_account.start()
    await bot_account.wait_synced()
    room = await member.create_room(invite=[bot])
    assert await member.wait_joined(room, bot)
    moderator = await make_member("moderator")
    await member.invite(room, moderator.user_id)
    await moderator.join(room)
    await member.set_power_level(room, moderator.user_id, 50)

    first = await moderator.send(room, "!sprache en")
    await asyncio.wait_for(state_read.wait(), 10)  # the bot read "50" and is still waiting
    await member.set_power_level(room, moderator.user_id, 0)  # demoted
    await asyncio.wait_for(forgotten.wait(), 10)  # the bot's sync saw the demotion
    release.set()
    await moderator.wait_for_replies(room, bot, [first])

    after = (await moderator.ask(room, bot, "!sprache de"))["content"]["body"]
    assert "Only people with the role room moderator" in after or after == REFUSED, (
        f"a demoted member still counts as moderator: {after!r}")


async def test_power_in_a_room_of_ones_own_or_the_bots_direct_chat_acts_for_nobody_else(
    bot_account: BotAccount, member: Member, make_member: MakeMember,
) -> None:
    """A member holds power 100 in a room they made and (before) in the bot's direct chat: that
    is no right to register communities or members for the whole network. A configured network
    moderator may, from any room."""
    network_moderator = await make_member("netmod")
    bot_account.bot_settings["moderators"] = [network_moderator.user_id]
    bot = bot_account.user_id
    await bot_account.start()
    await bot_account.wait_synced()
    own_room = await member.create_room(invite=[bot])  # the member holds power 100 here
    assert await member.wait_joined(own_room, bot)
    for command in ("!community anlegen hack Hackhausen", "!kommune neu Hackhausen land=Hessen"):
        answer = (await member.ask(own_room, bot, command))["content"]["body"]
        assert answer.endswith(NETWORK_ONLY), answer
    # The room's own settings are the member's to change there.
    assert "antworte ich ab jetzt auf" in (
        await member.ask(own_room, bot, "!sprache de"))["content"]["body"]

    # The bot's direct chat (made for the export) gives the member no power at all.
    await member.ask(own_room, bot, "!profil zustimmen")
    invites_before = len(member.invites)
    await member.ask(own_room, bot, "!profil export")
    if len(member.invites) == invites_before:
        await member.wait_for_invite()
    direct_room = member.invites[invites_before]
    await member.join(direct_room)
    for command in ("!kommune neu Hackhausen land=Hessen", "!sprache en"):
        answer = (await member.ask(direct_room, bot, command))["content"]["body"]
        assert "dürfen nur Personen mit der Rolle" in answer, answer

    shared = await network_moderator.create_room(invite=[bot, member.user_id])
    assert await network_moderator.wait_joined(shared, bot)
    added = (await network_moderator.ask(shared, bot, "!kommune neu Wiesbaden land=Hessen"))
    assert "Eingetragen: Wiesbaden" in added["content"]["body"]
    await member.join(shared)
    listing = (await member.ask(shared, bot, "!kommunen"))["content"]["body"]
    assert "Wiesbaden" in listing and "Hackhausen" not in listing
