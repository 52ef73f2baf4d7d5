"""nio's key store as the bot uses it: what it saves, and the work it no longer does per sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.matrix import MatrixConnection
from bot.settings import MatrixSettings


@pytest.fixture
async def connection(tmp_path: Path):
    matrix = MatrixConnection(MatrixSettings(
        homeserver="http://127.0.0.1:9", user_id="@bot:localhost", password="x",
        store_path=tmp_path / "store", encryption=True))
    matrix.client.restore_login("@bot:localhost", "DEVICE", "token")  # opens the store
    yield matrix
    await matrix.close()


async def test_rooms_that_became_encrypted_are_still_saved(connection: MatrixConnection):
    store = connection.client.store
    store.save_encrypted_rooms({"!a:localhost"})
    assert store.load_encrypted_rooms() == {"!a:localhost"}


async def test_a_sync_without_newly_encrypted_rooms_opens_no_transaction(
        connection: MatrixConnection, monkeypatch: pytest.MonkeyPatch):
    store = connection.client.store

    def no_transaction() -> None:
        raise AssertionError("a transaction for nothing")

    monkeypatch.setattr(store.database, "atomic", no_transaction)
    store.save_encrypted_rooms(set())
    with pytest.raises(AssertionError):
        store.save_encrypted_rooms({"!b:localhost"})
