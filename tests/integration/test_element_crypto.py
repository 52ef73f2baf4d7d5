"""Encrypted rooms with the crypto Element runs: matrix-js-sdk and its Rust crypto on Node, in
`OnlySignedDevicesIsolationMode` (MSC4153: room keys only for cross-signed devices, nothing
decrypted from others), its own cross-signing bootstrapped. `make element-client` installs it
(`make test` does); without npm these tests are skipped, in CI they fail."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nio
import pytest

from bot.devtools.testserver import Homeserver
from tests.integration.harness import PASSWORD, BotAccount, unique
from tests.integration.test_encryption import EncryptingMember

pytestmark = pytest.mark.synapse

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("element") / "client.mjs"
MODULES = ROOT / ".cache" / "element-client" / "node_modules"


@pytest.fixture(scope="session")
def element_modules() -> Path:
    """The installed matrix-js-sdk; installed now by `make element-client` if missing."""
    installed = (MODULES / "matrix-js-sdk").is_dir()
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if not installed and not missing:
        subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "element-client"],
                       check=False, timeout=600)
        installed = (MODULES / "matrix-js-sdk").is_dir()
        if not installed:
            pytest.fail("`make element-client` did not install the Element client (see above)")
    if installed and shutil.which("node"):
        return MODULES
    reason = f"{' and '.join(missing)} not found: the Element client cannot be installed or run"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class ElementClient:
    """One running client (one device): commands and answers as JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self._process = process
        self._log = log
        self.user_id = ""
        self.device_id = ""

    @classmethod
    async def start(cls, homeserver: Homeserver, user_id: str, modules: Path,
                    log: Path) -> ElementClient:
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                "node", str(SCRIPT), homeserver.url, user_id, PASSWORD,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                env={**os.environ, "ELEMENT_CLIENT_MODULES": str(modules)})
        client = cls(process, log)
        ready = await client._read(timeout=60)
        assert ready.get("ready"), client._failure(ready)
        client.user_id, client.device_id = ready["user_id"], ready["device_id"]
        return client

    async def call(self, op: str, timeout: float = 40, **arguments: Any) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"op": op, **arguments}).encode() + b"\n")
        await self._process.stdin.drain()
        answer = await self._read(timeout)
        assert answer.get("ok"), self._failure(answer)
        return answer

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        except TimeoutError:
            raise AssertionError(self._failure({"error": f"no answer in {timeout} s"})) from None
        if not line:
            raise AssertionError(self._failure({"error": "the client ended"}))
        return json.loads(line)

    def _failure(self, answer: dict[str, Any]) -> str:
        tail = self._log.read_text(errors="replace").splitlines()[-15:]
        return f"Element client: {answer.get('error', answer)}\n" + "\n".join(tail)

    async def close(self) -> None:
        if self._process.returncode is None:
            with contextlib.suppress(Exception):
                await self.call("stop", timeout=5)
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        await self._process.wait()


@pytest.fixture
async def element(homeserver: Homeserver, element_modules: Path, tmp_path: Path
                  ) -> AsyncIterator[Callable[[str], Any]]:
    """`async with element(user_id) as client:` one Element device of that account."""
    started: list[ElementClient] = []

    @contextlib.asynccontextmanager
    async def run(user_id: str) -> AsyncIterator[ElementClient]:
        client = await ElementClient.start(homeserver, user_id, element_modules,
                                           tmp_path / f"element-{len(started)}.log")
        started.append(client)
        try:
            yield client
        finally:
            await client.close()

    yield run
    for client in started:
        await client.close()


async def test_an_element_member_is_answered_encrypted_and_reads_it_also_after_a_restart(
    homeserver: Homeserver, bot_account: BotAccount, element: Callable[[str], Any]
) -> None:
    bot = bot_account.user_id
    await bot_account.start()
    await bot_account.wait_synced()
    async with element(await homeserver.register(unique("element"), PASSWORD)) as member:
        room = (await member.call("create_room", invite=[bot]))["room_id"]
        await member.call("wait_joined", room_id=room, user_id=bot)

        asked = await member.call("send", room_id=room, body="!ping")
        reply = await member.call("wait_reply", room_id=room, to=asked["event_id"], sender=bot)
        assert reply["encrypted"] and reply["msgtype"] == "m.notice"
        assert reply["body"] == "Pong! Ich bin da."

        await bot_account.stop()
        await bot_account.start()
        asked = await member.call("send", room_id=room, body="!hilfe")
        reply = await member.call("wait_reply", room_id=room, to=asked["event_id"], sender=bot)
        assert reply["encrypted"] and "das kann ich für dich tun" in reply["body"]


async def test_no_room_key_for_a_device_its_cross_signed_owner_did_not_sign(
    homeserver: Homeserver, bot_account: BotAccount, element: Callable[[str], Any],
    tmp_path: Path,
) -> None:
    bot = bot_account.user_id
    running = await bot_account.start()
    await bot_account.wait_synced()
    user_id = await homeserver.register(unique("element"), PASSWORD)
    # Someone without any cross-signing, on nio: keeps getting room keys.
    outsider = await EncryptingMember.create(homeserver, tmp_path / "outsider")
    # The Element member's second device, logged in but never signed by them.
    unsigned = EncryptingMember(homeserver, user_id, tmp_path / "unsigned")
    try:
        async with element(user_id) as member:
            assert isinstance(await unsigned.client.login(PASSWORD), nio.LoginResponse)
            await unsigned.client.keys_upload()
            room = (await member.call("create_room",
                                      invite=[bot, outsider.client.user_id]))["room_id"]
            assert isinstance(await outsider.client.join(room), nio.JoinResponse)
            await member.call("wait_joined", room_id=room, user_id=bot)
            await member.call("wait_joined", room_id=room, user_id=outsider.client.user_id)
            # Until the bot knows both of the member's devices: the test is about one it knows.
            assert running.connection is not None
            client = running.connection.client
            deadline = time.monotonic() + 20
            while unsigned.client.device_id not in client.device_store[user_id]:
                assert time.monotonic() < deadline, "the bot never learnt the second device"
                await asyncio.sleep(0.1)

            asked = await member.call("send", room_id=room, body="!ping")
            reply = await member.call("wait_reply", room_id=room, to=asked["event_id"],
                                      sender=bot)
            assert reply["body"] == "Pong! Ich bin da."  # the signed device reads it
            seen = await outsider.reply_to(asked["event_id"], bot)
            assert seen.decrypted and seen.body == "Pong! Ich bin da."

            for _ in range(4):  # the key would have come with or before the message
                await unsigned.sync(timeout_ms=200)
            answers = [e for e in unsigned.events if e.sender == bot
                       and isinstance(e, nio.MegolmEvent | nio.RoomMessage)]
            assert answers, "the unsigned device did not even see the answer"
            for event in answers:
                assert isinstance(event, nio.MegolmEvent), event  # never decrypted
                with pytest.raises(nio.EncryptionError):
                    unsigned.client.decrypt_event(event)
    finally:
        await outsider.client.close()
        await unsigned.client.close()
