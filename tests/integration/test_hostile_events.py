"""Events a member shapes to break the bot: the bot keeps answering everyone.

A lone surrogate (`"\\ud800"`) is valid JSON, but no UTF-8 can hold it. Synapse refuses such a
message in the clear (it cannot sign it), but in an encrypted room it only sees ciphertext: the
sender alone decides the decrypted text, and a client's JSON encoder writes the escape for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.devtools.testserver import Homeserver
from tests.integration.harness import BotAccount
from tests.integration.test_encryption import EncryptingMember, encrypted_room_with

pytestmark = pytest.mark.synapse


async def test_a_lone_surrogate_in_an_encrypted_command_stops_nothing(
    homeserver: Homeserver, bot_account: BotAccount, tmp_path: Path
) -> None:
    await bot_account.start()
    await bot_account.wait_synced()
    member = await EncryptingMember.create(homeserver, tmp_path / "member-store")
    try:
        room = await encrypted_room_with(member, bot_account.user_id)

        # nio's encoder escapes the surrogate (`\ud800`) inside the encrypted JSON.
        hostile = await member.send(room, "!ping \ud800")
        quoting = await member.send(room, "> <@x:localhost> zitat \udfff\n\n!ping")
        after = await member.send(room, "!ping")
        reply = await member.reply_to(after, bot_account.user_id)
        assert reply.body == "Pong! Ich bin da."
        # The broken characters became U+FFFD: those commands were answered too.
        assert "!ping" in (await member.reply_to(hostile, bot_account.user_id)).body  # usage
        assert (await member.reply_to(quoting, bot_account.user_id)).body == "Pong! Ich bin da."
    finally:
        await member.client.close()
