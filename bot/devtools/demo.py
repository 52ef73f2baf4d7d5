"""`make demo`: the bot against a throwaway local homeserver, and a console to talk to it.

Starts Synapse on 127.0.0.1 (a free port, a temporary directory), registers the bot and a demo
member, creates a room with both, starts the bot, and reads commands from the terminal, sent as
the demo member; the bot's replies are printed as they arrive. Ctrl-C (or Ctrl-D) stops
everything it started. `--script CMD …` sends the given commands, prints the replies and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import nio

from bot.devtools.testserver import Homeserver
from bot.runtime import Bot
from bot.settings import Settings
from commands.features import open_storage
from commands.schedule import local_time
from storage import Storage
from storage.experts import Profile
from storage.workshops import Workshop

BOT_LOCALPART = "nextbot"
MEMBER_LOCALPART = "demo"
MEMBER_PASSWORD = "demo-passwort"
BOT_PASSWORD = "bot-passwort"
ROOM_NAME = "NExT Demo"
DEMO_ZONE = ZoneInfo("Europe/Berlin")
ROOM_TOPIC = "Probier den NExT-Bot aus: !hilfe zeigt, was er kann."


# Fictional people, so that `!experten` has something to find in the demo.
DEMO_EXPERTS = [
    ("anna.schmidt", "Anna Schmidt", "Stadt Wiesbaden", "kommune", "Hessen",
     ["Smart City", "Chatbots", "Bürgerservice"], "Leiterin Digitalisierung"),
    ("jonas.weber", "Jonas Weber", "Stadt Ulm", "kommune", "Baden-Württemberg",
     ["Künstliche Intelligenz", "Chatbots"], "Projektleiter KI-Assistenz"),
    ("mehmet.yilmaz", "Mehmet Yılmaz", "Landesamt für Digitalisierung", "land", "Bayern",
     ["Cloud", "OZG"], "Referent Cloud-Strategie"),
    ("lena.mueller", "Lena Müller", "Bundesministerium des Innern", "bund", "Berlin",
     ["KI-Verordnung", "Datenschutz"], "Referentin EU-Recht"),
    ("karin.hoffmann", "Karin Hoffmann", "Kreis Segeberg", "kommune", "Schleswig-Holstein",
     ["E-Akte", "Prozessdigitalisierung"], "Organisationsentwicklung"),
]


# Fictional workshops, a week and two weeks from now, so that `!werkstätten` lists something.
DEMO_WORKSHOPS = [
    ("KI in der Verwaltung: erste Schritte", 7, clock_time(10), 2, "Rathaus Wiesbaden", 20),
    ("OZG-Sprechstunde", 14, clock_time(14), 1, None, None),
]


async def seed_demo_data(storage: Storage, server_name: str, room_id: str | None = None) -> None:
    now = datetime.now(DEMO_ZONE)
    for title, in_days, at, hours, place, places in DEMO_WORKSHOPS:
        start = local_time(now.date() + timedelta(days=in_days), at, DEMO_ZONE)
        await storage.workshops.add(
            Workshop(title=title, starts_at=start, ends_at=start + timedelta(hours=hours),
                     created_by=f"@{MEMBER_LOCALPART}:{server_name}", room_id=room_id,
                     location=place, capacity=places,
                     url=None if place else "https://meet.example.org/ozg"), now)
    profiles = [
        Profile(user_id=f"@{localpart}:{server_name}", display_name=name, organisation=org,
                level=level, state=state, topics=topics, role=role)
        for localpart, name, org, level, state, topics, role in DEMO_EXPERTS
    ]
    await storage.experts.upsert_many(profiles)


class DemoMember:
    """The demo member's Matrix client: sends commands, prints what the bot answers."""

    def __init__(self, homeserver: Homeserver, bot_user: str) -> None:
        self.user_id = homeserver.user_id(MEMBER_LOCALPART)
        self.bot_user = bot_user
        self.client = nio.AsyncClient(homeserver.url, self.user_id)
        self.room_id = ""
        self.replied = asyncio.Event()
        self._since: str | None = None

    async def setup(self) -> None:
        response = await self.client.login(MEMBER_PASSWORD, device_name="demo console")
        if not isinstance(response, nio.LoginResponse):
            raise RuntimeError(f"demo member could not log in: {response}")
        created = await self.client.room_create(
            name=ROOM_NAME, topic=ROOM_TOPIC, invite=[self.bot_user]
        )
        if not isinstance(created, nio.RoomCreateResponse):
            raise RuntimeError(f"demo room could not be created: {created}")
        self.room_id = created.room_id
        await self._read(timeout_ms=0, show=False)  # start reading from now on
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            members = await self.client.joined_members(self.room_id)
            if isinstance(members, nio.JoinedMembersResponse) and any(
                m.user_id == self.bot_user for m in members.members
            ):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("the bot did not join the demo room")

    async def send(self, text: str) -> None:
        await self.client.room_send(
            self.room_id, "m.room.message", {"msgtype": "m.text", "body": text}
        )

    async def follow(self) -> None:
        while True:
            await self._read(timeout_ms=30_000, show=True)

    async def _read(self, timeout_ms: int, show: bool) -> None:
        response = await self.client.sync(
            timeout=timeout_ms, since=self._since,
            sync_filter={"room": {"timeline": {"limit": 100}}},
        )
        if not isinstance(response, nio.SyncResponse):
            await asyncio.sleep(1)
            return
        self._since = response.next_batch
        room = response.rooms.join.get(self.room_id)
        for event in room.timeline.events if room else []:
            source: dict[str, Any] = event.source
            if source.get("sender") == self.bot_user and source.get("type") == "m.room.message":
                self.replied.set()
                if show:
                    body = source.get("content", {}).get("body", "")
                    print(f"\nNExT-Bot:\n{_indent(body)}\n", flush=True)


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


async def _console(member: DemoMember) -> None:
    """Read lines from the terminal without blocking the event loop."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def readable() -> None:
        line = sys.stdin.readline()
        lines.put_nowait(line if line else None)

    loop.add_reader(sys.stdin.fileno(), readable)
    try:
        while True:
            line = await lines.get()
            if line is None:
                return
            if line.strip():
                await member.send(line.strip())
    finally:
        loop.remove_reader(sys.stdin.fileno())


async def _script(member: DemoMember, commands: list[str]) -> None:
    for command in commands:
        print(f"> {command}", flush=True)
        member.replied.clear()
        await member.send(command)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(member.replied.wait(), 15)


async def run_demo(script: list[str] | None) -> None:
    homeserver = Homeserver()
    print("Starte einen lokalen Matrix-Homeserver (Synapse) …", flush=True)
    await asyncio.to_thread(homeserver.start)
    bot: Bot | None = None
    member: DemoMember | None = None
    follower: asyncio.Task[None] | None = None
    try:
        bot_user = await homeserver.register(BOT_LOCALPART, BOT_PASSWORD)
        member_user = await homeserver.register(MEMBER_LOCALPART, MEMBER_PASSWORD)
        settings = Settings(
            matrix={"homeserver": homeserver.url, "user_id": bot_user, "password": BOT_PASSWORD,
                    "store_path": str(homeserver.workdir / "bot-store")},
            bot={"admins": [member_user], "allowed_servers": [homeserver.server_name]},
            storage={"database": str(homeserver.workdir / "nextbot.db")},
        )
        _log_to(homeserver.workdir / "bot.log")
        storage = await open_storage(settings.storage.database)
        await seed_demo_data(storage, homeserver.server_name)
        await storage.close()
        bot = Bot(settings)
        await bot.start()
        member = DemoMember(homeserver, bot_user)
        await member.setup()
        follower = asyncio.create_task(member.follow())
        print(_banner(homeserver, member), flush=True)
        if script is not None:
            await _script(member, script)
        else:
            await _console(member)
    finally:
        if follower is not None:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        if member is not None:
            await member.client.close()
        if bot is not None:
            await bot.stop()
        homeserver.stop()
        print("Demo beendet; Homeserver und Bot sind gestoppt.", flush=True)


def _banner(homeserver: Homeserver, member: DemoMember) -> str:
    return f"""
NExT-Bot-Demo läuft.
  Homeserver:   {homeserver.url}
  Mitglied:     {member.user_id}  Passwort: {MEMBER_PASSWORD}
  Raum:         {ROOM_NAME} ({member.room_id})
  Bot-Log:      {homeserver.workdir / 'bot.log'}
Mit einem Matrix-Client (z. B. Element) kannst du dich mit diesen Daten ebenfalls anmelden.
Tippe Befehle wie  !hilfe  oder  !experten KI  und drücke Enter. Strg-C beendet die Demo.
"""


def _log_to(path: Path) -> None:
    """The bot logs into a file, so the console shows only the conversation."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("nio").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.devtools.demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--script", nargs="+", metavar="COMMAND",
                        help="send these commands, print the replies, and exit")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run_demo(args.script))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
