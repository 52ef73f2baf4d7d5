"""What is no command: edits, notices, other message types, the bot's own messages, quotes.

Each test ends with a plain `!ping` as a sentinel: once its reply is there, everything sent before
it has been read (one lane per room keeps the order), so a missing reply means "ignored".
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import MakeMember
from tests.integration.harness import BotAccount, Member, assert_answered_once, replies_to

pytestmark = pytest.mark.synapse


async def finish_with_sentinel(member: Member, room: str, bot: str, answered: list[str],
                               not_replies: tuple[str, ...] = ()) -> None:
    sentinel = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot, [*answered, sentinel])
    await member.settle(0.7)
    messages = [m for m in member.messages_from(room, bot) if m["event_id"] not in not_replies]
    assert_answered_once(messages, [*answered, sentinel])


async def test_edits_notices_and_other_msgtypes_are_not_answered(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    bot = bot_account.user_id
    original = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot, [original])
    # An edit of the command, and an edit that turns a chat message into a command.
    chat = await member.send(room, "hallo zusammen")
    for target, new_body in ((original, "!hilfe"), (chat, "!ping")):
        await member.send_raw(room, "m.room.message", {
            "msgtype": "m.text",
            "body": f"* {new_body}",
            "m.new_content": {"msgtype": "m.text", "body": new_body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target},
        })
    # Notices are what bots send: never answered, whatever they say.
    await member.send_raw(room, "m.room.message", {"msgtype": "m.notice", "body": "!help"})
    await member.send_raw(room, "m.room.message", {"msgtype": "m.notice", "body": "!ping"})
    await member.send_raw(room, "m.room.message", {"msgtype": "m.emote", "body": "!ping"})
    # Nor other event types (Synapse itself refuses messages without a string body).
    await member.send_raw(room, "org.example.custom", {"msgtype": "m.text", "body": "!ping"})
    # Text that merely contains the prefix, or only the prefix.
    await member.send(room, "bitte mal !ping senden")
    await member.send(room, "!")
    await member.send(room, "   ")
    await finish_with_sentinel(member, room, bot, [original])


async def test_the_bots_own_messages_are_not_answered(
    bot_account: BotAccount, member: Member, room: str, make_member: MakeMember
) -> None:
    """Even a plain-text command sent from the bot's own account (another device) is ignored."""
    bot = bot_account.user_id
    own_device = await make_member(user_id=bot)
    own = [
        await own_device.send(room, "!ping"),
        await own_device.send(room, "!hilfe"),
    ]
    await finish_with_sentinel(member, room, bot, [], not_replies=tuple(own))
    replies = [m for m in member.messages_from(room, bot) if m["event_id"] not in own]
    assert all(not replies_to(replies, event_id) for event_id in own)
    # Its own replies (notices) did not trigger anything either: exactly the sentinel's reply.
    assert len(replies) == 1


async def test_reply_with_fallback_quote_is_answered_but_a_quoted_command_is_not(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    bot = bot_account.user_id
    quoted = await member.send(room, "Wie prüfe ich, ob der Bot läuft?")
    reply_to = {"m.relates_to": {"m.in_reply_to": {"event_id": quoted}}}
    command = await member.send(
        room, f"> <{member.user_id}> Wie prüfe ich, ob der Bot läuft?\n\n!ping", **reply_to,
        format="org.matrix.custom.html",
        formatted_body=f"<mx-reply><blockquote>{quoted}</blockquote></mx-reply>!ping",
    )
    multi_line = await member.send(
        room, "> <@x:y> erste Zeile\n> zweite Zeile\n\n  !hilfe", **reply_to)
    # A reply whose own text is no command, quoting a command: not answered.
    await member.send(room, "> <@x:y> !ping\n\nDanke, klappt!", **reply_to)
    await member.send(room, "> <@x:y> !ping", **reply_to)
    await finish_with_sentinel(member, room, bot, [command, multi_line])
    messages = member.messages_from(room, bot)
    assert replies_to(messages, command)[0]["content"]["body"] == "Pong! Ich bin da."
    assert "das kann ich" in replies_to(messages, multi_line)[0]["content"]["body"]
