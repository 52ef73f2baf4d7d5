from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.testserver import Homeserver
from tests.integration.harness import BotAccount, Member

pytestmark = pytest.mark.synapse


@pytest.fixture
async def bot_account(homeserver: Homeserver, tmp_path) -> AsyncIterator[BotAccount]:
    account = await BotAccount.create(homeserver, tmp_path)
    yield account
    await account.stop()


@pytest.fixture
async def member(homeserver: Homeserver) -> AsyncIterator[Member]:
    person = await Member.create(homeserver)
    yield person
    await person.close()


@pytest.fixture
async def room(bot_account: BotAccount, member: Member) -> str:
    """A room the member created, with the bot invited, running and joined."""
    await bot_account.start()
    await bot_account.wait_synced()
    room_id = await member.create_room(invite=[bot_account.user_id], name="Testraum")
    assert await member.wait_joined(room_id, bot_account.user_id), "bot did not join"
    return room_id
