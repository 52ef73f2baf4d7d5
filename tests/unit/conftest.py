from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from commands.features import open_storage
from storage import Storage
from tests.unit.fakes import BOT


@pytest.fixture
async def storage() -> AsyncIterator[Storage]:
    """A fresh, fully migrated in-memory database."""
    store = await open_storage(":memory:")
    yield store
    await store.close()


@pytest.fixture
async def logged_in(storage: Storage) -> Storage:
    """Storage with the bot's session row, as after `MatrixConnection.start_session`."""
    await storage.session.save_login(BOT, "DEVICE", "token-123")
    return storage
