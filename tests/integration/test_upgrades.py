"""An upgraded room, from a member's side: the bot follows it and carries over what was bound to
the room (its settings, its community listing, the space's child link)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.harness import BotAccount, Member, unique
from tests.integration.test_communities import state_of

pytestmark = pytest.mark.synapse


async def upgrade(member: Member, room_id: str) -> str:
    """Synapse's room upgrade, as a member's client asks for it: the successor's id."""
    client = member.client
    response = await client.send(
        "POST", f"/_matrix/client/v3/rooms/{room_id}/upgrade?access_token={client.access_token}",
        data='{"new_version": "12"}', headers={"Content-Type": "application/json"})
    body = await response.json()
    assert response.status == 200, body
    return body["replacement_room"]


async def test_an_upgraded_room_keeps_its_settings_and_its_community_listing(
    bot_account: BotAccount, member: Member, network_room: str
) -> None:
    bot = bot_account.user_id
    alias = unique("upgrade")
    old = await member.create_room(invite=[bot], alias=alias, name="Werkstattraum")
    assert await member.wait_joined(old, bot)
    server = bot_account.homeserver.server_name
    linked = await member.ask(network_room, bot,
                              f"!community verknüpfen werkraum #{alias}:{server} Werkraum")
    assert "Werkraum (werkraum)" in linked["content"]["body"], linked["content"]["body"]
    changed = await member.ask(old, bot, "!einstellungen setzen sprache en")
    assert "English" in changed["content"]["body"] or "Englisch" in changed["content"]["body"]

    new = await upgrade(member, old)
    await member.invite(new, bot)  # the successor of a private room is invite-only
    assert await member.wait_joined(new, bot, timeout=30), "the bot did not follow the upgrade"

    running = bot_account.running
    assert running is not None and running.storage is not None and running.connection
    deadline = time.monotonic() + 20  # the bot joins on the invite, then carries the room over
    while await running.storage.rooms.language(new) != "en":
        assert time.monotonic() < deadline, "the room's settings did not come along"
        await asyncio.sleep(0.2)
    # The settings came along: the bot answers in English there.
    shown = (await member.ask(new, bot, "!config"))["content"]["body"]
    assert shown.startswith("This room's settings") and "English" in shown, shown
    listing = (await member.ask(new, bot, "!communities"))["content"]["body"]
    assert "Werkraum" in listing, listing
    community = await running.storage.communities.get("werkraum")
    assert community is not None and community.room_id == new
    space = await running.storage.communities.space()
    bot_client = running.connection.client
    deadline = time.monotonic() + 15
    while (await state_of(bot_client, space, "m.space.child", new) or {}).get("via") is None:
        assert time.monotonic() < deadline, "the space does not list the successor"
        await asyncio.sleep(0.2)
    assert not (await state_of(bot_client, space, "m.space.child", old) or {}).get("via")
