"""Communities against a fake `RoomAdmin`: create, link, archive, set, list, join; the welcome
text; the welcomer's combined greetings; the sync loop recording joins."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

import pytest

from bot.pipeline.welcomer import GREET_AGAIN_AFTER_MS, Welcomer
from commands import communities, core, room_settings
from commands.communities import CommunityConfig
from commands.framework import ActionRefused, Level, RetryLater, dispatch
from storage.joins import Join
from storage.outbox import OutgoingMessage
from tests.unit.fakes import ALICE, BOB, OTHER_ROOM, make_services, request, say

NETWORK_MOD = Level.NETWORK_MODERATOR  # creating communities, the member register

CAROL = "@carol:example.org"


class FakeRoomAdmin:
    """Rooms in memory: who is in them, which are spaces and their children."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.rooms: dict[str, dict] = {}
        self.children: dict[str, set[str]] = {}
        self.aliases: dict[str, str] = {}
        self.refuse_invites = False
        self.fail_next: str | None = None

    def _maybe_fail(self, name: str) -> None:
        if self.fail_next == name:
            self.fail_next = None
            raise RetryLater(name)

    def add_room(self, alias: str | None = None, members: Sequence[str] = ()) -> str:
        room_id = f"!r{next(self._ids)}:example.org"
        self.rooms[room_id] = {"name": None, "topic": None, "members": set(members),
                               "invited": set(), "moderators": [], "space": False}
        if alias:
            self.aliases[alias] = room_id
        return room_id

    async def create_room(self, *, name, topic, moderators, space=False) -> str:
        self._maybe_fail("create_room")
        room_id = self.add_room()
        self.rooms[room_id].update(name=name, topic=topic, moderators=list(moderators),
                                   space=space, members={"@nextbot:example.org"})
        return room_id

    async def add_to_space(self, space_id, room_id) -> None:
        self._maybe_fail("add_to_space")
        self.children.setdefault(space_id, set()).add(room_id)

    async def remove_from_space(self, space_id, room_id) -> None:
        self.children.get(space_id, set()).discard(room_id)

    async def find_room(self, text) -> str | None:
        if text.startswith("#"):
            return self.aliases.get(text)
        return text if text.startswith("!") else None

    async def join(self, room_id) -> bool:
        room = self.rooms.get(room_id)
        if room is None:
            return False
        room["members"].add("@nextbot:example.org")
        return True

    async def is_member(self, room_id, user_id) -> bool:
        return user_id in self.rooms[room_id]["members"]

    async def invite(self, room_id, user_id) -> None:
        if self.refuse_invites:
            raise ActionRefused("M_FORBIDDEN")
        self.rooms[room_id]["invited"].add(user_id)

    async def set_topic(self, room_id, topic) -> None:
        self.rooms[room_id]["topic"] = topic

    async def member_count(self, room_id) -> int:
        return len(self.rooms[room_id]["members"])


@pytest.fixture
def admin() -> FakeRoomAdmin:
    return FakeRoomAdmin()


@pytest.fixture
def services(storage, admin):
    services = make_services(storage, [core.router, room_settings.router, communities.router])
    services.room_admin = admin
    return services


async def create(services, slug="ki-verwaltung", title="KI in der Verwaltung") -> str:
    return await say(services, f"!community anlegen {slug} {title}", level=NETWORK_MOD)


# -- create, link, archive ----------------------------------------------------------------------


async def test_create_makes_the_room_in_a_new_space_with_the_creator_as_moderator(services,
                                                                                  admin):
    answer = await create(services)
    assert answer.startswith("Die Community KI in der Verwaltung (ki-verwaltung) ist angelegt")
    found = await services.storage.communities.get("ki-verwaltung")
    room = admin.rooms[found.room_id]
    assert room["name"] == "KI in der Verwaltung"
    assert room["topic"] == "Community „KI in der Verwaltung“ im NExT-Netzwerk"
    assert room["moderators"] == [ALICE] and ALICE in room["invited"]
    space = await services.storage.communities.space()
    assert admin.rooms[space]["space"] and admin.rooms[space]["name"] == "NExT-Netzwerk"
    assert admin.children[space] == {found.room_id}
    # The second community goes into the same space.
    await create(services, "cloud", "Cloud")
    assert len(admin.children[space]) == 2
    assert sum(r["space"] for r in admin.rooms.values()) == 1


async def test_a_configured_space_is_used_and_a_missing_one_is_reported(services, admin):
    space = admin.add_room("#next:example.org")
    services.configs["communities"] = CommunityConfig("#next:example.org")
    await create(services)
    assert len(admin.children[space]) == 1
    services.configs["communities"] = CommunityConfig("#gone:example.org")
    assert await create(services, "cloud", "Cloud") == (
        "Den Space #gone:example.org aus der Konfiguration finde ich nicht. Bitte wende dich an "
        "die Bot-Administration.")
    assert await services.storage.communities.get("cloud") is None


@pytest.mark.parametrize("level", [Level.MEMBER, Level.ROOM_MODERATOR])
@pytest.mark.parametrize("body", ["!community anlegen ki KI", "!community verknüpfen ki #x:y",
                                  "!community setzen ki thema T", "!community archivieren ki"])
async def test_only_network_moderators_manage_communities(services, admin, level, body):
    # Power in the room a command is written in (anyone's own room) is no network role.
    answer = await say(services, body, level=level)
    assert answer == (f"Den Befehl {' '.join(body.split()[:2])} dürfen nur Personen mit der "
                      "Rolle Netzwerk-Moderation ausführen.")
    assert admin.rooms == {}


def test_the_subcommands_keep_their_levels():
    community = next(c for c in communities.router.commands if c.name == "community")
    assert community.required_level == Level.MEMBER
    assert {sub.key: sub.required_level for sub in community.subcommands} == dict.fromkeys(
        ("community.create", "community.link", "community.set", "community.archive"),
        NETWORK_MOD)


async def test_help_for_a_subcommand_and_a_mistyped_one(services, admin):
    detail = await say(services, "!hilfe community anlegen")
    assert detail.startswith("!community anlegen <kurzname> <titel>\n\nLegt eine Community an")
    assert "Aufrufbar als: !community create, !community anlegen, !community new" in detail
    assert "Für: Netzwerk-Moderation" in detail
    assert "- !community anlegen ki-verwaltung KI in der Verwaltung" in detail
    assert (await say(services, "!help community link", language="en")).startswith(
        "!community link <short name> <room> [title]")
    assert await say(services, "!community anlgen ki KI", level=NETWORK_MOD) == (
        "anlgen kenne ich hier nicht. Meintest du !community anlegen? Mehr zeigt "
        "!hilfe community.")
    assert await say(services, "!community archiviern", level=NETWORK_MOD) == (
        "archiviern kenne ich hier nicht. Meintest du !community archivieren? Mehr zeigt "
        "!hilfe community.")
    # A short name that is nothing like a subcommand is an unknown community.
    assert await say(services, "!community wolke") == (
        "Eine Community wolke kenne ich nicht. Alle Communities zeigt !gemeinschaften.")
    assert (await say(services, "!community wolke regen")).startswith(
        "So funktioniert der Befehl: !community <kurzname>")
    assert admin.rooms == {}


@pytest.mark.parametrize(("body", "expected"), [
    ("!community anlegen K!I Titel", "K!I taugt nicht als Kurzname"),
    ("!community anlegen x Titel", "x taugt nicht als Kurzname"),
    ("!community anlegen ki", "So funktioniert der Befehl: !community"),
    ("!community anlegen", "So funktioniert der Befehl: !community"),
    ("!community anlegen ki " + "T" * 101, "Der Text für „titel“ ist zu lang: höchstens 100"),
])
async def test_bad_create_input_is_answered_and_makes_nothing(services, admin, body, expected):
    assert (await say(services, body, level=NETWORK_MOD)).startswith(expected)
    assert admin.rooms == {}


async def test_a_slug_is_taken_once(services, admin):
    await create(services)
    answer = await create(services, title="Noch einmal")
    assert answer == "Eine Community ki-verwaltung gibt es schon. Wähle einen anderen Kurznamen."
    assert len([r for r in admin.rooms.values() if not r["space"]]) == 1


async def test_a_transient_failure_after_the_room_was_made_never_makes_a_second_room(services,
                                                                                   admin):
    admin.fail_next = "add_to_space"
    with pytest.raises(RetryLater):
        await dispatch(request("!community anlegen ki KI", Level.NETWORK_MODERATOR), services)
    found = await services.storage.communities.get("ki")
    assert found is not None  # remembered before the failing step
    # The command is retried: it finds the slug taken; linking the same room repairs the space.
    assert (await create(services, "ki", "KI")).startswith("Eine Community ki gibt es schon")
    await say(services, f"!community verknüpfen ki {found.room_id}", level=NETWORK_MOD)
    space = await services.storage.communities.space()
    assert admin.children[space] == {found.room_id}
    assert len([r for r in admin.rooms.values() if not r["space"]]) == 1


async def test_link_registers_an_existing_room_by_alias(services, admin):
    room_id = admin.add_room("#cloud:example.org", members=[BOB])
    answer = await say(services, "!community link cloud #cloud:example.org Cloud-Werkstatt",
                       level=NETWORK_MOD, language="en")
    assert answer == ("The room now belongs to the communities as Cloud-Werkstatt (cloud) and "
                      "is listed in the network's space.")
    found = await services.storage.communities.get("cloud")
    assert (found.room_id, found.title) == (room_id, "Cloud-Werkstatt")
    assert "@nextbot:example.org" in admin.rooms[room_id]["members"]
    # Another slug for the same room, or an unknown room, is refused.
    assert (await say(services, f"!community verknüpfen wolke {room_id}",
                      level=NETWORK_MOD)) == "Dieser Raum gehört schon zur Community cloud."
    assert (await say(services, "!community verknüpfen x1 #nope:example.org",
                      level=NETWORK_MOD)).startswith("Den Raum #nope:example.org finde ich")
    assert (await say(services, "!community verknüpfen x1 !missing:example.org",
                      level=NETWORK_MOD)).startswith("Ich komme nicht in den Raum")


async def test_archive_removes_from_list_and_space_and_the_slug_can_return(services, admin):
    await create(services)
    found = await services.storage.communities.get("ki-verwaltung")
    space = await services.storage.communities.space()
    answer = await say(services, "!community archivieren ki-verwaltung", level=NETWORK_MOD)
    assert answer.startswith("Die Community KI in der Verwaltung (ki-verwaltung) ist archiviert")
    assert admin.children[space] == set()
    assert await services.storage.communities.active() == []
    assert (await say(services, "!beitreten ki-verwaltung")).startswith(
        "Eine Community ki-verwaltung kenne ich nicht")
    await say(services, f"!community verknüpfen ki-verwaltung {found.room_id}",
              level=NETWORK_MOD)
    assert [c.slug for c in await services.storage.communities.active()] == ["ki-verwaltung"]


async def test_set_changes_topic_in_the_room_too_and_description_keeps_lines(services, admin):
    await create(services)
    found = await services.storage.communities.get("ki-verwaltung")
    answer = await say(services, "!community setzen ki-verwaltung thema Chatbots & AI Act",
                       level=NETWORK_MOD)
    assert answer == "Gespeichert: thema der Community ki-verwaltung ist geändert."
    assert admin.rooms[found.room_id]["topic"] == "Chatbots & AI Act"
    await say(services, "!community set ki-verwaltung description Line 1\nLine 2",
              level=NETWORK_MOD, language="en")
    updated = await services.storage.communities.get("ki-verwaltung")
    assert (updated.topic, updated.description) == ("Chatbots & AI Act", "Line 1\nLine 2")
    shown = await say(services, "!community ki-verwaltung")
    assert "Line 1\nLine 2" in shown and "Chatbots & AI Act" in shown
    assert (await say(services, "!community setzen ki-verwaltung farbe rot",
                      level=NETWORK_MOD)).startswith("So änderst du eine Community")


# -- members ------------------------------------------------------------------------------------


async def test_communities_lists_title_topic_and_member_count(services, admin):
    assert (await say(services, "!gemeinschaften")).startswith("Es gibt noch keine Communities")
    await create(services)
    await create(services, "cloud", "Cloud")
    cloud = await services.storage.communities.get("cloud")
    admin.rooms[cloud.room_id]["members"] |= {BOB, CAROL}
    listed = await say(services, "!communities", language="en")
    assert listed.splitlines() == [
        "Communities of the network (2)",
        # The topic a community starts with is in the language of the room it was made in.
        "- Cloud (cloud, members: 3): Community „Cloud“ im NExT-Netzwerk",
        "- KI in der Verwaltung (ki-verwaltung, members: 1): Community „KI in der Verwaltung“ im "
        "NExT-Netzwerk",
        "Join: !join <short name>",
    ]
    assert (await say(services, "!communitys")).startswith("Communities im Netzwerk (2)")


async def test_join_invites_into_the_room_and_the_space(services, admin):
    await create(services)
    found = await services.storage.communities.get("ki-verwaltung")
    space = await services.storage.communities.space()
    answer = await say(services, "!beitreten KI-Verwaltung", sender=BOB)
    assert answer == ("Ich habe dich in KI in der Verwaltung eingeladen – nimm die Einladung in "
                      "deinem Matrix-Client an.")
    assert BOB in admin.rooms[found.room_id]["invited"]
    assert BOB in admin.rooms[space]["invited"]
    admin.rooms[found.room_id]["members"].add(BOB)
    assert await say(services, "!join ki-verwaltung", sender=BOB, language="en") == (
        "You are already a member of KI in der Verwaltung.")


async def test_join_suggests_close_slugs_and_reports_refusals(services, admin):
    await create(services)
    assert await say(services, "!beitreten ki-verwaltun") == (
        "Eine Community ki-verwaltun kenne ich nicht. Meintest du ki-verwaltung? Alle "
        "Communities zeigt !gemeinschaften.")
    admin.refuse_invites = True
    assert await say(services, "!beitreten ki-verwaltung", sender=BOB) == (
        "Ich konnte dich nicht in KI in der Verwaltung einladen. Bitte wende dich an die "
        "Moderation.")


# -- welcomes -----------------------------------------------------------------------------------


async def test_welcome_default_names_the_topic_and_help_and_mentions_the_newcomers(services):
    await create(services)
    found = await services.storage.communities.get("ki-verwaltung")
    text = await communities.welcome(services, found.room_id, [BOB, CAROL], "de")
    assert text.plain.startswith("Willkommen, @bob:example.org, @carol:example.org!")
    assert "Hier geht es um: Community „KI in der Verwaltung“" in text.plain
    assert "!hilfe" in text.plain
    assert "https://matrix.to/#/@bob:example.org" in text.markdown


async def test_welcome_follows_the_rooms_setting(services):
    await create(services)
    room = (await services.storage.communities.get("ki-verwaltung")).room_id
    assert await communities.welcome(services, OTHER_ROOM, [BOB], "de") is None
    await room_settings.change(services, OTHER_ROOM, "welcome", "Hallo <b>du</b>!", ALICE)
    text = await communities.welcome(services, OTHER_ROOM, [BOB], "de")
    assert text.plain.endswith("Hallo <b>du</b>!") and "<b>" not in text.markdown
    await room_settings.change(services, room, "welcome", "off", ALICE)
    assert await communities.welcome(services, room, [BOB], "de") is None


@pytest.mark.parametrize(("user", "ignored"), [
    ("@nextbot:example.org", True), ("@reminder-bot:example.org", True),
    ("@_discord_123:example.org", True), ("@bob:example.org", False),
    ("@abbott:example.org", False),
])
def test_no_welcome_patterns(user, ignored):
    assert communities.is_ignored(user, ["@*bot:*", "@_*"]) is ignored


async def queued_in(storage, room_id: str) -> list[OutgoingMessage]:
    rows = await storage.db.fetchall(
        "SELECT txn_id, content FROM outbox WHERE room_id = ? ORDER BY seq", (room_id,))
    return [OutgoingMessage(txn_id, room_id, json.loads(content)) for txn_id, content in rows]


class Now:
    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self) -> int:
        return self.at


async def welcomer_for(services, now: Now, queued: list[str]) -> Welcomer:
    return Welcomer(services, now_ms=now, on_queued=queued.append,
                    quiet_ms=10_000, ignore=["@*bot:*"])


async def test_joins_close_together_get_one_greeting_once(services):
    await create(services)
    room = (await services.storage.communities.get("ki-verwaltung")).room_id
    storage = services.storage
    now, queued = Now(1_000_000), []
    welcomer = await welcomer_for(services, now, queued)
    await storage.joins.add([Join("$j1", room, BOB, 1_000_000),
                                         Join("$j2", room, "@otherbot:example.org", 1_002_000)])
    assert await welcomer.greet_due() == 12_000  # quiet for 10 s after the newest join
    now.at = 1_005_000
    await storage.joins.add([Join("$j3", room, CAROL, 1_005_000)])
    assert await welcomer.greet_due() == 10_000
    now.at = 1_015_000
    assert await welcomer.greet_due() is None
    assert queued == [room]
    [message] = await queued_in(storage, room)
    assert message.txn_id == "welcome-$j1-0"
    assert message.content["body"].startswith("Willkommen, @bob:example.org, @carol:example.org!")
    assert message.content["m.mentions"] == {"user_ids": [BOB, CAROL]}
    # A repeated join event, or a second look, greets nobody again.
    assert await storage.joins.add([Join("$j1", room, BOB, 1_000_000)]) == 0
    await welcomer.greet_due()
    assert len(await queued_in(storage, room)) == 1


async def test_a_stream_of_joins_is_greeted_after_at_most_four_quiet_periods(services):
    await create(services)
    room = (await services.storage.communities.get("ki-verwaltung")).room_id
    now, queued = Now(0), []
    welcomer = await welcomer_for(services, now, queued)
    for second in range(0, 45, 5):
        now.at = second * 1000
        await services.storage.joins.add(
            [Join(f"$j{second}", room, f"@p{second}:example.org", now.at)])
        await welcomer.greet_due()
        if queued:
            break
    assert now.at == 40_000 and queued == [room]


async def test_a_quick_rejoin_and_a_room_without_welcome_greet_nobody(services):
    await create(services)
    room = (await services.storage.communities.get("ki-verwaltung")).room_id
    storage = services.storage
    now, queued = Now(1_000_000), []
    welcomer = await welcomer_for(services, now, queued)
    await storage.joins.add([Join("$a", room, BOB, 0),
                                         Join("$b", OTHER_ROOM, BOB, 0)])
    await welcomer.greet_due()
    assert queued == [room]  # the other room is no community and has no welcome text
    await storage.joins.add([Join("$c", room, BOB, 2_000_000)])
    now.at = 3_000_000
    await welcomer.greet_due()
    assert queued == [room]  # rejoined within a week
    await storage.joins.add([Join("$d", room, BOB, 2_000_000)])
    now.at = 3_000_000 + GREET_AGAIN_AFTER_MS
    await welcomer.greet_due()
    assert queued == [room, room]
    assert await storage.joins.waiting() == []


async def test_a_greeting_is_in_the_rooms_language(services):
    await create(services)
    room = (await services.storage.communities.get("ki-verwaltung")).room_id
    await room_settings.change(services, room, "language", "en", ALICE)
    now, queued = Now(100_000), []
    welcomer = await welcomer_for(services, now, queued)
    await services.storage.joins.add([Join("$a", room, BOB, 0)])
    await welcomer.greet_due()
    [message] = await queued_in(services.storage, room)
    assert message.content["body"].startswith("Welcome, @bob:example.org!")
    assert "Great to have you in KI in der Verwaltung" in message.content["body"]
