"""Small fakes for the unit tests: no network, no nio, no real sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.matrix.connection import (
    Invite,
    RefusedError,
    RoomEvent,
    RoomTimeline,
    SendOutcome,
    SendResult,
    SyncBatch,
    TransientError,
)
from bot.matrix.own_rooms import DirectRooms
from bot.matrix.permissions import Permissions
from bot.pipeline.backoff import Backoff
from bot.pipeline.handling import CommandHandler
from bot.pipeline.sender import Sender
from bot.pipeline.syncer import Syncer, SyncListener
from commands import core
from commands.framework import Level, Registry, Request, Router, Services, dispatch
from commands.i18n import Catalog
from storage import Storage

BOT = "@nextbot:example.org"
ALICE = "@alice:example.org"
BOB = "@bob:example.org"
BOSS = "@boss:example.org"
ROOM = "!room:example.org"
OTHER_ROOM = "!other:example.org"

CATALOG = Catalog.load()


class FixedClock:
    def now(self) -> datetime:
        return datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make_services(storage: Storage, routers: Iterable[Router] = (core.router,),
                  prefix: str = "!") -> Services:
    return Services(storage=storage, catalog=CATALOG, registry=Registry(list(routers)),
                    clock=FixedClock(), prefix=prefix)


def fixed_level(level: Level) -> Callable[[], Awaitable[Level]]:
    async def get() -> Level:
        return level

    return get


def request(body: str, level: Level = Level.MEMBER, language: str = "de",
            room_id: str = ROOM, sender: str = ALICE, event_id: str = "$cmd") -> Request:
    return Request(event_id, room_id, sender, body, language, fixed_level(level))


INTERNAL_ERRORS = {CATALOG.template(lang, "errors.internal") for lang in ("de", "en")}


async def say(services: Services, body: str, level: Level = Level.MEMBER, language: str = "de",
              sender: str = ALICE, room_id: str = ROOM) -> str:
    """The plain text of the one reply to `body`, which must render and be no internal error."""
    from bot.matrix.render import to_html

    replies = await dispatch(request(body, level=level, language=language, sender=sender,
                                     room_id=room_id), services)
    assert len(replies) == 1, replies
    assert replies[0].text.plain not in INTERNAL_ERRORS, body
    to_html(replies[0].text.markdown)
    return replies[0].text.plain


class Sleeps:
    """An injectable `sleep` that only records how long it was asked to wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


def no_jitter_backoff(sleep: Callable[[float], Awaitable[None]] | None = None,
                      base: float = 0.5, cap: float = 30.0) -> Backoff:
    """rng() == 1.0: every delay is exactly the exponential step."""
    if sleep is None:
        return Backoff(base=base, cap=cap, rng=lambda: 1.0)
    return Backoff(base=base, cap=cap, rng=lambda: 1.0, sleep=sleep)


# -- Matrix-shaped plain data ---------------------------------------------------------------------


def message(event_id: str, body: Any, *, ts: int, sender: str = ALICE, room_id: str = ROOM,
            msgtype: str = "m.text", **extra: Any) -> RoomEvent:
    content = {"msgtype": msgtype, "body": body, **extra}
    return RoomEvent(event_id, room_id, sender, "m.room.message", ts, content)


def member_event(event_id: str, user_id: str, membership: str, *, ts: int,
                 room_id: str = ROOM, previous: str | None = None) -> RoomEvent:
    unsigned = {"prev_content": {"membership": previous}} if previous else {}
    return RoomEvent(event_id, room_id, user_id, "m.room.member", ts,
                     {"membership": membership}, state_key=user_id, unsigned=unsigned)


def power_levels_event(event_id: str, *, ts: int, room_id: str = ROOM,
                       sender: str = ALICE) -> RoomEvent:
    return RoomEvent(event_id, room_id, sender, "m.room.power_levels", ts,
                     {"users": {sender: 100}}, state_key="")


def timeline(events: list[RoomEvent], room_id: str = ROOM, limited: bool = False,
             prev_batch: str | None = None, state: list[RoomEvent] = ()) -> RoomTimeline:
    return RoomTimeline(room_id, events, limited, prev_batch, state=list(state))


def batch(next_batch: str, *rooms: RoomTimeline, invites: Iterable[Invite] = ()) -> SyncBatch:
    return SyncBatch(next_batch, list(rooms), list(invites))


class FakeSyncSource:
    """Scripted `SyncSource`: each sync() returns (or raises) the next scripted item.

    `pages[(room_id, token)] = (events newest first, next token)` answers `messages_before`.
    """

    def __init__(self, script: Iterable[SyncBatch | BaseException] = (),
                 pages: dict[tuple[str, str], tuple[list[RoomEvent], str | None]] | None = None,
                 user_id: str = BOT) -> None:
        self.user_id = user_id
        self.script = list(script)
        self.pages = dict(pages or {})
        self.sync_calls: list[tuple[str | None, int | None]] = []
        self.page_calls: list[tuple[str, str]] = []
        self.joined: list[str] = []
        self.rejected: list[str] = []
        self.readable: dict[str, RoomEvent] = {}  # event id -> its decrypted event
        self.decrypt_calls: list[str] = []

    async def decrypt(self, event: RoomEvent) -> RoomEvent | None:
        self.decrypt_calls.append(event.event_id)
        return self.readable.get(event.event_id)

    async def sync(self, since: str | None, timeout_ms: int | None = None) -> SyncBatch:
        self.sync_calls.append((since, timeout_ms))
        if not self.script:
            raise asyncio.CancelledError  # the script ran out: end `Syncer.run()`
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    async def messages_before(self, room_id: str, token: str,
                              limit: int = 100) -> tuple[list[RoomEvent], str | None]:
        self.page_calls.append((room_id, token))
        page = self.pages[(room_id, token)]
        if isinstance(page, BaseException):
            raise page
        return page

    async def join(self, room_id: str) -> bool:
        self.joined.append(room_id)
        return True

    async def reject(self, room_id: str) -> bool:
        self.rejected.append(room_id)
        return True


class FakeTransport:
    """Scripted `Transport`: answers each send with the next result (SENT when the script ends)."""

    def __init__(self, results: Iterable[SendResult] = ()) -> None:
        self.results = list(results)
        self.sent: list[tuple[str, str, dict[str, Any], str]] = []
        self.uploads: list[tuple[bytes, str, str]] = []
        self.upload_failures = 0

    async def upload(self, room_id: str, data: bytes, mimetype: str,
                     filename: str) -> dict[str, Any]:
        if self.upload_failures:
            self.upload_failures -= 1
            raise TransientError("upload failed")
        self.uploads.append((data, mimetype, filename))
        return {"url": f"mxc://test/{len(self.uploads)}"}

    async def send(self, room_id: str, event_type: str, content: dict[str, Any],
                   txn_id: str) -> SendResult:
        self.sent.append((room_id, event_type, content, txn_id))
        if self.results:
            return self.results.pop(0)
        return SendResult(SendOutcome.SENT, event_id=f"$sent{len(self.sent)}")

    @property
    def txn_ids(self) -> list[str]:
        return [txn for _, _, _, txn in self.sent]


class FakeHomeserver(FakeTransport):
    """Rooms as Synapse keeps them, made by the bot (`BOT`) or by members: each room's creator,
    state events (with their senders), members and aliases (each taken once); the bot's sends
    into a room it is not in are refused. Faults: `fail_creations` (a 502 before anything is
    made), `lose_creations` (made, but the answer never arrives)."""

    def __init__(self, results: Iterable[SendResult] = ()) -> None:
        super().__init__(results)
        self.rooms: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, str] = {}
        self.fail_creations = 0
        self.lose_creations = 0

    def make_room(self, creator: str, *, alias: str | None = None,
                  state: Iterable[dict[str, Any]] = (), invite: Iterable[str] = ()) -> str:
        """A room made by `creator`; `alias` is a local part (`#alias:example.org`)."""
        full = f"#{alias}:example.org" if alias is not None else None
        if full in self.aliases:
            raise RefusedError("create room: M_ROOM_IN_USE", "M_ROOM_IN_USE")
        room_id = f"!made{len(self.rooms) + 1}:example.org"
        create = {"type": "m.room.create", "state_key": "", "sender": creator, "content": {}}
        self.rooms[room_id] = {"creator": creator, "joined": {creator}, "invited": set(invite),
                               "state": [create, *({**e, "sender": creator} for e in state)]}
        if full is not None:
            self.aliases[full] = room_id
        return room_id

    def put_state(self, room_id: str, sender: str, event_type: str,
                  content: dict[str, Any]) -> None:
        state = [e for e in self.rooms[room_id]["state"]
                 if (e["type"], e["state_key"]) != (event_type, "")]
        self.rooms[room_id]["state"] = [*state, {"type": event_type, "state_key": "",
                                                 "sender": sender, "content": content}]

    def made_by_bot(self) -> list[str]:
        return [room_id for room_id, room in self.rooms.items() if room["creator"] == BOT]

    def sent_to(self, room_id: str) -> list[dict[str, Any]]:
        return [content for room, _, content, _ in self.sent if room == room_id]

    async def create_room(self, *, name: str | None = None, topic: str | None = None,
                          invite: Sequence[str] = (), is_direct: bool = False,
                          initial_state: Sequence[dict[str, Any]] = (),
                          alias: str | None = None, encrypted: bool = False) -> str:
        if self.fail_creations:
            self.fail_creations -= 1
            raise TransientError("create room: HTTP 502")
        room_id = self.make_room(BOT, alias=alias, state=initial_state, invite=invite)
        if self.lose_creations:
            self.lose_creations -= 1
            raise TransientError("ServerDisconnectedError")
        return room_id

    async def create_direct_room(self, user_id: str, *, alias: str | None = None,
                                 initial_state: Sequence[dict[str, Any]] = ()) -> str:
        return await self.create_room(invite=[user_id], is_direct=True, alias=alias,
                                      initial_state=initial_state)

    async def resolve_alias(self, alias: str) -> str | None:
        return self.aliases.get(alias)

    async def state_events(self, room_id: str) -> list[dict[str, Any]]:
        room = self.rooms.get(room_id)
        if room is None or BOT not in room["joined"]:
            raise RefusedError("room state: M_FORBIDDEN", "M_FORBIDDEN")
        return list(room["state"])

    async def invite(self, room_id: str, user_id: str) -> None:
        room = self.rooms[room_id]
        if user_id in room["joined"] | room["invited"]:
            raise RefusedError("invite: M_FORBIDDEN", "M_FORBIDDEN")
        room["invited"].add(user_id)

    async def send(self, room_id: str, event_type: str, content: dict[str, Any],
                   txn_id: str) -> SendResult:
        room = self.rooms.get(room_id)
        if room is not None and BOT not in room["joined"]:
            self.sent.append((room_id, event_type, content, txn_id))
            return SendResult(SendOutcome.REFUSED, errcode="M_FORBIDDEN")
        return await super().send(room_id, event_type, content, txn_id)


async def until(condition: Callable[[], bool], timeout: float = 1.0) -> None:
    """Let the loop run until `condition()` holds (fails the test after `timeout` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.001)


def config(tmp_path: Path, extra: str = "") -> Path:
    """A minimal valid config file (plus `extra` TOML) for the command-line tests."""
    path = tmp_path / "config.toml"
    path.write_text(f"""
[matrix]
homeserver = "https://matrix.example.org"
user_id = "@nextbot:example.org"
password = "secret"

[storage]
database = "{tmp_path / 'data' / 'nextbot.db'}"
{extra}
""", encoding="utf-8")
    return path


async def set_language(storage: Storage, room_id: str, language: str) -> None:
    await storage.rooms.change_setting(room_id, "language", language,
                                       changed_by="@mod:example.org", changed_at=1)


PIPELINE_NOW = 1_700_000_000_000


async def boss_room_state(room_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every room's state: BOSS made it and holds power 100 (room version 10)."""
    return ({"users": {BOSS: 100}},
            {"type": "m.room.create", "sender": BOSS, "content": {"room_version": "10"}})


class FakePipeline:
    """The sync loop, the command lanes and the sender on one database and a fake homeserver,
    driven by hand: `receive` is a sync bringing events, then the lanes and the sender at work.
    A new one on the same database and homeserver is the bot after a restart."""

    def __init__(self, storage: Storage, services: Services,
                 homeserver: FakeHomeserver | None = None,
                 source: FakeSyncSource | None = None, rate_limit: Any = None) -> None:
        self.storage, self.services = storage, services
        self.homeserver = homeserver or FakeHomeserver()
        self.source = source or FakeSyncSource()
        permissions = Permissions(boss_room_state, admins=[BOSS], moderator_level=50)
        self.handler = CommandHandler(services, permissions, "de", lambda: PIPELINE_NOW,
                                      lambda room: None, rate_limit=rate_limit)
        self.sender = Sender(self.homeserver, storage.outbox, sleep=Sleeps(),
                             backoff_factory=no_jitter_backoff,
                             direct_rooms=DirectRooms(storage.rooms, self.homeserver,
                                                      BOT).room_for)
        self.syncer = Syncer(self.source, storage, SyncListener(), prefix="!",
                             now_ms=lambda: PIPELINE_NOW,
                             reaction_keys=services.registry.reaction_keys())

    async def first_sync(self) -> None:
        """The bot's first sync: from now on, events are answered."""
        await self.storage.session.save_login(BOT, "DEVICE", "token-123")
        self.source.script.append(batch("s0"))
        await self.syncer.sync_once()

    async def receive(self, *events: RoomEvent, rooms: Iterable[str] = (ROOM,)) -> None:
        """A sync bringing these events, then the lanes (of `rooms`) and the sender at work."""
        self.source.script.append(batch(f"s{len(self.source.sync_calls)}", timeline(list(events))))
        await self.syncer.sync_once()
        for room_id in rooms:
            await self.handler.drain_room(room_id)
        await self.send_all()

    async def send_all(self) -> None:
        while rooms := await self.storage.outbox.pending_rooms():
            for address in rooms:
                await self.sender.drain_room(address)
