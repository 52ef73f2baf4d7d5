"""Driving the bot from a member's side: real accounts on the test Synapse, real room events."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import nio

from bot.runtime import Bot
from bot.settings import Settings
from bot.testserver import Homeserver
from commands.framework import Router

PASSWORD = "test-password-123"
_names = itertools.count()

# Members read with a large timeline so a burst of replies is never cut short in their sync.
MEMBER_FILTER = {"room": {"timeline": {"limit": 1000}}, "presence": {"not_types": ["*"]}}


def unique(prefix: str) -> str:
    return f"{prefix}{int(time.time() * 1000) % 10_000_000}{next(_names)}"


class Member:
    """A person with a Matrix client who sends commands and reads what arrives in their rooms."""

    def __init__(self, homeserver: Homeserver, user_id: str) -> None:
        self.user_id = user_id
        self.client = nio.AsyncClient(homeserver.url, user_id)
        self._since: str | None = None
        self.timeline: dict[str, list[dict[str, Any]]] = {}

    @classmethod
    async def create(cls, homeserver: Homeserver, prefix: str = "member") -> Member:
        user_id = await homeserver.register(unique(prefix), PASSWORD)
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

    async def sync(self, timeout_ms: int = 1000) -> None:
        response = await self.client.sync(timeout=timeout_ms, since=self._since,
                                          sync_filter=MEMBER_FILTER)
        assert isinstance(response, nio.SyncResponse), response
        self._since = response.next_batch
        for room_id, info in response.rooms.join.items():
            events = self.timeline.setdefault(room_id, [])
            events.extend(ev.source for ev in info.timeline.events)

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


def replies_to(messages: list[dict[str, Any]], event_id: str) -> list[dict[str, Any]]:
    return [
        m for m in messages
        if (m.get("content", {}).get("m.relates_to", {}).get("m.in_reply_to", {})
            .get("event_id")) == event_id
    ]


class BotAccount:
    """The bot's account and files; each `start()` runs a fresh Bot on the same database."""

    def __init__(self, homeserver: Homeserver, workdir: Path, user_id: str, **bot: Any) -> None:
        self.homeserver = homeserver
        self.workdir = workdir
        self.user_id = user_id
        self.bot_settings = bot
        self.routers: list[Router] | None = None
        self.running: Bot | None = None

    @classmethod
    async def create(cls, homeserver: Homeserver, workdir: Path, **bot: Any) -> BotAccount:
        user_id = await homeserver.register(unique("bot"), PASSWORD)
        return cls(homeserver, workdir, user_id, **bot)

    def settings(self) -> Settings:
        bot = {"allowed_servers": [self.homeserver.server_name], **self.bot_settings}
        return Settings(
            matrix={"homeserver": self.homeserver.url, "user_id": self.user_id,
                    "password": PASSWORD, "store_path": str(self.workdir / "store")},
            bot=bot,
            storage={"database": str(self.workdir / "bot.db")},
        )

    async def start(self) -> Bot:
        from bot.runtime import FEATURES

        bot = Bot(self.settings(), routers=[*FEATURES, *(self.routers or [])])
        await bot.start()
        self.running = bot
        return bot

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.stop()
            self.running = None

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
