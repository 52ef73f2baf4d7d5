"""`nextbot run` as an operator starts it: config file, password from the environment, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.devtools.testserver import Homeserver
from tests.integration.harness import PASSWORD, Member, replies_to, unique

pytestmark = pytest.mark.synapse


async def test_nextbot_run_answers_and_stops_on_sigterm(homeserver: Homeserver,
                                                        tmp_path: Path) -> None:
    bot_user = await homeserver.register(unique("clibot"), PASSWORD)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[matrix]\nhomeserver = "{homeserver.url}"\nuser_id = "{bot_user}"\n'
        f'store_path = "{tmp_path / "store"}"\n'
        f'[storage]\ndatabase = "{tmp_path / "bot.db"}"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "NEXTBOT_MATRIX__PASSWORD": PASSWORD}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "run", "--config", str(config),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    member = await Member.create(homeserver)
    try:
        room = await member.create_room(invite=[bot_user])
        assert await member.wait_joined(room, bot_user, timeout=30)
        event_id = await member.send(room, "!ping")
        replies = replies_to(await member.wait_for_messages(room, bot_user, 1), event_id)
        assert [r["content"]["body"] for r in replies] == ["Pong! Ich bin da."]
    finally:
        await member.close()
        process.send_signal(signal.SIGTERM)
        raw, _ = await asyncio.wait_for(process.communicate(), timeout=15)
        output = raw.decode()
    assert process.returncode == 0
    assert PASSWORD not in output  # the secret never reaches the log
    assert "!ping" not in output  # nor what the member wrote
    assert "command=ping" in output  # but what happened does
    assert "Traceback" not in output

    # `nextbot device` shows the key the homeserver publishes for the bot's device.
    shown = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "device", "--config", str(config),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    raw, _ = await asyncio.wait_for(shown.communicate(), timeout=30)
    assert shown.returncode == 0, raw.decode()
    verify = raw.decode().strip().splitlines()[-1].split()
    assert verify[:3] == ["In", "Element:", "/verify"] and verify[3] == bot_user
    device, key = verify[4], verify[5]
    asker = await Member.create(homeserver)
    try:
        async with aiohttp.ClientSession() as session, session.post(
            f"{homeserver.url}/_matrix/client/v3/keys/query",
            headers={"Authorization": f"Bearer {asker.client.access_token}"},
            json={"device_keys": {bot_user: []}},
        ) as response:
            published = (await response.json())["device_keys"][bot_user]
    finally:
        await asker.close()
    assert published[device]["keys"][f"ed25519:{device}"] == key

