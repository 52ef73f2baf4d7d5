"""Threads, from a member's side: a command written in a thread is answered in that thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import nio
import pytest

from bot.devtools.testserver import Homeserver
from tests.integration.harness import BotAccount, Member, assert_answered_once, replies_to
from tests.integration.test_encryption import EncryptingMember, encrypted_room_with

pytestmark = pytest.mark.synapse


def in_thread(root: str, last: str) -> dict[str, Any]:
    """The relation Element gives a message written in a thread."""
    return {"m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                             "m.in_reply_to": {"event_id": last}}}


def thread_answer(root: str, command: str) -> dict[str, Any]:
    """In the thread, with the reply to the command as the fallback for clients without threads."""
    return {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
            "m.in_reply_to": {"event_id": command}}


async def test_a_command_in_a_thread_is_answered_in_the_thread_one_in_the_main_timeline_not(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    root = await member.send(room, "Wer kommt morgen zur Werkstatt?")
    threaded = await member.send(room, "!hilfe", **in_thread(root, root))
    plain = await member.send(room, "!ping")
    messages = await member.wait_for_replies(room, bot_account.user_id, [threaded, plain])

    [answer] = replies_to(messages, threaded)
    assert answer["content"]["m.relates_to"] == thread_answer(root, threaded)
    assert "das kann ich für dich tun" in answer["content"]["body"]
    [pong] = replies_to(messages, plain)
    assert pong["content"]["m.relates_to"] == {"m.in_reply_to": {"event_id": plain}}


async def test_a_thread_on_the_bots_own_message_is_answered_in_it(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    first = await member.send(room, "!ping")
    messages = await member.wait_for_replies(room, bot_account.user_id, [first])
    [bots_post] = replies_to(messages, first)

    root = bots_post["event_id"]
    threaded = await member.send(room, "!ping", **in_thread(root, root))
    messages = await member.wait_for_replies(room, bot_account.user_id, [first, threaded])
    [answer] = replies_to(messages, threaded)
    assert answer["content"]["m.relates_to"] == thread_answer(root, threaded)


async def test_a_command_in_a_thread_sent_while_stopped_is_answered_there_once(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    bot = bot_account.user_id
    root = await member.send(room, "Eine Frage an alle")
    await bot_account.stop()
    threaded = await member.send(room, "!ping", **in_thread(root, root))

    await bot_account.start()
    messages = await member.wait_for_replies(room, bot, [threaded])
    await member.settle(1.0)
    assert_answered_once(member.messages_from(room, bot), [threaded])
    [answer] = replies_to(messages, threaded)
    assert answer["content"]["m.relates_to"] == thread_answer(root, threaded)


async def test_a_command_in_a_thread_of_an_encrypted_room_is_answered_in_the_thread(
    homeserver: Homeserver, bot_account: BotAccount, tmp_path: Path
) -> None:
    await bot_account.start()
    await bot_account.wait_synced()
    member = await EncryptingMember.create(homeserver, tmp_path / "member-store")
    try:
        room = await encrypted_room_with(member, bot_account.user_id)
        root = await member.send(room, "Eine verschlüsselte Frage")
        # As Element does, the relation goes in the clear beside the ciphertext (nio moves it).
        sent = await member.client.room_send(
            room, "m.room.message", {"msgtype": "m.text", "body": "!ping", **in_thread(root, root)},
            ignore_unverified_devices=True)
        assert isinstance(sent, nio.RoomSendResponse), sent
        reply = await member.reply_to(sent.event_id, bot_account.user_id)
        assert reply.decrypted
        assert reply.source["content"]["m.relates_to"] == thread_answer(root, sent.event_id)
        # In the clear too: the homeserver lists the encrypted answer in the thread.
        url = (f"{homeserver.url}/_matrix/client/v1/rooms/{quote(room)}/relations/"
               f"{quote(root)}/m.thread")
        headers = {"Authorization": f"Bearer {member.client.access_token}"}
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
            in_the_thread = (await response.json())["chunk"]
        [raw] = [e for e in in_the_thread if e["event_id"] == reply.event_id]
        assert raw["type"] == "m.room.encrypted"
        assert raw["content"]["m.relates_to"] == thread_answer(root, sent.event_id)
    finally:
        await member.client.close()
