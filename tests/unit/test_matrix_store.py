"""nio's key store as the bot uses it: what it saves, the work it no longer does per sync, who
may read it, and the key its secrets are encrypted with."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nio
import pytest
from nio.crypto import InboundGroupSession, OlmAccount, OutboundGroupSession
from nio.crypto.sessions import OutboundSession

from bot.matrix.connection import MatrixConnection
from bot.matrix.crypto import PICKLE_KEY_FILE, KeyStore, StoreKeyError, device_fingerprint
from bot.settings import MatrixSettings

BOT = "@bot:localhost"
DEVICE = "DEVICE"
ROOM = "!r:localhost"


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


# -- who may read the store, and its key --------------------------------------------------------


def settings_for(store: Path, **matrix: Any) -> MatrixSettings:
    return MatrixSettings(homeserver="http://127.0.0.1:9", user_id=BOT, password="x",
                          store_path=store, encryption=True, **matrix)


async def opened(store: Path, **matrix: Any) -> MatrixConnection:
    """A connection whose key store is open, as after the bot's login."""
    connection = MatrixConnection(settings_for(store, **matrix))
    connection.client.restore_login(BOT, DEVICE, "token")
    return connection


async def identity_after_opening(store: Path, **matrix: Any) -> str:
    connection = await opened(store, **matrix)
    try:
        assert connection.client.olm is not None
        return connection.client.olm.account.identity_keys["ed25519"]
    finally:
        await connection.close()


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def store_database(store: Path) -> Path:
    return store / f"{BOT}_{DEVICE}.db"


def unlocks(store: Path, key: str) -> bool:
    """Whether `key` decrypts the device's account in the store (read as nio does)."""
    database = nio.store.DefaultStore(BOT, DEVICE, str(store), key)
    try:
        database.load_account()
    except ValueError:
        return False
    finally:
        database.database.close()
    return True


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    before = os.umask(0o000)
    yield
    os.umask(before)


async def test_the_store_is_made_owner_only_whatever_the_umask(tmp_path: Path,
                                                               permissive_umask: None):
    store = tmp_path / "store"
    connection = await opened(store)
    try:
        files = sorted(p.name for p in store.iterdir())
        assert files == sorted([PICKLE_KEY_FILE, store_database(store).name])
        assert mode(store) == 0o700
        assert {p.name: mode(p) for p in store.iterdir()} == {name: 0o600 for name in files}
    finally:
        await connection.close()


async def test_an_existing_store_readable_by_others_is_tightened(tmp_path: Path):
    store = tmp_path / "store"
    await identity_after_opening(store)
    store.chmod(0o755)  # as an earlier version left it
    for file in store.iterdir():
        file.chmod(0o644)
    await identity_after_opening(store)
    assert mode(store) == 0o700
    assert {mode(p) for p in store.iterdir()} == {0o600}


async def test_the_key_file_is_made_once_and_reused(tmp_path: Path):
    store = tmp_path / "store"
    identity = await identity_after_opening(store)
    key = (store / PICKLE_KEY_FILE).read_text().strip()
    assert len(key) >= 40
    assert unlocks(store, key) and not unlocks(store, "DEFAULT_KEY") and not unlocks(store, "")
    assert await identity_after_opening(store) == identity  # the same device keys
    assert (store / PICKLE_KEY_FILE).read_text().strip() == key
    assert device_fingerprint(settings_for(store), DEVICE) == identity


async def test_a_configured_key_is_used_and_no_key_file_is_made(tmp_path: Path):
    store = tmp_path / "store"
    identity = await identity_after_opening(store, store_pickle_key="aus-der-konfiguration")
    assert not (store / PICKLE_KEY_FILE).exists()
    assert unlocks(store, "aus-der-konfiguration")
    assert await identity_after_opening(store, store_pickle_key="aus-der-konfiguration") \
        == identity


def make_store_the_old_way(store: Path) -> tuple[str, str, str]:
    """A store as the bot made it before it chose a key (nio's default), with an Olm session
    and a room key in it: the device's identity key, the session's and the room key's ids."""
    store.mkdir()
    client = nio.AsyncClient("http://127.0.0.1:9", BOT, store_path=str(store),
                             config=nio.AsyncClientConfig(encryption_enabled=True))
    client.restore_login(BOT, DEVICE, "token")
    assert client.olm is not None
    account = client.olm.account
    peer = OlmAccount()
    peer.generate_one_time_keys(1)
    session = OutboundSession(account, peer.identity_keys["curve25519"],
                              next(iter(peer.one_time_keys["curve25519"].values())))
    client.store.save_session(peer.identity_keys["curve25519"], session)
    room_key = InboundGroupSession(OutboundGroupSession().session_key,
                                   peer.identity_keys["ed25519"],
                                   peer.identity_keys["curve25519"], ROOM)
    client.store.save_inbound_group_session(room_key)
    client.store.database.close()
    assert unlocks(store, "DEFAULT_KEY")
    return account.identity_keys["ed25519"], session.id, room_key.id


def what_the_store_holds(connection: MatrixConnection) -> tuple[str, list[str], list[str]]:
    olm = connection.client.olm
    assert olm is not None
    return (olm.account.identity_keys["ed25519"], [s.id for s in olm.session_store],
            [s.id for s in olm.inbound_group_store])


async def test_a_store_made_with_nios_default_key_keeps_its_keys_under_a_new_one(tmp_path: Path):
    store = tmp_path / "store"
    identity, session_id, room_key_id = make_store_the_old_way(store)
    for _ in range(2):  # re-encrypted once, then simply opened
        connection = await opened(store)
        try:
            assert what_the_store_holds(connection) == (identity, [session_id], [room_key_id])
        finally:
            await connection.close()
        key = (store / PICKLE_KEY_FILE).read_text().strip()
        assert unlocks(store, key) and not unlocks(store, "DEFAULT_KEY")


async def test_a_key_configured_later_takes_the_store_over(tmp_path: Path):
    store = tmp_path / "store"
    identity, session_id, room_key_id = make_store_the_old_way(store)
    await identity_after_opening(store)  # now under the key file's key
    connection = await opened(store, store_pickle_key="später-gesetzt")
    try:
        assert what_the_store_holds(connection) == (identity, [session_id], [room_key_id])
    finally:
        await connection.close()
    assert unlocks(store, "später-gesetzt")

    # Without it again, the store cannot be read: the bot says so and changes nothing.
    with pytest.raises(StoreKeyError, match="store_pickle_key"):
        await opened(store)
    assert await identity_after_opening(store, store_pickle_key="später-gesetzt") == identity


async def test_a_failure_while_re_encrypting_leaves_the_store_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = tmp_path / "store"
    identity, _, _ = make_store_the_old_way(store)

    def crash(*args: Any) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(KeyStore, "save_inbound_group_session", crash)
        with pytest.raises(OSError):
            await opened(store)
    assert unlocks(store, "DEFAULT_KEY")  # the transaction was rolled back as a whole
    assert await identity_after_opening(store) == identity


async def test_an_empty_key_file_stops_the_start_instead_of_replacing_the_key(tmp_path: Path):
    store = tmp_path / "store"
    await identity_after_opening(store)
    (store / PICKLE_KEY_FILE).write_text("")
    with pytest.raises(StoreKeyError, match="empty"):
        MatrixConnection(settings_for(store))


async def test_a_store_that_cannot_be_unlocked_stops_the_bot_with_its_message(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from bot.runtime import run_bot
    from bot.settings import Settings, StorageSettings

    store = tmp_path / "store"
    await identity_after_opening(store)
    (store / PICKLE_KEY_FILE).write_text("")
    settings = Settings(matrix=settings_for(store),
                        storage=StorageSettings(database=tmp_path / "bot.db"))
    with caplog.at_level(logging.ERROR, logger="bot.runtime"), \
            pytest.raises(SystemExit) as stopped:
        await run_bot(settings)
    assert stopped.value.code == 1
    assert any("is empty" in r.getMessage() for r in caplog.records)
