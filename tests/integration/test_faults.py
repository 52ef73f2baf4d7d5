"""Faults injected for real: the bot runs as `nextbot run` in a subprocess (so it can be killed)
behind a fault proxy (`fault_proxy.py`) in front of the test Synapse. Members talk to Synapse
directly and judge by what they read in the room: every command answered, none twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from bot.devtools.testserver import Homeserver
from commands.features import open_storage
from storage.workshops import Workshop
from tests.integration.fault_proxy import FaultProxy
from tests.integration.harness import (
    PASSWORD,
    Member,
    assert_answered_once,
    replies_to,
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
        with contextlib.closing(sqlite3.connect(self.database, timeout=5)) as db, db:
            return db.execute(sql, params).fetchall()

    async def wait_synced(self, timeout: float = 60.0) -> None:
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
    storage = await open_storage(bot.database)
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

    # 1. One command is answered, but its reply never leaves the proxy; the next one (a
    # moderator's) waits for the room state its level check reads: kill -9.
    proxy.sends = "hold"
    proxy.hold_reads_of = r"/rooms/[^/]+/state$"
    command = await member.send(room, "!ping")
    moderators = await member.send(room, "!sprache de")
    await proxy.wait_for("held", count=2)
    await bot.kill()
    await member.sync(timeout_ms=0)
    assert len(member.messages_from(room, bot.user_id)) == 1  # only the first answer
    assert bot.query("SELECT event_id FROM inbox") == [(moderators,)]  # read, not answered
    assert len(bot.query("SELECT txn_id FROM outbox")) == 1  # answered, not sent

    # 2. The restarted bot resends the reply (Synapse posts it, the answer never arrives),
    # answers the moderator's command, and a reminder fires; both queue behind the reply that
    # hangs: kill -9 again.
    await add_workshop_due_soon(bot, room, member, seconds=2)
    proxy.release_held()
    proxy.sends, proxy.hold_reads_of = "hold_answer", None
    await bot.start()
    await proxy.wait_for("held_answer")
    deadline = time.monotonic() + 15
    while len(bot.query("SELECT txn_id FROM outbox")) < 3:  # two answers and the reminder
        assert time.monotonic() < deadline, "the reminder or the answer was not queued"
        await asyncio.sleep(0.1)
    await bot.kill()
    assert bot.query("SELECT status FROM deliveries") == [("sent",)]  # fired, recorded

    # 3. Restarted with the proxy forwarding: the reply (again, same transaction id) and the
    # reminder go out; Synapse keeps the reply it already has.
    proxy.release_held()
    proxy.sends = "forward"
    await bot.start()
    await member.wait_for_messages(room, bot.user_id, 4, timeout=20)
    after = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot.user_id, [command, moderators, after])
    await member.settle(1.5)

    messages = member.messages_from(room, bot.user_id)
    assert len(reminders(messages)) == 1, [m["content"]["body"] for m in messages]
    answers = [m for m in messages if m not in reminders(messages)]
    assert_answered_once(answers, [reply_to_id(first), command, moderators, after])
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


async def test_homeserver_down_and_back_is_waited_out_with_back_off(
    bot: BotProcess, member: Member, proxy: FaultProxy
) -> None:
    room = await room_with(member, bot)
    first = await member.ask(room, bot.user_id, "!ping")
    proxy.sends = "hold"  # a reply on its way when the server goes
    in_flight = await member.send(room, "!ping")
    await proxy.wait_for("held")
    proxy.sends = "forward"

    # 502 pages (the long poll and the send in flight cut off too), then connections refused,
    # then back.
    went_down = time.monotonic()
    proxy.down()
    during_502 = await member.send(room, "!ping")
    await asyncio.sleep(2.0)
    refused_from = time.monotonic()
    await proxy.refuse_connections()
    during_refusal = await member.send(room, "!hilfe")
    await asyncio.sleep(2.0)
    await proxy.up()
    back = time.monotonic()

    commands = [reply_to_id(first), in_flight, during_502, during_refusal]
    await member.wait_for_replies(room, bot.user_id, commands, timeout=20)
    resumed_after = time.monotonic() - back
    await member.settle(1.0)
    assert_answered_once(member.messages_from(room, bot.user_id), commands)
    # Backed off: a handful of requests in two seconds of 502s, not a tight loop.
    bad_gateways = [s for s in proxy.requests_between(went_down, refused_from)
                    if s.answer == "502"]
    assert 2 <= len(bad_gateways) <= 12, [(round(s.at - went_down, 2), s.path)
                                           for s in bad_gateways]
    assert any(s.is_send for s in bad_gateways)
    # The refused connections show only in the bot's log: one warning per failed sync.
    failed_syncs = bot.log().count("sync failed")
    assert 2 <= failed_syncs <= 12, failed_syncs
    assert resumed_after < 12  # the back-off is capped


async def limit_messages(homeserver: Homeserver, user_id: str, per_second: int,
                         burst: int) -> None:
    """A real, low `rc_message` for one user (Synapse's admin API), no second Synapse needed."""
    admin = await Member.login(homeserver, await homeserver.register(unique("admin"), PASSWORD,
                                                                     admin=True))
    try:
        url = f"{homeserver.url}/_synapse/admin/v1/users/{user_id}/override_ratelimit"
        headers = {"Authorization": f"Bearer {admin.client.access_token}"}
        async with aiohttp.ClientSession() as session, session.post(
            url, headers=headers, json={"messages_per_second": per_second, "burst_count": burst}
        ) as response:
            assert response.status == 200, await response.text()
    finally:
        await admin.close()


async def test_rate_limits_injected_and_real_a_burst_is_answered_completely_in_order(
    homeserver: Homeserver, bot: BotProcess, member: Member, proxy: FaultProxy
) -> None:
    rooms = [await room_with(member, bot)]
    rooms.append(await member.create_room(invite=[bot.user_id]))
    assert await member.wait_joined(rooms[1], bot.user_id)
    await limit_messages(homeserver, bot.user_id, per_second=2, burst=2)
    proxy.rate_limit_sends = 3  # and the proxy's own M_LIMIT_EXCEEDED on the first sends

    sent = {room: await member.send_many(room, [f"!ping{' ' * i}" for i in range(5)])
            for room in rooms}
    for room, commands in sent.items():
        await member.wait_for_replies(room, bot.user_id, commands, timeout=30)
    await member.settle(1.0)
    for room, commands in sent.items():
        messages = member.messages_from(room, bot.user_id)
        assert_answered_once(messages, commands)
        assert [reply_to_id(m) for m in messages] == commands  # in order, per room
    injected = [s for s in proxy.sends_seen() if s.answer == "429"]
    assert len(injected) == 3
    assert any(s.status == 429 for s in proxy.sends_seen()), "Synapse never limited the bot"
    for limited in injected:  # waited as told before trying that message again
        again = next(s for s in proxy.sends_seen() if s.txn_id == limited.txn_id
                     and s.at > limited.at)
        assert again.at - limited.at >= proxy.retry_after_ms / 1000 * 0.9


async def test_a_replayed_sync_and_a_restart_without_sync_token_answer_nothing_twice(
    bot: BotProcess, member: Member, proxy: FaultProxy
) -> None:
    room = await room_with(member, bot)
    first = reply_to_id(await member.ask(room, bot.user_id, "!ping"))
    second = reply_to_id(await member.ask(room, bot.user_id, "!hilfe"))

    # The sync answer that brought `first` comes again (and with it its old `next_batch`).
    proxy.replay_sync_containing(first)
    await proxy.wait_for("replayed")
    third = reply_to_id(await member.ask(room, bot.user_id, "!ping"))
    await member.settle(1.0)
    assert_answered_once(member.messages_from(room, bot.user_id), [first, second, third])

    # The sync token is lost (the rest of the database kept): the bot starts over from now.
    await bot.kill()
    bot.query("UPDATE bot_session SET sync_token = NULL")
    await bot.start()
    await bot.wait_synced()
    fourth = reply_to_id(await member.ask(room, bot.user_id, "!ping"))
    await member.settle(1.5)
    assert bot.log().count("first sync done") == 2
    assert_answered_once(member.messages_from(room, bot.user_id),
                         [first, second, third, fourth])


async def test_malformed_events_are_ignored_and_the_loop_keeps_running(
    bot: BotProcess, member: Member, proxy: FaultProxy
) -> None:
    """Synapse refuses to create most of these itself; over federation they can still arrive,
    so the proxy puts them into the bot's sync. (Edits, notices, emotes and custom event types
    sent by a member are covered in test_ignored_events.py.)"""
    room = await room_with(member, bot)
    now = int(time.time() * 1000)
    message = {"type": "m.room.message", "sender": member.user_id, "origin_server_ts": now}
    broken = {
        "no body": {"msgtype": "m.text"},
        "number body": {"msgtype": "m.text", "body": 5},
        "list body": {"msgtype": "m.text", "body": ["!ping"]},
        "null body": {"msgtype": "m.text", "body": None},
        "no msgtype": {"body": "!ping"},
        "number msgtype": {"msgtype": 1, "body": "!ping"},
        "edit of nothing": {"msgtype": "m.text", "body": "* !ping",
                            "m.new_content": {"msgtype": "m.text", "body": "!ping"},
                            "m.relates_to": {"rel_type": "m.replace", "event_id": "$gone"}},
    }
    injected = [{**message, "event_id": f"$broken-{i}", "content": content}
                for i, content in enumerate(broken.values())]
    # A well-formed command whose relation is not: answered like any other.
    odd_relation = {**message, "event_id": "$odd-relation",
                    "content": {"msgtype": "m.text", "body": "!ping", "m.relates_to": "x"}}
    injected += [
        odd_relation,
        {**message, "event_id": "$content-null", "content": None},
        {**message, "event_id": "$content-text", "content": "!ping"},
        {**message, "event_id": "$sender-number", "sender": 7,
         "content": {"msgtype": "m.text", "body": "!ping"}},
        {**message, "content": {"msgtype": "m.text", "body": "!ping"}},  # no event id
        {**message, "event_id": "$no-type", "type": None,
         "content": {"msgtype": "m.text", "body": "!ping"}},
        # nio cannot parse a sync holding one of these at all: dropped before it tries.
        {**message, "event_id": "$ts-text", "origin_server_ts": "gestern",
         "content": {"msgtype": "m.text", "body": "!ping"}},
        {**message, "event_id": "$ts-null", "origin_server_ts": None,
         "content": {"msgtype": "m.text", "body": "!ping"}},
        "!ping",  # not even an object
        None,
    ]
    proxy.inject_events(room, injected)
    # And what a member's client can send: unknown types and message types, a huge body.
    chat = await member.send(room, "Guten Morgen")
    ignored = [
        await member.send_raw(room, "m.sticker", {"body": "!ping", "url": "mxc://x/y",
                                                  "info": {}}),
        await member.send_raw(room, "m.reaction", {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": chat, "key": "!ping"}}),
        await member.send_raw(room, "m.room.message", {"msgtype": "org.example.poll",
                                                       "body": "!ping"}),
        await member.send(room, "x" * 60_000),
    ]
    sentinel = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot.user_id, [sentinel])
    await member.settle(1.0)
    messages = member.messages_from(room, bot.user_id)
    assert_answered_once(messages, ["$odd-relation", sentinel])  # and nothing else
    assert not any(replies_to(messages, event_id) for event_id in ignored)
    assert proxy.injected_pending() == 0  # they did reach the bot
    # Still reading: the next command is answered too.
    after = await member.ask(room, bot.user_id, "!ping")
    assert after["content"]["body"] == "Pong! Ich bin da."


HOSTILE = [
    "!<b>fett</b>",
    "!hilfe <img src=x onerror=alert(1)> @room",
    "!ping @room <script>alert(1)</script>",
    "!werkstatt <a href=\"javascript:alert(1)\">klick</a>",
    "!\u202eping\u202c",  # right-to-left override
    "!hilfe \u202egnip\u202c \u200f",  # ... and a right-to-left mark
    "!pi\u200bng",  # zero-width space inside the name
    "!ping\u200d\ufeff",  # zero-width joiner, byte order mark
    "!" + "a" * 9_999,  # 10,000 characters
    "!hilfe " + "<b>" * 3_000,
    "!ping " + "x" * 60_000,  # near the 64 KiB event limit
]
RAW_HTML = ("<b>", "<img", "<script", "<a href=\"javascript", "onerror")


async def test_hostile_text_is_answered_safely(
    bot: BotProcess, member: Member, proxy: FaultProxy
) -> None:
    room = await room_with(member, bot)
    sent = [await member.send(room, body) for body in HOSTILE]
    before_prefix = await member.send(room, "\u200b!ping")  # not at the start: no command
    sentinel = await member.send(room, "!ping")
    await member.wait_for_replies(room, bot.user_id, [*sent, sentinel])
    await member.settle(1.0)
    messages = member.messages_from(room, bot.user_id)
    assert_answered_once([m for m in messages if reply_to_id(m) != before_prefix],
                         [*sent, sentinel])
    assert len(replies_to(messages, before_prefix)) <= 1
    for m in messages:
        content = m["content"]
        assert content["msgtype"] == "m.notice"
        # With `m.mentions` present, clients notify only whom it names: never the room.
        assert content["m.mentions"].get("room") is not True, content["m.mentions"]
        html = content["formatted_body"]
        assert not any(raw in html for raw in RAW_HTML), html[:300]
    # Echoed member text arrives escaped, not dropped.
    [html_echo] = replies_to(messages, sent[0])
    assert "&lt;b&gt;fett&lt;/b&gt;" in html_echo["content"]["formatted_body"]


def reply_to_id(message: dict) -> str:
    return message["content"]["m.relates_to"]["m.in_reply_to"]["event_id"]
