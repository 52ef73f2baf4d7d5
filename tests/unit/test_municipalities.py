"""The member register: AGS checks, duplicates, the commands, templates, and the announcements
(one digest per room, every (member, room) pair once, across restarts)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.matrix.render import to_html
from bot.pipeline.scheduler import Scheduler
from commands import core, municipalities, room_settings
from commands.framework import Level
from commands.municipalities import ANNOUNCE_DELAY, JoinAnnouncements, pair_key, split_fields
from commands.schedule import Occurrence
from commands.templates import JOIN_ANNOUNCEMENT
from storage.deliveries import Delivery
from storage.municipalities import (
    AgsError,
    Member,
    MemberIndex,
    name_key,
    normalize_ags,
    normalize_kind,
    normalize_website,
    same_member,
)
from tests.unit.fakes import ALICE, BOSS, CATALOG, OTHER_ROOM, ROOM, make_services, say

NETWORK_MOD = Level.NETWORK_MODERATOR  # creating communities, the member register

BERLIN = ZoneInfo("Europe/Berlin")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.moment = now

    def now(self) -> datetime:
        return self.moment


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 26, 10, 0, tzinfo=BERLIN))


@pytest.fixture
def changed() -> list[str]:
    return []


@pytest.fixture
def services(storage, clock, changed):
    services = make_services(storage, [core.router, room_settings.router, municipalities.router])
    services.clock = clock
    services.configs["room_settings"] = room_settings.RoomDefaults(
        "de", switched_on={"announcements": frozenset({ROOM})})

    async def schedule_changed(source: str) -> None:
        changed.append(source)

    services.schedule_changed = schedule_changed
    return services


def member(name: str, state: str = "Hessen", ags: str | None = None, **kwargs) -> Member:
    return Member(name=name, state=state, ags=ags, **kwargs)


# -- AGS, kinds, names --------------------------------------------------------------------------


def test_an_ags_is_eight_digits_with_a_state_code():
    assert normalize_ags("06414000") == "06414000"
    assert normalize_ags(" 06 4 14 000 ") == "06414000"
    assert normalize_ags("06.414.000", "Hessen") == "06414000"
    assert normalize_ags("16051000", "Thüringen") == "16051000"


@pytest.mark.parametrize("text, reason", [
    ("0641400", "digits"), ("064140001", "digits"), ("0641400x", "digits"),
    ("０６４１４０００", "digits"), ("", "digits"),
    ("00414000", "land"), ("17414000", "land"), ("99000000", "land"),
])
def test_a_malformed_ags_says_why(text, reason):
    with pytest.raises(AgsError) as caught:
        normalize_ags(text)
    assert caught.value.reason == reason


def test_an_ags_of_another_state_is_refused_naming_its_state():
    with pytest.raises(AgsError) as caught:
        normalize_ags("09162000", "Hessen")  # München
    assert caught.value.reason == "state" and caught.value.land == "Bayern"


def test_kinds_in_german_and_english():
    assert normalize_kind("Stadt") == "stadt"
    assert normalize_kind("Landkreis") == normalize_kind("district") == "landkreis"
    assert normalize_kind("Bundesbehörde") == normalize_kind("federal agency") == "bund"
    assert normalize_kind("Sonstige") == "other"
    assert normalize_kind("Raumstation") is None


def test_websites():
    assert normalize_website("www.wiesbaden.de") == "https://www.wiesbaden.de"
    assert normalize_website("https://ulm.de/digital") == "https://ulm.de/digital"
    assert normalize_website("javascript:alert(1)") is None
    assert normalize_website("wiesbaden") is None


# -- duplicates ---------------------------------------------------------------------------------


def test_duplicates_by_ags_else_by_name_and_state():
    assert same_member(member("Wiesbaden", ags="06414000"),
                       member("Landeshauptstadt Wiesbaden", ags="06414000"))
    assert same_member(member("Bad Homburg"), member("bad  homburg"))
    assert name_key("Frankfurt am Main") == name_key("Frankfurt-am-Main")
    assert not same_member(member("Neustadt", "Hessen"), member("Neustadt", "Sachsen"))
    # The same name in one state, told apart by different keys.
    assert not same_member(member("Neustadt", "Hessen", "06000001"),
                           member("Neustadt", "Hessen", "06000002"))
    # One key missing: name and state decide.
    assert same_member(member("Kassel", ags="06611000"), member("Kassel"))


def test_the_index_finds_what_same_member_finds():
    index = MemberIndex()
    index.add(member("Wiesbaden", ags="06414000"), 2)
    index.add(member("Neustadt", "Hessen", "06000001"), 3)
    assert index.find(member("LH Wiesbaden", ags="06414000")) == 2
    assert index.find(member("wiesbaden")) == 2
    assert index.find(member("Neustadt", "Hessen", "06000002")) is None
    assert index.find(member("Neustadt", "Hessen")) == 3


async def test_the_repository_recognises_duplicates_and_removed_members(storage):
    repo = storage.municipalities
    added, duplicates = await repo.add_new([member("Wiesbaden", ags="06414000"),
                                            member("Kassel"), member("kassel")])
    assert [m.name for m in added] == ["Wiesbaden", "Kassel"]
    assert [m.name for m in duplicates] == ["kassel"]
    assert (await repo.find_same(member("LH Wiesbaden", ags="06414000"))).name == "Wiesbaden"
    await repo.remove(added[1].id, 5)
    assert await repo.count() == 1
    again, duplicates = await repo.add_new([member("Kassel")])
    assert again == [] and len(duplicates) == 1  # removed by an admin: not back by itself


def test_fields_of_a_command_line():
    name, fields = split_fields("Landkreis Darmstadt-Dieburg land=Hessen art=Landkreis")
    assert name == "Landkreis Darmstadt-Dieburg"
    assert fields == [("state", "land", "Hessen"), ("kind", "art", "Landkreis")]
    assert split_fields("Ulm foo=bar")[1] == [(None, "foo", "bar")]


# -- templates ----------------------------------------------------------------------------------


def test_template_checks():
    check = JOIN_ANNOUNCEMENT.check
    assert check("{name} ({bundesland}) ist dabei. Wir sind {anzahl}!") is None
    assert check("Welcome {name} from {state}, {kind}, {total}") is None
    assert check("{Name} ist da") is None  # case does not matter
    assert check("{name} und {email}") == "municipalities.template.unknown_placeholder"
    assert check("{name} {0}") == "municipalities.template.unknown_placeholder"
    assert check("{name} {}") == "municipalities.template.unknown_placeholder"
    assert check("{name:>10}") == "municipalities.template.unknown_placeholder"
    assert check("{name!r}") == "municipalities.template.unknown_placeholder"
    assert check("{name.__class__}") == "municipalities.template.unknown_placeholder"
    assert check("{name} {") == "municipalities.template.bad_braces"
    assert check("{name} }") == "municipalities.template.bad_braces"
    assert check("Willkommen {bundesland}!") == "municipalities.template.missing_placeholder"
    for key in ("bad_braces", "unknown_placeholder", "missing_placeholder"):
        for language in ("de", "en"):
            assert "{name}" in CATALOG.text(language, f"municipalities.template.{key}",
                                            setting="x").plain


def test_a_template_is_filled_literally():
    text = JOIN_ANNOUNCEMENT.fill("**{name}** aus {land} – {{wörtlich}} [x](y) {anzahl}",
                                  {"name": "<b>Ulm</b> @room", "state": "Bayern", "total": 12})
    assert text.plain == "**<b>Ulm</b> @room** aus Bayern – {wörtlich} [x](y) 12"
    html = to_html(text.markdown)
    assert "<b>Ulm" not in html and "<strong>" not in html and "<a " not in html


async def test_moderators_set_a_template_and_unknown_placeholders_are_refused(services):
    refused = await say(services, "!einstellungen setzen ankündigung Hallo {name} {email}",
                        level=NETWORK_MOD)
    assert "nur diese Platzhalter" in refused
    assert await room_settings.setting(services, ROOM, "announcement") is None
    saved = await say(services, "!einstellungen setzen ankündigung Neu: {name} aus {land}!",
                      level=NETWORK_MOD)
    assert "Gespeichert" in saved
    assert await room_settings.setting(services, ROOM, "announcement") == \
        "Neu: {name} aus {land}!"


# -- commands -----------------------------------------------------------------------------------


async def test_members_and_room_moderators_may_not_add_network_moderators_may(services,
                                                                              changed):
    for level in (Level.MEMBER, Level.ROOM_MODERATOR):
        refused = await say(services, "!kommune neu Wiesbaden land=Hessen", level=level)
        assert "Netzwerk-Moderation" in refused
    assert await services.storage.municipalities.count() == 0
    added = await say(services, "!kommune neu Wiesbaden land=Hessen ags=06414000 art=Stadt",
                      level=NETWORK_MOD)
    assert "Eingetragen: Wiesbaden (Stadt, Hessen)" in added
    assert "Mitglieder des Netzwerks jetzt: 1" in added
    assert "Räume mit Ankündigungen: 1" in added
    assert changed == ["municipalities"]
    [stored] = await services.storage.municipalities.latest(5)
    assert (stored.ags, stored.kind, stored.joined_on) == ("06414000", "stadt", date(2026, 11, 26))
    assert stored.announce and stored.added_by == ALICE


async def test_adding_checks_every_value(services):
    async def add(line: str, language: str = "de") -> str:
        return await say(services, f"!kommune neu {line}", level=NETWORK_MOD,
                         language=language)

    assert "Bundesland an" in await add("Wiesbaden")
    assert "kenne ich nicht" in await add("Wiesbaden land=Hesse-Nassau")
    assert "genau 8 Ziffern" in await add("Wiesbaden land=Hessen ags=6414000")
    assert "01 bis 16" in await add("Wiesbaden land=Hessen ags=20414000")
    assert "gehört zu Bayern, nicht zu Hessen" in await add("Wiesbaden land=Hessen ags=09162000")
    assert "Art „Dorfplatz“" in await add("Wiesbaden land=Hessen art=Dorfplatz")
    assert "http(s)" in await add("Wiesbaden land=Hessen web=ftp://x")
    assert "kein Datum" in await add("Wiesbaden land=Hessen seit=gestern")
    assert "Zukunft" in await add("Wiesbaden land=Hessen seit=01.01.2030")
    assert "farbe verstehe ich nicht" in await add("Wiesbaden land=Hessen farbe=blau")
    assert "Wer ist beigetreten" in await add("")
    assert "belongs to Bayern" in await add("Wiesbaden state=Hessen ags=09162000", "en")
    assert await services.storage.municipalities.count() == 0


async def test_a_duplicate_is_refused(services):
    await say(services, "!kommune neu Wiesbaden land=Hessen ags=06414000", level=NETWORK_MOD)
    again = await say(services, "!kommune neu Landeshauptstadt Wiesbaden land=Hessen "
                                "ags=06414000", level=NETWORK_MOD)
    assert "Wiesbaden (Hessen) steht schon im Verzeichnis" in again
    again = await say(services, "!kommune neu WIESBADEN land=he", level=NETWORK_MOD)
    assert "steht schon" in again
    assert await services.storage.municipalities.count() == 1


async def test_only_admins_remove_and_a_removed_member_can_be_added_again(services, changed):
    await say(services, "!kommune neu Kassel land=Hessen", level=NETWORK_MOD)
    refused = await say(services, "!kommune entfernen Kassel", level=NETWORK_MOD)
    assert "Bot-Administration" in refused
    removed = await say(services, "!kommune entfernen kassel", level=Level.ADMIN, sender=BOSS)
    assert "Entfernt: Kassel (Hessen)" in removed and "jetzt: 0" in removed
    assert "nicht im Verzeichnis" in await say(services, "!kommune Kassel")
    back = await say(services, "!kommune neu Kassel land=Hessen", level=NETWORK_MOD)
    assert "Wieder eingetragen" in back
    assert await services.storage.municipalities.count() == 1


def test_the_subcommands_keep_their_levels():
    levels = {sub.key: sub.required_level for sub in municipalities.router.commands[1].subcommands}
    assert levels == {"municipality.add": Level.NETWORK_MODERATOR,
                      "municipality.remove": Level.ADMIN}


async def test_help_for_a_subcommand_and_a_mistyped_one(services):
    detail = await say(services, "!hilfe kommune neu")
    assert detail.startswith("!kommune neu [name land=…]\n\nTrägt ein neues Mitglied ein")
    assert "Für: Netzwerk-Moderation" in detail
    assert "- !kommune neu Wiesbaden land=Hessen ags=06414000 art=Stadt" in detail
    assert (await say(services, "!help municipality remove", language="en")).startswith(
        "!municipality remove [name]\n\nRemoves an entry")
    # Keys only `neu` takes: surely a mistyped subcommand.
    assert await say(services, "!kommune nue Wiesbaden land=Hessen ags=06414000",
                     level=NETWORK_MOD) == (
        "nue kenne ich hier nicht. Meintest du !kommune neu? Mehr zeigt !hilfe kommune.")
    # Could be a name: not found, and the subcommand it may have meant.
    assert await say(services, "!kommune entfernn Wiesbaden") == (
        "„entfernn Wiesbaden“ steht nicht im Verzeichnis. Meintest du !kommune entfernen? "
        "Die Mitglieder zeigt !kommunen.")
    assert await say(services, "!kommune Wiesbaden") == (
        "„Wiesbaden“ steht nicht im Verzeichnis. Die Mitglieder zeigt !kommunen.")
    assert await services.storage.municipalities.count() == 0


async def test_the_same_name_in_two_states_is_asked_back(services):
    await say(services, "!kommune neu Neustadt land=Hessen", level=NETWORK_MOD)
    await say(services, "!kommune neu Neustadt land=Sachsen", level=NETWORK_MOD)
    asked = await say(services, "!kommune entfernen Neustadt", level=Level.ADMIN)
    assert "mehrmals" in asked and "land=Hessen" in asked
    removed = await say(services, "!kommune entfernen Neustadt land=Sachsen", level=Level.ADMIN)
    assert "Entfernt: Neustadt (Sachsen)" in removed


async def test_listing_latest_by_state_and_details(services, clock):
    for line in ("Wiesbaden land=Hessen ags=06414000 art=Stadt seit=01.10.2026",
                 "Kassel land=Hessen seit=2026-11-01 web=www.kassel.de",
                 "Ulm land=BW art=Stadt seit=15.11.2026"):
        await say(services, f"!kommune neu {line}", level=NETWORK_MOD)
    listing = await say(services, "!kommunen")
    assert "Mitglieder des Netzwerks: 3" in listing
    assert listing.index("Ulm") < listing.index("Kassel") < listing.index("Wiesbaden")
    assert "Hessen 2 · Baden-Württemberg 1" in listing
    hessen = await say(services, "!kommunen hessen")
    assert "Mitglieder aus Hessen: 2" in hessen and "Ulm" not in hessen
    assert "kenne ich nicht" in await say(services, "!kommunen Atlantis")
    assert "Aus Bayern ist noch kein" in await say(services, "!kommunen Bayern")
    details = await say(services, "!kommune Kassel")
    assert "https://www.kassel.de" in details and "01.11.2026" in details
    english = await say(services, "!municipalities", language="en")
    assert "Members of the network: 3" in english and "Ulm (City, Baden-Württemberg)" in english


async def test_an_empty_register_says_how_to_fill_it(services):
    assert "noch kein Mitglied" in await say(services, "!kommunen")
    assert "So geht es" in await say(services, "!kommune")


# -- announcements ------------------------------------------------------------------------------


def make_scheduler(services, clock, woken=None) -> Scheduler:
    return Scheduler(services.storage, [JoinAnnouncements(services)], clock=clock,
                     timezone=BERLIN, grace=timedelta(hours=1), catalog=CATALOG,
                     default_language="de",
                     on_queued=(woken.append if woken is not None else lambda room: None))


async def posts(storage) -> list[tuple[str, str]]:
    rows = await storage.db.fetchall("SELECT room_id, content FROM outbox ORDER BY seq")
    return [(room, json.loads(content)["body"]) for room, content in rows]


async def register(services, clock, *names: str, announce: bool = True) -> list[Member]:
    at = int(clock.now().timestamp() * 1000)
    added, _ = await services.storage.municipalities.add_new(
        [member(n, registered_at=at, announce=announce, source="test") for n in names])
    return added


async def switch_on(services, room: str) -> None:
    await room_settings.change(services, room, "announcements", "on", "@mod:example.org")


async def test_one_join_is_announced_once_in_each_room(services, clock):
    await switch_on(services, OTHER_ROOM)
    await register(services, clock, "Alt", announce=False)  # seeded: never announced
    [wiesbaden] = await register(services, clock, "Wiesbaden")
    source = JoinAnnouncements(services)
    found = await source.occurrences(clock.now(), clock.now() + timedelta(minutes=1))
    assert [(o.room_id, o.key, o.covers) for o in found] == sorted(
        [(ROOM, pair_key(wiesbaden.id, ROOM), ()),
         (OTHER_ROOM, pair_key(wiesbaden.id, OTHER_ROOM), ())], key=lambda t: t[1])
    assert all(o.due == clock.now() + ANNOUNCE_DELAY for o in found)
    scheduler = make_scheduler(services, clock)
    clock.moment += ANNOUNCE_DELAY
    assert [await scheduler.deliver(o) for o in found] == ["sent", "sent"]
    assert [await scheduler.deliver(o) for o in found] == ["already", "already"]
    sent = await posts(services.storage)
    assert sorted(room for room, _ in sent) == sorted([ROOM, OTHER_ROOM])
    assert all("Wiesbaden (Hessen) ist dem Netzwerk beigetreten" in body
               and "jetzt 2 Mitglieder" in body for _, body in sent)
    # Delivered pairs are no occurrences any more.
    assert await source.occurrences(clock.now() - timedelta(minutes=1),
                                     clock.now() + timedelta(minutes=1)) == []


async def test_joins_registered_together_make_one_digest_that_records_every_pair(
        services, clock):
    await register(services, clock, *(f"Seed {i}" for i in range(10)), announce=False)
    joined = await register(services, clock, "Kassel", "Fulda", "Marburg")
    source = JoinAnnouncements(services)
    [digest] = await source.occurrences(clock.now(), clock.now() + timedelta(minutes=1))
    assert digest.key == pair_key(joined[0].id, ROOM)
    assert digest.covers == tuple(pair_key(m.id, ROOM) for m in joined[1:])
    assert digest.grace is not None and digest.grace >= timedelta(days=1)
    scheduler = make_scheduler(services, clock)
    clock.moment += ANNOUNCE_DELAY
    assert await scheduler.deliver(digest) == "sent"
    [(room, body)] = await posts(services.storage)
    assert room == ROOM and body.startswith("3 neue Mitglieder im Netzwerk")
    # Running totals: 11, 12, 13.
    assert body.index("Kassel") < body.index("jetzt 11") < body.index("Fulda") \
        < body.index("jetzt 12") < body.index("Marburg") < body.index("jetzt 13")
    for m in joined:
        assert await services.storage.deliveries.get(pair_key(m.id, ROOM)) is not None


async def test_a_restart_repeats_nothing(services, clock):
    await register(services, clock, "Kassel", "Fulda")
    first = make_scheduler(services, clock)
    clock.moment += ANNOUNCE_DELAY + timedelta(seconds=1)
    await first.catch_up()  # as a start does: the digest fell due
    assert len(await posts(services.storage)) == 1
    clock.moment += timedelta(minutes=5)
    second = make_scheduler(services, clock)  # a new process on the same database
    await second.catch_up()
    # Even asked for the whole day, the source has nothing left.
    source = JoinAnnouncements(services)
    assert await source.occurrences(clock.now() - timedelta(days=1), clock.now()) == []
    assert len(await posts(services.storage)) == 1


async def test_a_pair_announced_before_is_left_out_of_a_later_digest(services, clock):
    kassel, fulda = await register(services, clock, "Kassel", "Fulda")
    await services.storage.deliveries.record(
        Delivery(pair_key(kassel.id, ROOM), "municipalities", ROOM, 0, 0, "sent"))
    [occurrence] = await JoinAnnouncements(services).occurrences(
        clock.now(), clock.now() + timedelta(minutes=1))
    assert occurrence.key == pair_key(fulda.id, ROOM) and occurrence.covers == ()


async def test_the_scheduler_records_a_digest_all_or_nothing(services, clock):
    kassel, fulda = await register(services, clock, "Kassel", "Fulda")
    [digest] = await JoinAnnouncements(services).occurrences(
        clock.now(), clock.now() + timedelta(minutes=1))
    # Fulda's pair was recorded meanwhile (say, by another path): the digest posts nothing
    # and records nothing, not even Kassel's pair.
    await services.storage.deliveries.record(
        Delivery(pair_key(fulda.id, ROOM), "municipalities", ROOM, 0, 0, "sent"))
    scheduler = make_scheduler(services, clock)
    clock.moment += ANNOUNCE_DELAY
    assert await scheduler.deliver(digest) == "already"
    assert await posts(services.storage) == []
    assert await services.storage.deliveries.get(pair_key(kassel.id, ROOM)) is None


async def test_rooms_switched_off_or_on_and_the_rooms_template_and_language(services, clock):
    await room_settings.change(services, ROOM, "announcements", "off", "@mod:example.org")
    await switch_on(services, OTHER_ROOM)
    await room_settings.change(services, OTHER_ROOM, "language", "en", "@mod:example.org")
    await room_settings.change(services, OTHER_ROOM, "announcement",
                               "Welcome {name} ({state}, {kind}) – member {total}!",
                               "@mod:example.org")
    await register(services, clock, "Kassel")
    scheduler = make_scheduler(services, clock)
    await scheduler.start()
    try:
        clock.moment += ANNOUNCE_DELAY
        for occurrence in await JoinAnnouncements(services).occurrences(
                clock.now() - timedelta(minutes=1), clock.now() + timedelta(minutes=1)):
            await scheduler.deliver(occurrence)
    finally:
        scheduler.stop()
    assert await posts(services.storage) == [
        (OTHER_ROOM, "Welcome Kassel (Hessen, Other) – member 1!")]


async def test_a_member_removed_before_its_announcement_is_not_announced(services, clock):
    [kassel] = await register(services, clock, "Kassel")
    [occurrence] = await JoinAnnouncements(services).occurrences(
        clock.now(), clock.now() + timedelta(minutes=1))
    await services.storage.municipalities.remove(kassel.id, 1)
    clock.moment += ANNOUNCE_DELAY
    assert await make_scheduler(services, clock).deliver(occurrence) == "skipped"
    assert await posts(services.storage) == []


async def test_a_moderators_add_is_planned_by_the_running_scheduler(services, clock):
    scheduler = make_scheduler(services, clock)
    services.schedule_changed = scheduler.schedule_changed
    await scheduler.start()
    try:
        await say(services, "!kommune neu Wiesbaden land=Hessen", level=NETWORK_MOD)
        [job] = [j for j in scheduler.job_ids() if j.startswith("municipalities:")]
        assert job.endswith(ROOM)
    finally:
        scheduler.stop()


async def test_an_occurrence_with_its_own_grace_is_posted_late(services, clock):
    await register(services, clock, "Kassel")
    [occurrence] = await JoinAnnouncements(services).occurrences(
        clock.now(), clock.now() + timedelta(minutes=1))
    clock.moment += timedelta(days=2)  # far beyond the scheduler's hour
    assert await make_scheduler(services, clock).deliver(occurrence) == "late"
    late = Occurrence("x", "municipalities", occurrence.due, ROOM, "1")
    assert await make_scheduler(services, clock).deliver(late) == "skipped"


@pytest.mark.parametrize(("language", "first", "later"), [
    ("de", "Es ist das erste Mitglied.", "Damit sind es jetzt 2 Mitglieder."),
    ("en", "It is the first member.", "That makes 2 members now."),
])
def test_the_default_announcement_counts_in_words_that_fit(language, first, later):
    wiesbaden = Member("Wiesbaden", "Hessen", kind="stadt")
    assert municipalities.announcement(CATALOG, language, None, wiesbaden, 1).plain.endswith(first)
    assert municipalities.announcement(CATALOG, language, None, wiesbaden, 2).plain.endswith(later)
