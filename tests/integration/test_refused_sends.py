"""A message the homeserver refuses for good (the bot was removed from the room, the message is
too large) is set aside, not retried forever, and the room's next message goes out."""

from __future__ import annotations

import nio
import pytest

from commands.features import open_storage
from storage.outbox import OutgoingMessage
from tests.integration.harness import BotAccount, Member

pytestmark = pytest.mark.synapse


def notice(body: str) -> dict[str, str]:
    return {"msgtype": "m.notice", "body": body}


async def test_refused_sends_are_set_aside_and_each_room_goes_on(
    bot_account: BotAccount, member: Member, room: str
) -> None:
    bot = bot_account.user_id
    removed_from = await member.create_room(invite=[bot], name="Ohne Bot")
    assert await member.wait_joined(removed_from, bot), "bot did not join"
    kicked = await member.client.room_kick(removed_from, bot)
    assert isinstance(kicked, nio.RoomKickResponse), kicked
    assert await member.wait_membership(removed_from, bot, "leave") == "leave"
    await bot_account.wait_synced()
    await bot_account.stop()

    # Waiting in the outbox at the next start: two messages for the room the bot was removed
    # from; one too large for the homeserver (over 64 KB) followed by an ordinary one.
    storage = await open_storage(bot_account.workdir / "bot.db")
    await storage.outbox.add([
        OutgoingMessage("removed-1", removed_from, notice("eins")),
        OutgoingMessage("removed-2", removed_from, notice("zwei")),
        OutgoingMessage("too-large", room, notice("x" * 70_000)),
        OutgoingMessage("after", room, notice("danach")),
    ], created_at=0)
    await storage.close()
    running = await bot_account.start()
    assert running.storage is not None

    await bot_account.wait_idle(timeout=30)
    failed = {(txn, room_id, errcode)
              for txn, room_id, errcode, _ in await running.storage.outbox.failed()}
    assert failed == {("removed-1", removed_from, "M_FORBIDDEN"),
                      ("removed-2", removed_from, "M_FORBIDDEN"),
                      ("too-large", room, "M_TOO_LARGE")}
    messages = await member.wait_for_messages(room, bot, 1)
    assert [m["content"]["body"] for m in messages] == ["danach"]
    sample = running.metrics.registry.get_sample_value
    assert sample("nextbot_sends_refused_total", {"errcode": "M_FORBIDDEN"}) == 2
    assert sample("nextbot_sends_refused_total", {"errcode": "M_TOO_LARGE"}) == 1
