"""Communities, welcomes and per-room settings against the real homeserver, seen from members."""

from __future__ import annotations

import nio
import pytest

from tests.integration.conftest import MakeMember
from tests.integration.harness import BotAccount, Member, unique

pytestmark = pytest.mark.synapse


async def state_of(client: nio.AsyncClient, room_id: str, event_type: str,
                   state_key: str = "") -> dict | None:
    response = await client.room_get_state_event(room_id, event_type, state_key)
    return response.content if isinstance(response, nio.RoomGetStateEventResponse) else None


def greetings(member: Member, room_id: str, bot: str) -> list[str]:
    return [m["content"]["body"] for m in member.messages_from(room_id, bot)
            if m["content"]["body"].startswith(("Willkommen", "Welcome"))]


async def test_create_join_and_welcome_once_combined_for_joins_close_together(
    bot_account: BotAccount, member: Member, make_member: MakeMember
) -> None:
    bot = bot_account.user_id
    # This member's client reads plain rooms; encrypted community rooms: test_encryption.py.
    bot_account.sections = {"communities": {"welcome_delay_seconds": 2, "encrypt_rooms": False}}
    bot_account.bot_settings["moderators"] = [member.user_id]  # communities are the network's
    await bot_account.start()
    await bot_account.wait_synced()
    lobby = await member.create_room(invite=[bot])  # its creator moderates it (room v12)
    assert await member.wait_joined(lobby, bot)

    created = (await member.ask(lobby, bot, "!community anlegen ki KI in der Verwaltung"))
    assert "ist angelegt" in created["content"]["body"], created["content"]["body"]
    running = bot_account.running
    assert running is not None and running.storage is not None and running.connection
    community = await running.storage.communities.get("ki")
    space = await running.storage.communities.space()
    assert community is not None and space is not None

    # The room has its name and topic; the space lists it; the creator moderates it.
    room = community.room_id
    await member.wait_invited(room)
    await member.join(room)
    client = member.client
    assert (await state_of(client, room, "m.room.name"))["name"] == "KI in der Verwaltung"
    assert "KI in der Verwaltung" in (await state_of(client, room, "m.room.topic"))["topic"]
    levels = await state_of(client, room, "m.room.power_levels")
    assert levels["users"][member.user_id] == 50
    bot_client = running.connection.client
    assert (await state_of(bot_client, space, "m.space.child", room))["via"]
    assert (await state_of(bot_client, space, "m.room.create"))["type"] == "m.space"

    # The creator's own join is greeted (once).
    [first] = await _wait_for_greetings(member, room, bot, 1)
    assert first.startswith(f"Willkommen, {member.user_id}!")
    assert "!hilfe" in first

    # Two members ask to join; their joins close together get one greeting naming both.
    anna, ben = await make_member("anna"), await make_member("ben")
    for person in (anna, ben):
        await member.invite(lobby, person.user_id)
        await person.join(lobby)
        answer = (await person.ask(lobby, bot, "!beitreten ki"))["content"]["body"]
        assert "eingeladen" in answer, answer
        await person.wait_invited(room)
        await person.wait_invited(space)
    await anna.join(room)
    await ben.join(room)
    found = await _wait_for_greetings(member, room, bot, 2)
    assert anna.user_id in found[1] and ben.user_id in found[1]
    already = (await anna.ask(lobby, bot, "!beitreten ki"))["content"]["body"]
    assert already == "Du bist schon Mitglied in KI in der Verwaltung."

    # A restart greets nobody again.
    await bot_account.stop()
    await bot_account.start()
    await bot_account.wait_synced()
    await member.settle(4)
    assert len(greetings(member, room, bot)) == 2

    listing = (await member.ask(lobby, bot, "!gemeinschaften"))["content"]["body"]
    assert "KI in der Verwaltung (ki, Mitglieder: 4)" in listing, listing


async def _wait_for_greetings(member: Member, room: str, bot: str, count: int) -> list[str]:
    await member.wait_for_messages(room, bot, count, timeout=20)
    found = greetings(member, room, bot)
    assert len(found) >= count, found
    await member.settle(2.5)  # nothing more arrives: no second greeting for the same join
    found = greetings(member, room, bot)
    assert len(found) == count, found
    return found


async def test_link_and_archive_an_existing_room(
    bot_account: BotAccount, member: Member, network_room: str
) -> None:
    room = network_room
    bot = bot_account.user_id
    alias = unique("cloud")
    cloud = await member.create_room(invite=[bot], alias=alias, name="Cloud")
    assert await member.wait_joined(cloud, bot)
    server = bot_account.homeserver.server_name
    answer = (await member.ask(room, bot, f"!community verknüpfen cloud #{alias}:{server} "
                                          "Cloud-Werkstatt"))["content"]["body"]
    assert answer.startswith("Der Raum gehört jetzt als Cloud-Werkstatt (cloud)"), answer
    running = bot_account.running
    assert running is not None and running.storage is not None and running.connection
    space = await running.storage.communities.space()
    bot_client = running.connection.client
    assert (await state_of(bot_client, space, "m.space.child", cloud))["via"]

    archived = (await member.ask(room, bot, "!community archivieren cloud"))["content"]["body"]
    assert "ist archiviert" in archived
    assert await state_of(bot_client, space, "m.space.child", cloud) == {}
    listing = (await member.ask(room, bot, "!gemeinschaften"))["content"]["body"]
    assert "Cloud-Werkstatt" not in listing


async def test_config_is_for_moderators_recorded_and_switches_the_language(
    bot_account: BotAccount, member: Member, room: str, make_member: MakeMember
) -> None:
    bot = bot_account.user_id
    other = await make_member("other")
    await member.invite(room, other.user_id)
    await other.join(room)

    refused = (await other.ask(room, bot, "!einstellungen setzen sprache en"))["content"]
    assert refused["body"] == ("Den Befehl !einstellungen setzen dürfen nur Personen mit der "
                               "Rolle Raum-Moderation ausführen.")
    shown = (await other.ask(room, bot, "!einstellungen"))["content"]["body"]
    assert "Sprache des Bots (sprache): Deutsch" in shown

    changed = (await member.ask(room, bot, "!einstellungen setzen sprache en"))["content"]
    assert changed["body"] == "Saved: language is now English."
    assert (await other.ask(room, bot, "!ping"))["content"]["body"] == "Pong! I'm here."
    history = (await other.ask(room, bot, "!config history"))["content"]["body"]
    assert f"{member.user_id} changed language: default → English" in history
