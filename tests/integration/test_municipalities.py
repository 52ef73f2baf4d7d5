"""Join announcements as members see them: a member feed served from a local HTTP server, the
real scheduler, a restart; and a moderator's `!kommune neu`."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.integration.conftest import MakeMember
from tests.integration.harness import BotAccount, Member, reply_target

pytestmark = pytest.mark.synapse

HEADER = "name,kind,state,ags,joined_on,website\n"
SEED = ["Wiesbaden,Stadt,Hessen,06414000,2026-10-01,https://www.wiesbaden.de",
        "Ulm,Stadt,Baden-Württemberg,08421000,2026-10-15,"]
NEW = "Landkreis Darmstadt-Dieburg,Landkreis,Hessen,,2026-11-20,"
POLL_MINUTES = 0.01  # 0.6 s


class FeedServer:
    """The network's member list on 127.0.0.1: answers with ETag and honours If-None-Match."""

    def __init__(self) -> None:
        self.body = b""
        self.content_type = "text/csv"
        self.requests: list[dict[str, str]] = []  # the headers of each request
        self.not_modified = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    def serve_rows(self, *rows: str) -> None:
        self.body = (HEADER + "".join(f"{row}\n" for row in rows)).encode()
        self.content_type = "text/csv"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        etag = f'"{hashlib.sha256(self.body).hexdigest()[:16]}"'
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=self.body, content_type=self.content_type,
                            headers={"ETag": etag})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/mitglieder.csv", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/mitglieder.csv"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_requests(self, more: int, timeout: float = 15.0) -> None:
        """Until `more` further requests have come in."""
        target = len(self.requests) + more
        deadline = time.monotonic() + timeout
        while len(self.requests) < target:
            assert time.monotonic() < deadline, "the bot stopped polling the feed"
            await asyncio.sleep(0.05)


@pytest.fixture
async def feed() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    await server.start()
    yield server
    await server.stop()


def posts(member: Member, room: str, bot: str) -> list[dict[str, Any]]:
    """The bot's messages in the room that answer no command: announcements."""
    return [m for m in member.messages_from(room, bot) if reply_target(m) is None]


async def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_a_feed_seeds_silently_then_announces_a_new_member_once_per_room(
    bot_account: BotAccount, member: Member, feed: FeedServer
) -> None:
    bot = bot_account.user_id
    # The rooms exist first: one configured for announcements, one switched on by its moderator.
    await bot_account.start()
    await bot_account.wait_synced()
    configured = await member.create_room(invite=[bot], name="Ankündigungen")
    switched = await member.create_room(invite=[bot], name="Hessen")
    quiet = await member.create_room(invite=[bot], name="Ohne Ankündigungen")
    for room in (configured, switched, quiet):
        assert await member.wait_joined(room, bot)
    await bot_account.stop()

    feed.serve_rows(*SEED)
    bot_account.sections = {"announcements": {"rooms": [configured], "feed_url": feed.url,
                                              "poll_minutes": POLL_MINUTES}}
    running = await bot_account.start()
    await bot_account.wait_synced()
    assert running.storage is not None
    await wait_until(lambda: _count(running, 2))  # the first poll seeded the register
    switched_on = await member.ask(switched, bot, "!einstellungen setzen ankündigungen an")
    assert "an" in switched_on["content"]["body"]
    listing = (await member.ask(configured, bot, "!kommunen"))["content"]["body"]
    assert "Mitglieder des Netzwerks: 2" in listing and "Ulm" in listing
    await feed.wait_requests(2)
    await member.settle(1)
    for room in (configured, switched, quiet):
        assert posts(member, room, bot) == []  # seeding announced nothing

    feed.serve_rows(*SEED, NEW)
    for room in (configured, switched):
        [announcement] = await _wait_posts(member, room, bot, 1)
        body = announcement["content"]["body"]
        assert "Landkreis Darmstadt-Dieburg (Hessen) ist dem Netzwerk beigetreten" in body
        assert "Damit sind es jetzt 3 Mitglieder" in body
        assert announcement["content"]["msgtype"] == "m.notice"
    await member.settle(2)
    assert [len(posts(member, r, bot)) for r in (configured, switched, quiet)] == [1, 1, 0]
    # Conditional requests: an unchanged list is answered 304.
    assert feed.not_modified > 0
    assert any("If-None-Match" in headers for headers in feed.requests)

    # A restart announces nothing again.
    await bot_account.stop()
    running = await bot_account.start()
    await bot_account.wait_synced()
    await feed.wait_requests(3)
    await member.settle(1.5)
    assert [len(posts(member, r, bot)) for r in (configured, switched, quiet)] == [1, 1, 0]

    # A malformed, an empty and a much shorter list change nothing and announce nothing.
    for broken in (b"<html><body>Wartungsarbeiten</body></html>", HEADER.encode(),
                   (HEADER + SEED[0] + "\n").encode()):
        feed.body, feed.content_type = broken, "text/html" if b"html" in broken else "text/csv"
        await feed.wait_requests(2)
    feed.serve_rows(*SEED, NEW)
    await feed.wait_requests(1)
    listing = (await member.ask(configured, bot, "!kommunen"))["content"]["body"]
    assert "Mitglieder des Netzwerks: 3" in listing and "Wiesbaden" in listing
    await member.settle(1)
    assert [len(posts(member, r, bot)) for r in (configured, switched, quiet)] == [1, 1, 0]


async def _count(running, expected: int) -> bool:
    return await running.storage.municipalities.count() == expected


async def _wait_posts(member: Member, room: str, bot: str, count: int,
                      timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(posts(member, room, bot)) < count:
        assert time.monotonic() < deadline, "no announcement arrived"
        await member.sync(timeout_ms=500)
    return posts(member, room, bot)


async def test_members_may_not_register_a_join_network_moderators_may_and_it_is_announced(
    bot_account: BotAccount, member: Member, network_room: str, make_member: MakeMember
) -> None:
    room = network_room
    bot = bot_account.user_id
    await member.ask(room, bot, "!einstellungen setzen ankündigungen an")
    guest = await make_member("gast")
    await member.invite(room, guest.user_id)
    await guest.join(room)

    refused = (await guest.ask(room, bot, "!kommune neu Wiesbaden land=Hessen"))["content"]
    assert "Netzwerk-Moderation" in refused["body"], refused["body"]
    added = (await member.ask(room, bot, "!kommune neu Wiesbaden land=Hessen ags=06414000 "
                                         "art=Stadt"))["content"]["body"]
    assert "Eingetragen: Wiesbaden (Stadt, Hessen)" in added, added

    [announcement] = await _wait_posts(guest, room, bot, 1)
    body = announcement["content"]["body"]
    assert "Wiesbaden (Hessen) ist dem Netzwerk beigetreten" in body
    assert "Es ist das erste Mitglied" in body
    await guest.settle(2)
    assert len(posts(guest, room, bot)) == 1
    listing = (await guest.ask(room, bot, "!kommunen"))["content"]["body"]
    assert "Mitglieder des Netzwerks: 1" in listing
