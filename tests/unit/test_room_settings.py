"""`!config` (`!einstellungen`): showing, changing with validation, the change record, and how
features read the settings (`setting`, `is_on`, `rooms_switched_on`)."""

from __future__ import annotations

import pytest

from commands import room_settings
from commands.feature import routers
from commands.features import FEATURES
from commands.framework import Level, Registry, Router, dispatch
from commands.room_settings import RoomDefaults
from tests.unit.fakes import ALICE, BOB, CATALOG, OTHER_ROOM, ROOM, make_services, request, say

# Every feature declares its own room settings (the language here, a reminder switch there).
ALL_ROUTERS = routers(FEATURES)
ALL_KEYS = ", ".join(s.german for s in Registry(ALL_ROUTERS).room_settings())


@pytest.fixture
def services(storage):
    return make_services(storage, ALL_ROUTERS)


async def test_show_lists_every_setting_with_its_default(services):
    shown = await say(services, "!einstellungen")
    assert shown.startswith("Einstellungen dieses Raums")
    for key in ("sprache", "willkommen", "ankündigungen", "treffen_erinnerungen",
                "werkstatt_erinnerungen"):
        assert f"({key})" in shown
    assert "Sprache des Bots (sprache): Deutsch" in shown
    assert "Begrüßung neuer Mitglieder (willkommen): Standardtext" in shown
    assert "(ankündigungen): aus (Voreinstellung)" in shown
    assert "(werkstatt_erinnerungen): an (Voreinstellung)" in shown
    english = await say(services, "!config", language="en")
    assert "The bot's language (language): German" in english
    assert "(announcements): off (default)" in english


async def test_members_may_look_but_not_change(services, storage):
    refused = await say(services, "!einstellungen setzen sprache en")
    assert refused == ("Den Befehl !einstellungen setzen dürfen nur Personen mit der Rolle "
                       "Raum-Moderation ausführen.")
    assert await storage.rooms.settings(ROOM) == {}
    assert await storage.rooms.setting_changes(ROOM) == []


def test_the_subcommands_keep_their_levels():
    [config] = room_settings.router.commands
    assert {sub.key: sub.required_level for sub in config.subcommands} == {
        "config.set": Level.ROOM_MODERATOR, "config.history": Level.MEMBER}


async def test_help_for_a_subcommand(services):
    detail = await say(services, "!hilfe einstellungen setzen")
    assert detail.startswith("!einstellungen setzen [einstellung] [wert]\n\nÄndert eine "
                             "Einstellung dieses Raums")
    assert "Für: Raum-Moderation" in detail
    assert "- !einstellungen setzen ankündigungen an" in detail
    english = await say(services, "!help config history", language="en")
    assert english.startswith("!config history\n\nShows the latest changes")
    shown = await say(services, "!einstellungen")
    assert shown.endswith("Ändern (Raum-Moderation): !einstellungen setzen … · Letzte Änderungen: "
                          "!einstellungen verlauf")


async def test_a_moderator_changes_the_language_and_is_answered_in_the_new_one(services,
                                                                               storage):
    answer = await say(services, "!einstellungen setzen sprache en", level=Level.ROOM_MODERATOR)
    assert answer == "Saved: language is now English."
    assert await storage.rooms.language(ROOM) == "en"
    assert await storage.rooms.language(OTHER_ROOM) is None


@pytest.mark.parametrize(("body", "key", "stored"), [
    ("!config set announcements on", "announcements", "on"),
    ("!einstellungen setzen Ankündigungen AN", "announcements", "on"),
    ("!einstellungen setzen ankuendigungen ja", "announcements", "on"),
    ("!einstellungen setzen werkstatt_erinnerungen aus", "workshop_reminders", "off"),
    ("!config set meet_reminders yes", "meet_reminders", "on"),
    ("!einstellungen setzen willkommen aus", "welcome", "off"),
    ("!einstellungen setzen willkommen Hallo!\nStell dich vor.", "welcome",
     "Hallo!\nStell dich vor."),
])
async def test_values_in_either_language_are_stored_canonically(services, storage, body, key,
                                                                 stored):
    await say(services, body, level=Level.ROOM_MODERATOR)
    assert (await storage.rooms.settings(ROOM))[key] == stored


async def test_standard_resets_to_the_default(services, storage):
    await say(services, "!config set announcements on", level=Level.ROOM_MODERATOR)
    answer = await say(services, "!einstellungen setzen ankündigungen standard",
                       level=Level.ROOM_MODERATOR)
    assert answer == "Gespeichert: ankündigungen ist jetzt aus."
    assert await storage.rooms.settings(ROOM) == {}
    [latest, _] = await storage.rooms.setting_changes(ROOM)
    assert (latest.key, latest.old_value, latest.new_value) == ("announcements", "on", None)


@pytest.mark.parametrize(("body", "expected"), [
    ("!einstellungen setzen farbe blau",
     f"Eine Einstellung farbe gibt es nicht. Möglich sind: {ALL_KEYS}"),
    ("!einstellungen setzen sprache fr", "Für sprache geht de, en."),
    ("!einstellungen setzen ankündigungen vielleicht",
     "Für ankündigungen geht an oder aus (oder standard für die Voreinstellung)."),
    ("!einstellungen setzen sprache",
     "So änderst du eine Einstellung: !einstellungen setzen sprache en\nMögliche Einstellungen: "
     f"{ALL_KEYS}"),
    ("!einstellungen setzen willkommen \u200b\u200e",
     "Für willkommen fehlt der Text. aus schaltet ihn ab, standard nimmt wieder den "
     "Standardtext."),
    ("!einstellungen bunt", "bunt kenne ich bei !einstellungen nicht. Was geht, zeigt "
     "!hilfe einstellungen."),
    ("!einstellungen setzn sprache en", "setzn kenne ich hier nicht. Meintest du "
     "!einstellungen setzen? Mehr zeigt !hilfe einstellungen."),
    ("!einstellungen verlauf jetzt", "So funktioniert der Befehl: !einstellungen verlauf\n"
     "Mehr dazu: !hilfe einstellungen verlauf"),
])
async def test_bad_input_is_answered_with_what_is_allowed(services, storage, body, expected):
    assert await say(services, body, level=Level.ROOM_MODERATOR) == expected
    assert await storage.rooms.settings(ROOM) == {}


async def test_a_too_long_text_is_refused(services, storage):
    answer = await say(services, "!config set welcome " + "x" * 1001, level=Level.ROOM_MODERATOR,
                       language="en")
    assert answer == "The text for welcome is too long: at most 1000 characters."
    assert await storage.rooms.settings(ROOM) == {}


async def test_hostile_welcome_text_is_kept_literally_and_shown_escaped(services, storage):
    text = "<b>Hi</b> @room [x](https://evil.example)"
    await say(services, f"!config set welcome {text}", level=Level.ROOM_MODERATOR)
    assert (await storage.rooms.settings(ROOM))["welcome"] == text
    replies = await dispatch(request("!einstellungen"), services)
    assert "<b>" not in replies[0].text.markdown
    assert "\\[x\\]" in replies[0].text.markdown


async def test_every_change_is_recorded_and_listed_newest_first(services, storage):
    assert await say(services, "!einstellungen verlauf") == (
        "In diesem Raum wurde noch keine Einstellung geändert.")
    await say(services, "!einstellungen setzen ankündigungen an", level=Level.ROOM_MODERATOR)
    await say(services, "!einstellungen setzen sprache en", level=Level.ROOM_MODERATOR, sender=BOB)
    history = await say(services, "!einstellungen verlauf")
    lines = history.splitlines()
    assert lines[0] == "Letzte Änderungen der Einstellungen"
    assert lines[1] == ("- 01.05.2024 12:00: @bob:example.org hat sprache geändert: "
                        "Voreinstellung → Englisch")
    assert lines[2] == ("- 01.05.2024 12:00: @alice:example.org hat ankündigungen geändert: "
                        "Voreinstellung → an")
    changes = await storage.rooms.setting_changes(ROOM)
    assert [(c.key, c.changed_by) for c in changes] == [("language", BOB),
                                                        ("announcements", ALICE)]


async def test_the_language_shortcut_records_its_change_too(services, storage):
    await say(services, "!sprache en", level=Level.ROOM_MODERATOR)
    [change] = await storage.rooms.setting_changes(ROOM)
    assert (change.key, change.new_value, change.changed_by) == ("language", "en", ALICE)


async def test_features_read_moderators_choices_over_the_operators_defaults(services):
    services.configs["room_settings"] = RoomDefaults(
        "en", {"announcements": frozenset({ROOM, "!c:x"})})
    assert await room_settings.setting(services, ROOM, "language") == "en"
    assert await room_settings.is_on(services, ROOM, "announcements")
    assert not await room_settings.is_on(services, OTHER_ROOM, "announcements")
    assert await room_settings.is_on(services, OTHER_ROOM, "workshop_reminders")
    await room_settings.change(services, ROOM, "announcements", "off", ALICE)
    await room_settings.change(services, OTHER_ROOM, "announcements", "on", ALICE)
    assert not await room_settings.is_on(services, ROOM, "announcements")
    assert await room_settings.rooms_switched_on(services, "announcements") == [
        "!c:x", OTHER_ROOM]
    assert await room_settings.rooms_switched_on(services, "meet_reminders") == []


async def test_a_failed_transaction_leaves_neither_value_nor_record(storage):
    with pytest.raises(RuntimeError):
        async with storage.db.transaction():
            await storage.rooms.change_setting(ROOM, "language", "en", changed_by=ALICE,
                                               changed_at=1)
            raise RuntimeError("boom")
    assert await storage.rooms.settings(ROOM) == {}
    assert await storage.rooms.setting_changes(ROOM) == []


def test_each_feature_declares_its_settings_with_a_label_in_both_languages():
    declared = Registry(ALL_ROUTERS).room_settings()
    assert [s.key for s in declared] == ["language", "welcome", "workshop_reminders",
                                         "meet_reminders", "announcements", "announcement"]
    for setting in declared:
        for language in ("de", "en"):
            assert CATALOG.has(language, f"settings.labels.{setting.key}"), (setting, language)
    again = Router("again")
    again.room_setting(room_settings.LANGUAGE)
    with pytest.raises(ValueError, match="room setting 'language' is declared twice"):
        Registry([room_settings.router, again])
