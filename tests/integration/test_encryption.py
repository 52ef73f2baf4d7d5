"""Encrypted rooms: a member's encrypted command is answered encrypted, also after a restart."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import nio
import pytest
from signedjson.key import decode_verify_key_base64
from signedjson.sign import verify_signed_json

from bot import cli
from bot.devtools.testserver import Homeserver
from bot.matrix.connection import LoginError
from bot.matrix.cross_signing import KEYS_FILE, spaced
from tests.integration.harness import PASSWORD, BotAccount, register_with_token, unique

pytestmark = pytest.mark.synapse

ENCRYPTION = {"type": "m.room.encryption", "state_key": "",
              "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


class EncryptingMember:
    """A member whose client encrypts, as Element does: keys uploaded, sessions shared."""

    def __init__(self, homeserver: Homeserver, user_id: str, store: Path) -> None:
        store.mkdir(parents=True, exist_ok=True)
        config = nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False)
        self.client = nio.AsyncClient(homeserver.url, user_id, store_path=str(store),
                                      config=config)
        self.events: list[nio.Event] = []

    @classmethod
    async def create(cls, homeserver: Homeserver, store: Path) -> EncryptingMember:
        user_id = await homeserver.register(unique("crypt"), PASSWORD)
        member = cls(homeserver, user_id, store)
        assert isinstance(await member.client.login(PASSWORD), nio.LoginResponse)
        await member.client.keys_upload()
        await member.sync(0)
        return member

    async def sync(self, timeout_ms: int = 500) -> None:
        client = self.client
        response = await client.sync(timeout=timeout_ms, full_state=False,
                                     sync_filter={"room": {"timeline": {"limit": 100}}})
        assert isinstance(response, nio.SyncResponse), response
        for info in response.rooms.join.values():
            self.events.extend(info.timeline.events)
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        await client.send_to_device_messages()

    async def send(self, room_id: str, body: str) -> str:
        await self.sync(0)  # learn the room's members and their devices first
        response = await self.client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": body},
            ignore_unverified_devices=True)
        assert isinstance(response, nio.RoomSendResponse), response
        return response.event_id

    async def reply_to(self, event_id: str, sender: str, timeout: float = 20.0) -> nio.Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event.sender == sender and _in_reply_to(event.source) == event_id:
                    return event
            await self.sync()
        undecrypted = [e for e in self.events if isinstance(e, nio.MegolmEvent)]
        raise AssertionError(f"no reply to {event_id}; {len(undecrypted)} not decrypted")


def _in_reply_to(source: dict[str, Any]) -> str | None:
    relates = source.get("content", {}).get("m.relates_to") or {}
    return (relates.get("m.in_reply_to") or {}).get("event_id")


async def encrypted_room_with(member: EncryptingMember, bot: str) -> str:
    """A new encrypted room of the member's, once the bot has joined it."""
    created = await member.client.room_create(invite=[bot], initial_state=[ENCRYPTION],
                                              name="Verschlüsselt")
    assert isinstance(created, nio.RoomCreateResponse), created
    deadline = time.monotonic() + 15
    while not any(m.user_id == bot
                  for m in (await member.client.joined_members(created.room_id)).members):
        assert time.monotonic() < deadline, "the bot did not join"
        await asyncio.sleep(0.1)
    return created.room_id


async def test_encrypted_command_is_answered_encrypted_also_after_restart(
    homeserver: Homeserver, bot_account: BotAccount, tmp_path: Path
) -> None:
    await bot_account.start()
    await bot_account.wait_synced()
    member = await EncryptingMember.create(homeserver, tmp_path / "member-store")
    try:
        room = await encrypted_room_with(member, bot_account.user_id)
        device_before = await bot_account.device_id()

        first = await member.send(room, "!ping")
        reply = await member.reply_to(first, bot_account.user_id)
        assert isinstance(reply, nio.RoomMessageNotice)
        assert reply.decrypted  # it came as m.room.encrypted
        assert reply.body == "Pong! Ich bin da."

        await bot_account.stop()
        await bot_account.start()
        assert await bot_account.device_id() == device_before  # same device, same keys

        second = await member.send(room, "!hilfe")
        reply = await member.reply_to(second, bot_account.user_id)
        assert reply.decrypted and "das kann ich für dich tun" in reply.body
    finally:
        await member.client.close()


async def test_a_scheduled_post_into_an_encrypted_room_arrives_encrypted(
    homeserver: Homeserver, bot_account: BotAccount, tmp_path: Path
) -> None:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from storage.workshops import Workshop

    berlin = ZoneInfo("Europe/Berlin")
    bot_account.sections = {"workshops": {"reminders": ["1h"]}}
    await bot_account.start()
    await bot_account.wait_synced()
    member = await EncryptingMember.create(homeserver, tmp_path / "member-store")
    try:
        created = await member.client.room_create(
            invite=[bot_account.user_id], initial_state=[ENCRYPTION])
        assert isinstance(created, nio.RoomCreateResponse), created
        room = created.room_id
        first = await member.send(room, "!ping")  # the bot has joined once it answers
        await member.reply_to(first, bot_account.user_id)

        running = bot_account.running
        assert running is not None and running.storage is not None
        start = datetime.now(berlin).replace(microsecond=0) + timedelta(hours=1, seconds=3)
        await running.storage.workshops.add(
            Workshop(title="Verschlüsselte Sprechstunde", starts_at=start,
                     ends_at=start + timedelta(hours=1), created_by=member.client.user_id,
                     room_id=room), datetime.now(berlin))
        await running.scheduler.schedule_changed("workshops")

        deadline = time.monotonic() + 30
        while True:
            reminders = [e for e in member.events if isinstance(e, nio.RoomMessageNotice)
                         and "Verschlüsselte Sprechstunde" in e.body]
            if reminders or time.monotonic() > deadline:
                break
            await member.sync()
        [reminder] = reminders
        assert reminder.decrypted and reminder.sender == bot_account.user_id
    finally:
        await member.client.close()


async def test_a_community_room_is_made_encrypted_and_its_welcome_arrives_encrypted(
    homeserver: Homeserver, bot_account: BotAccount, tmp_path: Path
) -> None:
    bot_account.sections = {"communities": {"welcome_delay_seconds": 1}}
    member = await EncryptingMember.create(homeserver, tmp_path / "member-store")
    bot_account.bot_settings["moderators"] = [member.client.user_id]  # communities: the network's
    await bot_account.start()
    await bot_account.wait_synced()
    try:
        created = await member.client.room_create(
            invite=[bot_account.user_id], initial_state=[ENCRYPTION])
        assert isinstance(created, nio.RoomCreateResponse), created
        lobby = created.room_id
        asked = await member.send(lobby, "!community anlegen krypto Krypto-Runde")
        answer = await member.reply_to(asked, bot_account.user_id)
        assert "ist angelegt" in answer.body, answer.body
        running = bot_account.running
        assert running is not None and running.storage is not None
        community = await running.storage.communities.get("krypto")
        assert community is not None
        joined = await member.client.join(community.room_id)
        assert isinstance(joined, nio.JoinResponse), joined
        encryption = await member.client.room_get_state_event(community.room_id,
                                                              "m.room.encryption")
        assert encryption.content["algorithm"] == "m.megolm.v1.aes-sha2"

        deadline = time.monotonic() + 30
        while True:
            welcomes = [e for e in member.events if isinstance(e, nio.RoomMessageNotice)
                        and e.body.startswith("Willkommen")]
            if welcomes or time.monotonic() > deadline:
                break
            await member.sync()
        [welcome] = welcomes
        assert welcome.decrypted and "Krypto-Runde" in welcome.body
    finally:
        await member.client.close()


async def test_an_unreadable_message_gets_one_explanation_and_the_loop_goes_on(
    bot_account: BotAccount, member, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.matrix import connection
    from bot.pipeline import syncer

    monkeypatch.setattr(syncer, "UNDECRYPTABLE_GRACE_MS", 500)
    monkeypatch.setattr(connection, "SYNC_TIMEOUT_MS", 1000)  # look again soon, not in 30 s
    await bot_account.start()
    await bot_account.wait_synced()
    room = await member.create_room(invite=[bot_account.user_id], initial_state=[ENCRYPTION])
    assert await member.wait_joined(room, bot_account.user_id)
    garbage = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "bm90IGEgcmVhbCBtZXNzYWdl",
               "sender_key": "c2VuZGVyIGtleQ", "session_id": "no-such-session",
               "device_id": "NODEVICE"}
    first = await member.send_raw(room, "m.room.encrypted", garbage)
    await member.send_raw(room, "m.room.encrypted", {**garbage, "ciphertext": "b3RoZXI"})
    # The bot answers in the room's encryption, which this plain client cannot read: count
    # the bot's events, and read what it queued from its own database.
    deadline = time.monotonic() + 30

    def from_bot() -> list[dict]:
        return [e for e in member.timeline.get(room, [])
                if e.get("sender") == bot_account.user_id and e["type"] == "m.room.encrypted"]

    while not from_bot() and time.monotonic() < deadline:
        await member.sync()
    await member.settle(2)
    assert len(from_bot()) == 1  # one explanation, not one per message
    running = bot_account.running
    assert running is not None and running.storage is not None
    assert await running.storage.undecrypted.all() == []
    assert await running.storage.undecrypted.notified_at(room, member.user_id) is not None
    assert first in {e["event_id"] for e in member.timeline[room]}


# -- the bot's cross-signing identity ---------------------------------------------------------

async def published_keys(homeserver: Homeserver, token: str, user_id: str) -> dict[str, Any]:
    """What `/keys/query` tells anyone about `user_id`: devices and cross-signing keys."""
    async with aiohttp.ClientSession() as session, session.post(
            f"{homeserver.url}/_matrix/client/v3/keys/query",
            headers={"Authorization": f"Bearer {token}"},
            json={"device_keys": {user_id: []}}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def only_key(key_object: dict[str, Any]) -> str:
    [key] = key_object["keys"].values()
    return key


def assert_signed(signed: dict[str, Any], user_id: str, key: str) -> None:
    """Raises unless `signed` carries `user_id`'s valid signature by Ed25519 key `key`."""
    verify_signed_json(signed, user_id, decode_verify_key_base64("ed25519", key, key))


async def test_the_bot_cross_signs_its_one_device_and_keeps_both_across_restarts(
    homeserver: Homeserver, tmp_path: Path
) -> None:
    # The admin API's registration logs in once: that device is not the bot's.
    user_id, registration_device, token = await register_with_token(homeserver, unique("bot"))
    account = BotAccount(homeserver, tmp_path, user_id)
    try:
        await account.start()
        device = await account.device_id()
        keys = await published_keys(homeserver, token, user_id)
        master = only_key(keys["master_keys"][user_id])
        self_signing = keys["self_signing_keys"][user_id]
        assert self_signing["usage"] == ["self_signing"]
        assert_signed(self_signing, user_id, master)
        assert_signed(keys["device_keys"][user_id][device], user_id, only_key(self_signing))
        kept = tmp_path / "store" / KEYS_FILE
        assert kept.stat().st_mode & 0o777 == 0o600

        for _ in range(2):
            await account.stop()
            await account.start()
        assert await account.device_id() == device
        again = await published_keys(homeserver, token, user_id)
        assert only_key(again["master_keys"][user_id]) == master
        assert list(again["device_keys"][user_id]) == [device]
        async with aiohttp.ClientSession() as session, session.get(
                f"{homeserver.url}/_matrix/client/v3/devices",
                headers={"Authorization": f"Bearer {token}"}) as response:
            devices = {d["device_id"] for d in (await response.json())["devices"]}
        assert devices - {registration_device} == {device}
    finally:
        await account.stop()


async def test_a_lost_store_is_refused_until_the_identity_is_reset_then_all_works(
    homeserver: Homeserver, bot_account: BotAccount, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await bot_account.start()
    await bot_account.wait_synced()
    await bot_account.stop()
    asker = await EncryptingMember.create(homeserver, tmp_path / "member-store")
    try:
        token = asker.client.access_token
        before = only_key((await published_keys(homeserver, token, bot_account.user_id))
                          ["master_keys"][bot_account.user_id])
        shutil.rmtree(tmp_path / "store")

        with pytest.raises(LoginError) as refused:
            await bot_account.start()
        message = str(refused.value)
        assert "nextbot reset-identity" in message and spaced(before) in message
        assert not (tmp_path / "store" / KEYS_FILE).exists()  # no second identity made

        config = tmp_path / "config.toml"
        config.write_text(
            f'[matrix]\nhomeserver = "{homeserver.url}"\nuser_id = "{bot_account.user_id}"\n'
            f'password = "{PASSWORD}"\nstore_path = "{tmp_path / "store"}"\n'
            f'[storage]\ndatabase = "{tmp_path / "bot.db"}"\n', encoding="utf-8")
        assert await asyncio.to_thread(cli.main, ["reset-identity", "--config", str(config)]) == 0
        after = only_key((await published_keys(homeserver, token, bot_account.user_id))
                         ["master_keys"][bot_account.user_id])
        assert after != before

        await bot_account.start()
        await bot_account.wait_synced()
        keys = await published_keys(homeserver, token, bot_account.user_id)
        device = await bot_account.device_id()
        assert_signed(keys["device_keys"][bot_account.user_id][device], bot_account.user_id,
                      only_key(keys["self_signing_keys"][bot_account.user_id]))
        created = await asker.client.room_create(
            invite=[bot_account.user_id], initial_state=[ENCRYPTION])
        assert isinstance(created, nio.RoomCreateResponse), created
        asked = await asker.send(created.room_id, "!ping")
        reply = await asker.reply_to(asked, bot_account.user_id)
        assert reply.decrypted and reply.body == "Pong! Ich bin da."

        capsys.readouterr()
        assert await asyncio.to_thread(cli.main, ["device", "--config", str(config)]) == 0
        shown = capsys.readouterr().out
        assert f"device: {device}" in shown and f"master: {spaced(after)}" in shown
    finally:
        await asker.client.close()


# -- pair rooms: made encrypted, the introduction sent while the pair is only invited ----------

async def test_an_encrypted_pair_rooms_introduction_decrypts_for_both_members_20_of_20_times(
    homeserver: Homeserver, bot_account: BotAccount, tmp_path: Path
) -> None:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from storage.database import utc_ms
    from storage.meet import Round

    now = datetime.now(ZoneInfo("Europe/Berlin")).replace(microsecond=0)
    # Every day a date (no round of its own: the test stores each pair's round itself).
    bot_account.sections = {"meet": {"rule": "FREQ=DAILY", "start_time": "12:00",
                                     "reminders": [], "pairing": False}}
    running = await bot_account.start()
    await bot_account.wait_synced()
    assert running.storage is not None and "pairing" in running.parts
    storage, failed = running.storage, []
    for run in range(20):
        pair = await asyncio.gather(*(EncryptingMember.create(homeserver,
                                                              tmp_path / f"run{run}-{who}")
                                      for who in "ab"))
        try:
            day = f"{now + timedelta(days=10 + run):%Y-%m-%d}"
            await storage.meet.add_round(Round(day, utc_ms(now), utc_ms(now), 2),
                                         [tuple(p.client.user_id for p in pair)],
                                         keep_members_of=30)
            running.parts["pairing"].wake()
            room_id = None
            for _ in range(200):
                [group] = await storage.meet.groups(day)
                if (room_id := group.room_id) is not None:
                    break
                await asyncio.sleep(0.05)
            assert room_id is not None, f"run {run}: no room was made"
            await asyncio.gather(*(p.client.join(room_id) for p in pair))
            encryption = await pair[0].client.room_get_state_event(room_id, "m.room.encryption")
            assert encryption.content.get("algorithm") == "m.megolm.v1.aes-sha2", "not encrypted"
            readers = await asyncio.gather(*(introduction_read_by(p, bot_account.user_id)
                                             for p in pair))
            if not all(readers):
                failed.append(run)
        finally:
            for person in pair:
                await person.client.close()
    assert not failed, f"the introduction did not decrypt for both in runs {failed} of 20"


async def introduction_read_by(person: EncryptingMember, bot: str, timeout: float = 15) -> bool:
    """Whether the bot's first message in the member's room decrypts for them (its room key
    may come a sync after the message, as in Element)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await person.sync(200)
        sent = [e for e in person.events if e.sender == bot
                and isinstance(e, nio.RoomMessage | nio.MegolmEvent)]
        if not sent:
            continue
        if isinstance(sent[0], nio.MegolmEvent):
            try:
                sent[0] = person.client.decrypt_event(sent[0])
            except nio.EncryptionError:
                continue
        return (isinstance(sent[0], nio.RoomMessageNotice) and sent[0].decrypted
                and "Kennenlern-Paar" in sent[0].body)
    return False
