"""The bot's cross-signing identity, and MSC4153's rule for sharing room keys.

Current Element shares room keys only with devices their owner has cross-signed, and hides
what other devices send. So the bot has an identity of its own: a master key, and signed by it
a self-signing key (which signs the bot's device) and a user-signing key. The private keys are
made once, kept in a file in the encryption store (owner-only), and reused at every start: one
identity and one device for good. The other way round, the bot shares room keys only with
devices their owner's cross-signing vouches for (`unsigned_devices`); people without any
cross-signing keep getting them.

No nio here: `bot/matrix/connection.py` makes the requests (a `KeyServer`) and applies the verdicts.
Signing and canonical JSON are matrix-org's own `signedjson` and `canonicaljson`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from signedjson.key import (
    decode_signing_key_base64,
    decode_verify_key_base64,
    encode_signing_key_base64,
    encode_verify_key_base64,
    generate_signing_key,
    get_verify_key,
)
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from signedjson.types import SigningKey

log = logging.getLogger(__name__)

KEYS_FILE = "cross-signing-keys.json"
ALGORITHM = "ed25519"
ROLES = ("master", "self_signing", "user_signing")
RESET_COMMAND = "nextbot reset-identity"

JsonDict = dict[str, Any]


class KeyServer(Protocol):
    """The homeserver's client-server API, as far as cross-signing needs it."""

    async def json_request(self, method: str, path: str,
                           body: JsonDict | None = None) -> tuple[int, JsonDict]:
        """The HTTP status and the JSON body (an empty dict when there is none)."""
        ...


class IdentityError(Exception):
    """The bot cannot set up its cross-signing identity; the message says what to do."""


class IdentityMismatchError(IdentityError):
    """The homeserver holds a cross-signing identity for the bot that its store does not."""


def _new_key() -> SigningKey:
    key = generate_signing_key("new")
    key.version = encode_verify_key_base64(get_verify_key(key))  # the key id is the public key
    return key


def _restored_key(seed: str) -> SigningKey:
    key = decode_signing_key_base64(ALGORITHM, "restored", seed)
    key.version = encode_verify_key_base64(get_verify_key(key))
    return key


def public_key(key: SigningKey) -> str:
    return key.version


def spaced(key: str) -> str:
    """A key in groups of four, as Element shows fingerprints."""
    return " ".join(key[i:i + 4] for i in range(0, len(key), 4))


@dataclass(frozen=True)
class Identity:
    user_id: str
    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    @classmethod
    def generate(cls, user_id: str) -> Identity:
        return cls(user_id, _new_key(), _new_key(), _new_key())

    @property
    def master_public(self) -> str:
        return public_key(self.master)

    @property
    def self_signing_public(self) -> str:
        return public_key(self.self_signing)

    def key_objects(self) -> JsonDict:
        """The body of `/keys/device_signing/upload`: the public keys, the master signing the
        other two."""
        master = self._key_object(self.master, "master")
        self_signing = sign_json(self._key_object(self.self_signing, "self_signing"),
                                 self.user_id, self.master)
        user_signing = sign_json(self._key_object(self.user_signing, "user_signing"),
                                 self.user_id, self.master)
        return {"master_key": master, "self_signing_key": self_signing,
                "user_signing_key": user_signing}

    def _key_object(self, key: SigningKey, usage: str) -> JsonDict:
        return {"user_id": self.user_id, "usage": [usage],
                "keys": {f"{ALGORITHM}:{public_key(key)}": public_key(key)}}

    def device_signature(self, device_keys: JsonDict) -> JsonDict:
        """The device's keys (as `/keys/query` returns them) signed by the self-signing key,
        for `/keys/signatures/upload`."""
        device = {k: v for k, v in device_keys.items() if k not in ("signatures", "unsigned")}
        signed = sign_json(device, self.user_id, self.self_signing)
        return signed

    def to_json(self) -> JsonDict:
        return {"user_id": self.user_id,
                **{role: encode_signing_key_base64(getattr(self, role)) for role in ROLES}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Identity:
        return cls(str(data["user_id"]), *(_restored_key(str(data[role])) for role in ROLES))


# -- the keys file -------------------------------------------------------------------------------

def keys_path(store_path: Path | str) -> Path:
    return Path(store_path) / KEYS_FILE


def load_identity(store_path: Path | str, user_id: str) -> Identity | None:
    """The identity kept in the store; None when there is none (or one of another account)."""
    path = keys_path(store_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise IdentityError(f"{path}: cannot read the cross-signing keys ({exc})") from None
    try:
        identity = Identity.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise IdentityError(f"{path}: the cross-signing keys are damaged ({exc})") from None
    if identity.user_id != user_id:
        log.warning("the store's cross-signing keys belong to %s, not %s: not used",
                    identity.user_id, user_id)
        return None
    return identity


def save_identity(store_path: Path | str, identity: Identity) -> None:
    """Write the keys readable by the owner only (0600), replacing the file in one step."""
    path = keys_path(store_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:  # mkstemp: mode 0600
            json.dump(identity.to_json(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- reading what the homeserver publishes ---------------------------------------------------

def key_of(key_object: Any, usage: str, user_id: str) -> str | None:
    """The public key in a cross-signing key object, if it is one of `user_id`'s for `usage`."""
    if not isinstance(key_object, dict) or key_object.get("user_id") != user_id:
        return None
    usages = key_object.get("usage")
    keys = key_object.get("keys")
    if not isinstance(usages, list) or usage not in usages or not isinstance(keys, dict):
        return None
    for key_id, key in keys.items():
        if isinstance(key_id, str) and key_id.startswith(f"{ALGORITHM}:") and isinstance(key, str):
            return key
    return None


def signed_by(signed: Any, user_id: str, key: str) -> bool:
    """Whether `signed` carries `user_id`'s valid signature by the Ed25519 key `key`."""
    if not isinstance(signed, dict):
        return False
    try:
        verify_key = decode_verify_key_base64(ALGORITHM, key, key)
        verify_signed_json(signed, user_id, verify_key)
    except (SignatureVerifyException, ValueError, TypeError, KeyError, AttributeError):
        return False
    return True


def vouching_key(user_id: str, master_keys: Mapping[str, Any],
                 self_signing_keys: Mapping[str, Any]) -> str | None:
    """The self-signing key with which `user_id`'s cross-signing vouches for their devices:
    theirs, and signed by their master key. None if they have none that is valid."""
    master = key_of(master_keys.get(user_id), "master", user_id)
    self_signing_object = self_signing_keys.get(user_id)
    self_signing = key_of(self_signing_object, "self_signing", user_id)
    if master is None or self_signing is None:
        return None
    return self_signing if signed_by(self_signing_object, user_id, master) else None


def unsigned_devices(user_id: str, devices: Mapping[str, Any], master_keys: Mapping[str, Any],
                     self_signing_keys: Mapping[str, Any]) -> set[str] | None:
    """The devices of `user_id` that their own cross-signing does not vouch for (MSC4153):
    not signed by a valid self-signing key. None when the user has no cross-signing at all:
    then no device of theirs is left out."""
    if not isinstance(master_keys.get(user_id), dict):
        return None
    vouching = vouching_key(user_id, master_keys, self_signing_keys)
    return {device_id for device_id, keys in devices.items()
            if vouching is None or not signed_by(keys, user_id, vouching)}


# -- the bot's own identity ------------------------------------------------------------------

async def query_own_keys(server: KeyServer, user_id: str) -> JsonDict:
    status, body = await server.json_request(
        "POST", "/_matrix/client/v3/keys/query", {"device_keys": {user_id: []}})
    if status != 200:
        raise IdentityError(f"the homeserver did not list the bot's keys "
                            f"(HTTP {status} {body.get('errcode', '')})".rstrip())
    return body


def published_device_key(keys: JsonDict, user_id: str, device_id: str) -> str | None:
    """The Ed25519 key the homeserver publishes for one of `user_id`'s devices, if any."""
    device = keys.get("device_keys", {}).get(user_id, {}).get(device_id)
    if not isinstance(device, dict) or not isinstance(device.get("keys"), dict):
        return None
    key = device["keys"].get(f"{ALGORITHM}:{device_id}")
    return key if isinstance(key, str) else None


def _what_to_do(store_path: Path | str) -> str:
    return (f"Either put the store {store_path} back from a backup (with the database from the "
            f"same backup), or run '{RESET_COMMAND} --config <your config>' (it asks for the "
            f"bot's password; a device whose keys are lost is replaced at the next start; "
            f"moderators who verified the bot verify it again), then start the bot again.")


async def ensure_identity(server: KeyServer, store_path: Path | str, user_id: str,
                          device_id: str, device_key: str, password: str | None) -> Identity:
    """The bot's identity from the store, checked against what the homeserver publishes; at the
    first start made, kept and uploaded. Never a second one silently: if the homeserver has an
    identity the store does not, or other keys for the device (`device_key` is the store's),
    the store was lost or replaced: `IdentityMismatchError` says what to do."""
    identity = load_identity(store_path, user_id)
    keys = await query_own_keys(server, user_id)
    published = key_of(keys.get("master_keys", {}).get(user_id), "master", user_id)
    problems = []
    if published is not None and (identity is None or identity.master_public != published):
        kept = (f"the store holds another one ({spaced(identity.master_public)})" if identity
                else "the store holds no cross-signing keys (lost, or a new store?)")
        problems.append(
            f"the homeserver already has a cross-signing identity for {user_id} (master key "
            f"{spaced(published)}), but {kept}; the bot does not make a second identity on its "
            f"own (members who verified it would be warned that it changed).")
    published_device = published_device_key(keys, user_id, device_id)
    if published_device is not None and published_device != device_key:
        problems.append(f"The homeserver has other keys for the bot's device {device_id} than "
                        f"the store: its keys were lost.")
    if problems:
        raise IdentityMismatchError(" ".join([*problems, _what_to_do(store_path)]))
    if identity is None:
        identity = Identity.generate(user_id)
        save_identity(store_path, identity)  # before the upload: a crash then loses nothing
        log.info("made a cross-signing identity (master key %s)", identity.master_public)
    if published is None:
        await upload_identity(server, identity, password)
        log.info("uploaded the cross-signing identity (master key %s)", identity.master_public)
    return identity


async def with_password(server: KeyServer, method: str, path: str, body: JsonDict,
                        user_id: str, password: str | None) -> tuple[int, JsonDict]:
    """A request that the homeserver may want the account's password for (user-interactive
    auth): tried without, then, if asked, with the password."""
    status, answer = await server.json_request(method, path, body)
    if status != 401 or "flows" not in answer:
        return status, answer
    if not _password_flow(answer):
        raise IdentityError("the homeserver wants a login other than a password for this; "
                            "the bot can only give its password")
    if password is None:
        raise IdentityError("the homeserver asks for the bot's password: set matrix.password "
                            f"(an access token alone is not enough), or run '{RESET_COMMAND}'")
    auth: JsonDict = {"type": "m.login.password", "password": password,
                      "identifier": {"type": "m.id.user", "user": user_id}}
    if isinstance(answer.get("session"), str):
        auth["session"] = answer["session"]
    return await server.json_request(method, path, {**body, "auth": auth})


def _password_flow(answer: JsonDict) -> bool:
    flows = answer.get("flows")
    return isinstance(flows, list) and any(
        isinstance(flow, dict) and flow.get("stages") == ["m.login.password"] for flow in flows)


def _refusal(status: int, answer: JsonDict) -> str:
    reason = str(answer.get("errcode") or f"HTTP {status}")
    return reason + (" (wrong password?)" if status in (401, 403) else "")


async def upload_identity(server: KeyServer, identity: Identity, password: str | None) -> None:
    """Publish the identity's public keys, with the password where the homeserver asks for it
    (replacing keys; not for an account's first ones, MSC3967)."""
    status, answer = await with_password(
        server, "POST", "/_matrix/client/v3/keys/device_signing/upload", identity.key_objects(),
        identity.user_id, password)
    if status != 200:
        raise IdentityError(f"the homeserver refused the cross-signing keys: "
                            f"{_refusal(status, answer)}")


async def delete_device(server: KeyServer, user_id: str, device_id: str, password: str) -> None:
    status, answer = await with_password(server, "POST", "/_matrix/client/v3/delete_devices",
                                         {"devices": [device_id]}, user_id, password)
    if status != 200:
        raise IdentityError(f"the homeserver did not delete device {device_id}: "
                            f"{_refusal(status, answer)}")


async def sign_device(server: KeyServer, identity: Identity, device_id: str) -> bool:
    """Sign the bot's device with the self-signing key unless the homeserver already has that
    signature; True if it signed now. The device's keys must be uploaded already."""
    answer = await query_own_keys(server, identity.user_id)
    device = answer.get("device_keys", {}).get(identity.user_id, {}).get(device_id)
    if not isinstance(device, dict):
        raise IdentityError(f"the homeserver lists no keys for the bot's device {device_id}")
    if signed_by(device, identity.user_id, identity.self_signing_public):
        return False
    status, body = await server.json_request(
        "POST", "/_matrix/client/v3/keys/signatures/upload",
        {identity.user_id: {device_id: identity.device_signature(device)}})
    failure = body.get("failures", {}).get(identity.user_id, {}).get(device_id)
    if status != 200 or failure:
        reason = (failure or body).get("errcode") or f"HTTP {status}"
        raise IdentityError(f"the homeserver refused the signature of device {device_id}: "
                            f"{reason}")
    log.info("signed device %s with the self-signing key", device_id)
    return True


async def reset_identity(server: KeyServer, store_path: Path | str, user_id: str,
                         password: str) -> Identity:
    """A new identity, replacing the one the homeserver has (the password proves it is ours)."""
    identity = Identity.generate(user_id)
    await upload_identity(server, identity, password)
    save_identity(store_path, identity)
    log.info("replaced the cross-signing identity (new master key %s)", identity.master_public)
    return identity
