"""The Matrix connection against a homeserver that misbehaves (a scripted one on loopback).

- A request accepted and never answered must not hang the bot: nio sends a sync with
  `timeout=0` (the first sync, the full-state sync at start) without any request timeout.
- An event nio cannot parse (not an object, a timestamp that is no number) must not fail the
  whole sync, and every retry of it, for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import bot.matrix.connection
from bot.matrix.connection import MatrixConnection, TransientError
from bot.settings import MatrixSettings

ROOM = "!room:localhost"
GOOD = {"event_id": "$good", "sender": "@member:localhost", "type": "m.room.message",
        "origin_server_ts": 1_700_000_000_000,
        "content": {"msgtype": "m.text", "body": "!ping"}}
POISON: list[Any] = [
    "!ping",
    None,
    {**GOOD, "event_id": "$ts-text", "origin_server_ts": "gestern"},
    {**GOOD, "event_id": "$ts-null", "origin_server_ts": None},
    {**GOOD, "event_id": "$member", "type": "m.room.member", "state_key": "@member:localhost",
     "content": {"membership": "join"}, "unsigned": {"prev_content": "join"}},
]


class ScriptedHomeserver:
    """Answers every request with `answer` (a JSON body), or never when it is None."""

    def __init__(self) -> None:
        self.requests = 0
        self.url = ""
        self.answer: dict[str, Any] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.answer is None:
            await asyncio.Event().wait()
        return web.json_response(self.answer)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedHomeserver]:
    server = ScriptedHomeserver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    yield server
    await runner.cleanup()


@pytest.fixture
async def connection(server: ScriptedHomeserver, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MatrixConnection]:
    monkeypatch.setattr(bot.matrix.connection, "UNBOUNDED_SYNC_LIMIT_S", 0.3)
    matrix = MatrixConnection(MatrixSettings(
        homeserver=server.url, user_id="@bot:localhost", password="x",
        store_path=tmp_path / "store", encryption=False))
    matrix.client.restore_login("@bot:localhost", "DEVICE", "token")
    yield matrix
    await matrix.close()


async def test_a_first_sync_without_answer_fails_instead_of_hanging(
    connection: MatrixConnection,
) -> None:
    with pytest.raises(TransientError):
        await asyncio.wait_for(connection.sync(None, timeout_ms=0), timeout=5)


async def test_the_full_state_sync_at_start_gives_up_and_asks_again(
    connection: MatrixConnection, server: ScriptedHomeserver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot.matrix.connection.Backoff, "next_delay", lambda self: 0.05)
    with pytest.raises(TimeoutError):  # start-up requests are repeated until answered
        await asyncio.wait_for(connection._load_rooms(None), timeout=1.5)
    assert server.requests >= 3  # not one request waited on for ever


async def test_events_nio_cannot_parse_are_dropped_from_a_sync(
    connection: MatrixConnection, server: ScriptedHomeserver,
) -> None:
    timeline = {"events": [*POISON, GOOD], "limited": False, "prev_batch": "p1"}
    server.answer = {"next_batch": "s2", "rooms": {"join": {ROOM: {
        "timeline": timeline, "state": {"events": POISON}}}}}
    batch = await connection.sync("s1", timeout_ms=0)
    [room] = batch.rooms
    assert [e.event_id for e in room.events] == ["$good"]
    assert room.state == []
    assert batch.next_batch == "s2"


async def test_events_nio_cannot_parse_are_dropped_from_a_page_of_history(
    connection: MatrixConnection, server: ScriptedHomeserver,
) -> None:
    server.answer = {"chunk": [GOOD, *POISON], "start": "p1", "end": "p0", "state": POISON}
    events, token = await connection.messages_before(ROOM, "p1")
    assert [e.event_id for e in events] == ["$good"]
    assert token == "p0"


def test_a_redaction_names_what_it_redacts_in_every_room_version():
    from bot.matrix.connection import RoomEvent

    old_room = RoomEvent.from_source("!r:x", {"event_id": "$red", "sender": "@a:x",
                                              "type": "m.room.redaction", "redacts": "$check",
                                              "content": {}})
    new_room = RoomEvent.from_source("!r:x", {"event_id": "$red", "sender": "@a:x",
                                              "type": "m.room.redaction",
                                              "content": {"redacts": "$check"}})
    assert old_room.content["redacts"] == new_room.content["redacts"] == "$check"
