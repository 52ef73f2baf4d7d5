"""The bot's end-to-end encryption, nio's side: the key store on disk and who gets room keys.

- The key store (`KeyStore`, nio's SQLite store) is the owner's only, and its secrets are
  encrypted ("pickled") with a key of the bot's own (`prepare_store`); a store made with an older
  key is re-encrypted when opened. `device_fingerprint` reads the device's key offline.
- `KeySharingClient` shares room keys only with devices their owner's cross-signing vouches for
  (MSC4153, `[matrix] exclude_unsigned_devices`).

The bot's cross-signing identity itself (making, uploading, signing): `bot/matrix/cross_signing.py`.
The connection that uses both: `bot/matrix/connection.py`.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nio

from bot.matrix import cross_signing
from bot.settings import MatrixSettings
from storage.database import owner_only

log = logging.getLogger(__name__)


# -- who gets room keys -------------------------------------------------------------------------


class KeySharingClient(nio.AsyncClient):
    """nio's client, sharing room keys only with the devices cross-signing vouches for."""

    # MSC4153, the bot's side: no room keys for a device its owner's cross-signing does not
    # vouch for. nio drops the cross-signing keys of a /keys/query answer: keep them, and mark
    # such devices as blacklisted (nio shares no room key with those), the others not.
    exclude_unsigned_devices = False

    async def create_matrix_response(self, response_class: type, transport_response: Any,
                                     data: Any = None, save_to: Any = None) -> Any:
        if response_class is nio.KeysQueryResponse:
            response_class = _KeysQueryResponse
        return await super().create_matrix_response(response_class, transport_response, data,
                                                    save_to)

    async def receive_response(self, response: Any) -> None:
        await super().receive_response(response)
        if isinstance(response, _KeysQueryResponse) and self.olm:
            self.trust_by_cross_signing(response)

    def trust_by_cross_signing(self, response: _KeysQueryResponse) -> None:
        """Blacklist the queried users' devices their cross-signing leaves out, lift it from the
        others; where that changed, the rooms' next message gets a new room key (so a device
        just left out does not read on with the old one, one just vouched for reads along)."""
        changed: set[str] = set()
        for user_id, devices in response.device_keys.items():
            unsigned = cross_signing.unsigned_devices(
                user_id, devices if isinstance(devices, dict) else {},
                response.master_keys, response.self_signing_keys) or set()
            if self.exclude_unsigned_devices and unsigned:
                log.info("no room keys for %d device(s) of %s: not cross-signed by their owner",
                         len(unsigned), user_id)
            for device in self.device_store.active_user_devices(user_id):
                if self._exclude(device, self.exclude_unsigned_devices
                                 and device.id in unsigned):
                    changed.add(user_id)
        for room in self.rooms.values():
            if room.encrypted and not changed.isdisjoint(room.users):
                self.invalidate_outbound_session(room.room_id)

    def include_all_devices(self) -> None:
        """Lift every exclusion (the setting was turned off): the bot blacklists for no other
        reason."""
        for device in self.device_store:
            self._exclude(device, False)

    def _exclude(self, device: Any, exclude: bool) -> bool:
        """Mark one device; True if that changed its mark."""
        assert self.olm is not None
        if exclude == self.olm.is_device_blacklisted(device):
            return False
        if exclude:
            self.blacklist_device(device)
        else:
            self.unblacklist_device(device)
        return True


@dataclass
class _KeysQueryResponse(nio.KeysQueryResponse):
    """nio's answer to /keys/query, with the cross-signing keys nio leaves out."""

    master_keys: dict[str, Any] = field(default_factory=dict)
    self_signing_keys: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, parsed_dict: dict[Any, Any]) -> Any:
        response = super().from_dict(parsed_dict)
        if isinstance(response, cls):
            for name in ("master_keys", "self_signing_keys"):
                keys = parsed_dict.get(name)
                setattr(response, name, keys if isinstance(keys, dict) else {})
        return response


# -- the key store -------------------------------------------------------------------------------

PICKLE_KEY_FILE = "pickle-key"
# What nio encrypted the store's secrets with before the bot chose a key (its config's default).
_NIO_PICKLE_KEYS = ("DEFAULT_KEY", "")


class StoreKeyError(LookupError):
    """The encryption store cannot be unlocked: the bot cannot start, nor can its key be read
    offline (a LookupError). The message says what to do."""


def prepare_store(settings: MatrixSettings) -> str:
    """Make the encryption store's directory the owner's only (0700, the files in it 0600),
    whatever the umask, and return the key its secrets are encrypted ("pickled") with:
    `matrix.store_pickle_key`, else the key in the store's own key file, made at the first
    start. A store made with another key is re-encrypted when it is opened (`KeyStore`)."""
    store = Path(settings.store_path)
    store.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner_only(store)
    for file in store.iterdir():
        owner_only(file)  # nio makes its files with the umask's mode: the directory guards them
    if settings.store_pickle_key is not None:
        return settings.store_pickle_key.get_secret_value()
    key = _read_pickle_key(store)
    if key is None:
        key = secrets.token_urlsafe(32)
        _write_pickle_key(store, key)
    return key


def _read_pickle_key(store: Path) -> str | None:
    path = store / PICKLE_KEY_FILE
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreKeyError(f"{path}: cannot read the encryption store's key ({exc})") from None
    if not key:
        raise StoreKeyError(f"{path} is empty: put back the key the store was made with (from "
                            "a backup of the store), or set matrix.store_pickle_key to it")
    return key


def _write_pickle_key(store: Path, key: str) -> None:
    """Write the key file in one step (0600), and make sure it is on disk before anything is
    encrypted with the key."""
    descriptor, temporary = tempfile.mkstemp(dir=store, prefix=f".{PICKLE_KEY_FILE}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:  # mkstemp: mode 0600
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, store / PICKLE_KEY_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(store, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class KeyStore(nio.store.DefaultStore):
    """nio's key store, made the owner's only and re-encrypted when made with another key;
    minus the transaction nio opens after every sync to save the rooms that became encrypted
    in it, also when there are none: about a millisecond on a command's way."""

    def __post_init__(self) -> None:
        super().__post_init__()
        owner_only(Path(self.database_path))
        self._take_over_older_key()

    def _take_over_older_key(self) -> None:
        """A store encrypted with an older key (nio's default, from before the bot chose one;
        the key file's, when a key is configured since) is re-encrypted with this one, in one
        transaction: the device keeps its keys, and a crash leaves the store as it was."""
        account = self._get_account()
        if account is None or _unlocks(account, self.pickle_key):
            return  # a new device (nothing encrypted yet), or the key is already this one
        file_key = _read_pickle_key(Path(self.store_path))
        older = next((key for key in (file_key, *_NIO_PICKLE_KEYS)
                      if key is not None and _unlocks(account, key)), None)
        if older is None:
            raise StoreKeyError(
                f"the encryption store {self.database_path} was made with another key than "
                f"matrix.store_pickle_key or the store's {PICKLE_KEY_FILE} file: set "
                "matrix.store_pickle_key to the key it was made with")
        wanted, self.pickle_key = self.pickle_key, older
        try:
            olm_account = self.load_account()
            sessions = self.load_sessions()
            group_sessions = self.load_inbound_group_sessions()
        finally:
            self.pickle_key = wanted
        with self.database.atomic():
            self.save_account(olm_account)
            for sender_key, by_sender in sessions.items():
                for session in by_sender:
                    self.save_session(sender_key, session)
            for group_session in group_sessions:
                self.save_inbound_group_session(group_session)
        log.info("encryption store re-encrypted with its new key (it was made with %s)",
                 "the key file's" if older == file_key else "nio's default key")

    def save_encrypted_rooms(self, rooms: Any) -> None:
        if rooms:
            super().save_encrypted_rooms(rooms)


def _unlocks(account: Any, key: str) -> bool:
    try:
        nio.crypto.OlmAccount.from_pickle(account.account, key, account.shared)
    except Exception:  # vodozemac and libolm each have their own errors for a wrong key
        return False
    return True


def device_fingerprint(settings: MatrixSettings, device_id: str) -> str:
    """The Ed25519 key of the bot's device, read from its key store (no network): what a
    moderator compares to verify the bot, e.g. Element's `/verify <user> <device> <key>`."""
    config = nio.AsyncClientConfig(encryption_enabled=True, store=KeyStore,
                                   pickle_key=prepare_store(settings))
    client = nio.AsyncClient("https://localhost", settings.user_id, device_id=device_id,
                             store_path=str(settings.store_path), config=config)
    client.restore_login(settings.user_id, device_id, "not-used-offline")
    if client.olm is None:
        raise LookupError(f"no keys for device {device_id} in {settings.store_path}")
    return client.olm.account.identity_keys["ed25519"]
