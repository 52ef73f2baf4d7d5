"""Driving the bot from a member's side: real accounts on the test Synapse, real room events."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nio
import pytest

from bot.devtools.testserver import Homeserver
from bot.matrix.connection import MatrixConnection, RoomEvent, SyncBatch
from bot.runtime import Bot
from bot.settings import Settings
from commands.feature import Feature
from commands.framework import Router

PASSWORD = "test-password-123"
_names = itertools.count()

# Members read with a large timeline so a burst of replies is never cut short in their sync.
MEMBER_FILTER = {"room": {"timeline": {"limit": 1000}}, "presence": {"not_types": ["*"]}}


def unique(prefix: str) -> str:
    return f"{prefix}{int(time.time() * 1000) % 10_000_000}{next(_names)}"


async def register_with_token(homeserver: Homeserver, localpart: str) -> tuple[str, str, str]:
    """Register like `Homeserver.register`, but keep the device and access token it creates."""
    url = f"{homeserver.url}/_synapse/admin/v1/register"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(url) as response:
            response.raise_for_status()
            nonce = (await response.json())["nonce"]
        message = b"\x00".join([nonce.encode(), localpart.encode(), PASSWORD.encode(),
                                 b"notadmin"])
        mac = hmac.new(homeserver.registration_shared_secret.encode(), message,
                       hashlib.sha1).hexdigest()
        body = {"nonce": nonce, "username": localpart, "password": PASSWORD, "admin": False,
                "mac": mac}
        async with session.post(url, json=body) as response:
            answer = await response.json()
            assert response.status == 200, answer
    return answer["user_id"], answer["device_id"], answer["access_token"]


class Member:
    """A person with a Matrix client who sends commands and reads what arrives in their rooms."""

    def __init__(self, homeserver: Homeserver, user_id: str) -> None:
        self.user_id = user_id
        self.client = nio.AsyncClient(homeserver.url, user_id)
        self._since: str | None = None
        self.timeline: dict[str, list[dict[str, Any]]] = {}
        self.invites: list[str] = []  # rooms this member was invited to, in order

    @classmethod
    async def create(cls, homeserver: Homeserver, prefix: str = "member") -> Member:
        # The registration's own device and token: a password login would cost another bcrypt.
        user_id, device_id, token = await register_with_token(homeserver, unique(prefix))
        member = cls(homeserver, user_id)
        member.client.restore_login(user_id, device_id, token)
        await member.sync(timeout_ms=0)
        return member

    @classmethod
    async def login(cls, homeserver: Homeserver, user_id: str) -> Member:
        """A new client (and device) of an existing account, e.g. the bot's, driven by hand."""
        member = cls(homeserver, user_id)
        response = await member.client.login(PASSWORD, device_name="test")
        assert isinstance(response, nio.LoginResponse), response
        await member.sync(timeout_ms=0)
        return member

    async def close(self) -> None:
        await self.client.close()

    async def create_room(self, invite: list[str] = (), **kwargs: Any) -> str:
        response = await self.client.room_create(invite=list(invite), **kwargs)
        assert isinstance(response, nio.RoomCreateResponse), response
        return response.room_id

    async def join(self, room_id: str) -> None:
        response = await self.client.join(room_id)
        assert isinstance(response, nio.JoinResponse), response

    async def invite(self, room_id: str, user_id: str) -> None:
        response = await self.client.room_invite(room_id, user_id)
        assert isinstance(response, nio.RoomInviteResponse), response

    async def send(self, room_id: str, body: str, **extra: Any) -> str:
        content = {"msgtype": "m.text", "body": body, **extra}
        response = await self.client.room_send(room_id, "m.room.message", content)
        assert isinstance(response, nio.RoomSendResponse), response
        return response.event_id

    async def send_raw(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        response = await self.client.room_send(room_id, event_type, content)
        assert isinstance(response, nio.RoomSendResponse), response
        return response.event_id

    async def send_many(self, room_id: str, bodies: list[str],
                        concurrently: bool = False) -> list[str]:
        """Send each body as a command; the event ids come back in the order of `bodies`."""
        if concurrently:
            return list(await asyncio.gather(*(self.send(room_id, b) for b in bodies)))
        return [await self.send(room_id, b) for b in bodies]

    async def membership(self, room_id: str, user_id: str) -> str | None:
        """`user_id`'s membership in the room as the room state says (None: never a member)."""
        response = await self.client.room_get_state_event(room_id, "m.room.member", user_id)
        if isinstance(response, nio.RoomGetStateEventResponse):
            return response.content.get("membership")
        return None

    async def wait_membership(self, room_id: str, user_id: str, membership: str,
                              timeout: float = 10.0) -> str | None:
        """Poll until the membership is `membership`; returns the last one seen."""
        deadline = time.monotonic() + timeout
        while True:
            seen = await self.membership(room_id, user_id)
            if seen == membership or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.1)

    async def set_power_level(self, room_id: str, user_id: str, level: int) -> None:
        response = await self.client.room_get_state_event(room_id, "m.room.power_levels")
        assert isinstance(response, nio.RoomGetStateEventResponse), response
        content = dict(response.content)
        content["users"] = {**content.get("users", {}), user_id: level}
        put = await self.client.room_put_state(room_id, "m.room.power_levels", content)
        assert isinstance(put, nio.RoomPutStateResponse), put

    async def sync(self, timeout_ms: int = 1000) -> None:
        response = await self.client.sync(timeout=timeout_ms, since=self._since,
                                          sync_filter=MEMBER_FILTER)
        assert isinstance(response, nio.SyncResponse), response
        self._since = response.next_batch
        for room_id, info in response.rooms.join.items():
            events = self.timeline.setdefault(room_id, [])
            events.extend(ev.source for ev in info.timeline.events)
        self.invites.extend(r for r in response.rooms.invite if r not in self.invites)

    def messages_from(self, room_id: str, sender: str) -> list[dict[str, Any]]:
        return [
            ev for ev in self.timeline.get(room_id, [])
            if ev.get("sender") == sender and ev.get("type") == "m.room.message"
        ]

    async def wait_for_messages(self, room_id: str, sender: str, count: int,
                                timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages_from(room_id, sender)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await self.sync()

    async def settle(self, seconds: float = 1.5) -> None:
        """Keep reading for a while: to see that nothing more (no duplicate) arrives."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self.sync(timeout_ms=300)

    async def wait_for_replies(self, room_id: str, sender: str, event_ids: list[str],
                               timeout: float = 20.0) -> list[dict[str, Any]]:
        """Read until every event in `event_ids` has a reply from `sender` (or the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages_from(room_id, sender)
            answered = {reply_target(m) for m in found}
            if answered.issuperset(event_ids) or time.monotonic() > deadline:
                return found
            await self.sync()

    async def ask(self, room_id: str, bot_user_id: str, body: str, timeout: float = 20.0,
                  **extra: Any) -> dict[str, Any]:
        """Send a command and return the bot's (first) reply to it, the whole event."""
        event_id = await self.send(room_id, body, **extra)
        messages = await self.wait_for_replies(room_id, bot_user_id, [event_id], timeout)
        found = replies_to(messages, event_id)
        assert found, f"no reply to {body!r} within {timeout} s"
        return found[0]

    async def wait_for_invite(self, timeout: float = 20.0) -> str:
        """The next room this member is invited to (a direct message from the bot, say)."""
        deadline = time.monotonic() + timeout
        seen = len(self.invites)
        while len(self.invites) == seen:
            assert time.monotonic() < deadline, "no invite arrived"
            await self.sync(timeout_ms=500)
        return self.invites[seen]

    async def wait_invited(self, room_id: str, timeout: float = 20.0) -> None:
        """Until this member's sync shows an invite into `room_id` (seen earlier counts)."""
        deadline = time.monotonic() + timeout
        while room_id not in self.invites:
            assert time.monotonic() < deadline, f"no invite into {room_id} arrived"
            await self.sync(timeout_ms=500)

    async def wait_joined(self, room_id: str, user_id: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = await self.client.joined_members(room_id)
            if isinstance(response, nio.JoinedMembersResponse) and any(
                m.user_id == user_id for m in response.members
            ):
                return True
            await asyncio.sleep(0.1)
        return False


def reply_target(message: dict[str, Any]) -> str | None:
    """The event id a message replies to (`m.relates_to.m.in_reply_to.event_id`), if any."""
    relates = message.get("content", {}).get("m.relates_to") or {}
    return (relates.get("m.in_reply_to") or {}).get("event_id")


def replies_to(messages: list[dict[str, Any]], event_id: str) -> list[dict[str, Any]]:
    return [m for m in messages if reply_target(m) == event_id]


def reply_counts(messages: list[dict[str, Any]]) -> Counter[str | None]:
    """How many messages reply to each event id (None counts messages that reply to nothing)."""
    return Counter(reply_target(m) for m in messages)


def assert_answered_once(messages: list[dict[str, Any]], event_ids: list[str]) -> None:
    """Every command got exactly one reply, and no message answers anything else."""
    counts = reply_counts(messages)
    missing = [e for e in event_ids if counts[e] == 0]
    twice = {e: n for e, n in counts.items() if n > 1}
    extra = {e: n for e, n in counts.items() if e not in set(event_ids)}
    assert not missing, f"{len(missing)} of {len(event_ids)} commands not answered: {missing[:5]}"
    assert not twice, f"answered more than once: {twice}"
    assert not extra, f"replies to events that were no command sent here: {extra}"


class BotAccount:
    """The bot's account and files; each `start()` runs a fresh Bot on the same database."""

    def __init__(self, homeserver: Homeserver, workdir: Path, user_id: str, **bot: Any) -> None:
        self.homeserver = homeserver
        self.workdir = workdir
        self.user_id = user_id
        self.bot_settings = bot
        self.sections: dict[str, Any] = {}  # other settings sections, e.g. {"workshops": {...}}
        self.routers: list[Router] | None = None
        self.running: Bot | None = None

    @classmethod
    async def create(cls, homeserver: Homeserver, workdir: Path, **bot: Any) -> BotAccount:
        user_id = await homeserver.register(unique("bot"), PASSWORD)
        return cls(homeserver, workdir, user_id, **bot)

    def settings(self) -> Settings:
        # Tests send bursts from one member; the per-member limit is tested on its own.
        bot = {"allowed_servers": [self.homeserver.server_name], "member_rate_limit": 0,
               **self.bot_settings}
        return Settings(
            matrix={"homeserver": self.homeserver.url, "user_id": self.user_id,
                    "password": PASSWORD, "store_path": str(self.workdir / "store")},
            bot=bot,
            storage={"database": str(self.workdir / "bot.db")},
            **self.sections,
        )

    async def start(self) -> Bot:
        from bot.features import FEATURES

        extra = [Feature(router.group, router) for router in self.routers or []]
        bot = Bot(self.settings(), features=[*FEATURES, *extra])
        await bot.start()
        self.running = bot
        return bot

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop()
            self.running = None

    async def device_id(self) -> str:
        """The device the running bot's stored session belongs to."""
        assert self.running is not None and self.running.storage is not None
        session = await self.running.storage.session.get()
        assert session is not None
        return session.device_id

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Until the running bot's inbox and outbox are both empty."""
        assert self.running is not None and self.running.storage is not None
        storage = self.running.storage
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await storage.inbox.count() == 0 and await storage.outbox.count() == 0:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("the bot's queues did not drain")

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Until the running bot has stored a sync token (its first sync is done)."""
        assert self.running is not None and self.running.storage is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            session = await self.running.storage.session.get()
            if session and session.sync_token:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("bot did not finish its first sync")


@dataclass
class SyncLog:
    """What every bot in this test read: each sync batch, each page of history."""

    batches: list[SyncBatch] = field(default_factory=list)
    pages: list[tuple[str, list[RoomEvent]]] = field(default_factory=list)


@contextmanager
def record_syncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncLog]:
    """Record the bots' syncs and history pages (wraps `MatrixConnection`, changes nothing)."""
    log = SyncLog()
    sync, messages_before = MatrixConnection.sync, MatrixConnection.messages_before

    async def recording_sync(self: MatrixConnection, *args: Any, **kwargs: Any) -> SyncBatch:
        batch = await sync(self, *args, **kwargs)
        log.batches.append(batch)
        return batch

    async def recording_messages_before(self: MatrixConnection, room_id: str, *args: Any,
                                        **kwargs: Any) -> tuple[list[RoomEvent], str | None]:
        page, token = await messages_before(self, room_id, *args, **kwargs)
        log.pages.append((room_id, page))
        return page, token

    with monkeypatch.context() as patch:
        patch.setattr(MatrixConnection, "sync", recording_sync)
        patch.setattr(MatrixConnection, "messages_before", recording_messages_before)
        yield log
