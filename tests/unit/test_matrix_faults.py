"""A homeserver that accepts a request and never answers must not hang the bot.

nio sends a sync with `timeout=0` (the first sync, the full-state sync at start) without any
request timeout; a connection that silently died then blocks the bot for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

import bot.matrix
from bot.matrix import MatrixConnection, TransientError
from bot.settings import MatrixSettings


class SilentHomeserver:
    """Takes every request and never answers it."""

    def __init__(self) -> None:
        self.requests = 0
        self.url = ""

    async def never(self, request: web.Request) -> web.Response:
        self.requests += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.fixture
async def silent_homeserver() -> AsyncIterator[SilentHomeserver]:
    server = SilentHomeserver()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.never)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    yield server
    await runner.cleanup()


@pytest.fixture
async def connection(silent_homeserver: SilentHomeserver, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MatrixConnection]:
    monkeypatch.setattr(bot.matrix, "UNBOUNDED_SYNC_LIMIT_S", 0.3)
    matrix = MatrixConnection(MatrixSettings(
        homeserver=silent_homeserver.url, user_id="@bot:localhost", password="x",
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
    connection: MatrixConnection, silent_homeserver: SilentHomeserver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot.matrix.Backoff, "next_delay", lambda self: 0.05)
    with pytest.raises(TimeoutError):  # start-up requests are repeated until answered
        await asyncio.wait_for(connection._load_rooms(None), timeout=1.5)
    assert silent_homeserver.requests >= 3  # not one request waited on for ever
