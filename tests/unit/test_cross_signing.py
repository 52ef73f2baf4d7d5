"""The bot's cross-signing identity (made once, kept owner-only, never a second one silently) and
MSC4153's rule for room keys: none for a device its owner's cross-signing does not vouch for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nio
import pytest
from nio.crypto import OlmDevice
from signedjson.key import decode_verify_key_base64
from signedjson.sign import verify_signed_json

from bot.matrix import cross_signing
from bot.matrix.connection import MatrixConnection
from bot.matrix.cross_signing import (
    KEYS_FILE,
    Identity,
    IdentityError,
    IdentityMismatchError,
    ensure_identity,
    load_identity,
    save_identity,
    sign_device,
    unsigned_devices,
)
from bot.matrix.crypto import _KeysQueryResponse
from bot.settings import MatrixSettings

BOT = "@bot:localhost"
ALICE = "@alice:localhost"
PASSWORD = "secret-password"


def assert_signed(signed: dict[str, Any], user_id: str, key: str) -> None:
    verify_signed_json(signed, user_id, decode_verify_key_base64("ed25519", key, key))


def device_keys(user_id: str, device_id: str, key: str = "ed25519-key") -> dict[str, Any]:
    return {"user_id": user_id, "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"ed25519:{device_id}": key, f"curve25519:{device_id}": f"curve-{key}"}}


class FakeKeyServer:
    """The homeserver's keys API as the bot's identity needs it: answers from dicts, records
    every request."""

    def __init__(self, user_id: str = BOT, wants_password: bool = False) -> None:
        self.user_id = user_id
        self.master_keys: dict[str, Any] = {}
        self.self_signing_keys: dict[str, Any] = {}
        self.devices: dict[str, dict[str, Any]] = {}
        self.wants_password = wants_password
        self.requests: list[tuple[str, dict[str, Any] | None]] = []

    async def json_request(self, method: str, path: str,
                           body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        self.requests.append((path, body))
        assert body is not None
        if path.endswith("/keys/query"):
            return 200, {"device_keys": {self.user_id: self.devices},
                         "master_keys": self.master_keys,
                         "self_signing_keys": self.self_signing_keys}
        if path.endswith("/keys/device_signing/upload"):
            if self.wants_password and "auth" not in body:
                return 401, {"session": "uia-1", "flows": [{"stages": ["m.login.password"]}]}
            if "auth" in body and body["auth"]["password"] != PASSWORD:
                return 401, {"errcode": "M_FORBIDDEN", "flows": []}
            self.master_keys = {self.user_id: body["master_key"]}
            self.self_signing_keys = {self.user_id: body["self_signing_key"]}
            return 200, {}
        if path.endswith("/keys/signatures/upload"):
            for device_id, signed in body[self.user_id].items():
                self.devices[device_id] = signed
            return 200, {"failures": {}}
        raise AssertionError(f"unexpected request {path}")

    def uploads(self, what: str) -> list[dict[str, Any]]:
        return [body for path, body in self.requests if path.endswith(what) and body]


# -- the identity and its file ----------------------------------------------------------------

def test_the_master_key_signs_the_other_two_and_the_self_signing_key_signs_devices() -> None:
    identity = Identity.generate(BOT)
    objects = identity.key_objects()
    master = objects["master_key"]
    assert master["usage"] == ["master"]
    assert master["keys"] == {f"ed25519:{identity.master_public}": identity.master_public}
    for name, usage in (("self_signing_key", "self_signing"), ("user_signing_key",
                                                               "user_signing")):
        assert objects[name]["usage"] == [usage]
        assert_signed(objects[name], BOT, identity.master_public)
    signed = identity.device_signature({**device_keys(BOT, "DEV"), "unsigned": {"x": 1}})
    assert "unsigned" not in signed
    assert_signed(signed, BOT, identity.self_signing_public)


def test_the_keys_are_kept_owner_only_and_read_back_the_same(tmp_path: Path) -> None:
    identity = Identity.generate(BOT)
    save_identity(tmp_path / "store", identity)
    path = tmp_path / "store" / KEYS_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_identity(tmp_path / "store", BOT)
    assert again is not None and again.to_json() == identity.to_json()
    assert again.master_public == identity.master_public
    assert load_identity(tmp_path / "store", ALICE) is None  # another account's keys: not used
    assert load_identity(tmp_path / "elsewhere", BOT) is None
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(IdentityError, match="cannot read"):
        load_identity(tmp_path / "store", BOT)
    path.write_text(json.dumps({"user_id": BOT}), encoding="utf-8")
    with pytest.raises(IdentityError, match="damaged"):
        load_identity(tmp_path / "store", BOT)


# -- at start -----------------------------------------------------------------------------------

async def test_the_first_start_makes_keeps_and_uploads_one_identity_later_starts_reuse_it(
        tmp_path: Path) -> None:
    server = FakeKeyServer()
    first = await ensure_identity(server, tmp_path, BOT, "DEV", "dev-key", None)
    assert load_identity(tmp_path, BOT).master_public == first.master_public
    [upload] = server.uploads("/keys/device_signing/upload")
    assert "auth" not in upload  # an account's first keys need no password (MSC3967)
    again = await ensure_identity(server, tmp_path, BOT, "DEV", "dev-key", None)
    assert again.master_public == first.master_public
    assert len(server.uploads("/keys/device_signing/upload")) == 1  # not uploaded again


async def test_where_the_homeserver_asks_the_password_proves_the_account(tmp_path: Path) -> None:
    server = FakeKeyServer(wants_password=True)
    with pytest.raises(IdentityError, match=r"set matrix\.password"):
        await ensure_identity(server, tmp_path, BOT, "DEV", "dev-key", None)
    kept = load_identity(tmp_path, BOT)
    assert kept is not None  # kept before the upload: the next attempt uploads the same
    identity = await ensure_identity(server, tmp_path, BOT, "DEV", "dev-key", PASSWORD)
    assert identity.master_public == kept.master_public
    auth = server.uploads("/keys/device_signing/upload")[-1]["auth"]
    assert auth == {"type": "m.login.password", "password": PASSWORD, "session": "uia-1",
                    "identifier": {"type": "m.id.user", "user": BOT}}


async def test_a_lost_store_is_refused_with_what_to_do_and_no_second_identity(
        tmp_path: Path) -> None:
    server = FakeKeyServer()
    identity = await ensure_identity(server, tmp_path / "old", BOT, "DEV", "dev-key", None)
    with pytest.raises(IdentityMismatchError) as refused:
        await ensure_identity(server, tmp_path / "new", BOT, "DEV", "dev-key", None)
    assert "nextbot reset-identity" in str(refused.value)
    assert cross_signing.spaced(identity.master_public) in str(refused.value)
    assert not (tmp_path / "new" / KEYS_FILE).exists()
    assert len(server.uploads("/keys/device_signing/upload")) == 1

    other = Identity.generate(BOT)  # a store with another identity: refused the same way
    save_identity(tmp_path / "other", other)
    with pytest.raises(IdentityMismatchError, match="holds another one"):
        await ensure_identity(server, tmp_path / "other", BOT, "DEV", "dev-key", None)


async def test_a_device_whose_keys_the_store_lost_is_refused(tmp_path: Path) -> None:
    server = FakeKeyServer()
    server.devices["DEV"] = device_keys(BOT, "DEV", "published-key")
    with pytest.raises(IdentityMismatchError, match="device DEV"):
        await ensure_identity(server, tmp_path, BOT, "DEV", "another-key", None)
    await ensure_identity(server, tmp_path, BOT, "DEV", "published-key", None)


async def test_the_device_is_signed_once(tmp_path: Path) -> None:
    server = FakeKeyServer()
    server.devices["DEV"] = device_keys(BOT, "DEV")
    identity = await ensure_identity(server, tmp_path, BOT, "DEV", "ed25519-key", None)
    assert await sign_device(server, identity, "DEV") is True
    assert_signed(server.devices["DEV"], BOT, identity.self_signing_public)
    assert await sign_device(server, identity, "DEV") is False
    assert len(server.uploads("/keys/signatures/upload")) == 1
    with pytest.raises(IdentityError, match="no keys"):
        await sign_device(server, identity, "OTHER")


async def test_a_new_identity_replaces_the_old_one_with_the_password(tmp_path: Path) -> None:
    server = FakeKeyServer(wants_password=True)
    old = await ensure_identity(server, tmp_path, BOT, "DEV", "k", PASSWORD)
    new = await cross_signing.reset_identity(server, tmp_path, BOT, PASSWORD)
    assert new.master_public != old.master_public
    assert load_identity(tmp_path, BOT).master_public == new.master_public
    assert cross_signing.key_of(server.master_keys[BOT], "master", BOT) == new.master_public
    with pytest.raises(IdentityError, match="wrong password"):
        await cross_signing.reset_identity(server, tmp_path, BOT, "wrong")
    assert load_identity(tmp_path, BOT).master_public == new.master_public  # kept


# -- whose devices get room keys (MSC4153) ------------------------------------------------------

class Person:
    """A user with cross-signing keys, and devices signed by them or not."""

    def __init__(self, user_id: str = ALICE) -> None:
        self.user_id = user_id
        self.identity = Identity.generate(user_id)
        objects = self.identity.key_objects()
        self.master_keys = {user_id: objects["master_key"]}
        self.self_signing_keys = {user_id: objects["self_signing_key"]}

    def signed(self, device_id: str) -> dict[str, Any]:
        return self.identity.device_signature(device_keys(self.user_id, device_id, device_id))


def test_only_devices_the_owners_self_signing_key_signed_are_vouched_for() -> None:
    alice = Person()
    devices = {"SIGNED": alice.signed("SIGNED"), "UNSIGNED": device_keys(ALICE, "UNSIGNED")}
    assert unsigned_devices(ALICE, devices, alice.master_keys,
                            alice.self_signing_keys) == {"UNSIGNED"}
    # Signed by a key that is not her self-signing key: not vouched for.
    stranger = Person()
    forged = {"FORGED": stranger.signed("FORGED")}
    forged["FORGED"]["user_id"] = ALICE
    assert unsigned_devices(ALICE, forged, alice.master_keys,
                            alice.self_signing_keys) == {"FORGED"}
    # A self-signing key her master key did not sign vouches for nothing.
    unsigned_ssk = {ALICE: {k: v for k, v in alice.self_signing_keys[ALICE].items()
                            if k != "signatures"}}
    assert unsigned_devices(ALICE, devices, alice.master_keys,
                            unsigned_ssk) == {"SIGNED", "UNSIGNED"}
    # Someone without cross-signing: nobody left out.
    assert unsigned_devices(ALICE, devices, {}, {}) is None


@pytest.fixture
async def connection(tmp_path: Path):
    matrix = MatrixConnection(MatrixSettings(
        homeserver="http://127.0.0.1:9", user_id=BOT, password="x",
        store_path=tmp_path / "store", encryption=True))
    matrix.client.restore_login(BOT, "BOTDEVICE", "token")  # opens the store
    yield matrix
    await matrix.close()


def known_device(client: nio.AsyncClient, user_id: str, device_id: str) -> OlmDevice:
    device = OlmDevice(user_id, device_id,
                           {"ed25519": device_id, "curve25519": f"curve-{device_id}"})
    client.device_store.add(device)
    return device


def shared_session(client: nio.AsyncClient, room_id: str) -> None:
    """A room key the bot has already given out (nio keeps one never shared)."""
    client.olm.create_outbound_group_session(room_id)
    client.olm.outbound_group_sessions[room_id].shared = True


def keys_query(person: Person, devices: dict[str, Any]) -> _KeysQueryResponse:
    response = _KeysQueryResponse(device_keys={person.user_id: devices}, failures={})
    response.master_keys, response.self_signing_keys = (person.master_keys,
                                                         person.self_signing_keys)
    return response


async def test_the_bot_blacklists_unsigned_devices_of_cross_signed_users_until_signed(
        connection: MatrixConnection) -> None:
    client = connection.client
    client.exclude_unsigned_devices = True
    alice = Person()
    signed, unsigned = known_device(client, ALICE, "SIGNED"), known_device(client, ALICE, "NEW")
    room = nio.MatrixRoom("!room:localhost", BOT, encrypted=True)
    room.add_member(ALICE, None, None)
    client.rooms[room.room_id] = room
    shared_session(client, room.room_id)

    client.trust_by_cross_signing(keys_query(alice, {"SIGNED": alice.signed("SIGNED"),
                                                     "NEW": device_keys(ALICE, "NEW")}))
    assert client.olm.is_device_blacklisted(unsigned)
    assert not client.olm.is_device_blacklisted(signed)
    assert room.room_id not in client.olm.outbound_group_sessions  # next message: a new key

    shared_session(client, room.room_id)
    client.trust_by_cross_signing(keys_query(alice, {"SIGNED": alice.signed("SIGNED"),
                                                     "NEW": alice.signed("NEW")}))
    assert not client.olm.is_device_blacklisted(unsigned)  # she signed it: it reads along
    assert room.room_id not in client.olm.outbound_group_sessions

    shared_session(client, room.room_id)
    client.trust_by_cross_signing(keys_query(alice, {"SIGNED": alice.signed("SIGNED"),
                                                     "NEW": alice.signed("NEW")}))
    assert room.room_id in client.olm.outbound_group_sessions  # nothing changed: key kept


async def test_people_without_cross_signing_and_a_switched_off_setting_exclude_nobody(
        connection: MatrixConnection) -> None:
    client = connection.client
    client.exclude_unsigned_devices = True
    bob = Person("@bob:localhost")
    bob.master_keys, bob.self_signing_keys = {}, {}  # never set up cross-signing
    device = known_device(client, bob.user_id, "OLD")
    client.trust_by_cross_signing(keys_query(bob, {"OLD": device_keys(bob.user_id, "OLD")}))
    assert not client.olm.is_device_blacklisted(device)

    alice = Person()
    unsigned = known_device(client, ALICE, "NEW")
    client.trust_by_cross_signing(keys_query(alice, {"NEW": device_keys(ALICE, "NEW")}))
    assert client.olm.is_device_blacklisted(unsigned)
    client.exclude_unsigned_devices = False  # turned off: what was excluded is let in again
    client.include_all_devices()
    assert not client.olm.is_device_blacklisted(unsigned)
    client.trust_by_cross_signing(keys_query(alice, {"NEW": device_keys(ALICE, "NEW")}))
    assert not client.olm.is_device_blacklisted(unsigned)


def test_a_keys_query_answer_keeps_the_cross_signing_keys_nio_drops() -> None:
    alice = Person()
    body = {"device_keys": {ALICE: {}}, "master_keys": alice.master_keys,
            "self_signing_keys": alice.self_signing_keys}
    response = _KeysQueryResponse.from_dict(body)
    assert isinstance(response, nio.KeysQueryResponse)
    assert response.master_keys == alice.master_keys
    assert response.self_signing_keys == alice.self_signing_keys
