"""Updating a running deployment: a bot whose database is still in the one shared history
(schema version 17) is stopped, updated and started again. Against the real homeserver: its
session, its sync position and the rooms' settings carry on, nothing is answered twice."""

from __future__ import annotations

import sqlite3

import pytest

from storage.schema import PARTS_VERSION, SHARED_HISTORY_END
from tests.integration.harness import BotAccount, Member, reply_counts

pytestmark = pytest.mark.synapse


def back_to_the_shared_history(path: str) -> None:
    """The database as the bot before the parts left it: version 17 in `user_version`, no
    per-part versions, the outbox's two columns of then instead of the record kind and key."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        DROP TABLE schema_versions;
        ALTER TABLE outbox DROP COLUMN record_kind;
        ALTER TABLE outbox DROP COLUMN record_key;
        ALTER TABLE outbox ADD COLUMN post_of_workshop INTEGER;
        ALTER TABLE outbox ADD COLUMN follow_up_of_group TEXT;
    """)
    conn.execute(f"PRAGMA user_version = {SHARED_HISTORY_END}")
    conn.commit()
    conn.close()


async def test_a_bot_updated_on_a_database_of_the_shared_history_carries_on(
        bot_account: BotAccount, member: Member, room: str) -> None:
    bot = bot_account.user_id
    before = await member.ask(room, bot, "!einstellungen setzen sprache en")
    assert "English" in before["content"]["body"], before["content"]["body"]
    first = await member.ask(room, bot, "!ping")
    await bot_account.wait_idle()
    device = await bot_account.device_id()
    await bot_account.stop()

    database = str(bot_account.workdir / "bot.db")
    back_to_the_shared_history(database)
    running = await bot_account.start()  # the update: the new bot on the old database
    assert running.storage is not None
    parts = dict(await running.storage.db.fetchall("SELECT part, version FROM schema_versions"))
    assert parts["core"] > 0 and parts["workshops"] > 0 and parts["meet"] > 0
    assert (await running.storage.db.fetchone("PRAGMA user_version"))[0] == PARTS_VERSION

    # The same device, the room's language kept, and only the new command answered.
    assert await bot_account.device_id() == device
    after = await member.ask(room, bot, "!ping")
    assert after["content"]["body"].startswith("Pong"), after["content"]["body"]
    shown = (await member.ask(room, bot, "!config"))["content"]["body"]
    assert shown.startswith("This room's settings"), shown
    await member.settle()
    counts = reply_counts(member.messages_from(room, bot))
    assert counts[first["content"]["m.relates_to"]["m.in_reply_to"]["event_id"]] == 1
    assert all(count == 1 for event_id, count in counts.items() if event_id is not None)
