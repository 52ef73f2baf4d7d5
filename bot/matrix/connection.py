"""The Matrix connection: with `bot/matrix/crypto.py` (the key store, who gets room keys), the only
module that imports nio.

It turns nio's responses into the small, plain types below, and its errors into three kinds:
`TransientError` (retry with back-off), rate limits (wait as told), and permanent refusals.
nio's own retry loops are switched off so that one back-off policy governs every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import nio

from bot.matrix import cross_signing
from bot.matrix.crypto import KeySharingClient, KeyStore, prepare_store
from bot.pipeline.backoff import Backoff
from bot.settings import MatrixSettings
from storage.session import SessionRepository

log = logging.getLogger(__name__)

SYNC_TIMEOUT_MS = 30_000
# nio puts no request timeout at all on a sync with `timeout=0` (the first sync, the full-state
# one at start): a connection that silently died would block the bot for good. Generous, as the
# server may take a while for a large account's first sync.
UNBOUNDED_SYNC_LIMIT_S = 180.0
TIMELINE_LIMIT = 50
PAGE_SIZE = 100


class TransientError(Exception):
    """The homeserver could not be reached or answered with a server error: try again later."""


class RefusedError(Exception):
    """The homeserver refused the request for good (no permission, unknown room or alias):
    retrying will not help. The message is the Matrix error code, never content."""

    def __init__(self, message: str, errcode: str | None = None) -> None:
        super().__init__(message)
        self.errcode = errcode or message


class LoginError(Exception):
    """The bot cannot log in; retrying will not help (wrong password, unknown user)."""


@dataclass(frozen=True)
class RoomEvent:
    event_id: str
    room_id: str
    sender: str
    type: str
    origin_ts: int
    content: dict[str, Any]
    state_key: str | None = None
    unsigned: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_source(cls, room_id: str, source: dict[str, Any]) -> RoomEvent | None:
        """None for anything that is not a well-formed event (we never trust its shape)."""
        event_id, sender, etype = (source.get(k) for k in ("event_id", "sender", "type"))
        if not (isinstance(event_id, str) and isinstance(sender, str) and isinstance(etype, str)):
            return None
        content = source.get("content")
        content = content if isinstance(content, dict) else {}
        if etype == "m.room.redaction" and "redacts" not in content and isinstance(
                source.get("redacts"), str):
            # Before room version 11 the redacted event's id stands beside the content.
            content = {**content, "redacts": source["redacts"]}
        ts = source.get("origin_server_ts")
        unsigned = source.get("unsigned")
        state_key = source.get("state_key")
        return cls(
            event_id=event_id,
            room_id=room_id,
            sender=sender,
            type=etype,
            origin_ts=ts if isinstance(ts, int) else 0,
            content=content,
            state_key=state_key if isinstance(state_key, str) else None,
            unsigned=unsigned if isinstance(unsigned, dict) else {},
        )


@dataclass(frozen=True)
class RoomTimeline:
    room_id: str
    events: list[RoomEvent]  # the timeline, oldest first
    limited: bool
    prev_batch: str | None
    # State that changed before the timeline starts: no place in the order of events.
    state: list[RoomEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Invite:
    room_id: str
    inviter: str | None


@dataclass(frozen=True)
class SyncBatch:
    next_batch: str
    rooms: list[RoomTimeline]
    invites: list[Invite]


class SendOutcome(enum.Enum):
    SENT = "sent"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    REFUSED = "refused"


@dataclass(frozen=True)
class SendResult:
    outcome: SendOutcome
    retry_after_ms: int = 0
    errcode: str | None = None
    event_id: str | None = None


class _Client(KeySharingClient):
    """nio's client (room keys only for cross-signed devices: `KeySharingClient`), minus the
    events its parser would raise on.

    One such event (not an object, a timestamp that is no number) fails nio's parsing of the
    whole sync or page of history, and of every retry: the bot would never read past it."""

    async def parse_body(self, transport_response: Any) -> dict[Any, Any]:
        body = await super().parse_body(transport_response)
        dropped = _drop_unparseable_events(body) if isinstance(body, dict) else 0
        if dropped:
            log.warning("%d malformed event(s) from the homeserver dropped", dropped)
        return body


class MatrixConnection:
    def __init__(self, settings: MatrixSettings) -> None:
        self._settings = settings
        config = nio.AsyncClientConfig(
            max_limit_exceeded=0,  # hand every 429 back to us
            max_timeouts=0,  # hand every network error back to us
            encryption_enabled=settings.encryption,
            store_sync_tokens=False,  # the sync token lives in our own database
            store=KeyStore,
            pickle_key=prepare_store(settings) if settings.encryption else "",
        )
        self.client = _Client(
            settings.homeserver.rstrip("/"), settings.user_id, config=config,
            store_path=str(settings.store_path),
        )

    @property
    def user_id(self) -> str:
        return self.client.user_id

    async def close(self) -> None:
        # Never log out: that would delete the device and its keys.
        await self.client.close()

    # -- session ---------------------------------------------------------------------------------

    async def start_session(self, sessions: SessionRepository) -> None:
        """Reuse the stored device and token (password only the first time); then, with
        encryption on, publish the device's keys and learn every joined room's state."""
        await self._log_in(sessions)
        if self.client.olm:
            identity = await self._cross_signing_identity()  # before any key is uploaded
            session = await sessions.get()
            await self._load_rooms(session.sync_token if session else None)
            await self._crypto_housekeeping()
            await self._until_answered(
                lambda: cross_signing.sign_device(self, identity, self.client.device_id))
            log.info("end-to-end encryption ready (device %s, key %s)", self.client.device_id,
                     self.client.olm.account.identity_keys["ed25519"])

    async def _load_rooms(self, since: str | None) -> None:
        """nio must know a room (and whether it is encrypted) before it can send there.

        Synapse caches identical sync requests for two minutes; with our latest token in it,
        this request is not one it has answered before the rooms last changed."""
        response = await self._until_answered(lambda: asyncio.wait_for(self.client.sync(
            timeout=0, since=since, full_state=True, sync_filter=_sync_filter(timeline_limit=1)),
            UNBOUNDED_SYNC_LIMIT_S))
        if not isinstance(response, nio.SyncResponse):
            self._raise_for(response, "initial state")
        self.client.next_batch = None  # the sync token is ours, not nio's

    async def _cross_signing_identity(self) -> cross_signing.Identity:
        """The bot's cross-signing identity (made and uploaded at the first start); refuses to
        start, saying what to do, when the homeserver has another one or other device keys
        (the store was lost)."""
        assert self.client.olm is not None
        self.client.exclude_unsigned_devices = self._settings.exclude_unsigned_devices
        if not self._settings.exclude_unsigned_devices:
            self.client.include_all_devices()
        password = self._settings.password
        try:
            return await self._until_answered(lambda: cross_signing.ensure_identity(
                self, self._settings.store_path, self.user_id, self.client.device_id,
                self.client.olm.account.identity_keys["ed25519"],
                password.get_secret_value() if password else None))
        except cross_signing.IdentityError as exc:
            raise LoginError(f"cross-signing: {exc}") from None

    async def reset_identity(self, sessions: SessionRepository,
                             password: str) -> tuple[cross_signing.Identity, str | None]:
        """`nextbot reset-identity`, the bot stopped: a new cross-signing identity replaces the
        homeserver's. If the store lost the device's keys too, that device is deleted and a new
        one logged in (the next start uploads its keys and signs it). Returns the identity and
        the device deleted, if one was."""
        stored = await sessions.get()
        if stored is None:
            raise LoginError("the bot has not logged in yet")
        self.client.restore_login(stored.user_id, stored.device_id, stored.access_token)
        assert self.client.olm is not None
        keys = await cross_signing.query_own_keys(self, stored.user_id)
        published = cross_signing.published_device_key(keys, stored.user_id, stored.device_id)
        deleted = None
        if published not in (None, self.client.olm.account.identity_keys["ed25519"]):
            self.client.device_id = None  # else nio logs in to the same device again
            response = await self._call(
                self.client.login(password, device_name=self._settings.device_name))
            if not isinstance(response, nio.LoginResponse):
                raise LoginError(f"login failed: {getattr(response, 'status_code', '')}")
            await sessions.save_login(response.user_id, response.device_id,
                                      response.access_token)
            await cross_signing.delete_device(self, stored.user_id, stored.device_id, password)
            deleted = stored.device_id
        identity = await cross_signing.reset_identity(self, self._settings.store_path,
                                                      stored.user_id, password)
        with contextlib.suppress(cross_signing.IdentityError):  # a new device: at the next start
            await cross_signing.sign_device(self, identity, self.client.device_id)
        return identity, deleted

    async def json_request(self, method: str, path: str,
                           body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """A client-server API request nio has no method for (cross-signing): the status and
        the JSON answer. Unreachable, 5xx and 429 raise TransientError."""
        headers = {"Authorization": f"Bearer {self.client.access_token}",
                   "Content-Type": "application/json"}
        response = await self._call(self.client.send(
            method, path, json.dumps(body) if body is not None else None, headers=headers))
        try:
            answer = await self._call(response.json(content_type=None))
        except (TransientError, ValueError):
            answer = {}
        finally:
            response.release()
        if response.status >= 500 or response.status == 429:
            raise TransientError(f"HTTP {response.status}")
        return response.status, answer if isinstance(answer, dict) else {}

    async def _crypto_housekeeping(self) -> None:
        """What nio's sync_forever does between syncs: keys up, keys down, to-device out."""
        client = self.client
        if client.should_upload_keys:
            await self._call(client.keys_upload())
        if client.should_query_keys:
            await self._call(client.keys_query())
        if client.should_claim_keys:
            await self._call(client.keys_claim(client.get_users_for_key_claiming()))
        await self._call(client.send_to_device_messages())

    async def _log_in(self, sessions: SessionRepository) -> None:
        stored = await sessions.get()
        if stored and stored.user_id == self._settings.user_id:
            self.client.restore_login(stored.user_id, stored.device_id, stored.access_token)
            if await self._token_works():
                log.info("restored session of device %s", stored.device_id)
                return
            log.warning("the stored access token was rejected; logging in again")
        token = self._settings.access_token
        stored_token = stored.access_token if stored else None
        if token is not None and stored_token != token.get_secret_value():
            self.client.access_token = token.get_secret_value()
            whoami = await self._until_answered(self.client.whoami)
            if isinstance(whoami, nio.WhoamiResponse) and whoami.device_id:
                self.client.restore_login(whoami.user_id, whoami.device_id,
                                          token.get_secret_value())
                await sessions.save_login(whoami.user_id, whoami.device_id,
                                          token.get_secret_value())
                log.info("using the configured access token (device %s)", whoami.device_id)
                return
            log.warning("the configured access token was rejected")
        password = self._settings.password
        if password is None:
            raise LoginError("no working access token and no password configured")
        response = await self._until_answered(
            lambda: self.client.login(password.get_secret_value(),
                                      device_name=self._settings.device_name)
        )
        if not isinstance(response, nio.LoginResponse):
            raise LoginError(f"login failed: {getattr(response, 'status_code', '')} "
                             f"{getattr(response, 'message', '')}".strip())
        await sessions.save_login(response.user_id, response.device_id, response.access_token)
        log.info("logged in as %s, new device %s", response.user_id, response.device_id)

    async def _token_works(self) -> bool:
        response = await self._until_answered(self.client.whoami)
        return isinstance(response, nio.WhoamiResponse)

    async def _until_answered(self, request: Any) -> Any:
        """Repeat a start-up request while the homeserver is unreachable or failing."""
        backoff = Backoff()
        while True:
            try:
                response = await self._call(request())
                self._raise_if_transient(response)
                return response
            except TransientError as exc:
                delay = await backoff.wait()
                log.warning("homeserver not reachable (%s); retrying in %.1f s", exc, delay)

    # -- reading ---------------------------------------------------------------------------------

    async def sync(self, since: str | None, timeout_ms: int | None = None) -> SyncBatch:
        if timeout_ms is None:
            timeout_ms = SYNC_TIMEOUT_MS
        timeline_limit = TIMELINE_LIMIT if since else 1  # a first sync needs no history
        self.client.next_batch = None  # nio would otherwise put its own token for a None
        request = self.client.sync(timeout=timeout_ms, since=since,
                                   sync_filter=_sync_filter(timeline_limit), full_state=False)
        if not timeout_ms:
            request = asyncio.wait_for(request, UNBOUNDED_SYNC_LIMIT_S)
        response = await self._call(request)
        if not isinstance(response, nio.SyncResponse):
            self._raise_for(response, "sync")
        if self.client.olm:
            await self._crypto_housekeeping()
        rooms = [
            RoomTimeline(room_id, _events(room_id, info.timeline.events),
                         bool(info.timeline.limited), info.timeline.prev_batch,
                         state=_events(room_id, info.state))
            for room_id, info in response.rooms.join.items()
        ]
        invites = [
            Invite(room_id, self._inviter(info.invite_state))
            for room_id, info in response.rooms.invite.items()
        ]
        return SyncBatch(response.next_batch, rooms, invites)

    def _inviter(self, invite_state: list[Any]) -> str | None:
        # nio's invite events lose `content` from their source: read their attributes instead.
        for ev in invite_state:
            if (isinstance(ev, nio.InviteMemberEvent) and ev.state_key == self.user_id
                    and ev.membership == "invite"):
                return ev.sender
        return None

    async def messages_before(self, room_id: str, token: str,
                              limit: int = PAGE_SIZE) -> tuple[list[RoomEvent], str | None]:
        """One page of history going back from `token`: newest first, and the next token."""
        response = await self._call(
            self.client.room_messages(room_id, start=token, direction=nio.MessageDirection.back,
                                      limit=limit)
        )
        if not isinstance(response, nio.RoomMessagesResponse):
            self._raise_for(response, "messages")
        return _events(room_id, response.chunk), (response.end if response.chunk else None)

    async def decrypt(self, event: RoomEvent) -> RoomEvent | None:
        """Try again to decrypt an encrypted event (its room key may have arrived since)."""
        if not self.client.olm:
            return None
        megolm = nio.MegolmEvent.from_dict({
            "event_id": event.event_id, "sender": event.sender, "type": event.type,
            "origin_server_ts": event.origin_ts, "content": event.content,
            "room_id": event.room_id, "unsigned": event.unsigned,
        })
        if not isinstance(megolm, nio.MegolmEvent):
            return None  # not well-formed ciphertext: it never will decrypt
        megolm.room_id = event.room_id
        try:
            decrypted = self.client.decrypt_event(megolm)
        except (nio.EncryptionError, ValueError):
            return None
        return RoomEvent.from_source(event.room_id, _source(decrypted))

    async def room_state(self, room_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The room's power-levels content and its create event (with sender), read live."""
        response = await self._call(self.client.room_get_state(room_id))
        if not isinstance(response, nio.RoomGetStateResponse):
            self._raise_for_refusal(response, "room state")
        power_levels, create = None, None
        for event in response.events:
            if event.get("type") == "m.room.power_levels" and event.get("state_key") == "":
                power_levels = event.get("content") or {}
            elif event.get("type") == "m.room.create" and event.get("state_key") == "":
                create = event
        return power_levels, create

    # -- acting ----------------------------------------------------------------------------------

    async def send(self, room_id: str, event_type: str, content: dict[str, Any],
                   txn_id: str) -> SendResult:
        try:
            await self._know_devices(room_id)
            response = await self._call(
                self.client.room_send(room_id, event_type, content, tx_id=txn_id,
                                      ignore_unverified_devices=True)
            )
        except TransientError:
            return SendResult(SendOutcome.TRANSIENT)
        except nio.LocalProtocolError as exc:
            # nio does not know the room: not yet (just created or joined: the next sync tells
            # it), or no longer (the bot was removed: the homeserver would refuse it for good).
            try:
                joined = await self.membership(room_id, self.user_id) == "join"
            except TransientError:
                joined = True
            if not joined:
                return SendResult(SendOutcome.REFUSED, errcode="M_FORBIDDEN")
            return SendResult(SendOutcome.TRANSIENT, errcode=f"not ready: {exc}")
        if isinstance(response, nio.RoomSendResponse):
            return SendResult(SendOutcome.SENT, event_id=response.event_id)
        return send_result_of_error(_http_status(response),
                                    getattr(response, "status_code", None),
                                    getattr(response, "retry_after_ms", 0))

    async def _know_devices(self, room_id: str) -> None:
        """Before writing into an encrypted room: know everyone in it, the invited included,
        and query the devices of people new to it. A reply sent while the sync loop's own
        query is still under way would miss their devices, and they could never read it."""
        room = self.client.rooms.get(room_id)
        if not (self.client.olm and room is not None and room.encrypted):
            return
        if not room.members_synced:
            await self._load_members(room)
        if self.client.should_query_keys:
            try:
                await self._call(self.client.keys_query())
            except nio.LocalProtocolError:
                pass  # the sync loop's query answered meanwhile

    async def _load_members(self, room: nio.MatrixRoom) -> None:
        """The room's members, joined and invited, from the homeserver. nio would ask for the
        joined ones only (/joined_members), and a room just made may not have shown all its
        invites in a sync yet: a pair room's introduction then went out with a room key for one
        of the two invited members only, and the other could never read it."""
        status, answer = await self.json_request(
            "GET", f"/_matrix/client/v3/rooms/{quote(room.room_id, safe='')}/members"
                   "?not_membership=leave")
        chunk = answer.get("chunk")
        if status != 200 or not isinstance(chunk, list):
            return  # nio's own way then (joined members)
        present: set[str] = set()
        for event in chunk:
            content = event.get("content") if isinstance(event, dict) else None
            user_id = event.get("state_key") if isinstance(event, dict) else None
            membership = content.get("membership") if isinstance(content, dict) else None
            if not isinstance(user_id, str) or membership not in ("join", "invite"):
                continue
            present.add(user_id)
            room.add_member(user_id, content.get("displayname"), content.get("avatar_url"),
                            invited=membership == "invite")
        for user_id in set(room.users) - present:
            room.remove_member(user_id)
        room.members_synced = True
        assert self.client.olm is not None
        self.client.olm.update_tracked_users(room)

    async def upload(self, room_id: str, data: bytes, mimetype: str,
                     filename: str) -> dict[str, Any]:
        """Upload a file for a message in `room_id`: the content fields that point to it
        (`url`, or for an encrypted room `file` with the keys to decrypt it)."""
        room = self.client.rooms.get(room_id)
        encrypted = bool(self.client.olm) and (room is None or room.encrypted)
        response, keys = await self._call(
            self.client.upload(io.BytesIO(data), content_type=mimetype, filename=filename,
                               encrypt=encrypted, filesize=len(data))
        )
        if not isinstance(response, nio.UploadResponse):
            self._raise_for(response, "upload")
        if encrypted:
            return {"file": {**keys, "url": response.content_uri}}
        return {"url": response.content_uri}

    async def create_direct_room(self, user_id: str, *, alias: str | None = None,
                                 initial_state: Sequence[dict[str, Any]] = ()) -> str:
        return await self.create_room(invite=[user_id], is_direct=True, alias=alias,
                                      initial_state=initial_state)

    async def state_events(self, room_id: str) -> list[dict[str, Any]]:
        """Every state event of a room (type, state_key, sender, content), read live; a room
        the bot is not in is refused (RefusedError)."""
        response = await self._call(self.client.room_get_state(room_id))
        if not isinstance(response, nio.RoomGetStateResponse):
            self._raise_for_refusal(response, "room state")
        return [event for event in response.events if isinstance(event, dict)]

    async def create_room(self, *, name: str | None = None, topic: str | None = None,
                          invite: Sequence[str] = (), is_direct: bool = False,
                          space: bool = False, moderators: Sequence[str] = (),
                          initial_state: Sequence[dict[str, Any]] = (),
                          alias: str | None = None, encrypted: bool = False) -> str:
        """A new private room (or space) with history visible to its members; `moderators` get
        power level 50. In a direct room too, only the bot holds power.
        Not idempotent: callers record the room id right away, or give an `alias` (a local
        part) that a second attempt is refused for (RefusedError; `resolve_alias` finds it)."""
        state = [{"type": "m.room.history_visibility", "state_key": "",
                  "content": {"history_visibility": "shared"}}, *initial_state]
        if encrypted:
            state.append({"type": "m.room.encryption", "state_key": "",
                          "content": {"algorithm": "m.megolm.v1.aes-sha2"}})
        levels = {"users": {user: 50 for user in moderators}} if moderators else None
        response = await self._call(
            self.client.room_create(
                name=name, topic=topic, invite=list(invite), is_direct=is_direct, space=space,
                alias=alias,
                # Never `trusted_private_chat`: it gives the invitee power 100, and a member
                # must hold no power in the bot's direct chat (see bot/matrix/permissions.py).
                preset=nio.RoomPreset.private_chat,
                initial_state=state, power_level_override=levels,
            )
        )
        if not isinstance(response, nio.RoomCreateResponse):
            self._raise_for_refusal(response, "create room")
        return response.room_id

    async def put_state(self, room_id: str, event_type: str, content: dict[str, Any],
                        state_key: str = "") -> str:
        response = await self._call(
            self.client.room_put_state(room_id, event_type, content, state_key=state_key))
        if not isinstance(response, nio.RoomPutStateResponse):
            self._raise_for_refusal(response, f"put {event_type}")
        return response.event_id

    async def invite(self, room_id: str, user_id: str) -> None:
        response = await self._call(self.client.room_invite(room_id, user_id))
        if not isinstance(response, nio.RoomInviteResponse):
            self._raise_for_refusal(response, "invite")

    async def resolve_alias(self, alias: str) -> str | None:
        """The room id behind `#alias:server`, None when no such alias exists."""
        response = await self._call(self.client.room_resolve_alias(alias))
        if isinstance(response, nio.RoomResolveAliasResponse):
            return response.room_id
        if getattr(response, "status_code", None) == "M_NOT_FOUND":
            return None
        self._raise_for_refusal(response, "resolve alias")
        return None

    async def membership(self, room_id: str, user_id: str) -> str | None:
        """`join`, `invite`, `leave`, `ban` … of a user in a room; None when never a member
        (or the bot cannot see the room)."""
        response = await self._call(
            self.client.room_get_state_event(room_id, "m.room.member", user_id))
        if isinstance(response, nio.RoomGetStateEventResponse):
            membership = response.content.get("membership")
            return membership if isinstance(membership, str) else None
        self._raise_if_transient(response)
        return None

    async def joined_member_count(self, room_id: str) -> int:
        # Asked each time: nio's count from lazy-loaded syncs lags behind.
        response = await self._call(self.client.joined_members(room_id))
        if not isinstance(response, nio.JoinedMembersResponse):
            self._raise_for_refusal(response, "joined members")
        return len(response.members)

    async def join(self, room_id: str) -> bool:
        response = await self._call(self.client.join(room_id))
        if isinstance(response, nio.JoinResponse):
            return True
        self._raise_if_transient(response)
        return False

    async def reject(self, room_id: str) -> bool:
        response = await self._call(self.client.room_leave(room_id))
        if isinstance(response, nio.RoomLeaveResponse):
            return True
        self._raise_if_transient(response)
        return False

    # -- errors ----------------------------------------------------------------------------------

    async def _call(self, request: Any) -> Any:
        try:
            return await request
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(type(exc).__name__) from exc

    def _raise_if_transient(self, response: Any) -> None:
        if not isinstance(response, nio.ErrorResponse):
            return
        status = _http_status(response)
        if status is None or status >= 500 or status == 429:
            raise TransientError(f"HTTP {status}")

    def _raise_for_refusal(self, response: Any, what: str) -> None:
        """A 4xx other than 429 is a refusal (RefusedError); the rest is transient."""
        self._raise_if_transient(response)
        errcode = getattr(response, "status_code", None)
        if errcode in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
            raise LoginError(f"{what}: the access token is no longer valid ({errcode})")
        raise RefusedError(f"{what}: {errcode or 'refused'}",
                           errcode or f"HTTP {_http_status(response)}")

    def _raise_for(self, response: Any, what: str) -> None:
        errcode = getattr(response, "status_code", None)
        if errcode in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
            raise LoginError(f"{what}: the access token is no longer valid ({errcode})")
        raise TransientError(f"{what}: HTTP {_http_status(response)} {errcode or ''}".strip())


def _sync_filter(timeline_limit: int) -> dict[str, Any]:
    return {
        "room": {
            "timeline": {"limit": timeline_limit},
            "state": {"lazy_load_members": True},
        },
        "presence": {"not_types": ["*"]},
    }


def _drop_unparseable_events(body: dict[str, Any]) -> int:
    """Remove, in place, the events of a sync answer or history page that nio cannot parse."""
    blocks: list[Any] = [body.get("to_device"), body.get("account_data"), body]
    rooms = body.get("rooms")
    for section in rooms.values() if isinstance(rooms, dict) else ():
        for room in section.values() if isinstance(section, dict) else ():
            if isinstance(room, dict):
                blocks += [room.get(key) for key in ("timeline", "state", "ephemeral",
                                                     "account_data", "invite_state")]
    dropped = 0
    for block in blocks:
        if not isinstance(block, dict):
            continue
        for key in ("events", "chunk", "state"):  # a history page has `chunk` and `state`
            events = block.get(key)
            if isinstance(events, list):
                kept = [event for event in events if _parseable(event)]
                dropped += len(events) - len(kept)
                block[key] = kept
    return dropped


def _parseable(event: Any) -> bool:
    if not isinstance(event, dict):
        return False
    unsigned = event.get("unsigned", {})
    return (isinstance(event.get("origin_server_ts", 0), int | float)
            and isinstance(unsigned, dict)
            and isinstance(unsigned.get("prev_content", {}), dict))


def _events(room_id: str, events: list[Any]) -> list[RoomEvent]:
    parsed = (RoomEvent.from_source(room_id, _source(ev)) for ev in events)
    return [e for e in parsed if e is not None]


def _source(event: Any) -> dict[str, Any]:
    source = getattr(event, "source", None)
    return source if isinstance(source, dict) else {}


def send_result_of_error(status: int | None, errcode: str | None,
                         retry_after_ms: int | None) -> SendResult:
    """What a send's error answer means: wait (429), try again (5xx, no answer, the access token
    gone: nothing wrong with the message), or refused for good: not in the room (403), too large
    (413), or any other 4xx with a Matrix error code. A 4xx without one comes from something in
    between (a proxy being reconfigured), not from the homeserver: tried again."""
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        return SendResult(SendOutcome.RATE_LIMITED, retry_after_ms=int(retry_after_ms or 1000),
                          errcode=errcode)
    if status is not None and status >= 500:
        return SendResult(SendOutcome.TRANSIENT, errcode=errcode)
    if status == 401 or errcode in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
        return SendResult(SendOutcome.TRANSIENT, errcode=errcode)  # the sync loop stops the bot
    if status in (403, 413) or errcode in ("M_FORBIDDEN", "M_TOO_LARGE"):
        return SendResult(SendOutcome.REFUSED, errcode=errcode or f"HTTP {status}")
    if status is None or not str(errcode or "").startswith("M_"):
        return SendResult(SendOutcome.TRANSIENT, errcode=errcode)
    return SendResult(SendOutcome.REFUSED, errcode=errcode)


def _http_status(response: Any) -> int | None:
    transport = getattr(response, "transport_response", None)
    return getattr(transport, "status", None)
