"""What an operator relies on, against the real homeserver: the per-member limit, /metrics and
/healthz, and a SIGTERM that loses nothing and ends in time."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bot.devtools.testserver import Homeserver
from tests.integration.conftest import MakeBot, MakeMember
from tests.integration.harness import (
    PASSWORD,
    Member,
    assert_answered_once,
    replies_to,
    reply_counts,
    unique,
)

pytestmark = pytest.mark.synapse

PONG = "Pong! Ich bin da."


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(url) as response:
            return response.status, await response.text()


async def test_a_flooding_member_is_told_once_and_everyone_else_is_served(
        make_bot: MakeBot, member: Member, make_member: MakeMember) -> None:
    bot = await make_bot(member_rate_limit=20, member_rate_window_seconds=10)
    bot.sections = {"metrics": {"listen": "127.0.0.1:0"}}
    running = await bot.start()
    await bot.wait_synced()
    other = await make_member("other")
    room = await member.create_room(invite=[bot.user_id, other.user_id])
    assert await member.wait_joined(room, bot.user_id)
    await other.join(room)

    # 30 commands within a few seconds (each body differs, so none is taken for a resend).
    flood = await member.send_many(room, [f"!ping{' ' * i}" for i in range(30)])
    others = await other.send_many(room, ["!ping", "!ping "])
    messages = await member.wait_for_replies(room, bot.user_id, flood[:21] + others)
    await member.settle()
    messages = member.messages_from(room, bot.user_id)

    counts = reply_counts(messages)
    assert [counts[e] for e in flood] == [1] * 21 + [0] * 9  # the rest: not answered at all
    assert [replies_to(messages, e)[0]["content"]["body"] for e in flood[:20]] == [PONG] * 20
    assert replies_to(messages, flood[20])[0]["content"]["body"].startswith("Langsam bitte")
    assert [replies_to(messages, e)[0]["content"]["body"] for e in others] == [PONG, PONG]
    await bot.wait_idle()
    assert await running.storage.inbox.count() == 0  # every one handled, none left over

    assert running.metrics_server is not None
    status, text = await get(f"http://127.0.0.1:{running.metrics_server.port}/metrics")
    assert status == 200
    assert 'nextbot_commands_handled_total{command="ping",outcome="ok"} 22.0' in text
    assert 'nextbot_commands_rate_limited_total{action="answered"} 1.0' in text
    assert 'nextbot_commands_rate_limited_total{action="dropped"} 9.0' in text
    assert "nextbot_rate_limited_members " in text  # 1 or 0: depends on the time passed
    assert "nextbot_send_queue_messages 0.0" in text
    assert member.user_id not in text and other.user_id not in text and room not in text


async def test_healthz_and_metrics_of_a_running_bot(make_bot: MakeBot, member: Member) -> None:
    bot = await make_bot()
    bot.sections = {"metrics": {"listen": "127.0.0.1:0"}}
    running = await bot.start()
    await bot.wait_synced()
    assert running.metrics_server is not None
    base = f"http://127.0.0.1:{running.metrics_server.port}"
    room = await member.create_room(invite=[bot.user_id])
    assert await member.wait_joined(room, bot.user_id)
    reply = await member.ask(room, bot.user_id, "!hilfe gibtsnicht")
    assert reply["content"]["body"]
    await bot.wait_idle()

    status, body = await get(f"{base}/healthz")
    assert status == 200 and '"status": "ok"' in body
    status, text = await get(f"{base}/metrics")
    assert status == 200
    assert 'nextbot_commands_handled_total{command="help",outcome="user_error"} 1.0' in text
    assert 'nextbot_sends_total{outcome="sent"}' in text
    assert "gibtsnicht" not in text and member.user_id not in text
    lag = next(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("nextbot_sync_lag_seconds "))
    assert 0 <= lag < 35  # a long poll lasts at most 30 s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BotProcess:
    """`nextbot run` as an operator starts it, ready once /healthz says so."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.process: asyncio.subprocess.Process | None = None
        self.output = ""

    async def start(self, health_url: str) -> None:
        env = {**os.environ, "NEXTBOT_MATRIX__PASSWORD": PASSWORD}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", "--config", str(self.config),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.returncode is None, "the bot exited at start"
            try:
                if (await get(health_url))[0] == 200:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError("the bot did not become healthy")

    async def terminate(self) -> float:
        """SIGTERM; returns the seconds until the process exited."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        raw, _ = await asyncio.wait_for(self.process.communicate(), timeout=20)
        self.output += raw.decode()
        return time.monotonic() - started


async def test_sigterm_stops_in_time_and_loses_nothing(homeserver: Homeserver, member: Member,
                                                       tmp_path: Path) -> None:
    bot_user = await homeserver.register(unique("termbot"), PASSWORD)
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[matrix]\nhomeserver = "{homeserver.url}"\nuser_id = "{bot_user}"\n'
        f'store_path = "{tmp_path / "store"}"\n'
        f'[bot]\nmember_rate_limit = 0\n'
        f'[storage]\ndatabase = "{tmp_path / "bot.db"}"\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n',
        encoding="utf-8")
    health = f"http://127.0.0.1:{port}/healthz"
    bot = BotProcess(config)
    await bot.start(health)
    try:
        room = await member.create_room(invite=[bot_user])
        assert await member.wait_joined(room, bot_user, timeout=30)
        sent = await member.send_many(room, [f"!ping{' ' * i}" for i in range(40)],
                                      concurrently=True)
        # Stopped right away: some commands are being answered, some wait in the inbox, some
        # the bot has not even read yet.
        stop_seconds = await bot.terminate()
        assert bot.process.returncode == 0, bot.output
        assert stop_seconds < 10, f"stopping took {stop_seconds:.1f} s"
        await member.settle(0.5)
        print(f"SIGTERM to exit: {stop_seconds:.2f} s; answered before: "
              f"{len(member.messages_from(room, bot_user))} of {len(sent)}")

        # Whatever was not answered before the stop is answered after the next start: once.
        await bot.start(health)
        messages = await member.wait_for_replies(room, bot_user, sent, timeout=30)
        await member.settle()
        assert_answered_once(member.messages_from(room, bot_user), sent)
        assert {m["content"]["body"] for m in messages} == {PONG}
    finally:
        if bot.process is not None and bot.process.returncode is None:
            stop_seconds = await bot.terminate()
    assert bot.process.returncode == 0
    assert stop_seconds < 10
    assert "SIGTERM: stopping" in bot.output
    assert "Traceback" not in bot.output
    assert PASSWORD not in bot.output and "!ping" not in bot.output
