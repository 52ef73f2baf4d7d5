from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.devtools.testserver import Homeserver
from tests.integration.harness import BotAccount, Member

pytestmark = pytest.mark.synapse

MakeBot = Callable[..., Awaitable[BotAccount]]
MakeMember = Callable[..., Awaitable[Member]]


@pytest.fixture
async def bot_account(homeserver: Homeserver, tmp_path: Path) -> AsyncIterator[BotAccount]:
    account = await BotAccount.create(homeserver, tmp_path)
    yield account
    await account.stop()


@pytest.fixture
async def make_bot(homeserver: Homeserver, tmp_path: Path) -> AsyncIterator[MakeBot]:
    """More bot accounts, each with its own files: `await make_bot(allowed_servers=[...])`."""
    made: list[BotAccount] = []

    async def make(**bot: Any) -> BotAccount:
        account = await BotAccount.create(homeserver, tmp_path / f"bot-{len(made)}", **bot)
        made.append(account)
        return account

    yield make
    for account in made:
        await account.stop()


@pytest.fixture
async def member(homeserver: Homeserver) -> AsyncIterator[Member]:
    person = await Member.create(homeserver)
    yield person
    await person.close()


@pytest.fixture
async def make_member(homeserver: Homeserver) -> AsyncIterator[MakeMember]:
    """More people (or more clients of an existing account: `make_member(user_id=...)`)."""
    made: list[Member] = []

    async def make(prefix: str = "member", user_id: str | None = None) -> Member:
        if user_id is not None:
            person = await Member.login(homeserver, user_id)
        else:
            person = await Member.create(homeserver, prefix)
        made.append(person)
        return person

    yield make
    for person in made:
        await person.close()


@pytest.fixture
async def room(bot_account: BotAccount, member: Member) -> str:
    """A room the member created, with the bot invited, running and joined."""
    return await _room_with_the_bot(bot_account, member)


@pytest.fixture
async def network_room(bot_account: BotAccount, member: Member) -> str:
    """The same, with the member a network moderator (`[bot] moderators`): one who may act for
    the whole network (communities, the member register)."""
    bot_account.bot_settings["moderators"] = [member.user_id]
    return await _room_with_the_bot(bot_account, member)


async def _room_with_the_bot(bot_account: BotAccount, member: Member) -> str:
    await bot_account.start()
    await bot_account.wait_synced()
    room_id = await member.create_room(invite=[bot_account.user_id], name="Testraum")
    assert await member.wait_joined(room_id, bot_account.user_id), "bot did not join"
    return room_id
