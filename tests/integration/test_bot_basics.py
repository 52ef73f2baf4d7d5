from __future__ import annotations

import pytest

from tests.integration.harness import BotAccount, Member, replies_to

pytestmark = pytest.mark.synapse


async def test_help_is_answered_in_german_as_notice_in_reply(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    event_id = await member.send(room, "!hilfe")
    messages = await member.wait_for_messages(room, bot_account.user_id, 1)
    [reply] = replies_to(messages, event_id)
    content = reply["content"]
    assert content["msgtype"] == "m.notice"
    assert content["m.mentions"] == {}
    assert "das kann ich für dich tun" in content["body"]
    assert content["format"] == "org.matrix.custom.html"
    assert "<strong>" in content["formatted_body"]
    assert "<script" not in content["formatted_body"]
