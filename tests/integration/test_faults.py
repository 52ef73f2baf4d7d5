"""Faults injected for real: the bot runs as `nextbot run` in a subprocess (so it can be killed)
behind a fault proxy (`fault_proxy.py`) in front of the test Synapse. Members talk to Synapse
directly and judge by what they read in the room: every command answered, none twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.testserver import Homeserver
from storage import Storage
from storage.workshops import Workshop
from tests.integration.fault_proxy import FaultProxy
from tests.integration.harness import (
    PASSWORD,
    Member,
    assert_answered_once,
    unique,
)

pytestmark = pytest.mark.synapse

BERLIN = ZoneInfo("Europe/Berlin")


class BotProcess:
    """`python -m bot.cli run` on one account and database, started and stopped at will."""

    def __init__(self, workdir: Path, homeserver_url: str, user_id: str,
                 extra_config: str = "") -> None:
        self.workdir = workdir
        self.user_id = user_id
        self.database = workdir / "bot.db"
        self.log_path = workdir / "bot.log"
        self.config = workdir / "config.toml"
        self.config.write_text(
            f'[matrix]\nhomeserver = "{homeserver_url}"\nuser_id = "{user_id}"\n'
            f'store_path = "{workdir / "store"}"\n'
            f'[storage]\ndatabase = "{self.database}"\n{extra_config}',
            encoding="utf-8",
        )
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, "NEXTBOT_MATRIX__PASSWORD": PASSWORD}
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", "run", "--config", str(self.config),
                env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
            )

    async def kill(self) -> None:
        """`kill -9`: no clean-up, no last write."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()
        self.process = None

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        """Read (or patch) the bot's SQLite file from outside, as an operator could."""
        with sqlite3.connect(self.database, timeout=5) as db:
            return db.execute(sql, params).fetchall()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.returncode is None, self.log()
            if self.database.exists():
                try:
                    if self.query("SELECT 1 FROM bot_session WHERE sync_token IS NOT NULL"):
                        return
                except sqlite3.OperationalError:
                    pass  # not migrated yet
            await asyncio.sleep(0.1)
        raise TimeoutError("the bot did not finish its first sync\n" + self.log())


@pytest.fixture
async def proxy(homeserver: Homeserver) -> AsyncIterator[FaultProxy]:
    fault_proxy = FaultProxy(homeserver.url)
    await fault_proxy.start()
    yield fault_proxy
    await fault_proxy.stop()


@pytest.fixture
async def bot(homeserver: Homeserver, proxy: FaultProxy,
              tmp_path: Path) -> AsyncIterator[BotProcess]:
    user_id = await homeserver.register(unique("faultbot"), PASSWORD)
    process = BotProcess(tmp_path, proxy.url, user_id,
                         '[workshops]\nreminders = ["1h"]\n')
    yield process
    await process.stop()
    assert "Traceback" not in process.log()


async def room_with(member: Member, bot: BotProcess) -> str:
    """The bot running and joined to a new room of `member`."""
    await bot.start()
    await bot.wait_synced()
    room = await member.create_room(invite=[bot.user_id])
    assert await member.wait_joined(room, bot.user_id, timeout=20), bot.log()
    return room


def reminders(messages: list[dict]) -> list[dict]:
    return [m for m in messages if "Erinnerung" in m["content"]["body"]]


async def add_workshop_due_soon(bot: BotProcess, room: str, member: Member,
                                seconds: float) -> None:
    """A workshop whose one-hour reminder is due in `seconds`, written straight into the
    database while the bot is down (a running bot plans it only at its next start)."""
    storage = await Storage.open(bot.database)
    try:
        start = datetime.now(BERLIN) + timedelta(hours=1, seconds=seconds)
        await storage.workshops.add(
            Workshop(title="OZG-Sprechstunde", starts_at=start,
                     ends_at=start + timedelta(hours=1), created_by=member.user_id,
                     room_id=room), datetime.now(BERLIN))
    finally:
        await storage.close()


async def test_kill_9_between_command_and_answer_and_between_reminder_and_post(
    bot: BotProcess, member: Member, proxy: FaultProxy
) -> None:
    room = await room_with(member, bot)
    first = await member.ask(room, bot.user_id, "!ping")

    # 1. The command is read and answered, but its reply never leaves the proxy: kill -9.
    proxy.sends = "hold"
    command = await member.send(room, "!ping")
    await proxy.wait_for("held")
    await bot.kill()
    await member.sync(timeout_ms=0)
    assert len(member.messages_from(room, bot.user_id)) == 1  # only the first answer

    # 2. The restarted bot resends the reply (Synapse posts it, the answer never arrives), and
    # a reminder fires and is queued behind it: kill -9 again.
    await add_workshop_due_soon(bot, room, member, seconds=2)
    proxy.release_held()
    proxy.sends = "hold_answer"
    await bot.start()
    await proxy.wait_for("held_answer")
    deadline = time.monotonic() + 15
    while not bot.query("SELECT key FROM deliveries"):
        assert time.monotonic() < deadline, "the reminder did not fire"
        await asyncio.sleep(0.1)
    await bot.kill()

    # 3. Restarted with the proxy forwarding: the reply (again, same transaction id) and the
    # reminder go out; Synapse keeps the reply it already has.
    proxy.release_held()
    proxy.sends = "forward"
    await bot.start()
    await member.wait_for_messages(room, bot.user_id, 3, timeout=20)
    after = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot.user_id, [command, after])
    await member.settle(1.5)

    messages = member.messages_from(room, bot.user_id)
    assert len(reminders(messages)) == 1, [m["content"]["body"] for m in messages]
    answers = [m for m in messages if m not in reminders(messages)]
    assert_answered_once(answers, [reply_to_id(first), command, after])
    # The reply to `command` was tried by all three processes, under one transaction id.
    tries = [s for s in proxy.sends_seen() if s.answer in ("held", "held_answer")]
    assert [s.answer for s in tries] == ["held", "held_answer"]
    assert sum(1 for s in proxy.sends_seen() if s.txn_id == tries[0].txn_id) == 3


async def test_a_send_whose_answer_is_lost_is_retried_with_its_transaction_id_and_posted_once(
    bot: BotProcess, member: Member, proxy: FaultProxy
) -> None:
    room = await room_with(member, bot)
    proxy.drop_send_answers = 1  # Synapse takes the send; the bot never hears back
    command = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot.user_id, [command])
    await member.settle(1.5)
    assert_answered_once(member.messages_from(room, bot.user_id), [command])
    [dropped] = [s for s in proxy.sends_seen() if s.answer == "dropped"]
    assert dropped.status == 200  # the server had accepted it
    retries = [s for s in proxy.sends_seen() if s.txn_id == dropped.txn_id]
    assert [s.answer for s in retries] == ["dropped", "forwarded"]


def reply_to_id(message: dict) -> str:
    return message["content"]["m.relates_to"]["m.in_reply_to"]["event_id"]
