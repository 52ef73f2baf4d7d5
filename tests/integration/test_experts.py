"""The expert directory as members use it: a profile, a search, an export into a direct message."""

from __future__ import annotations

import json

import nio
import pytest

from tests.integration.conftest import MakeMember
from tests.integration.harness import BotAccount, Member

pytestmark = pytest.mark.synapse


async def fill_profile(member: Member, room: str, bot: str) -> None:
    for command in ("!profil zustimmen", "!profil setzen name Petra Beispiel",
                    "!profil setzen organisation Stadt Wiesbaden",
                    "!profil setzen bundesland Hessen",
                    "!profil themen hinzufügen Digitalisierung",
                    "!profil themen hinzufügen Künstliche Intelligenz"):
        reply = await member.ask(room, bot, command)
        assert reply["content"]["msgtype"] == "m.notice"


async def test_a_member_finds_another_without_pinging_them(
    bot_account: BotAccount, member: Member, room: str, make_member: MakeMember
) -> None:
    await fill_profile(member, room, bot_account.user_id)
    searcher = await make_member("searcher")
    await member.invite(room, searcher.user_id)
    await searcher.join(room)

    reply = await searcher.ask(room, bot_account.user_id, "!experten digital state:hessen")
    content = reply["content"]
    assert "Petra Beispiel" in content["body"] and "Stadt Wiesbaden" in content["body"]
    assert f'href="https://matrix.to/#/{member.user_id}"' in content["formatted_body"]
    assert content["m.mentions"] == {}  # a link, never a ping

    reply = await searcher.ask(room, bot_account.user_id, "!experten KI")  # a synonym
    assert "Petra Beispiel" in reply["content"]["body"]

    reply = await searcher.ask(room, bot_account.user_id, '!experten "; DROP TABLE profiles')
    assert reply["content"]["msgtype"] == "m.notice"  # a clear answer, not an error
    assert "schiefgelaufen" not in reply["content"]["body"]


async def test_profile_export_arrives_as_a_json_file_in_a_direct_message(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    await fill_profile(member, room, bot_account.user_id)
    invites_before = len(member.invites)
    reply = await member.ask(room, bot_account.user_id, "!profil export")
    assert reply["content"]["msgtype"] == "m.notice"

    if len(member.invites) == invites_before:
        await member.wait_for_invite()
    direct_room = member.invites[invites_before]
    await member.join(direct_room)
    [file] = await member.wait_for_messages(direct_room, bot_account.user_id, 1)
    content = file["content"]
    assert content["msgtype"] == "m.file"
    assert content["filename"].endswith(".json")
    assert content["info"]["mimetype"] == "application/json"
    download = await member.client.download(content["url"])
    assert isinstance(download, nio.DownloadResponse), download
    data = json.loads(download.body)
    profile = data["profile"] if "profile" in data else data
    assert profile["user_id"] == member.user_id
    assert profile["organisation"] == "Stadt Wiesbaden"
    assert "Künstliche Intelligenz" in profile["topics"]

    reply = await member.ask(room, bot_account.user_id, "!profil löschen")
    assert "ist gelöscht" in reply["content"]["body"]
    reply = await member.ask(room, bot_account.user_id, "!experten Wiesbaden")
    assert "Petra Beispiel" not in reply["content"]["body"]
    # The direct chat's record went too; the command being answered is no stored data.
    reply = await member.ask(room, bot_account.user_id, "!profil export")
    assert "nichts gespeichert" in reply["content"]["body"]
